"""Oversized values never jam a writer (issue 9, finding 3).

A frame over the agent's limit (64 MiB) used to be rejected as malformed and resent for ever: every later
row of the run was lost and ``finish()`` timed out. Now strings, tables and config count toward the batch
byte cap, one value above ``MAX_VALUE_BYTES`` is refused at the call site, a batch whose parts together
exceed a frame is split, and a batch the agent rejects anyway is dropped (counted), never resent."""

from __future__ import annotations

import time

import numpy as np
import pytest

import rankwise
from client import wire
from client.ops import LATE

MB = 1 << 20
MAX_VALUE_MIB = 32  # client.values.MAX_VALUE_BYTES, as the error message says it


def _init(group: str):
    return rankwise.init(project="big", group=group, rank=0, world_size=1, settings={"finish_timeout_s": 30})


def _history(group: str, key: str) -> list:
    rows = rankwise.Api().group("big", group).run(rank=0).history([key])
    return [(r["_step"], r[key]) for r in rows if key in r]


def _finish_in_time(run, limit_s: float = 45.0) -> float:
    t0 = time.monotonic()
    run.finish()
    took = time.monotonic() - t0
    assert took < limit_s
    return took


def test_burst_of_ten_megabyte_strings_is_stored_with_every_later_row(rankwise_env):
    """8 strings of 10 MB logged in a burst, then 100 rows of numbers: every frame stays under the limit,
    all 108 rows are sent, acknowledged and stored (the strings byte for byte), nothing is dropped, and
    finish() returns in time."""
    blobs = [chr(ord("a") + i) * (10 * MB) for i in range(8)]
    run = _init("strings")
    for blob in blobs:
        run.log({"blob": blob})
    for i in range(100):
        run.log({"x": float(i)})
    _finish_in_time(run)
    stored = _history("strings", "blob")
    assert [s for s, _ in stored] == list(range(8))
    assert all(v == b for (_, v), b in zip(stored, blobs))
    assert _history("strings", "x") == [(8 + i, float(i)) for i in range(100)]
    assert rankwise.Api().group("big", "strings").run(rank=0).state == "finished"
    stats = run.stats
    assert (stats["rows_sent"], stats["unacked_rows"], stats.get("drops"), stats.get("rejected_batches")) == (
        108,
        0,
        {},
        0,
    )
    assert stats["batches_sent"] >= 4  # 80 MB cannot travel in fewer frames of at most 24 MiB of values


def test_table_above_the_value_limit_is_refused_at_the_call(rankwise_env):
    """A 75 MB Table raises ValueError naming the key and the limit; the run goes on and every other row
    is stored."""
    run = _init("table")
    run.log({"x": 0.0})
    table = rankwise.Table(columns=["text"], data=[["y" * 75_000] for _ in range(1000)])
    with pytest.raises(ValueError, match=rf"'samples'.*limit of {MAX_VALUE_MIB} MiB"):
        run.log({"samples": table})
    small = rankwise.Table(columns=["text"], data=[["ok"]])
    run.log({"x": 1.0, "samples": small})
    _finish_in_time(run)
    assert run.stats["rows_sent"] == 2 and run.stats["unacked_rows"] == 0 and run.stats["drops"] == {}
    assert _history("table", "x") == [(0, 0.0), (1, 1.0)]
    ((step, value),) = _history("table", "samples")
    assert step == 1 and value["data"] == [["ok"]]


def test_huge_config_update_is_refused_at_the_call(rankwise_env):
    """config.update() of 40 MB raises ValueError naming the key and the limit (so does a huge config at
    init); smaller updates and every row are stored."""
    with pytest.raises(ValueError, match=r"'corpus'.*limit of"):
        rankwise.init(project="big", group="cfg0", rank=0, world_size=1, config={"corpus": "z" * (40 * MB)})
    run = _init("cfg")
    run.log({"x": 0.0})
    with pytest.raises(ValueError, match=rf"'corpus'.*limit of {MAX_VALUE_MIB} MiB"):
        run.config.update({"lr": 0.1, "corpus": "z" * (40 * MB)})
    run.config.update({"lr": 0.2})
    run.log({"x": 1.0})
    _finish_in_time(run)
    assert run.stats["rows_sent"] == 2 and run.stats["unacked_rows"] == 0
    assert _history("cfg", "x") == [(0, 0.0), (1, 1.0)]
    assert rankwise.Api().group("big", "cfg").run(rank=0).config == {"lr": 0.2}


def test_batch_larger_than_a_frame_is_split_and_stored_whole(rankwise_env):
    """A 30 MB string row, a 30 MB config change and the summary (holding the string again) together exceed
    a frame: the batch goes as several frames, each under the limit, and the row, the config and the
    summary are all stored; nothing is dropped."""
    text = "s" * (30 * MB)
    conf = "c" * (30 * MB)
    run = _init("split")
    sizes = []
    writer = run._writer
    send = writer._send_outbox

    def spy(sock):
        sizes.extend(len(f) for _, f, _ in writer._outbox)
        send(sock)

    writer._send_outbox = spy
    run.log({"text": text})
    run.config.update({"conf": conf})
    _finish_in_time(run)
    assert sizes and max(sizes) <= wire.MAX_FRAME_BYTES
    assert run.stats["rows_sent"] == 1 and run.stats["unacked_rows"] == 0 and run.stats["drops"] == {}
    r = rankwise.Api().group("big", "split").run(rank=0)
    assert _history("split", "text") == [(0, text)]
    assert r.config["conf"] == conf and r.summary["text"] == text and r.state == "finished"


def test_frames_never_exceed_the_limit_and_values_no_frame_can_carry_are_dropped_and_counted():
    """Assembler alone: rows whose values add up to more than a frame (pending rows merged by commit=False
    into one row of 3 × 30 MB) are never encoded as a frame over MAX_FRAME_BYTES: the largest values that
    do not fit become None and are counted as "oversized value"; later rows are intact."""
    from support.offline import drain_batches, offline_run, rows_of

    run = offline_run(max_unacked_bytes=1 << 30)
    try:
        for k in "abc":
            run.log({k: k * (30 * MB)}, commit=False)
        run.log({"x": 1.0})
        run.log({"x": 2.0})
        run._writer.sync()
        frames = [f for _, f, _ in run._writer._outbox]
        assert frames and max(len(f) for f in frames) <= wire.MAX_FRAME_BYTES
        rows = rows_of(drain_batches(run))
        assert [r["x"] for r in rows] == [1.0, 2.0]
        kept = [k for k in "abc" if rows[0][k] is not None]
        assert len(kept) == 2 and all(rows[0][k] == k * (30 * MB) for k in kept)
        assert run._writer.drop_counts() == {"oversized value": 1}
    finally:
        import os

        for fd in (run._writer._wake_r, run._writer._wake_w):
            os.close(fd)


def test_batch_the_agent_rejects_is_dropped_counted_and_never_resent(rankwise_env):
    """A batch that fails the agent's validation (here a late row at step 2**62, pushed past log()'s own
    check) is answered NACK "rejected": the client drops it, counts its row by cause, and every later row is
    stored; the agent counts the drop too and finish() returns in time."""
    run = _init("rejected")
    run.log({"x": 0.0})
    assert run.flush(30)
    run._push((LATE, 1 << 62, time.perf_counter(), {"x": -1.0}))
    assert run.flush(30)
    for i in range(1, 51):
        run.log({"x": float(i)})
    _finish_in_time(run, 30)
    stats = run.stats
    assert (stats["rejected_batches"], stats["drops"], stats["unacked_rows"]) == (1, {"rejected": 1}, 0)
    assert _history("rejected", "x") == [(i, float(i)) for i in range(51)]
    api = rankwise.Api()
    assert api.group("big", "rejected").run(rank=0).state == "finished"
    assert api._reader.drops() == {"rejected": 1}


def test_numbers_are_not_cut_by_the_byte_cap(rankwise_env):
    """Rows of plain numbers are not affected by the byte cap: 20,000 rows in a burst, all stored."""
    run = _init("plain")
    for i in range(20_000):
        run.log({"x": i, "y": np.float32(i)} if i % 1000 == 0 else {"x": i})
    _finish_in_time(run)
    assert run.stats["rows_sent"] == 20_000 and run.stats["unacked_rows"] == 0
    assert len(_history("plain", "x")) == 20_000
