"""What no frame can carry: one batch's content cut into frames under the agent's limit.

A frame over ``wire.MAX_FRAME_BYTES`` would be refused by the agent for ever
(and resent for ever), so the assembler packs a batch once and, only when the
result is over :data:`FRAME_BUDGET`, asks :func:`split` for several bodies
applied in order: the rows first, then the summary in parts, then the control
ops with the pending row; together they do what the one batch would have done.
A single value that fits no frame is dropped and counted through ``drop(cause,
n, what)``, never sent. :func:`sanitize` removes what msgpack refuses (a media
encoder's odd output) the same way. Plain functions: the assembler owns the
state and the counters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from client import wire

# what one frame may carry after encoding, with room for its envelope
FRAME_BUDGET = wire.MAX_FRAME_BYTES - (1 << 20)

# causes of values or rows the client drops (run.stats["drops"]); the agent is told in a "dropped" op
OVERSIZED = "oversized value"  # a value that no frame could carry (values)
BAD_VALUE = "bad value"  # a value that could not be encoded on the I/O thread, e.g. an int beyond int64 (values)
ENCODE_ERROR = "encode error"  # rows of a batch that could not be encoded at all (rows)
ROW_TOO_WIDE = "row too wide"  # keys beyond MAX_KEYS_PER_ROW merged into one row by several calls (values)

Drop = Callable[[str, int, str], None]  # (cause, how many, what, for the one warning per cause)


def packed_size(value: Any) -> int:
    return len(msgpack.packb(value, use_bin_type=True))


def packs(value: Any) -> bool:
    try:
        msgpack.packb(value, use_bin_type=True)
        return True
    except Exception:  # noqa: BLE001 - msgpack raises TypeError, OverflowError, ValueError...
        return False


def split(rows: list | None, pending: list | None, summary: dict | None, early: list, rest: list, drop: Drop) -> list:
    """Batch bodies (without writer and seq) for one batch's content, each under the frame budget:
    ``[(body, rows it carries), ...]``. ``early`` are the control ops due before the rows (metric
    definitions), ``rest`` those after (summary edits, config, finish)."""
    half = FRAME_BUDGET // 2
    out = [({"rows": fit_rows(rows, drop), "pend": None, "sum": None, "ctl": early or None}, rows[0] if rows else 0)]
    part: dict = {}
    size = 0
    for key, value in (summary or {}).items():
        n = packed_size(value)
        if n > half:
            drop(OVERSIZED, 1, f"summary of key {key!r}: {n >> 20} MiB")
            continue
        if size + n > half and part:
            out.append(({"rows": None, "pend": None, "sum": part, "ctl": None}, 0))
            part, size = {}, 0
        part[key] = value
        size += n + len(key)
    if part:
        out.append(({"rows": None, "pend": None, "sum": part, "ctl": None}, 0))
    if pending is not None:
        values = pending[2]
        while values and packed_size(values) > half:
            big = max(values, key=lambda k: packed_size(values[k]))
            del values[big]
            drop(OVERSIZED, 1, f"pending row, key {big!r}")
    ops: list = []
    size = 0
    for op in rest:
        n = packed_size(op)
        if n > half:
            drop(OVERSIZED, 1, f"control op {op[0]!r}: {n >> 20} MiB")
            continue
        if size + n > half and ops:
            out.append(({"rows": None, "pend": pending, "sum": None, "ctl": ops}, 0))
            ops, size = [], 0
        ops.append(op)
        size += n
    out.append(({"rows": None, "pend": pending, "sum": None, "ctl": ops or None}, 0))
    return out


def fit_rows(rows: list | None, drop: Drop) -> list | None:
    """The rows part of a batch, made to fit one frame: the largest values of its list columns become
    None (counted by cause ``OVERSIZED``) until it does. Numeric columns are bounded by the assembler's
    per-batch cell cap, so they never need this."""
    if rows is None or packed_size(rows) <= FRAME_BUDGET:
        return rows
    sizes = []  # (bytes, column data list, index)
    for _, _, cols in rows[5]:
        for enc, data in cols:
            if enc == wire.OBJECT_ENCODING:
                sizes.extend((packed_size(v), data, i) for i, v in enumerate(data))
    sizes.sort(key=lambda t: t[0], reverse=True)
    excess = packed_size(rows) - FRAME_BUDGET
    for n, data, i in sizes:
        if excess <= 0:
            break
        data[i] = None
        excess -= n
        drop(OVERSIZED, 1, f"a row value of {n >> 20} MiB")
    return rows


def sanitize(rows: list | None, summary: dict | None, early: list, rest: list, drop: Drop) -> dict | None:
    """Drop (count) every value msgpack cannot encode: list-column values become None, summary keys and
    control ops go. Returns the summary that is left."""
    for _, _, cols in rows[5] if rows else ():
        for enc, data in cols:
            if enc == wire.OBJECT_ENCODING:
                for i, v in enumerate(data):
                    if not packs(v):
                        data[i] = None
                        drop(BAD_VALUE, 1, f"a row value of type {type(v).__name__} msgpack refuses")
    if summary:
        for key in [k for k, v in summary.items() if not packs(v)]:
            del summary[key]
            drop(BAD_VALUE, 1, f"summary of key {key!r}")
    for ops in (early, rest):
        for op in [op for op in ops if not packs(op)]:
            ops.remove(op)
            drop(BAD_VALUE, 1, f"{op[0]} op")
    return summary
