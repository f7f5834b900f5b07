"""Rows to columns for the wire: one array per key, numbers as little-endian arrays, the rest as values.

Runs on the writer's I/O thread (never on the training loop's): media objects encode themselves
here (``to_wire``), and numeric columns become numpy arrays so the agent can reduce them without a
Python loop per point. Integers stay integers and exact: a column mixing floats with an int that
float64 would round is sent as values instead; so is a column mixing bools with other numbers (bools
read back as bools). An integer beyond int64 (only the fast path of ``log()`` lets one through)
raises ``OverflowError`` here: the assembler drops that value and counts it.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

import numpy as np

from client import wire
from client.media._base import WireValue

_I64 = np.iinfo(np.int64)
_EXACT_INT = 1 << 53  # the largest magnitude below which every int is exact in float64


def to_wire(value: Any) -> Any:
    """Make a logged value msgpack-able (media objects encode themselves here, on the I/O thread)."""
    if isinstance(value, WireValue):
        return value._to_wire()
    if isinstance(value, list):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):  # a summary set by hand to a mapping may hold media too
        return {k: to_wire(v) for k, v in value.items()}
    if type(value) is int and not _I64.min <= value <= _I64.max:
        # log() refuses these; one can still come by the fast path (a known key): the assembler drops it
        raise OverflowError(f"integer {value} is outside int64")
    if isinstance(value, np.generic):
        return value.item()
    return value


def same_keys(dicts: tuple) -> tuple[tuple, list[list]] | None:
    """``(keys, columns)`` when every row has exactly the first row's keys, else None.

    One C-level pass per key (``map(itemgetter(key), ...)``) instead of a Python loop over
    rows: the same length as the first row and no KeyError means the same key set."""
    keys = tuple(dicts[0])
    k = len(keys)
    if not k or min(map(len, dicts)) != k or max(map(len, dicts)) != k:
        return None
    try:
        return keys, [list(map(itemgetter(key), dicts)) for key in keys]
    except KeyError:  # as many keys under other names: the general path groups the rows
        return None


def encode_column(col: tuple | list) -> tuple[list, np.ndarray | None]:
    """Encode one column: a numpy array when every value is a number, else a msgpack list."""
    kinds = {type(v) for v in col}
    if bool in kinds and len(kinds) > 1:
        # bools among numbers: an array would make them 1/0 (wandb keeps bools as bools). As values, the
        # agent still counts them as 0/1 in group rows, and every value reads back with its type
        return [wire.OBJECT_ENCODING, [to_wire(v) for v in col]], None
    if kinds <= {float, int, bool} or all(issubclass(k, (np.number, np.bool_)) for k in kinds - {float, int, bool}):
        try:
            arr = np.asarray(col)
        except (OverflowError, ValueError):
            arr = None
        if arr is not None and arr.ndim == 1:
            kind = arr.dtype.kind
            if int in kinds and kind != "i":  # numpy made floats or uint64 of Python ints: any beyond int64?
                for v in col:
                    if type(v) is int and not _I64.min <= v <= _I64.max:
                        raise OverflowError(f"integer {v} is outside int64")
            if kind == "f" and int in kinds and any(type(v) is int and abs(v) > _EXACT_INT for v in col):
                # a float column would round this int: keep the column as objects, values exact
                return [wire.OBJECT_ENCODING, [to_wire(v) for v in col]], None
            if kind == "f":
                arr = arr.astype("<f8", copy=False)
                return ["f8", arr.tobytes()], arr
            if kind == "b":
                return ["b1", arr.tobytes()], arr
            if kind in "iu" and (kind == "i" or arr.max(initial=0) <= _I64.max):
                arr = arr.astype("<i8", copy=False)
                return ["i8", arr.tobytes()], arr
    return [wire.OBJECT_ENCODING, [to_wire(v) for v in col]], None
