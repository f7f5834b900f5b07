"""The write-ahead spool: checksummed segments, whole-segment deletion on ack, recovery after
crashes (truncated tails), quarantine of corrupt segments, quota, fsync interval."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from agent.spool import Spool
from support.processes import child_env


def records(n: int, size: int = 100) -> list[bytes]:
    return [bytes([i % 251]) * size + str(i).encode() for i in range(n)]


def test_append_replay_round_trip(tmp_path):
    """Records come back in order with consecutive seqs starting at 1."""
    spool = Spool(tmp_path)
    data = records(50)
    seqs = [spool.append(r) for r in data]
    assert seqs == list(range(1, 51))
    assert list(spool.replay()) == list(zip(range(1, 51), data))
    assert spool.unacked == 50


def test_ack_deletes_whole_segments_only(tmp_path):
    """With small segments, an ack deletes exactly the segments whose records are all acknowledged,
    and replay yields only what is unacknowledged."""
    spool = Spool(tmp_path, segment_bytes=1000)
    data = records(40)  # ~120 bytes each: 8 records per segment
    for r in data:
        spool.append(r)
    segs_before = sorted(p.name for p in tmp_path.glob("seg-*.log"))
    assert len(segs_before) == 5
    spool.ack(20)
    remaining = sorted(p.name for p in tmp_path.glob("seg-*.log"))
    # segments with seqs 1-8 and 9-16 are gone; 17-24 holds unacked records and stays
    assert remaining == segs_before[2:]
    assert [seq for seq, _ in spool.replay()] == list(range(21, 41))
    assert spool.counters.segments_deleted == 2


def test_reopen_keeps_records_and_continues_seq(tmp_path):
    """After close and reopen, unacknowledged records replay and new seqs continue (never restart,
    even when every segment was deleted)."""
    spool = Spool(tmp_path, segment_bytes=500)
    for r in records(10):
        spool.append(r)
    spool.ack(10)
    spool.close()
    again = Spool(tmp_path)
    assert list(again.replay()) == []
    assert again.append(b"next") == 11
    again.close()
    third = Spool(tmp_path)
    assert list(third.replay()) == [(11, b"next")]


def test_truncated_tail_is_cut_off(tmp_path):
    """A record cut short by a crash at the end of the last segment is removed; all complete
    records before it survive."""
    spool = Spool(tmp_path)
    data = records(5)
    for r in data:
        spool.append(r)
    spool.close()
    seg = next(tmp_path.glob("seg-*.log"))
    with open(seg, "ab") as fh:
        fh.write(b"RWs1\x10\x00\x00")  # half a header
    again = Spool(tmp_path)
    assert list(again.replay()) == list(zip(range(1, 6), data))
    assert again.counters.truncated_tails == 1
    assert again.append(b"x") == 6


def test_corrupt_segment_is_quarantined(tmp_path):
    """A flipped byte inside a closed segment quarantines that segment (renamed *.corrupt and
    reported); other segments are still read; opening never loops or raises."""
    spool = Spool(tmp_path, segment_bytes=1000)
    for r in records(24):
        spool.append(r)
    spool.close()
    first = sorted(tmp_path.glob("seg-*.log"))[0]
    raw = bytearray(first.read_bytes())
    raw[200] ^= 0xFF
    first.write_bytes(bytes(raw))
    again = Spool(tmp_path)
    assert len(again.counters.quarantined) == 1
    assert first.with_suffix(".corrupt").exists()
    assert [seq for seq, _ in again.replay()] == list(range(9, 25))


def test_quota_refuses_and_counts(tmp_path):
    """Past the byte quota append returns None and counts quota_full; after an ack frees segments,
    appends succeed again."""
    spool = Spool(tmp_path, segment_bytes=600, quota_bytes=1500)
    accepted = [spool.append(r) for r in records(20)]
    assert None in accepted
    n_ok = accepted.index(None)
    assert accepted[n_ok:] == [None] * (20 - n_ok)
    assert spool.counters.quota_full == 20 - n_ok
    assert spool.nbytes <= 1500
    spool.ack(n_ok)
    assert spool.append(b"after ack") == n_ok + 1


def test_fsync_interval(tmp_path):
    """fsync happens at most once per interval of the injected clock (and on rotation/close)."""
    now = [0.0]
    spool = Spool(tmp_path, fsync_interval_s=1.0, clock=lambda: now[0])
    for _ in range(10):
        spool.append(b"x" * 10)
    assert spool.counters.fsyncs == 0
    now[0] = 1.5
    spool.append(b"y")
    assert spool.counters.fsyncs == 1
    spool.append(b"z")
    assert spool.counters.fsyncs == 1
    spool.close()  # close syncs what the interval has not yet
    assert spool.counters.fsyncs == 2


def test_kill_9_loses_nothing_that_append_returned_for(tmp_path):
    """A process appending in a loop is killed with SIGKILL; on reopen every record whose append
    had returned (reported on stdout before the kill) is present and intact."""
    code = textwrap.dedent(
        f"""
        from agent.spool import Spool
        spool = Spool({str(tmp_path)!r}, segment_bytes=4096, fsync_interval_s=10)
        i = 0
        while True:
            i += 1
            seq = spool.append(b"record-%d-" % i + b"z" * (i % 300))
            assert seq == i
            if i % 50 == 0:
                print(i, flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=child_env())
    reported = 0
    for line in proc.stdout:
        reported = int(line)
        if reported >= 3000:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    spool = Spool(tmp_path)
    got = list(spool.replay())
    assert len(got) >= reported
    assert [seq for seq, _ in got] == list(range(1, len(got) + 1))
    for seq, payload in got:
        assert payload == b"record-%d-" % seq + b"z" * (seq % 300)


@pytest.mark.parametrize("size", [0, 1, 65536])
def test_record_sizes(tmp_path, size):
    """Empty, tiny and large payloads round-trip."""
    spool = Spool(tmp_path)
    spool.append(b"a" * size)
    assert list(Spool(tmp_path).replay()) == [(1, b"a" * size)]
