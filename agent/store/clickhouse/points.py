"""History values as rows of the ``history`` table, and back.

One row per (run, key, step) of a chunk: ``kind`` says what the agent handed the store (float, int and bool
arrays, a list of msgpack values, coalesced spans: agent/ratelimit.py), ``num`` whether the value counts as a
number for group rows and charts (grouping/numbers.py: ints, floats and bools of a list count, other values
do not), ``value`` the number as float64 (NaN when none), ``raw`` the bytes a float cannot hold: a list
element msgpack-encoded, an int beyond 2**53, a span's six fields. Reading a series back gives the
containers the SQLite store gives (agent/store/sqlite_format.py ``decode_values`` joined by
``last_wins``): a numeric array when every chunk of the key was numeric (int64, float64, or object for
bools, as numpy joins them), a list as soon as one chunk was a list.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from agent.ratelimit import SPAN_FIELDS

F8, I8, B1, MP, SPAN = 0, 1, 2, 3, 4
_NUMBER_TYPES = (int, float, bool)
_EXACT = float(2**53)  # ints beyond this lose digits as float64: their raw bytes keep them
SPAN_DTYPE = np.dtype([(f, "<i8" if f in ("first_step", "count") else "<f8") for f in SPAN_FIELDS])


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(blob: bytes) -> Any:
    return msgpack.unpackb(blob, raw=False, strict_map_key=False)


def encode(values: np.ndarray | list | dict) -> tuple[int | np.ndarray, np.ndarray, np.ndarray, list[bytes]]:
    """(kind, num, value, raw) of a chunk's values: kind one code for the chunk, or per row for a list."""
    if isinstance(values, dict):  # coalesced spans: read as their last value
        n = len(values["last"])
        rec = np.zeros(n, SPAN_DTYPE)
        for f in SPAN_FIELDS:
            rec[f] = values[f]
        raw = [rec[i : i + 1].tobytes() for i in range(n)]
        return SPAN, np.ones(n, np.uint8), np.asarray(values["last"], np.float64), raw
    if isinstance(values, np.ndarray) and values.dtype != object:
        n, k = len(values), values.dtype.kind
        if k == "f":
            return F8, np.ones(n, np.uint8), values.astype(np.float64), [b""] * n
        if k in "iu":
            v = values.astype(np.float64)
            big = np.flatnonzero(np.abs(v) >= _EXACT)
            raw = [b""] * n
            for i in big:
                raw[i] = pack(int(values[i]))
            return I8, np.ones(n, np.uint8), v, raw
        if k == "b":
            return B1, np.ones(n, np.uint8), values.astype(np.float64), [b""] * n
        values = values.tolist()
    values = values.tolist() if isinstance(values, np.ndarray) else list(values)
    n = len(values)
    if values and all(type(v) is bool for v in values):  # bools kept as objects (agent/apply.py): numbers
        return B1, np.ones(n, np.uint8), np.array(values, np.float64), [b""] * n
    num = np.array([type(v) in _NUMBER_TYPES for v in values], np.uint8)
    value = np.array([float(v) if ok else np.nan for v, ok in zip(values, num, strict=True)], np.float64)
    return MP, num, value, [pack(v) for v in values]


def _element(kind: int, value: float, raw: bytes) -> Any:
    if kind == MP:
        return unpack(raw)
    if kind == I8:
        return unpack(raw) if raw else int(value)
    if kind == B1:
        return bool(value)
    return float(value)


def decode(kinds_seen: set[int], kind: np.ndarray, value: np.ndarray, raw: list[bytes] | None) -> np.ndarray | list:
    """The values of a series' winning rows, in the container ``last_wins`` gives for chunks of
    ``kinds_seen`` (the kinds of every row read for the key, winners or not)."""
    if MP in kinds_seen:
        assert raw is not None
        return [_element(int(k), float(v), r) for k, v, r in zip(kind, value, raw, strict=True)]
    if B1 in kinds_seen:
        return np.array(
            [_element(int(k), float(v), r) for k, v, r in zip(kind, value, raw or [b""] * len(kind), strict=True)]
            or [],
            object,
        )
    if kinds_seen <= {I8}:
        out = value.astype(np.int64)
        if raw is not None:
            for i, r in enumerate(raw):
                if r:
                    out[i] = unpack(r)
        return out
    return value.astype(np.float64, copy=False)


def spans(raw: list[bytes]) -> dict[str, np.ndarray]:
    """The SPAN_FIELDS arrays of span rows' raw bytes."""
    rec = np.frombuffer(b"".join(raw), SPAN_DTYPE)
    return {f: rec[f].copy() for f in SPAN_FIELDS}


def winners(keys: tuple[np.ndarray, ...], first: bool = False) -> np.ndarray:
    """Indices of the rows that win, rows sorted by ``keys`` (the last one the version): per distinct value
    of all keys but the last, the row of the latest version (the earliest with ``first``)."""
    n = len(keys[0])
    if n == 0:
        return np.empty(0, np.int64)
    same = np.ones(n - 1, bool)
    for k in keys[:-1]:
        same &= k[1:] == k[:-1]
    keep = np.ones(n, bool)
    if first:
        keep[1:] = ~same
    else:
        keep[:-1] = ~same
    return np.flatnonzero(keep)


def order(*keys: np.ndarray) -> np.ndarray | slice:
    """The permutation sorting rows by ``keys`` (the first most significant, as ``ORDER BY`` would), or
    ``slice(None)`` when they come sorted already: the engine returns a merged part in its sorting key's
    order, and an O(n) check is cheaper than a sort."""
    n = len(keys[0])
    if n < 2:
        return slice(None)
    ok = np.zeros(n - 1, bool)
    tie = np.ones(n - 1, bool)
    for k in keys:
        a, b = k[:-1], k[1:]
        ok |= tie & (b > a)
        tie &= b == a
    if (ok | tie).all():
        return slice(None)
    return np.lexsort(tuple(reversed(keys)))
