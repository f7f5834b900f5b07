"""Validation and flattening of what ``log()`` is given (the slow path).

``Run.log`` first tries a fast path (``client.fastpath``): a ``dict`` whose keys were
validated here before and whose values are exactly ``float``, ``int`` or ``bool``, or of a
type accepted here before (under any key): numpy scalars and 0-d arrays
(``client.fastconv.fast_converter``), one-element torch tensors (``tensor_value``), flat or
nested one level deep. Anything else comes here, on the caller's thread, so that
an unsupported value raises ``ValueError`` at the call site, naming the key and
the type. This module validates keys, sizes and plain values and flattens; what is
not plain Python data it dispatches to ``client.media.convert``.

Accepted values: Python numbers and bools (NaN and ±Inf kept), numpy scalars
and 0-d arrays, torch tensors with one element (the value they hold when
``log()`` is called: a later in-place change is not logged; here ``.item()``,
which waits for a CUDA device on a key's first call, the fast path does not), ``str``, ``None``, lists/tuples
of those, nested mappings (flattened with ``.``), and rich media objects
(instances of :class:`WireValue`, see ``client.media``) and lists of them.

Limits, each refused with ``ValueError`` naming the key and the limit: keys of at most
``MAX_KEY_LENGTH`` characters without control characters (they reach terminals through
``rankwise show``); nesting at most ``MAX_DEPTH`` dicts deep; at most ``MAX_KEYS_PER_ROW``
keys per call (after flattening, and ``{"a": {"b": 1}, "a.b": 2}`` is a collision, not two
keys); one value at most ``MAX_VALUE_BYTES`` and one call at most ``MAX_LOG_BYTES`` (strings
count their UTF-8 bytes, media their size estimate): a batch frame must stay under the
agent's frame limit. Integers must fit int64 (they are stored exactly, never rounded to a
float); ``np.longdouble`` is accepted when float64 holds it exactly; datetime64/timedelta64,
complex, void and bytes values are refused.

Arrays follow wandb: a numpy array or torch tensor of more than one and at most
32 elements becomes a (nested, for more than one dimension) list; beyond 32
numeric elements it becomes a ``Histogram`` of 32 bins. The array is copied here,
on the caller's thread; the histogram is computed on the I/O thread. A
matplotlib figure (or ``pyplot`` itself, meaning its current figure) is rendered
to a PNG ``Image`` here (see ``client.media.figures`` for why), a plotly figure
becomes a ``Plotly`` value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from client.errors import InvalidValueError
from client.fastconv import FAST_TYPES, INT64_MAX, INT64_MIN
from client.media._base import WireValue
from client.media.convert import check_int, convert, unsupported

RESERVED_KEYS = frozenset({"_step", "_timestamp", "_runtime"})
MAX_KEY_LENGTH = 256
MAX_DEPTH = 32  # nested dicts in one log() call; deeper is refused (and a cycle cannot recurse for ever)
MAX_KEYS_PER_ROW = 10_000  # keys of one row after flattening and merging (the agent refuses wider rows: agent/apply.py)
MAX_VALUE_BYTES = 32 << 20  # one value, as estimated by nbytes_hint; frames are at most 64 MiB (client.wire)
MAX_LOG_BYTES = 48 << 20  # one log() call: its row travels in one frame
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # C0, DEL, C1: what a terminal acts on


def nbytes_hint(value: Any) -> int:
    """A rough wire size of a normalized value: media report theirs, lists add up, scalars are small."""
    if isinstance(value, WireValue):
        return value._nbytes_hint()
    if isinstance(value, list):
        return 8 + sum(nbytes_hint(v) for v in value)
    if isinstance(value, str):
        return 8 + utf8_len(value)
    return 9


def utf8_len(text: str) -> int:
    """Bytes of ``text`` on the wire (msgpack sends UTF-8); ASCII without a copy."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _check_text(what: str, text: str) -> None:
    """msgpack cannot encode a lone surrogate: refuse it here, not on the I/O thread."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidValueError(f"{what} holds a lone surrogate (invalid UTF-8); encode or replace it") from None


def check_key(key: Any, nested: bool = False) -> str:
    """Validate one key. ``nested``: a key below the top level, whose full name has a prefix,
    so it cannot collide with the reserved row columns (``{"x": {"_step": 1}}`` is ``x._step``)."""
    if type(key) is not str:
        raise InvalidValueError(f"log() keys must be strings; got {key!r} of type {type(key).__name__}")
    if not key:
        raise InvalidValueError("log() keys must be non-empty strings")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidValueError(f"log() key {key[:40]!r}... is longer than {MAX_KEY_LENGTH} characters")
    if _CONTROL.search(key):
        raise InvalidValueError(f"log() key {key!r} holds a control character; keys are printable text")
    _check_text(f"log() key {key!r}", key)
    if not nested and key in RESERVED_KEYS:
        raise InvalidValueError(f"log() key {key!r} is reserved; rankwise sets it on every row, use another name")
    return key


def normalize_value(key: str, value: Any) -> Any:
    cls = type(value)
    if cls in FAST_TYPES:
        if cls is int and not INT64_MIN <= value <= INT64_MAX:
            check_int(key, value)
        return value
    if value is None:
        return value
    if cls is str:
        _check_text(f"log(): the value of key {key!r}", value)
        return value
    if isinstance(value, WireValue):
        return value._snapshot()
    if isinstance(value, (list, tuple)):
        items = [normalize_value(key, v) for v in value]
        for item in items:
            if isinstance(item, list):
                raise unsupported(key, value, "nested lists are not supported")
        return items
    if isinstance(value, str):
        return normalize_value(key, str(value))
    if isinstance(value, bool):
        return bool(value)
    return convert(key, value, normalize_value)


class MediaRow(dict):
    """A flattened ``log()`` dict that holds bulky values (strings, lists, media, tables; ``flatten``
    returns one only then), with ``nbytes``, their estimated wire size: the I/O thread can bound a
    batch by bytes without scanning rows of plain numbers."""

    __slots__ = ("nbytes",)


def check_size(key: str, value: Any, what: str = "log()") -> int:
    """The wire size estimate of a normalized value; ``ValueError`` beyond ``MAX_VALUE_BYTES``."""
    n = nbytes_hint(value)
    if n > MAX_VALUE_BYTES:
        raise InvalidValueError(
            f"{what}: the value of key {key!r} is about {n >> 20} MiB, above the limit of {MAX_VALUE_BYTES >> 20} MiB "
            f"per value (frames are at most 64 MiB); log it in parts or save it as a file"
        )
    return n


def flatten(data: Mapping, prefix: str = "", out: dict | None = None, depth: int = 0) -> dict:
    """Flatten nested mappings with '.', validating keys and converting values. Returns a
    :class:`MediaRow` when a value is not a plain number (its ``nbytes`` bound batches by bytes)."""
    top = out is None
    out = {} if out is None else out
    if depth >= MAX_DEPTH:
        raise InvalidValueError(
            f"log(): dicts nested deeper than {MAX_DEPTH} levels (at {prefix[:60]!r}...); flatten the dict"
        )
    for key, value in data.items():
        check_key(key, nested=bool(prefix))
        full = prefix + key
        if isinstance(value, Mapping):
            if not value:
                continue
            flatten(value, full + ".", out, depth + 1)
        else:
            if len(full) > MAX_KEY_LENGTH:
                raise InvalidValueError(f"log() key {full[:40]!r}... is longer than {MAX_KEY_LENGTH} characters")
            if full in out:
                raise InvalidValueError(
                    f"log(): key {full!r} is given twice (a nested dict and a dotted key flatten to the same "
                    "name); keep one"
                )
            out[full] = normalize_value(full, value)
            if len(out) > MAX_KEYS_PER_ROW:
                raise InvalidValueError(
                    f"log(): more than {MAX_KEYS_PER_ROW} keys in one call; a row holds at most "
                    f"{MAX_KEYS_PER_ROW} keys: log the rest at other steps"
                )
    if top:
        bulk = 0
        for k, v in out.items():
            if type(v) not in FAST_TYPES:
                bulk += check_size(k, v)
        if bulk > MAX_LOG_BYTES:
            raise InvalidValueError(
                f"log(): the values of one call are about {bulk >> 20} MiB, above the limit of {MAX_LOG_BYTES >> 20} "
                "MiB per call; split them over several calls"
            )
        if bulk:
            row = MediaRow(out)
            row.nbytes = bulk
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
