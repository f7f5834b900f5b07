"""The write-ahead spool of a forwarding agent: what it must not lose before upstream acknowledges it.

Records are appended to segment files (``seg-<first seq>.log``); each record is

    magic (4 bytes) | payload length (u32) | crc32 of seq+payload (u32) | seq (u64) | payload

little-endian. Sequence numbers increase by one per record. The active
segment is fsynced at least every ``fsync_interval_s`` (the documented loss
window on power failure; a process crash loses nothing that ``append``
returned for, because the bytes are in the kernel's page cache). Records up
to ``durable_seq`` are fsynced: only those may be sent upstream, so a power
failure can lose a record the root never saw, never one it has (its seq would
be reused and taken for a duplicate). Once upstream acknowledges "stored
through seq N", the mark N is written and fsynced, then every segment whose
records are all ≤ N is deleted whole — no rewriting, no compaction.

Recovery on open: a truncated record at the end of the last segment is the
normal trace of a crash mid-write and is cut off. A record whose checksum is
wrong, or garbage in the middle of a segment, marks the segment corrupt: it is
renamed to ``*.corrupt`` (quarantined, counted, reported) and never read again,
so a bad disk block cannot make the agent loop.

Quota: when the spool holds ``quota_bytes``, ``append`` refuses (returns
None) and counts it as ``quota_full`` (an empty spool takes one record of any
size up to ``MAX_RECORD_BYTES``). The agent then stops acknowledging new
client batches: clients keep them and retry, so a full spool means
backpressure, not loss.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agent.fsync import fsync_path

MAGIC = b"RWs1"
_HEADER = struct.Struct("<4sIIQ")  # magic, length, crc, seq
MAX_RECORD_BYTES = 256 << 20


def _private(path: str, flags: int) -> int:
    """Spool files are 0600 (they hold logged values) whatever the process umask."""
    return os.open(path, flags, 0o600)


@dataclass
class _Segment:
    path: Path
    first_seq: int
    last_seq: int
    nbytes: int


@dataclass
class SpoolCounters:
    appended: int = 0
    acked: int = 0
    fsyncs: int = 0
    segments_deleted: int = 0
    quarantined: list[str] = field(default_factory=list)
    truncated_tails: int = 0
    quota_full: int = 0


class Spool:
    """Append-only, checksummed, segmented; one writer (the agent's loop)."""

    def __init__(
        self,
        directory: Path | str,
        segment_bytes: int = 16 << 20,
        fsync_interval_s: float = 0.2,
        quota_bytes: int = 4 << 30,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.segment_bytes = segment_bytes
        self.fsync_interval_s = fsync_interval_s
        self.quota_bytes = quota_bytes
        self.clock = clock
        self.counters = SpoolCounters()
        self._segments: list[_Segment] = []
        self._fh = None
        self._dirty = False
        self._last_fsync = clock()
        self.acked_seq = 0
        self.last_seq = 0
        self._recover()
        self.durable_seq = self.last_seq  # fsynced: what may leave this machine (see ``durable_seq`` below)
        if self._segments:
            fsync_path(self._segments[-1].path)  # what a crash left in the page cache, on disk now

    def __repr__(self) -> str:
        return (
            f"<Spool {self.dir} segments={len(self._segments)} bytes={self.nbytes} "
            f"seq={self.acked_seq + 1}..{self.last_seq} quarantined={len(self.counters.quarantined)}>"
        )

    # ------------------------------------------------------------ state

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self._segments)

    @property
    def unacked(self) -> int:
        """Records appended but not acknowledged."""
        return max(0, self.last_seq - self.acked_seq)

    # ------------------------------------------------------------ recovery

    def _recover(self) -> None:
        paths = sorted(self.dir.glob("seg-*.log"))
        for i, path in enumerate(paths):
            last_segment = i == len(paths) - 1
            seg = self._scan(path, last_segment)
            if seg is not None:
                self._segments.append(seg)
        if self._segments:
            self.last_seq = max(s.last_seq for s in self._segments)
            self.acked_seq = self._segments[0].first_seq - 1
        marker = self.dir / "acked"
        if marker.exists():
            try:
                self.acked_seq = max(self.acked_seq, int(marker.read_text().strip() or 0))
            except ValueError:
                pass
        # seqs never restart: upstream de-duplicates by (agent, seq)
        self.last_seq = max(self.last_seq, self.acked_seq)

    def _scan(self, path: Path, last_segment: bool) -> _Segment | None:
        first = last = None
        good_end = 0
        with open(path, "rb") as fh:
            data = fh.read()
        pos = 0
        while pos < len(data):
            if len(data) - pos < _HEADER.size:
                break  # truncated header: a crash mid-write
            magic, length, crc, seq = _HEADER.unpack_from(data, pos)
            if magic != MAGIC or length > MAX_RECORD_BYTES:
                return self._quarantine(path, f"bad header at byte {pos}")
            end = pos + _HEADER.size + length
            if end > len(data):
                break  # truncated payload
            payload = data[pos + _HEADER.size : end]
            if zlib.crc32(struct.pack("<Q", seq) + payload) != crc:
                return self._quarantine(path, f"checksum mismatch at byte {pos}")
            if last is not None and seq != last + 1:
                return self._quarantine(path, f"sequence jumps from {last} to {seq}")
            first = seq if first is None else first
            last = seq
            pos = good_end = end
        if good_end < len(data):
            if not last_segment:
                return self._quarantine(path, "truncated record inside a closed segment")
            with open(path, "r+b") as fh:
                fh.truncate(good_end)
            self.counters.truncated_tails += 1
        if first is None:
            path.unlink()
            return None
        return _Segment(path, first, last, good_end)

    def _quarantine(self, path: Path, why: str) -> None:
        target = path.with_suffix(".corrupt")
        os.replace(path, target)
        self.counters.quarantined.append(f"{target.name}: {why}")
        return None

    # ------------------------------------------------------------ writing

    def append(self, payload: bytes) -> int | None:
        """Append one record; its seq, or None when the quota is full (counted as ``quota_full``)."""
        if len(payload) > MAX_RECORD_BYTES:
            raise ValueError(f"spool record of {len(payload)} bytes exceeds {MAX_RECORD_BYTES}")
        size = _HEADER.size + len(payload)
        # a record bigger than the whole quota still goes into an empty spool: refused, it could never pass
        if self.nbytes + size > self.quota_bytes and self.nbytes:
            self.counters.quota_full += 1
            return None
        seq = self.last_seq + 1
        seg = self._segments[-1] if self._segments and self._fh is not None else None
        if seg is None or seg.nbytes + size > self.segment_bytes:
            seg = self._rotate(seq)
        record = _HEADER.pack(MAGIC, len(payload), zlib.crc32(struct.pack("<Q", seq) + payload), seq) + payload
        self._fh.write(record)
        self._fh.flush()  # into the page cache: survives a crash of this process
        seg.last_seq = seq
        seg.nbytes += size
        self.last_seq = seq
        self._dirty = True
        self.counters.appended += 1
        self.maybe_fsync()
        return seq

    def _rotate(self, first_seq: int) -> _Segment:
        self._close_active(fsync=True)
        path = self.dir / f"seg-{first_seq:020d}.log"
        self._fh = open(path, "ab", opener=_private)
        seg = _Segment(path, first_seq, first_seq - 1, 0)
        self._segments.append(seg)
        return seg

    def _close_active(self, fsync: bool) -> None:
        if self._fh is not None:
            if fsync and self._dirty:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self.counters.fsyncs += 1
            self._fh.close()
            self._fh = None
            if fsync or not self._dirty:
                self.durable_seq = self.last_seq
            self._dirty = False

    def maybe_fsync(self, force: bool = False) -> None:
        now = self.clock()
        if self._fh is not None and self._dirty and (force or now - self._last_fsync >= self.fsync_interval_s):
            os.fsync(self._fh.fileno())
            self._dirty = False
            self._last_fsync = now
            self.counters.fsyncs += 1
        if not self._dirty:
            self.durable_seq = self.last_seq

    def ack(self, seq: int) -> None:
        """Upstream stored everything through ``seq``: delete the segments it covers entirely."""
        if seq <= self.acked_seq:
            return
        seq = min(seq, self.last_seq)
        self.counters.acked += seq - self.acked_seq
        self.acked_seq = seq
        # the mark first, on disk, then the deletions: after a power failure the spool never forgets how far
        # its seqs went (a reused seq would be taken for a duplicate upstream)
        tmp = self.dir / "acked.tmp"
        with open(tmp, "w", opener=_private) as fh:
            fh.write(str(self.acked_seq))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.dir / "acked")
        fsync_path(self.dir)
        keep = []
        for seg in self._segments:
            active = seg is self._segments[-1] and self._fh is not None
            if seg.last_seq <= seq and not active:
                seg.path.unlink(missing_ok=True)
                self.counters.segments_deleted += 1
            else:
                keep.append(seg)
        self._segments = keep
        if self._segments and self._segments[-1].last_seq <= seq and self._fh is not None:
            # everything, including the active segment, is acknowledged: start afresh next append
            self._close_active(fsync=False)
            self._segments[-1].path.unlink(missing_ok=True)
            self._segments.pop()
            self.counters.segments_deleted += 1

    def replay(self, after_seq: int | None = None) -> Iterator[tuple[int, bytes]]:
        """Records with seq > ``after_seq`` (default: the acknowledged seq), in order, read from disk."""
        after = self.acked_seq if after_seq is None else after_seq
        if self._fh is not None:
            self._fh.flush()
        for seg in list(self._segments):
            if seg.last_seq <= after:
                continue
            with open(seg.path, "rb") as fh:
                data = fh.read(seg.nbytes)
            pos = 0
            while pos + _HEADER.size <= len(data):
                _, length, _, seq = _HEADER.unpack_from(data, pos)
                start = pos + _HEADER.size
                if seq > after:
                    yield seq, data[start : start + length]
                pos = start + length

    def close(self) -> None:
        self._close_active(fsync=True)
