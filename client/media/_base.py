"""What every value that is not plain data shares (:class:`WireValue`), and what every media type adds:
encode once on the I/O thread, never raise there, carry bytes.

A leaf: ``client.values`` (which dispatches what ``log()`` is given) and every media module import it,
it imports none of them.

A media object is built on the training loop's thread, where its constructor validates the
arguments (raising ``ValueError`` that names the argument) and takes a private copy of the
data. Everything expensive (PNG/GIF/WAV encoding, hashing, JSON) happens in ``_to_wire()``,
which the writer's I/O thread calls while it assembles a batch. Two rules follow:

* ``_to_wire()`` never raises: an exception there would stop the I/O thread and lose the
  run's data. A failure is turned into ``{"_type": ..., "error": "..."}`` and logged once
  per type, so the row still arrives and says what went wrong.
* ``_to_wire()`` encodes once. The assembler may ask twice for the same value (the column,
  then the summary's "last"), and a user may log the same object at many steps; the result
  is kept, and the source copy is released once encoded.

Byte-carrying media share one wire shape (see docs/media.md)::

    {"_type": t, "format": ext, "sha256": hex, "size": n, "bytes": b"...", "caption": c, ...}

``format`` is the file extension the agent's content-addressed store uses
(``media/ab/<sha256>.<format>``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from typing import Any, ClassVar

from client.errors import InvalidArgumentError, InvalidValueError

log = logging.getLogger("rankwise")

#: Largest encoded media item. A batch frame is limited to 64 MiB (``client.wire``) and the
#: item may travel twice in one frame (history column and summary), so 16 MiB leaves room.
MAX_MEDIA_BYTES = 16 << 20

_FORMAT_RE = re.compile(r"^[a-z0-9]{1,8}$")
_warned: set[str] = set()
# Encoding normally happens on one I/O thread; a user reading e.g. ``Histogram.bins`` on another
# thread must not see the source released half-way through an encode.
_ENCODE_LOCK = threading.RLock()  # re-entrant: a Table encodes its media cells inside its own encode


class WireValue:
    """Base for values that are not plain data (media, tables). Subclasses implement ``_to_wire``.

    ``_to_wire`` runs on the I/O thread, never on the training loop's thread, and
    returns a msgpack-able dict with a ``_type`` key.
    """

    def _to_wire(self) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    def _snapshot(self) -> WireValue:
        """What ``log()`` keeps (on the caller's thread): self for immutable values; a mutable
        value (``Table``) returns a copy so that later edits do not change what was logged."""
        return self

    def _nbytes_hint(self) -> int:
        """A rough size of the wire form in bytes, known before encoding (for byte-bounded batches)."""
        return 256


def media_extra_error(what: str, package: str) -> ImportError:
    """The error for a missing optional dependency, naming the extra that installs it."""
    return ImportError(f"{what} needs {package}; install it with: pip install 'rankwise[media]'")


def have_module(name: str) -> bool:
    """Whether ``name`` is importable, without importing it (cheap enough for a constructor)."""
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def check_caption(caption: Any) -> str | None:
    if caption is None or isinstance(caption, str):
        return caption
    if isinstance(caption, (int, float)) and not isinstance(caption, bool):
        return str(caption)
    raise InvalidArgumentError(f"caption must be a string or None, got {type(caption).__name__}")


def read_path(path: Any, arg: str, max_bytes: int = MAX_MEDIA_BYTES) -> bytes:
    """Read a file given by path now, on the caller's thread: the file may be a temporary that
    the caller deletes or overwrites right after ``log()``; what is logged is what it held."""
    try:
        fspath = os.fspath(path)
        size = os.path.getsize(fspath)
    except TypeError:
        raise InvalidArgumentError(
            f"{arg} must be a path, array or supported object, got {type(path).__name__}"
        ) from None
    except OSError as exc:
        raise InvalidArgumentError(f"{arg}={path!r}: cannot read the file ({exc.strerror or exc})") from None
    if size > max_bytes:
        raise InvalidArgumentError(
            f"{arg}={path!r}: {size} bytes is more than the {max_bytes >> 20} MiB limit of one media item"
        )
    with open(fspath, "rb") as f:
        return f.read(max_bytes + 1)


def extension(path: Any) -> str:
    """Lower-case extension of a path without the dot ('' when there is none)."""
    name = os.fspath(path) if not isinstance(path, str) else path
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    return os.path.splitext(name)[1].lower().lstrip(".")


def payload(type_: str, fmt: str, data: bytes, caption: str | None = None, **meta: Any) -> dict:
    """The wire dict of a byte-carrying media item (metadata that is None is left out)."""
    if not _FORMAT_RE.match(fmt):
        raise InvalidValueError(f"media format {fmt!r} is not a short lower-case extension")
    if len(data) > MAX_MEDIA_BYTES:
        raise InvalidValueError(
            f"encoded {type_} is {len(data)} bytes, more than the {MAX_MEDIA_BYTES >> 20} MiB limit"
        )
    out = {
        "_type": type_,
        "format": fmt,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "bytes": bytes(data),
        "caption": caption,
    }
    out.update((k, v) for k, v in meta.items() if v is not None)
    return out


class Media(WireValue):
    """Base of the media types: memoised, exception-safe ``_to_wire`` around ``_encode``."""

    _type: ClassVar[str] = "media"
    _wire: dict | None = None
    caption: str | None = None

    def _encode(self) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    def _release(self) -> None:
        """Drop the source copy once encoded (subclasses set their data attributes to None)."""

    def _nbytes_hint(self) -> int:
        return 256

    def _to_wire(self) -> dict:
        wire = self._wire
        if wire is not None:
            return wire
        with _ENCODE_LOCK:
            wire = self._wire
            if wire is not None:
                return wire
            try:
                wire = self._encode()
            except Exception as exc:  # the I/O thread must survive a bad value
                wire = {"_type": self._type, "error": f"{type(exc).__name__}: {exc}", "caption": self.caption}
                if self._type not in _warned:
                    _warned.add(self._type)
                    log.warning("rankwise: could not encode a %s (%s); it is logged as an error value", self._type, exc)
            self._wire = wire
            self._release()
        return wire

    def __repr__(self) -> str:
        state = "encoded" if self._wire is not None else "pending"
        cap = f" caption={self.caption!r}" if self.caption else ""
        return f"<rankwise.{type(self).__name__} {state}{cap}>"


def plain_data(value: Any, arg: str, depth: int = 0) -> Any:
    """A msgpack-able copy of nested metadata (boxes, class labels): dict keys become strings,
    numpy scalars and arrays become Python numbers and lists. Raises ValueError naming ``arg``."""
    if depth > 32:
        raise InvalidArgumentError(f"{arg} is nested too deeply")
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): plain_data(v, arg, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v, arg, depth + 1) for v in value]
    module = type(value).__module__
    if module == "numpy" or module.startswith("torch"):
        import numpy as np

        from client.media._arrays import array_copy

        arr = array_copy(value, arg) if not isinstance(value, np.generic) else np.asarray(value)
        if arr.dtype.kind not in "biufU":
            raise InvalidArgumentError(f"{arg}: arrays of dtype {arr.dtype} are not supported")
        return arr.tolist()
    raise InvalidArgumentError(
        f"{arg}: values of type {type(value).__name__} are not supported (numbers, strings, lists, dicts)"
    )
