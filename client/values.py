"""Validation and flattening of what ``log()`` is given (the slow path).

``Run.log`` first tries a fast path: a flat ``dict`` whose keys were seen before
and whose values are exactly ``float``, ``int`` or ``bool``. Anything else comes
here, on the caller's thread, so that an unsupported value raises ``ValueError``
at the call site, naming the key and the type.

Accepted values: Python numbers and bools (NaN and ±Inf kept), numpy scalars
and 0-d arrays, torch tensors with one element, ``str``, ``None``, lists/tuples
of those, nested mappings (flattened with ``.``), and rich media objects
(instances of :class:`WireValue`).
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
            raise _unsupported(key, value, "numpy arrays of more than one element are not supported by log() yet")
        if isinstance(value, (np.bool_, np.integer, np.floating)):
            return value.item()
        if isinstance(value, np.str_):
            return str(value)
        raise _unsupported(key, value)
    if module.startswith("torch") and hasattr(value, "numel"):
        if value.numel() == 1:
            # .item() synchronises a CUDA tensor; one element is what the caller asked to log
            return normalize_value(key, value.detach().reshape(()).item())
        raise _unsupported(key, value, "tensors of more than one element are not supported by log() yet")
    if cls is int or isinstance(value, int):
        value = int(value)
        if not _INT64[0] <= value <= _INT64[1]:
            return float(value)
        return value
    if isinstance(value, float):
        return float(value)
    raise _unsupported(key, value)


def _unsupported(key: str, value: Any, why: str | None = None) -> InvalidValueError:
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    hint = why or (
        "supported: int, float, bool, str, None, numpy/torch scalars, lists of those, "
        "nested dicts and rankwise media types"
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
        return value
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


def flatten(data: Mapping, prefix: str = "", out: dict | None = None) -> dict:
    """Flatten nested mappings with '.', validating keys and converting values."""
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
    return out
