"""The span block of a batch: rows a client coalesced under overload, their codec.

Under overload (log() faster than the I/O thread, client/coalesce.py) a batch may carry, instead of
rows, a block of spans: ``[m, step, first, rows, t, runtime, cols, raw]`` with the span's last step,
first step, the rows it stands for, the time and runtime of its last row (arrays of m); per key
``[key, idx, data]``: ``idx`` the int32 span indices that have the key (None: all), ``data`` the
key's ``SPAN_KEY_FIELDS`` as k little-endian arrays one after the other (k = len(idx) or m): the step
of its last value in the span, then agent/ratelimit.py's SPAN_FIELDS; and per key that opted out of
rate limiting ``[key, steps, [enc, data]]``: every value, at its step (steps int64, increasing,
within the spans; a column encoded as in a batch's blocks, client/columnwire.py).

``client.wire`` re-exports these names (``wire.SpanBlock``, ``wire.decode_spans``): the agent reads
them there. The decoder validates everything and raises :class:`ProtocolError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from client.columnwire import MAX_BATCH_ROWS, NUMERIC_ENCODINGS, OBJECT_ENCODING, fixed_array
from client.errors import ProtocolError

SPAN_KEY_FIELDS = ("step", "first_step", "count", "last", "mean", "min", "max")
_SPAN_INT = frozenset({"step", "first_step", "count"})
_MAX_STEP = 1 << 62  # as client/run.py MAX_STEP: the store keeps step + 1 in an int64


@dataclass(frozen=True, slots=True)
class SpanColumn:
    key: str
    rows: np.ndarray | None  # int32 span indices, None = every span
    fields: dict  # SPAN_KEY_FIELDS -> array of len(rows) (or m)


@dataclass(frozen=True, slots=True)
class SpanBlock:
    m: int
    step: np.ndarray  # int64[m]: last step of each span
    first: np.ndarray  # int64[m]: first step
    rows: np.ndarray  # int64[m]: rows each stands for
    t: np.ndarray  # float64[m]
    runtime: np.ndarray  # float64[m]
    columns: list[SpanColumn]
    raw: list  # (key, steps, values): keys kept row for row (rate_limit=False), values as a batch column's


def encode_spans(spans: list, t: np.ndarray, runtime: np.ndarray) -> list:
    """The block of ``client.coalesce.Span`` objects (their times already wall clock and runtime)."""
    m = len(spans)
    per_key: dict[str, list[int]] = {}
    raw: dict[str, list] = {}
    for i, sp in enumerate(spans):
        for key in sp.keys:
            if key in sp.raw:
                raw.setdefault(key, []).append(sp.raw[key])
            else:
                per_key.setdefault(key, []).append(i)
    cols = []
    for key, idx in per_key.items():
        entries = [spans[i].keys[key] for i in idx]
        data = b"".join(
            np.asarray([e[j] for e in entries], dtype="<i8" if f in _SPAN_INT else "<f8").tobytes()
            for j, f in enumerate(SPAN_KEY_FIELDS)
        )
        cols.append([key, None if len(idx) == m else np.asarray(idx, dtype="<i4").tobytes(), data])
    return [
        m,
        np.asarray([sp.step for sp in spans], dtype="<i8").tobytes(),
        np.asarray([sp.first for sp in spans], dtype="<i8").tobytes(),
        np.asarray([sp.rows for sp in spans], dtype="<i8").tobytes(),
        np.ascontiguousarray(t, dtype="<f8").tobytes(),
        np.ascontiguousarray(runtime, dtype="<f8").tobytes(),
        cols,
        [[key, b"".join(p[0] for p in parts), _join_columns([p[1] for p in parts])] for key, parts in raw.items()],
    ]


def _join_columns(encoded: list) -> list:
    """One encoded column of several (a key kept raw over several spans): arrays of one dtype join as
    bytes, anything else as a list of values."""
    if len(encoded) == 1:
        return encoded[0]
    encs = {e[0] for e in encoded}
    if len(encs) == 1 and encoded[0][0] in NUMERIC_ENCODINGS:
        return [encoded[0][0], b"".join(e[1] for e in encoded)]
    values: list = []
    for enc, data in encoded:
        values += data if enc == OBJECT_ENCODING else np.frombuffer(data, NUMERIC_ENCODINGS[enc]).tolist()
    return [OBJECT_ENCODING, values]


def decode_spans(raw: Any) -> SpanBlock:
    if not (isinstance(raw, list) and len(raw) == 8):
        raise ProtocolError("spans must be [m, step, first, rows, t, runtime, columns, raw columns]")
    m, raw_step, raw_first, raw_rows, raw_t, raw_rt, cols, raw_cols = raw
    if not isinstance(m, int) or isinstance(m, bool) or not 0 < m <= MAX_BATCH_ROWS:
        raise ProtocolError(f"span count out of range (1..{MAX_BATCH_ROWS})")
    i8, f8 = np.dtype("<i8"), np.dtype("<f8")
    step = fixed_array(raw_step, i8, m, "span step")
    first = fixed_array(raw_first, i8, m, "span first step")
    rows = fixed_array(raw_rows, i8, m, "span rows")
    t = fixed_array(raw_t, f8, m, "span t")
    rt = fixed_array(raw_rt, f8, m, "span runtime")
    if first.min() < 0 or step.max() >= _MAX_STEP or (first > step).any():
        raise ProtocolError("span steps out of range (0 <= first step <= step < 2**62)")
    if m > 1 and (first[1:] <= step[:-1]).any():
        raise ProtocolError("spans overlap or are out of order")
    if rows.min() < 1 or (rows > step - first + 1).any():
        raise ProtocolError("span rows out of range (1..steps it covers)")
    if not isinstance(cols, list):
        raise ProtocolError("span columns must be a list")
    columns: list[SpanColumn] = []
    seen: set[str] = set()
    for col in cols:
        if not (isinstance(col, list) and len(col) == 3 and isinstance(col[0], str) and col[0]):
            raise ProtocolError("span column must be [key, rows, data]")
        key, raw_idx, data = col
        if key in seen:
            raise ProtocolError(f"span column {key!r} twice")
        seen.add(key)
        if raw_idx is None:
            idx = None
            k = m
        else:
            if not isinstance(raw_idx, bytes) or len(raw_idx) % 4 or not raw_idx:
                raise ProtocolError("span column index must be int32 bytes")
            idx = np.frombuffer(raw_idx, dtype="<i4")
            k = len(idx)
            if idx.min() < 0 or idx.max() >= m or (k > 1 and (np.diff(idx) <= 0).any()):
                raise ProtocolError("span column index out of range or not increasing")
        if not isinstance(data, bytes) or len(data) != 8 * k * len(SPAN_KEY_FIELDS):
            raise ProtocolError(f"span column {key!r}: expected {k} values of each of {SPAN_KEY_FIELDS}")
        fields = {
            f: np.frombuffer(data, dtype=i8 if f in _SPAN_INT else f8, count=k, offset=8 * k * j)
            for j, f in enumerate(SPAN_KEY_FIELDS)
        }
        lo, hi, n = (first, step, rows) if idx is None else (first[idx], step[idx], rows[idx])
        fs, ks, cnt = fields["first_step"], fields["step"], fields["count"]
        if (fs < lo).any() or (ks > hi).any() or (fs > ks).any() or (cnt < 1).any() or (cnt > n).any():
            raise ProtocolError(f"span column {key!r}: steps or counts outside its spans")
        columns.append(SpanColumn(key, idx, fields))
    if not isinstance(raw_cols, list):
        raise ProtocolError("span raw columns must be a list")
    kept = []
    seen = set()  # (a key may also have span columns: its rate_limit definition came between spans)
    for col in raw_cols:
        if not (isinstance(col, list) and len(col) == 3 and isinstance(col[0], str) and col[0]):
            raise ProtocolError("span raw column must be [key, steps, [encoding, data]]")
        key, raw_steps, enc_col = col
        if key in seen:
            raise ProtocolError(f"span column {key!r} twice")
        seen.add(key)
        if not isinstance(raw_steps, bytes) or not raw_steps or len(raw_steps) % 8:
            raise ProtocolError(f"span raw column {key!r}: steps must be int64 bytes")
        k = len(raw_steps) // 8
        ks = np.frombuffer(raw_steps, dtype=i8)
        if (k > 1 and (np.diff(ks) <= 0).any()) or ks[0] < first[0] or ks[-1] > step[-1]:
            raise ProtocolError(f"span raw column {key!r}: steps not increasing or outside the spans")
        if not (isinstance(enc_col, list) and len(enc_col) == 2 and isinstance(enc_col[0], str)):
            raise ProtocolError(f"span raw column {key!r} must hold [encoding, data]")
        enc, data = enc_col
        if enc in NUMERIC_ENCODINGS:
            values: Any = fixed_array(data, NUMERIC_ENCODINGS[enc], k, f"span raw column {key!r}")
        elif enc == OBJECT_ENCODING and isinstance(data, list) and len(data) == k:
            values = data
        else:
            raise ProtocolError(f"span raw column {key!r}: expected {k} values of a known encoding")
        kept.append((key, ks, values))
    return SpanBlock(m, step, first, rows, t, rt, columns, kept)
