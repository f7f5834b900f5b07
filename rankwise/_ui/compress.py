"""gzip for ``rankwise ui`` responses (used by rankwise/_ui/handler.py).

JSON is compressed per response at ``JSON_LEVEL`` (level 1: on the per-rank series of a 64-rank x 3k-step
group it is several times faster than level 6 for a few percent more bytes; numbers in docs/ui.md "Transfer
and gzip"); static files are compressed once at ``STATIC_LEVEL`` and kept in memory, because they do not
change while the server runs (a changed file, by mtime and size, is read again). Bodies under ``MIN_BYTES``
and media that are compressed already (PNG, JPEG, video, ...) are sent as they are: gzip would only add
bytes and time. The group's event stream (rankwise/_ui/events.py) never comes here: it must not be
buffered.
"""

from __future__ import annotations

import gzip
import threading
from pathlib import Path

MIN_BYTES = 1024  # below this gzip's header and the CPU cost are not worth the bytes saved
JSON_LEVEL = 1
STATIC_LEVEL = 9  # once per file per server: the smallest output is worth the one-time cost
_COMPRESSIBLE = ("text/", "application/json", "application/javascript", "image/svg+xml")


def accepts_gzip(header: str | None) -> bool:
    """True when an ``Accept-Encoding`` header accepts gzip (``gzip``, ``x-gzip`` or ``*``, not at q=0)."""
    if not header:
        return False
    star = None
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        coding = coding.strip().lower()
        q = 1.0
        for p in params.split(";"):
            name, _, value = p.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if coding in ("gzip", "x-gzip"):
            return q > 0
        if coding == "*":
            star = q > 0
    return bool(star)


def compressible(ctype: str) -> bool:
    """Whether a response of this Content-Type is worth compressing (text, JSON, SVG; not PNG/JPEG/video)."""
    return ctype.split(";", 1)[0].strip().lower().startswith(_COMPRESSIBLE)


def gzip_body(body: bytes, level: int = JSON_LEVEL) -> bytes:
    """``body`` gzipped; mtime 0 so the same body always gives the same bytes."""
    return gzip.compress(body, compresslevel=level, mtime=0)


class StaticCache:
    """Static files read and gzipped once, kept in memory: path -> (mtime_ns, size, raw, gzipped or None)."""

    def __init__(self) -> None:
        self._files: dict[Path, tuple[int, int, bytes, bytes | None]] = {}
        self._lock = threading.Lock()
        self.compressions = 0  # files gzipped so far (a test checks each is done once)

    def __repr__(self) -> str:
        raw = sum(len(f[2]) for f in self._files.values())
        gz = sum(len(f[3] or b"") for f in self._files.values())
        return f"<StaticCache {len(self._files)} files {raw} bytes raw, {gz} gzipped, {self.compressions} compressions>"

    def get(self, path: Path, ctype: str) -> tuple[bytes, bytes | None]:
        """(raw bytes, gzipped bytes or None when not worth it) of the file at ``path``."""
        st = path.stat()
        with self._lock:
            hit = self._files.get(path)
        if hit is not None and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
            return hit[2], hit[3]
        raw = path.read_bytes()
        gz = None
        if compressible(ctype) and len(raw) >= MIN_BYTES:
            gz = gzip_body(raw, STATIC_LEVEL)
            if len(gz) >= len(raw):
                gz = None
        with self._lock:
            self._files[path] = (st.st_mtime_ns, st.st_size, raw, gz)
            self.compressions += gz is not None
        return raw, gz
