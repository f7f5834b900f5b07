"""Content-addressed media files, and the step that moves logged media bytes into them.

Clients send media inline: a history value such as ``{"_type": "image", "format": "png",
"sha256": ..., "bytes": b"..."}`` (see docs/media.md). The agent must not keep megabytes of
PNG in SQLite rows, and eight ranks logging the same image must not store it eight times, so:

* :class:`MediaStore` keeps each distinct content once, as ``<root>/media/ab/<sha256>.<ext>``
  (``ab`` = the first two hex digits, so no directory grows past 256 entries per level);
* :func:`externalize` walks a decoded value (a media dict, a list of them, a table whose cells
  hold media, an image's masks) and replaces every dict carrying ``bytes`` by a reference:
  the same dict without ``bytes``, with ``sha256`` (recomputed here, never trusted), ``size``
  and ``path`` (``media/ab/<sha256>.<ext>``, relative to the store root). A media dict that
  arrives without ``bytes`` but with ``sha256`` and ``format`` (a summary referring to bytes in
  the same batch) gets its ``path`` if the store holds the content. References pass through
  unchanged, so externalizing twice is harmless (idempotent).

Writes are atomic and idempotent: the content goes to a temporary file in the target
directory, is fsynced, then renamed over the final name (``os.replace``). A reader never sees
a partial file; two writers of the same content (ranks, agent restarts replaying a batch) both
produce the same bytes under the same name. Nothing here touches the network or the database:
the caller stores the references with the row and commits as usual. Media files are written
before the row that references them is committed, so a crash leaves at worst an unreferenced
file, never a dangling reference.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from agent.errors import MediaError
from agent.fsync import atomic_file

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_EXT_RE = re.compile(r"^[a-z0-9]{1,8}$")

#: Content types of the formats clients send (for serving media over HTTP).
MIME_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "webp": "image/webp",
    "mp4": "video/mp4",
    "webm": "video/webm",
    "ogg": "audio/ogg",
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "m4a": "audio/mp4",
    "aac": "audio/aac",
    "html": "text/html; charset=utf-8",
    "obj": "model/obj",
    "gltf": "model/gltf+json",
    "glb": "model/gltf-binary",
    "stl": "model/stl",
    "babylon": "application/json",
    "f32": "application/octet-stream",
}


def mime_type(ext: str) -> str:
    return MIME_TYPES.get(ext, "application/octet-stream")


def check_name(sha: str, ext: str) -> None:
    if not isinstance(sha, str) or not _SHA_RE.match(sha):
        raise MediaError(f"sha256 must be 64 lower-case hex digits, got {sha!r}")
    if not isinstance(ext, str) or not _EXT_RE.match(ext):
        raise MediaError(f"extension must be 1-8 lower-case letters or digits, got {ext!r}")


def relative_path(sha: str, ext: str) -> str:
    """``media/ab/<sha>.<ext>``: where content ``sha`` lives below a store root."""
    check_name(sha, ext)
    return f"media/{sha[:2]}/{sha}.{ext}"


class MediaStore:
    """Files named by the SHA-256 of their content under ``root/media/``."""

    def __init__(self, root: str | os.PathLike, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync

    def __repr__(self) -> str:
        return f"<MediaStore root={str(self.root)!r}>"

    def path(self, sha: str, ext: str) -> Path:
        return self.root / relative_path(sha, ext)

    def has(self, sha: str, ext: str) -> bool:
        return self.path(sha, ext).is_file()

    def open(self, sha: str, ext: str) -> BinaryIO:
        return open(self.path(sha, ext), "rb")

    def put(self, data: bytes, ext: str) -> str:
        """Store ``data`` (once) and return its SHA-256 hex digest."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise MediaError(f"media bytes must be bytes, got {type(data).__name__}")
        sha = hashlib.sha256(data).hexdigest()
        final = self.path(sha, ext)
        if final.is_file() and final.stat().st_size == len(data):
            return sha  # same name ⇒ same content (a torn file never gets the final name)
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # private, like every file of the store
        # (a temporary file is 0600: other local users must not read logged media, issue 9)
        with atomic_file(final.parent, f".{ext}", sync=self.fsync) as out:
            out.file.write(data)
            out.final = final
        return sha

    def get(self, sha: str, ext: str) -> bytes:
        with self.open(sha, ext) as f:
            return f.read()


def _reference(value: dict, store: MediaStore, admit: Callable[[dict], bool] | None = None) -> dict:
    data = value["bytes"]
    if admit is not None and not admit(value):
        return skipped(value, "byte budget")
    ext = value.get("format")
    if not isinstance(data, (bytes, bytearray)):
        raise MediaError(f"{value.get('_type', 'media')} value has 'bytes' of type {type(data).__name__}")
    if not isinstance(ext, str) or not _EXT_RE.match(ext):
        raise MediaError(f"{value.get('_type', 'media')} value has format {ext!r}, not a short lower-case extension")
    sha = store.put(bytes(data), ext)
    claimed = value.get("sha256")
    if claimed is not None and claimed != sha:
        raise MediaError(
            f"{value.get('_type', 'media')} value claims sha256 {str(claimed)[:16]}... "
            f"but its bytes hash to {sha[:16]}..."
        )
    ref = {k: externalize(v, store, admit) for k, v in value.items() if k != "bytes"}
    ref.update(sha256=sha, size=len(data), path=relative_path(sha, ext))
    return ref


def skipped(value: dict, why: str) -> dict:
    """What stays of a media value whose bytes were not kept: its type, size, hash and caption, and why."""
    out = {k: v for k, v in value.items() if k not in ("bytes",) and not isinstance(v, (dict, list, bytes))}
    data = value.get("bytes")
    if isinstance(data, (bytes, bytearray)):
        out.setdefault("size", len(data))
    out["skipped"] = why
    return out


def _complete(value: dict, store: MediaStore) -> dict:
    """A media dict sent without its bytes (``sha256`` + ``format``, no ``path``: e.g. a summary
    that refers to bytes sent in the same batch's history) gets its ``path`` when the store
    holds that content; otherwise it is left without one (the content never arrived)."""
    sha, ext = value["sha256"], value["format"]
    out = {k: externalize(v, store) for k, v in value.items()}
    try:
        if store.has(sha, ext):
            out["path"] = relative_path(sha, ext)
        elif "skipped" not in out and "error" not in out:
            out["skipped"] = "not stored"  # e.g. the summary's latest image was over the byte budget
    except MediaError:
        pass
    return out


def externalize(value: Any, store: MediaStore, admit: Callable[[dict], bool] | None = None) -> Any:
    """``value`` with every media dict's ``bytes`` stored in ``store`` and replaced by a reference.

    Raises :class:`MediaError` (a ValueError) for a media dict whose bytes, format or claimed
    hash are wrong; files of the value's other media may have been stored already (harmless:
    they are content-addressed). Store a batch's history values before its summary, so that
    byte-less summary references find their files."""
    if isinstance(value, dict):
        if "bytes" in value and "_type" in value:
            return _reference(value, store, admit)
        if "_type" in value and "sha256" in value and "format" in value and "path" not in value:
            return _complete(value, store)
        if not any(isinstance(v, (dict, list)) for v in value.values()):
            return value
        return {k: externalize(v, store, admit) for k, v in value.items()}
    if isinstance(value, list):
        if not any(isinstance(v, (dict, list)) for v in value):
            return value
        return [externalize(v, store, admit) for v in value]
    return value


class MediaSink:
    """The agent's side of media: bytes into the content-addressed store, references into history,
    and a per-run byte budget per second.

    Over its budget a run's media are not stored: each becomes a reference marked
    ``"skipped": "byte budget"`` (type, size, hash and caption kept) and is counted by cause
    (``media_budget``) in ``rankwise status`` and the store's drop counters. Nothing disappears
    without a counter. A malformed media value (bad hash, bad format) is kept as a marked
    reference too and counted as ``media_invalid``."""

    def __init__(self, store: MediaStore, bytes_per_s: float = 64 << 20, burst_s: float = 4.0):
        self.store = store
        self.rate = float(bytes_per_s)
        self.capacity = self.rate * burst_s
        self._tokens: dict[int, list[float]] = {}  # run id -> [tokens, updated]
        self.stored_bytes = 0
        self.skipped: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<MediaSink {self.store.root} {self.rate / 2**20:g} MiB/s stored={self.stored_bytes}B skipped={self.skipped}>"

    def _admit(self, run_id: int, now: float) -> Callable[[dict], bool]:
        bucket = self._tokens.setdefault(run_id, [self.capacity, now])
        bucket[0] = min(self.capacity, bucket[0] + max(0.0, now - bucket[1]) * self.rate)
        bucket[1] = now

        def admit(value: dict) -> bool:
            size = len(value.get("bytes") or b"")
            if size <= bucket[0]:
                bucket[0] -= size
                self.stored_bytes += size
                return True
            self.skipped["media_budget"] = self.skipped.get("media_budget", 0) + 1
            return False

        return admit

    def value(self, run_id: int, value: Any, now: float) -> Any:
        if not isinstance(value, (dict, list)):
            return value
        try:
            return externalize(value, self.store, self._admit(run_id, now))
        except MediaError as exc:
            self.skipped["media_invalid"] = self.skipped.get("media_invalid", 0) + 1
            return skipped(value, f"invalid: {exc}") if isinstance(value, dict) else None
        except OSError as exc:
            # the disk refused the file (full, quota): the row keeps a marked reference, counted by cause. Raising
            # would leave the batch half applied; files already written are content-addressed and harmless
            self.skipped["media_write_failed"] = self.skipped.get("media_write_failed", 0) + 1
            return skipped(value, f"not stored: {exc.strerror or exc}") if isinstance(value, dict) else None

    def column(self, run_id: int, values: list, now: float) -> list:
        if not any(isinstance(v, (dict, list)) for v in values):
            return values
        return [self.value(run_id, v, now) for v in values]

    def take_skipped(self) -> dict[str, int]:
        out, self.skipped = self.skipped, {}
        return out


def iter_refs(value: Any) -> Iterator[tuple[str, str]]:
    """Every ``(sha256, format)`` a value refers to, after :func:`externalize` (for export or
    garbage collection of unreferenced files)."""
    if isinstance(value, dict):
        if "_type" in value and "path" in value and "sha256" in value and "format" in value:
            yield value["sha256"], value["format"]
        for v in value.values():
            if isinstance(v, (dict, list)):
                yield from iter_refs(v)
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, (dict, list)):
                yield from iter_refs(v)
