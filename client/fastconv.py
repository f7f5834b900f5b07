"""The converters of ``Run.log``'s fast path, and the rows whose conversion waits for the I/O thread.

Once the slow path (``client.values``) accepted a value of some type, the fast path (``client.fastpath``)
takes further values of exactly that type with the converter :func:`fast_converter` gives for it: numpy
scalars and 0-d arrays to the Python number the slow path would store, one-element torch tensors by their
value at the call (``tensor_value``: ``.item()`` on the CPU; on CUDA an async copy, ``tensor_copy``, that makes
the row a :class:`TensorRow` the I/O thread converts with ``resolve_tensors``, so ``log()`` never waits for
the GPU). A converter raises :class:`NotFast` for a value it does not take exactly as the slow path would:
the call then goes the slow way, which converts or raises. A flat row of immutable numpy scalars travels as
a :class:`NumpyRow`, converted on the I/O thread (``resolve_numpy``).

A leaf: it imports nothing of rankwise, and numpy and torch only once such a value was logged.
"""

from __future__ import annotations

from typing import Any

FAST_TYPES = frozenset({float, int, bool})  # what both paths store as it is
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1  # integers are stored exactly, as int64

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


def _uint64(value: Any) -> int:
    """``np.uint64``: the int the slow path stores when it is within int64; beyond it the slow path raises."""
    i = int(value)
    if i > INT64_MAX:
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
    if type(r) is float or type(r) is bool or (type(r) is int and INT64_MIN <= r <= INT64_MAX):
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
            elif issubclass(t, np.signedinteger) and size <= 8 or issubclass(t, np.unsignedinteger) and size < 8:
                conv[t] = int
            elif issubclass(t, np.unsignedinteger):  # uint64: checked against int64
                conv[t] = _uint64
            elif issubclass(t, np.floating):  # longdouble: checked for an exact float64
                conv[t] = _longdouble
        _CONVERTERS = conv
    return _CONVERTERS.get(cls)
