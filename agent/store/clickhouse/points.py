"""History values as chunks of the ``history_chunks`` table, and back.

One row per (run, key, chunk of one commit), as the SQLite store keeps them (agent/store/sqlite_format.py,
whose encodings are used here unchanged): ``enc`` names the encoding (``f8``, ``i8``, ``b1``: little-endian
arrays; ``span``: coalesced spans, agent/ratelimit.py; ``mp``: a msgpack list, a key that had a string or
None in that commit), ``vals`` the bytes, ``steps`` the steps as little-endian int64, or empty when they
are ``step_min, step_min + 1, …, step_max`` (the usual case: half the bytes to store and to read).

Measured on 64 ranks × 100k steps in chunks of 10k (this machine, 2 cores): String blobs inserted in
1.3 s and read back in 0.6 s over clickhouse-driver (18.16), ``Array(Int64)``/``Array(Float64)`` columns in
4.0 s and 1.5-2.2 s (the driver has no numpy path for arrays: a Python float per value). SQL over values
stays possible: the ``history`` view (agent/store/clickhouse/schema.py) unpacks chunks into one row per
point with ``ARRAY JOIN``.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from agent.store.base import last_wins
from agent.store.sqlite_format import NUMERIC_LIKE, decode_values, encode_values, float_values
from grouping import numeric_entries

__all__ = ["Chunk", "by_run", "decode_values", "encode_chunk", "join", "numbers", "order", "steps_of", "winners"]

# one chunk as read: (run id, key, version, step_min, step_max, enc, steps bytes, vals bytes)
Chunk = tuple[int, str, int, int, int, str, bytes, bytes]


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(blob: bytes) -> Any:
    return msgpack.unpackb(blob, raw=False, strict_map_key=False)


def encode_chunk(steps: np.ndarray, values: Any, first: bool) -> tuple[int, int, int, str, bytes, bytes]:
    """(step_min, step_max, n, enc, steps bytes, vals bytes) of one chunk; a step written twice in it keeps
    its last value (its first with ``first``: META_KEYS)."""
    steps = np.asarray(steps, np.int64)
    n = len(steps)
    if isinstance(values, dict):  # spans: a step is one span, in step order already (agent/ratelimit.py)
        enc, vblob = encode_values(values)
    else:
        if n > 1 and not bool(np.all(steps[1:] > steps[:-1])):
            steps, values = last_wins([steps], [values], first=first)
            n = len(steps)
        enc, vblob = encode_values(values)
    lo, hi = int(steps.min()), int(steps.max())
    dense = hi - lo + 1 == n and (n < 2 or bool(np.all(steps[1:] > steps[:-1])))
    return lo, hi, n, enc, (b"" if dense else steps.astype("<i8", copy=False).tobytes()), vblob


def steps_of(lo: int, hi: int, sblob: bytes) -> np.ndarray:
    return np.frombuffer(sblob, "<i8") if sblob else np.arange(lo, hi + 1, dtype=np.int64)


def numbers(chunk: Chunk) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, float64 values) of a chunk's numbers (group rows, charts: a list chunk by its numbers,
    grouping/numbers.py), None when it has none."""
    _, _, _, lo, hi, enc, sblob, vblob = chunk
    if enc in NUMERIC_LIKE:
        return steps_of(lo, hi, sblob), float_values(enc, vblob)
    if enc != "mp":
        return None
    where, nums = numeric_entries(unpack(vblob))
    return (steps_of(lo, hi, sblob)[where], nums) if len(where) else None


def join(chunks: list[Chunk], first: bool, numeric: bool = False) -> tuple[np.ndarray, Any] | None:
    """Steps and values of one (run, key)'s chunks, later versions winning per step (the earliest with
    ``first``), as ``last_wins`` joins them; with ``numeric`` only numbers, as float64 (None: none)."""
    chunks = sorted(chunks, key=lambda c: c[2])
    # the usual case: ranges that follow each other in version order, checked per chunk, not per step
    if (
        numeric
        and all(not c[6] and c[5] in NUMERIC_LIKE for c in chunks)
        and all(b[3] == a[4] + 1 for a, b in zip(chunks, chunks[1:], strict=False))
    ):
        vals = [float_values(c[5], c[7]) for c in chunks]
        steps = np.arange(chunks[0][3], chunks[-1][4] + 1, dtype=np.int64)
        return steps, (np.concatenate(vals) if len(vals) > 1 else vals[0])
    steps, values = [], []
    for c in chunks:
        if numeric:
            got = numbers(c)
            if got is None:
                continue
            s, v = got
        else:
            s, v = steps_of(c[3], c[4], c[6]), decode_values(c[5], c[7])
        steps.append(s)
        values.append(v)
    if not steps:
        return None
    if numeric:  # the usual case: chunks in step order without overlap, nothing to choose between
        s = np.concatenate(steps) if len(steps) > 1 else steps[0]
        if len(s) < 2 or bool(np.all(s[1:] > s[:-1])):
            return s, (np.concatenate(values) if len(values) > 1 else values[0])
    return last_wins(steps, values, first=first)


def by_run(chunks: list[Chunk]) -> dict[int, list[Chunk]]:
    out: dict[int, list[Chunk]] = {}
    for c in chunks:
        out.setdefault(c[0], []).append(c)
    return out


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
