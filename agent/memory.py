"""The agent process's own memory: how glibc's allocator is set up, when freed memory goes back, what is resident.

Measured after the heaviest benchmark load (8 ranks × 32 keys, issue 11), 104 MB of the agent's 149 MB
resident were heap already freed, and up to 100 MB during it: glibc raises its mmap threshold to the size
of the largest block freed so far (a 2 MiB client frame), after which every frame and numpy array of that
size is carved from the heap, and the heap keeps the holes. So, on glibc only (elsewhere nothing happens):

* the mmap threshold is fixed (``MMAP_THRESHOLD``): blocks above it (frames, decoded columns, commit
  encodings) are mapped and unmapped whole, their memory goes back to the system when they are freed;
* at most ``ARENAS`` malloc arenas (the loop thread and ZeroMQ's I/O thread need no more);
* :func:`trim` hands free heap pages back (``malloc_trim``) after a burst, when more than
  ``TRIM_FREE_BYTES`` are free in the heap; the loop calls it at most every ``TRIM_EVERY_S``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import time
from typing import Any

MMAP_THRESHOLD = 256 << 10
ARENAS = 2
TRIM_FREE_BYTES = 8 << 20
TRIM_EVERY_S = 0.1
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers (malloc.h)
_M_ARENA_MAX = -8


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


class Allocator:
    """glibc's allocator, or nothing (another libc, or a glibc too old for ``mallinfo2``)."""

    def __init__(self) -> None:
        self.libc: Any = None
        self.trims = 0
        self.trimmed_bytes = 0
        self._next_trim = 0.0
        if not sys.platform.startswith("linux"):
            return
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.mallinfo2.restype = _MallInfo2
            libc.malloc_trim.argtypes = [ctypes.c_size_t]
            libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        except (OSError, AttributeError):  # musl, or glibc < 2.33: leave the allocator as it is
            return
        self.libc = libc

    def __repr__(self) -> str:
        return f"<Allocator {'glibc' if self.libc else 'untuned'} trims={self.trims} trimmed={self.trimmed_bytes}B>"

    def tune(self) -> bool:
        """Fix the mmap threshold and cap the arenas (see the module docstring); False where not glibc."""
        if self.libc is None:
            return False
        ok = self.libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        return self.libc.mallopt(_M_ARENA_MAX, ARENAS) == 1 and ok

    def free_bytes(self) -> int:
        """Bytes free inside the heap (freed, not yet returned to the system); 0 where unknown."""
        return 0 if self.libc is None else int(self.libc.mallinfo2().fordblks)

    def trim(self, now: float | None = None, force: bool = False) -> int:
        """Return free heap pages to the system if enough are free (at most every ``TRIM_EVERY_S``);
        returns the bytes that were free before (0: nothing done)."""
        if self.libc is None:
            return 0
        now = time.monotonic() if now is None else now
        if not force and now < self._next_trim:
            return 0
        self._next_trim = now + TRIM_EVERY_S
        free = self.free_bytes()
        if free < TRIM_FREE_BYTES and not force:
            return 0
        self.libc.malloc_trim(0)
        self.trims += 1
        self.trimmed_bytes += free
        return free


def resident() -> dict[str, int]:
    """This process's resident memory now and its peak (``VmRSS``, ``VmHWM``) in bytes; {} where unknown."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out["rss_bytes" if line.startswith("VmRSS") else "peak_rss_bytes"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out
