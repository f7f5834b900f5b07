"""Validation and flattening of what ``log()`` is given (the slow path).

``Run.log`` first tries a fast path: a flat ``dict`` whose keys were seen before
and whose values are exactly ``float``, ``int`` or ``bool``. Anything else comes
here, on the caller's thread, so that an unsupported value raises ``ValueError``
at the call site, naming the key and the type.

Accepted values: Python numbers and bools (NaN and ±Inf kept), numpy scalars
and 0-d arrays, torch tensors with one element, ``str``, ``None``, lists/tuples
of those, nested mappings (flattened with ``.``), and rich media objects
(instances of :class:`WireValue`, see ``client.media``) and lists of them.

Arrays follow wandb: a numpy array or torch tensor of more than one and at most
32 elements becomes a (nested, for more than one dimension) list; beyond 32
numeric elements it becomes a ``Histogram`` of 32 bins. The array is copied here,
on the caller's thread; the histogram is computed on the I/O thread. A
matplotlib figure (or ``pyplot`` itself, meaning its current figure) is rendered
to a PNG ``Image`` here (see ``client.media.figures`` for why), a plotly figure
becomes a ``Plotly`` value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from client.errors import InvalidValueError

FAST_TYPES = frozenset({float, int, bool})
RESERVED_KEYS = frozenset({"_step", "_timestamp", "_runtime"})
MAX_KEY_LENGTH = 256
_INT64 = (-(1 << 63), (1 << 63) - 1)


class WireValue:
    """Base for values that are not plain data (media, tables). Subclasses implement ``_to_wire``.

    ``_to_wire`` runs on the I/O thread, never on the training loop's thread, and
    returns a msgpack-able dict with a ``_type`` key.
    """

    def _to_wire(self) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    def _snapshot(self) -> "WireValue":
        """What ``log()`` keeps (on the caller's thread): self for immutable values; a mutable
        value (``Table``) returns a copy so that later edits do not change what was logged."""
        return self

    def _nbytes_hint(self) -> int:
        """A rough size of the wire form in bytes, known before encoding (for byte-bounded batches)."""
        return 256


SMALL_ARRAY = 32  # arrays up to this many elements are logged as lists, larger ones as histograms


def nbytes_hint(value: Any) -> int:
    """A rough wire size of a normalized value: media report theirs, lists add up, scalars are small."""
    if isinstance(value, WireValue):
        return value._nbytes_hint()
    if isinstance(value, list):
        return 8 + sum(nbytes_hint(v) for v in value)
    if isinstance(value, str):
        return 8 + len(value)
    return 9


def check_key(key: Any, nested: bool = False) -> str:
    """Validate one key. ``nested``: a key below the top level, whose full name has a prefix,
    so it cannot collide with the reserved row columns (``{"x": {"_step": 1}}`` is ``x._step``)."""
    if type(key) is not str:
        raise InvalidValueError(f"log() keys must be strings; got {key!r} of type {type(key).__name__}")
    if not key:
        raise InvalidValueError("log() keys must be non-empty strings")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidValueError(f"log() key {key[:40]!r}... is longer than {MAX_KEY_LENGTH} characters")
    if not nested and key in RESERVED_KEYS:
        raise InvalidValueError(f"log() key {key!r} is reserved; rankwise sets it on every row, use another name")
    return key


def _scalar(key: str, value: Any) -> Any:
    """Convert a numpy/torch scalar to a Python number or raise."""
    cls = type(value)
    module = cls.__module__
    if module == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray):
            if value.ndim == 0 or value.size == 1:
                # .item() of an object or str array is None/str, which normalize_value accepts
                return normalize_value(key, value.reshape(()).item())
            return _array(key, value)
        if isinstance(value, (np.bool_, np.integer, np.floating)):
            return value.item()
        if isinstance(value, np.str_):
            return str(value)
        raise _unsupported(key, value)
    if module.startswith("torch") and hasattr(value, "numel"):
        if value.numel() == 1:
            # .item() synchronises a CUDA tensor; one element is what the caller asked to log
            return normalize_value(key, value.detach().reshape(()).item())
        return _array(key, value)
    if cls is int or isinstance(value, int):
        value = int(value)
        if not _INT64[0] <= value <= _INT64[1]:
            return float(value)
        return value
    if isinstance(value, float):
        return float(value)
    if module.startswith(("matplotlib", "plotly")) or cls.__name__ == "module":
        return _figure(key, value)
    raise _unsupported(key, value)


def _array(key: str, value: Any) -> Any:
    """An array of more than one element: a copy as a list (≤ 32 elements) or a Histogram."""
    from client.media._arrays import array_copy

    try:
        arr = array_copy(value, key)
    except Exception as exc:
        raise _unsupported(key, value, f"it could not be copied to a numpy array ({exc})") from None
    kind = arr.dtype.kind
    if kind in "biuf":
        if arr.size <= SMALL_ARRAY:
            return arr.tolist()
        from client.media.histogram import Histogram

        return Histogram._from_owned(arr, num_bins=SMALL_ARRAY)
    if arr.size <= SMALL_ARRAY and (kind == "U" or (kind == "O" and arr.ndim == 1)):
        return normalize_value(key, arr.tolist()) if kind == "O" else arr.tolist()
    raise _unsupported(
        key,
        value,
        f"arrays of dtype {arr.dtype} are logged only as numbers (bool/int/float), or as lists of at most "
        f"{SMALL_ARRAY} strings; use a list or rankwise.Table",
    )


def _figure(key: str, value: Any) -> Any:
    from client.media.figures import is_matplotlib, is_plotly

    try:
        if is_matplotlib(value):
            from client.media.figures import matplotlib_image

            return matplotlib_image(value)
        if is_plotly(value):
            from client.media.figures import Plotly

            return Plotly(value)
    except ValueError as exc:
        raise _unsupported(key, value, str(exc)) from None
    raise _unsupported(key, value)


def _unsupported(key: str, value: Any, why: str | None = None) -> InvalidValueError:
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    hint = why or (
        "supported: int, float, bool, str, None, numpy/torch scalars and arrays, lists of those, "
        "nested dicts, rankwise media types (Image, Histogram, Table, ...) and matplotlib/plotly figures"
    )
    return InvalidValueError(f"log(): value of key {key!r} has unsupported type {kind}; {hint}")


def normalize_value(key: str, value: Any) -> Any:
    cls = type(value)
    if cls in FAST_TYPES:
        if cls is int and not _INT64[0] <= value <= _INT64[1]:
            return float(value)
        return value
    if value is None or cls is str:
        return value
    if isinstance(value, WireValue):
        return value._snapshot()
    if isinstance(value, (list, tuple)):
        items = [normalize_value(key, v) for v in value]
        for item in items:
            if isinstance(item, list):
                raise _unsupported(key, value, "nested lists are not supported")
        return items
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return bool(value)
    return _scalar(key, value)


class MediaRow(dict):
    """A flattened ``log()`` dict that holds media (``flatten`` returns one only then), with
    ``nbytes``, the media's estimated wire size: the I/O thread can bound a batch by bytes
    when media are about without scanning rows of plain numbers."""

    __slots__ = ("nbytes",)


def _media_bytes(value: Any) -> int:
    if isinstance(value, WireValue):
        return value._nbytes_hint()
    if type(value) is list and value and any(isinstance(v, WireValue) for v in value):
        return nbytes_hint(value)
    return 0


def flatten(data: Mapping, prefix: str = "", out: dict | None = None) -> dict:
    """Flatten nested mappings with '.', validating keys and converting values. Returns a
    :class:`MediaRow` when a value is (or is a list holding) a media object."""
    top = out is None
    out = {} if out is None else out
    for key, value in data.items():
        check_key(key, nested=bool(prefix))
        full = prefix + key
        if isinstance(value, Mapping):
            if not value:
                continue
            flatten(value, full + ".", out)
        else:
            if len(full) > MAX_KEY_LENGTH:
                raise InvalidValueError(f"log() key {full[:40]!r}... is longer than {MAX_KEY_LENGTH} characters")
            out[full] = normalize_value(full, value)
    if top:
        media = 0
        for v in out.values():
            if type(v) not in FAST_TYPES:
                media += _media_bytes(v)
        if media:
            row = MediaRow(out)
            row.nbytes = media
            return row
    return out


def strip_bytes(wire: Any) -> Any:
    """A wire value with the ``bytes`` of every media dict left out (sha256, size and format
    stay): a reference to content sent elsewhere in the same batch, e.g. for the summary."""
    if isinstance(wire, dict):
        if "bytes" in wire and "_type" in wire:
            return {k: strip_bytes(v) for k, v in wire.items() if k != "bytes"}
        if any(isinstance(v, (dict, list)) for v in wire.values()):
            return {k: strip_bytes(v) for k, v in wire.items()}
        return wire
    if isinstance(wire, list) and any(isinstance(v, (dict, list)) for v in wire):
        return [strip_bytes(v) for v in wire]
    return wire
