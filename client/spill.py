"""Where a writer puts batches it cannot hold in memory: a FIFO of frames in local files.

A training process keeps unacknowledged batches in memory up to
``max_unacked_bytes``. When the agent is slow or gone for long, newer batches
go to this FIFO instead, in order, and the I/O thread sends from it once the
backlog in memory has drained. The files are private (0600) in the data
directory and removed as soon as they have been read back; this is a memory
bound, not crash durability (a killed process loses its memory anyway).

A full disk is the one way data is dropped: ``push`` returns False and the
writer counts the batch as dropped with cause ``spill_failed``.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from pathlib import Path

_LEN = struct.Struct("<I")


def _private_dirs(path: Path) -> None:
    """``path`` and every missing parent (the data directory itself, on a first run) created 0700: mkdir's
    ``parents=True`` would make the parents with the training process's umask (usually 0755)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700, exist_ok=True)


class SpillFifo:
    """Frames in, frames out, in order; segment files of ``segment_bytes`` deleted once read."""

    def __init__(self, directory: Path, prefix: str, segment_bytes: int = 64 << 20):
        self.dir = directory
        self.prefix = prefix
        self.segment_bytes = segment_bytes
        self._segments: deque[Path] = deque()
        self._write_fh = None
        self._write_size = 0
        self._read_fh = None
        self._count = 0
        self.nbytes = 0
        self.pushed = 0
        self.failed = 0
        self._n = 0

    def __repr__(self) -> str:
        return f"<SpillFifo {self.prefix} frames={self._count} bytes={self.nbytes} failed={self.failed}>"

    def __len__(self) -> int:
        return self._count

    def push(self, frame: bytes) -> bool:
        try:
            if self._write_fh is None or self._write_size + len(frame) > self.segment_bytes:
                self._new_segment()
            self._write_fh.write(_LEN.pack(len(frame)) + frame)
            self._write_fh.flush()
        except OSError:
            self.failed += 1
            return False
        self._write_size += _LEN.size + len(frame)
        self._count += 1
        self.nbytes += len(frame)
        self.pushed += 1
        return True

    def _new_segment(self) -> None:
        if self._write_fh is not None:
            self._write_fh.close()
        _private_dirs(self.dir)
        self._n += 1
        path = self.dir / f"{self.prefix}-{self._n:06d}.spill"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._write_fh = os.fdopen(fd, "wb")
        self._write_size = 0
        self._segments.append(path)

    def pop(self) -> bytes | None:
        """The oldest frame, or None when empty."""
        while self._count:
            if self._read_fh is None:
                self._read_fh = open(self._segments[0], "rb")
            head = self._read_fh.read(_LEN.size)
            if len(head) == _LEN.size:
                (n,) = _LEN.unpack(head)
                frame = self._read_fh.read(n)
                self._count -= 1
                self.nbytes -= n
                return frame
            # this segment is exhausted: drop it, unless it is still being written
            if self._segments[0] == self._current_write_path():
                return None
            self._read_fh.close()
            self._read_fh = None
            self._segments.popleft().unlink(missing_ok=True)
        return None

    def _current_write_path(self) -> Path | None:
        return self._segments[-1] if self._write_fh is not None and self._segments else None

    def close(self) -> None:
        for fh in (self._read_fh, self._write_fh):
            if fh is not None:
                fh.close()
        self._read_fh = self._write_fh = None
        while self._segments:
            self._segments.popleft().unlink(missing_ok=True)
        self._count = 0
        self.nbytes = 0
