"""Validation and flattening of what ``log()`` is given (the slow path).

``Run.log`` first tries a fast path: a ``dict`` whose keys were validated here
before and whose values are exactly ``float``, ``int`` or ``bool``, or of a type
accepted here before (under any key): numpy scalars and 0-d arrays
(``fast_converter``), one-element torch tensors (``tensor_value``), flat or
nested one level deep. Anything else comes here, on the caller's thread, so that
an unsupported value raises ``ValueError`` at the call site, naming the key and
the type.

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

FAST_TYPES = frozenset({float, int, bool})
RESERVED_KEYS = frozenset({"_step", "_timestamp", "_runtime"})
MAX_KEY_LENGTH = 256
MAX_DEPTH = 32  # nested dicts in one log() call; deeper is refused (and a cycle cannot recurse for ever)
MAX_KEYS_PER_ROW = 10_000  # keys of one row after flattening and merging (the agent refuses wider rows: agent/apply.py)
MAX_VALUE_BYTES = 32 << 20  # one value, as estimated by nbytes_hint; frames are at most 64 MiB (client.wire)
MAX_LOG_BYTES = 48 << 20  # one log() call: its row travels in one frame
_INT64 = (-(1 << 63), (1 << 63) - 1)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # C0, DEL, C1: what a terminal acts on


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


def _scalar(key: str, value: Any) -> Any:
    """Convert a numpy/torch scalar to a Python number or raise."""
    cls = type(value)
    module = cls.__module__
    if module == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray):
            if value.ndim == 0 or value.size == 1:
                if value.dtype.kind in "mMVSac":  # .item() would make an int of a datetime64, bytes of a void
                    raise _unsupported(key, value, _NUMPY_WHY)
                # .item() of an object or str array is None/str, which normalize_value accepts
                return normalize_value(key, value.reshape(()).item())
            return _array(key, value)
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, (np.timedelta64, np.datetime64)):  # timedelta64 is an np.integer
            raise _unsupported(key, value, _NUMPY_WHY)
        if isinstance(value, np.integer):
            return _int(key, int(value))
        if isinstance(value, np.floating):
            f = float(value)
            if value.dtype.itemsize > 8 and f != value and value == value:
                raise _unsupported(key, value, "this np.longdouble has no exact float64; convert it with float()")
            return f
        if isinstance(value, np.str_):
            return normalize_value(key, str(value))
        raise _unsupported(key, value, _NUMPY_WHY)
    if module.startswith("torch") and hasattr(value, "numel"):
        if value.numel() == 1:
            # .item() synchronises a CUDA tensor; one element is what the caller asked to log
            return normalize_value(key, value.detach().reshape(()).item())
        return _array(key, value)
    if cls is int or isinstance(value, int):
        return _int(key, int(value))
    if isinstance(value, float):
        return float(value)
    if module.startswith(("matplotlib", "plotly")) or cls.__name__ == "module":
        return _figure(key, value)
    raise _unsupported(key, value)


_NUMPY_WHY = (
    "numpy values are logged as bool, int, float or str (datetime64/timedelta64, complex, void and bytes are "
    "not): convert it, e.g. .astype(np.int64) or str(...)"
)


def _int(key: str, value: int) -> int:
    if not _INT64[0] <= value <= _INT64[1]:
        raise InvalidValueError(
            f"log(): integer value of key {key!r} is outside int64 (-2**63 .. 2**63-1); integers are stored "
            "exactly: log it as a float or a str"
        )
    return value


def _array(key: str, value: Any) -> Any:
    """An array of more than one element: a copy as a list (≤ 32 elements) or a Histogram."""
    from client.media._arrays import array_copy

    try:
        arr = array_copy(value, key)
    except Exception as exc:
        raise _unsupported(key, value, f"it could not be copied to a numpy array ({exc})") from None
    kind = arr.dtype.kind
    if kind == "f" and arr.dtype.itemsize > 8:  # np.longdouble: values logged as a list must be exact in float64
        import numpy as np

        exact = arr.astype(np.float64)
        if arr.size <= SMALL_ARRAY and not np.array_equal(exact, arr, equal_nan=True):
            raise _unsupported(key, value, "this np.longdouble array has no exact float64; use .astype(np.float64)")
        arr = exact  # (a histogram's bins are approximate anyway)
    if kind in "biuf":
        if arr.size <= SMALL_ARRAY:
            if kind == "u" and arr.size and int(arr.max()) > _INT64[1]:
                _int(key, int(arr.max()))
            return arr.tolist()
        from client.media.histogram import Histogram

        return Histogram._from_owned(arr, num_bins=SMALL_ARRAY)
    if arr.size <= SMALL_ARRAY and (kind == "U" or (kind == "O" and arr.ndim == 1)):
        return normalize_value(key, arr.tolist())
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
            _int(key, value)
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
                raise _unsupported(key, value, "nested lists are not supported")
        return items
    if isinstance(value, str):
        return normalize_value(key, str(value))
    if isinstance(value, bool):
        return bool(value)
    return _scalar(key, value)


_CONVERTERS: dict[type, Any] | None = None


class NotFast(Exception):
    """Raised by a fast converter for a value it does not take: the caller falls back to the slow path."""


def _zero_d(value: Any) -> Any:
    """A 0-d numpy array of a dtype ``fast_converter`` takes as a scalar: its value now (``.item()`` copies;
    uint64 and longdouble through their checking converters)."""
    conv = _CONVERTERS.get(value.dtype.type) if value.ndim == 0 and _CONVERTERS is not None else None
    if conv is None or conv is _zero_d:
        raise NotFast
    if conv is _uint64 or conv is _longdouble:
        return conv(value[()])
    return value.item()


_I64_MAX = (1 << 63) - 1


def _uint64(value: Any) -> int:
    """``np.uint64``: the int the slow path stores when it is within int64; beyond it the slow path raises."""
    i = int(value)
    if i > _I64_MAX:
        raise NotFast
    return i


def _longdouble(value: Any) -> float:
    """``np.longdouble``: its float64 when that is exact (or NaN); otherwise the slow path raises."""
    f = float(value)
    if f != value and value == value:
        raise NotFast
    return f


_TORCH_DTYPES: frozenset | None = None  # one-element tensors of these dtypes take the fast path
_STRIDED: Any = None  # torch.strided (a dense tensor)
DEFER_CPU_TENSORS = False  # tests set it to send CPU tensors the CUDA way (copy now, convert on the I/O thread)


def tensor_value(value: Any) -> Any:
    """A torch tensor of one element, for the fast path (``Run._scalar_row`` and ``_typed_row`` inline the
    CPU case). The value logged is the tensor's value when ``log()`` is called (a later in-place change is
    not logged). On CUDA: ``tensor_copy``, an async device copy the I/O thread converts. Elsewhere (CPU):
    ``.item()`` now (nothing to wait for, ~0.15 µs), kept when it is what the slow path would store without
    a check (a float, a bool, an int in int64). Anything else (more elements, complex, uint64 beyond int64,
    other dtypes on CUDA) raises ``NotFast``: the slow path converts, makes a list or histogram, or raises
    ``ValueError``."""
    if value.is_cuda or DEFER_CPU_TENSORS:
        return tensor_copy(value)
    try:  # (free unless raised) other devices convert here, as the slow path would
        r = value.item()  # raises for more than one element (or a meta tensor): the slow path decides
    except Exception:  # noqa: BLE001
        raise NotFast from None
    # what the dtype check does for a device copy, on the result (cheaper): complex, or an int beyond
    # int64 (uint64), goes the slow path, which raises
    if type(r) is float or type(r) is bool or (type(r) is int and _INT64[0] <= r <= _INT64[1]):
        return r
    raise NotFast


def tensor_copy(value: Any) -> Any:
    """A one-element tensor on a device: an async copy (``detach().clone()``, queued on the caller's stream:
    no sync, ~1 µs) of a dense tensor of a plain dtype (``_TORCH_DTYPES``: float16/bfloat16/float32/float64,
    int8..int64, uint8, bool), which makes the row a :class:`TensorRow`: the I/O thread converts it
    (``resolve_tensors``). Anything else raises ``NotFast`` (the slow path decides). The fast path's
    converter of ``torch.Tensor`` for every device while ``DEFER_CPU_TENSORS`` is set (tests)."""
    if value.dtype not in _TORCH_DTYPES or value.numel() != 1 or value.layout is not _STRIDED:
        raise NotFast
    return value.detach().clone()


class _CudaUnknown:
    _initialized = True  # (the fast path then checks each tensor's device)


# ``torch.cuda`` once a tensor was validated (``_torch_converter``): its ``_initialized`` is False while this
# process has no CUDA state, and then no CUDA tensor exists (torch runs ``torch.cuda._lazy_init``, in Python,
# before it makes the first one): the fast path reads a tensor's value without checking its device (~40 ns a
# tensor). Should C++ code make a CUDA tensor without that, its value would still be right (``.item()``
# waits for it), only not sync-free
CUDA_STATE: Any = _CudaUnknown


def _torch_converter() -> Any:
    global _TORCH_DTYPES, _STRIDED, CUDA_STATE
    if _TORCH_DTYPES is None:
        import torch

        _STRIDED = torch.strided
        if type(getattr(torch.cuda, "_initialized", None)) is bool:  # (a private name: else checked per tensor)
            CUDA_STATE = torch.cuda

        _TORCH_DTYPES = frozenset(
            {torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.bool, torch.uint8}
            | {torch.int8, torch.int16, torch.int32, torch.int64}
        )
    return tensor_copy if DEFER_CPU_TENSORS else tensor_value


class TensorRow(dict):
    """A fast-path row holding one-element tensors copied on a device (see ``_tensor``): the I/O thread
    converts them (``resolve_tensors``) before it reads the row, so rows without tensors pay nothing."""

    __slots__ = ()


class NumpyRow(dict):
    """A fast-path row of Python numbers and numpy scalars of types whose ``.item()`` is exactly what the slow
    path stores (those ``fast_converter`` converts with ``float``/``int``/``bool``: floats of at most 64 bits,
    ints within int64, ``np.bool_``). Numpy scalars are immutable, so the row keeps them as they are and the
    I/O thread converts them (``resolve_numpy``; the coalescer under overload): the training thread pays a
    copy of the dict, not a conversion per value."""

    __slots__ = ()


def resolve_numpy(row: dict) -> None:
    """Replace in place the numpy scalars of a :class:`NumpyRow` by their Python numbers (``.item()``)."""
    for k, v in row.items():
        if type(v) not in FAST_TYPES:
            row[k] = v.item()


def resolve_tensors(rows: list) -> list[str]:
    """On the I/O thread: replace each tensor in the :class:`TensorRow` items of ``rows`` by its Python
    number (``.item()``: bool stays bool, ints stay ints). One ``torch.cuda.synchronize`` per device first:
    the copies were queued on the caller's stream, which this thread's ``.item()`` does not wait for.
    A value that cannot be read is dropped from its row; returns ``key: error`` for each."""
    import torch

    synced = set()
    bad = []
    for row in rows:
        if type(row) is not TensorRow:
            continue
        failed = []
        for k, v in row.items():
            if isinstance(v, torch.Tensor):
                try:
                    if v.is_cuda and v.device not in synced:
                        synced.add(v.device)
                        torch.cuda.synchronize(v.device)
                    row[k] = v.item()
                except Exception as exc:  # noqa: BLE001 - a device error must not stop the I/O thread
                    failed.append(k)
                    bad.append(f"{k}: {type(exc).__name__}: {exc}"[:200])
        for k in failed:
            del row[k]
    return bad


def fast_converter(cls: type) -> Any:
    """For ``Run.log``'s fast path: the converter (``float``/``int``/``bool``) that turns a numpy scalar of
    exactly type ``cls`` into what ``normalize_value`` would make of it, when that needs no check of the
    value (floats of at most 64 bits, signed ints of at most 64 and unsigned of at most 32 bits: always
    in int64; ``np.bool_``; a 0-d ``np.ndarray`` of those dtypes, whose converter raises ``NotFast`` for any
    other array), or with a cheap check that raises ``NotFast`` where the slow path would raise (``uint64``
    beyond int64, a ``longdouble`` without an exact float64); for exactly ``torch.Tensor``, ``tensor_value``
    (``tensor_copy`` while ``DEFER_CPU_TENSORS`` is set); else None (datetime64/timedelta64, complex stay on
    the slow path, which raises)."""
    global _CONVERTERS
    if cls.__module__ != "numpy":
        if cls.__module__ == "torch" and cls.__name__ == "Tensor":  # exactly torch.Tensor (not Parameter)
            return _torch_converter()  # (``Run._typed_row`` tells it apart: it may make a TensorRow)
        return None
    if _CONVERTERS is None:
        import numpy as np

        conv: dict[type, Any] = {np.bool_: bool, np.ndarray: _zero_d}
        for t in set(np.sctypeDict.values()):
            if not isinstance(t, type) or issubclass(t, (np.timedelta64, np.datetime64)):
                continue
            size = np.dtype(t).itemsize
            if issubclass(t, np.floating) and size <= 8:
                conv[t] = float
            elif issubclass(t, np.signedinteger) and size <= 8:
                conv[t] = int
            elif issubclass(t, np.unsignedinteger) and size < 8:
                conv[t] = int
            elif issubclass(t, np.unsignedinteger):  # uint64: checked against int64
                conv[t] = _uint64
            elif issubclass(t, np.floating):  # longdouble: checked for an exact float64
                conv[t] = _longdouble
        _CONVERTERS = conv
    return _CONVERTERS.get(cls)


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
