"""The fast path of ``Run.log``: rows of keys and value types the slow path validated before.

``Run.log`` (client/run.py) applies the step rules itself; the row it sends comes from here when every key
was validated before by the slow path (``Run._log_slow``: ``flatten`` and the call-site checks of
``client.values``): top-level keys (``_known``), one level of nested dicts by a cached key plan
(``_nested``), and values that are Python numbers or of a type the slow path accepted before (``_convs``;
by type, as the conversion does not depend on the key): numpy scalars and 0-d arrays, converted to the
Python number at the call (``fastconv.fast_converter``; a flat dict of numpy scalars, which are immutable,
is copied into a ``fastconv.NumpyRow`` and converted on the I/O thread), and one-element torch tensors,
stored with their value at the call: ``.item()`` on the CPU (no device check while the process has no CUDA
state), an async device copy converted on the I/O thread on CUDA, so ``log()`` never waits for the GPU
(``fastconv.tensor_value``). A flat dict is converted in one pass (``_scalar_row``); nested dicts and device
tensors take ``_typed_row``. Either returns None for anything else: the slow path then validates, converts
and raises as before.

:class:`FastRows` is a base class of ``Run`` (not a separate object) so that ``log()`` reaches these
methods and the state they read as attributes of ``self``, as cheaply as before the split.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from client import fastconv as _conv
from client.fastconv import (
    FAST_TYPES,
    INT64_MAX,
    INT64_MIN,
    NumpyRow,
    TensorRow,
    fast_converter,
    tensor_copy,
    tensor_value,
)
from client.values import MAX_KEYS_PER_ROW

_FAST = FAST_TYPES
_I64_MIN, _I64_MAX = INT64_MIN, INT64_MAX


class FastRows:
    """What the slow path taught the fast path (keys, key plans, value types), and the rows it builds."""

    def _init_fast_rows(self) -> None:
        self._known: set[str] = set()  # top-level keys validated by the slow path; the fast path accepts only these
        self._nested: dict[str, dict[str, str]] = {}  # top key -> {validated sub key: its flattened name}
        # value type the slow path accepted (numpy scalars, 0-d arrays, torch.Tensor) -> its fast converter
        # (``fastconv.fast_converter``). By type alone: the conversion depends on the type, not on the key
        self._convs: dict[type, Any] = {}
        self._scalars: dict[type, Any] = {}  # _convs without tensor_copy (DEFER_CPU_TENSORS, a test mode)
        # numpy scalar types of _convs whose .item() is what the slow path stores: kept in a NumpyRow as they
        # are (immutable), converted on the I/O thread (fastconv.NumpyRow)
        self._immutable: set[type] = set()
        # torch.Tensor once the slow path took one and CPU tensors are read at the call
        self._tensor: type | None = None
        self._fulls: set[str] = set()  # every name in _nested's plans
        # True once a nested name can be made two ways (a dotted top key, or a dotted key in a plan): the fast
        # path then counts the leaves to find a collision the slow path refuses (``{"a": {"b": 1}, "a.b": 2}``)
        self._clash = False

    def _scalar_row(self, data: dict, first: type) -> dict | None:
        """A flat ``data`` of known keys with numpy scalars, 0-d arrays or CPU torch tensors of types the slow
        path accepted before (``_scalars``): a copy with those converted to the Python number the slow path
        stores (one pass, cheaper than ``_typed_row``'s), or, when it holds numpy scalars and Python numbers
        only, a :class:`~client.fastconv.NumpyRow` copy the I/O thread converts; else None. A tensor's value
        is read now (``.item()``: ``fastconv.tensor_value`` inlined), without a device check while the process
        has no CUDA state (``fastconv.CUDA_STATE``); a tensor on a device is left to ``_typed_row`` (an async
        copy)."""
        known = self._known
        if first is self._tensor:  # CPU tensors read at the call (``tensor_value`` inlined), Python numbers
            cuda = _conv.CUDA_STATE._initialized is not False
            row = data.copy()
            try:  # (free unless raised)
                for k, v in data.items():
                    t = type(v)
                    if t is first:
                        if k not in known or (cuda and not v.is_cpu):  # a device tensor: _typed_row copies it
                            return None
                        v = v.item()  # raises for more than one element
                        t = type(v)
                        if t is float or t is bool or (t is int and _I64_MIN <= v <= _I64_MAX):
                            row[k] = v
                            continue
                        return None  # complex, uint64 beyond int64: the slow path raises
                    if t in _FAST and k in known:
                        continue
                    break  # numpy values too: the general loop below
                else:
                    return row if len(row) <= MAX_KEYS_PER_ROW else None
            except Exception:  # noqa: BLE001 - .item() of more elements, a meta tensor, ...
                return None
        immutable = self._immutable
        if immutable:  # Python numbers and numpy scalars only: a copy, converted on the I/O thread (NumpyRow)
            for k, v in data.items():
                t = type(v)
                if (t in immutable or t in _FAST) and k in known:
                    continue
                break
            else:
                return NumpyRow(data) if len(data) <= MAX_KEYS_PER_ROW else None
        scalars = self._scalars
        tv = tensor_value
        cuda = None  # whether this process has CUDA state (read at the first tensor)
        row = data.copy()
        try:  # (free unless raised, Python 3.11+)
            for k, v in data.items():
                t = type(v)
                if t in _FAST:
                    if k in known:
                        continue
                    return None
                conv = scalars.get(t)
                if conv is None or k not in known:
                    return None
                if conv is tv:
                    if cuda is None:
                        cuda = _conv.CUDA_STATE._initialized is not False
                    if cuda and not v.is_cpu:
                        return None
                    v = v.item()  # raises for more than one element
                    t = type(v)
                    if t is float or t is bool or (t is int and _I64_MIN <= v <= _I64_MAX):
                        row[k] = v
                        continue
                    return None  # complex, uint64 beyond int64: the slow path raises
                row[k] = conv(v)
        except Exception:  # noqa: BLE001 - NotFast (a 1-d array), .item() of more elements, ...
            return None
        return row if len(row) <= MAX_KEYS_PER_ROW else None  # (keys learned over several calls)

    def _typed_row(self, data: dict) -> dict | None:
        """``data`` as ``flatten`` would make it, or None (then the slow path validates, converts, raises).

        Not None only when every key was validated before by the slow path: top-level keys (``_known``) and
        one level of nested dicts whose keys were flattened before (``_nested``: top key -> {sub key:
        "top.sub"}, the cached key plan); and every value is a Python number or of a type the slow path
        accepted before (``_convs``, by type: the conversion does not depend on the key): numpy scalars and
        0-d arrays, converted to the Python number here (exact, and cheap), and one-element torch tensors
        (``fastconv.tensor_value``: the value at this call, converted here on CPU, an async device copy on CUDA
        that makes the row a ``TensorRow`` for the I/O thread to convert: no sync on this thread)."""
        convs = self._convs
        nested = self._nested
        known = self._known
        tv, tc = tensor_value, tensor_copy
        # None until a tensor is seen; then True when this process has no CUDA state (torch.cuda initializes
        # it, in Python, before any CUDA tensor exists): no device to wait for, no per-tensor device check
        no_cuda = None
        out = {}
        nest = False  # a nested dict: two sources may make the same name (counted below, when they can)
        device = False  # a value is a device tensor: the I/O thread converts it (fastconv.TensorRow)
        try:  # (free unless raised, Python 3.11+) any exception: the slow path decides (validates, raises)
            for k, v in data.items():
                t = type(v)
                if t is dict:
                    nest = True
                    plan = nested[k]  # KeyError: a top key not flattened before
                    for sk, sv in v.items():
                        st = type(sv)
                        if st in _FAST:
                            out[plan[sk]] = sv
                            continue
                        conv = convs[st]  # KeyError: a type the slow path did not accept before
                        if conv is tv:  # fastconv.tensor_value inlined for CPU (~0.1 µs less per value)
                            if no_cuda is None:
                                no_cuda = _conv.CUDA_STATE._initialized is False
                            if no_cuda or sv.is_cpu:
                                sv = sv.item()  # raises for more than one element
                                st = type(sv)
                                if st is float or st is bool or (st is int and _I64_MIN <= sv <= _I64_MAX):
                                    out[plan[sk]] = sv
                                    continue
                                return None  # complex, uint64 beyond int64: the slow path raises
                            out[plan[sk]] = sv = tv(sv)  # CUDA: an async copy (tensor_copy)
                            if type(sv) not in _FAST:  # a copy on its device: the I/O thread converts
                                device = True
                        elif conv is tc:
                            out[plan[sk]] = tc(sv)
                            device = True
                        else:
                            out[plan[sk]] = conv(sv)
                    continue
                if t in _FAST:
                    if k not in known:
                        return None
                    out[k] = v
                    continue
                conv = convs[t]
                if k not in known:
                    return None
                if conv is tv:  # as above
                    if no_cuda is None:
                        no_cuda = _conv.CUDA_STATE._initialized is False
                    if no_cuda or v.is_cpu:
                        v = v.item()
                        t = type(v)
                        if t is float or t is bool or (t is int and _I64_MIN <= v <= _I64_MAX):
                            out[k] = v
                            continue
                        return None
                    out[k] = v = tv(v)
                    if type(v) not in _FAST:
                        device = True
                elif conv is tc:
                    out[k] = tc(v)
                    device = True
                else:
                    out[k] = conv(v)
        except Exception:  # noqa: BLE001 - KeyError, NotFast, .item() of a tensor of more elements, ...
            return None
        n = len(out)
        if n > MAX_KEYS_PER_ROW:
            return None
        # fewer keys than leaves: a collision, which the slow path refuses
        if nest and self._clash and n != sum([len(v) if type(v) is dict else 1 for v in data.values()]):
            return None
        return TensorRow(out) if device else out

    def _learn(self, data: Mapping) -> None:
        """After ``flatten(data)`` succeeded: remember its keys (every top-level key passed ``check_key``),
        its nested leaves, and the types of its numpy/torch values, for the fast path."""
        convs = self._convs
        known = self._known
        fulls = self._fulls
        for k, v in data.items():
            known.add(k)
            if k in fulls:
                self._clash = True
            t = type(v)
            if t is dict:
                plan = self._nested.get(k)
                if plan is None:
                    plan = self._nested[k] = {}
                for sk, sv in v.items():
                    if isinstance(sv, Mapping):  # deeper: the slow path (and "k.sk" is no leaf name)
                        continue
                    full = plan[sk] = f"{k}.{sk}"
                    if full not in fulls:
                        # a name two ways: a known dotted top key, or a dotted part ("a"+"b.c" and "a.b"+"c")
                        if full in known or "." in sk or "." in k:
                            self._clash = True
                        fulls.add(full)
                    st = type(sv)
                    if st not in _FAST and st not in convs:
                        self._learn_type(st)
            elif t not in _FAST and t not in convs:
                self._learn_type(t)

    def _learn_type(self, t: type) -> None:
        conv = fast_converter(t)
        if conv is not None:
            self._convs[t] = conv
            if conv is not tensor_copy:  # (tensor_value: CPU tensors in _scalar_row, device ones in _typed_row)
                self._scalars[t] = conv
            if conv is float or conv is int or conv is bool:  # a numpy scalar type (not a 0-d array, a tensor)
                self._immutable.add(t)
            elif conv is tensor_value:
                self._tensor = t
