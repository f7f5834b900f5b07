"""System samples as column chunks: the shape both stores keep and every reader returns (docs/system.md).

A system chunk is what one commit stored for one rank (``run_id``) or one node's host rows (``run_id``
None) of a group: float64 columns of equal length, one of them ``_timestamp`` (epoch seconds, the
time of the sampler's tick; every row of one tick shares it). Samples do not all carry the same keys (a
process whose I/O counters the agent may not read, a GPU field NVML does not support): chunks are joined
key by key with NaN where a sample had no value, and rows are ordered by time. The SQLite store keeps a
chunk as one msgpack map of little-endian float64 bytes (agent/store/sqlite_txn.py ``add_system``), the
memory store as arrays (agent/store/memory.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgpack
import numpy as np

TIME = "_timestamp"
MAX_KEYS = 4096  # columns of one chunk (a record from the network is checked against it: agent/record.py)


def columns_of_rows(rows: Iterable[Mapping[str, float]]) -> dict[str, np.ndarray]:
    """Rows (``{key: value}`` with ``_timestamp``) → columns, NaN where a row had no value of a key."""
    rows = list(rows)
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row))
    return {k: np.array([row.get(k, np.nan) for row in rows], np.float64) for k in keys}


def check_columns(columns: Mapping[str, np.ndarray], what: str = "columns") -> int:
    """The number of rows of a chunk; ValueError naming ``what`` when it is not one (no ``_timestamp``,
    arrays of different lengths, more than :data:`MAX_KEYS` keys)."""
    if TIME not in columns:
        raise ValueError(f"{what}: a system chunk needs a {TIME!r} column (epoch seconds of each sample)")
    if len(columns) > MAX_KEYS:
        raise ValueError(f"{what}: {len(columns)} keys, at most {MAX_KEYS}")
    n = len(columns[TIME])
    for k, v in columns.items():
        if not isinstance(k, str) or not k or np.ndim(v) != 1 or len(v) != n:
            raise ValueError(f"{what}: column {k!r} must be a non-empty name of a 1-d array of {n} values")
    return n


def encode_columns(columns: Mapping[str, np.ndarray]) -> bytes:
    return msgpack.packb(
        {k: np.ascontiguousarray(v, dtype="<f8").tobytes() for k, v in columns.items()}, use_bin_type=True
    )


def decode_columns(blob: bytes) -> dict[str, np.ndarray]:
    raw = msgpack.unpackb(blob, raw=False)
    return {k: np.frombuffer(v, "<f8") for k, v in raw.items()}


def join_columns(chunks: list[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Chunks (in write order) → one set of columns over the union of their keys, ordered by time (stable:
    rows of equal time keep their write order). Empty chunks are skipped; no chunk gives ``{}``."""
    chunks = [c for c in chunks if len(c.get(TIME, ())) > 0]
    if not chunks:
        return {}
    keys: dict[str, None] = {TIME: None}
    for c in chunks:
        keys.update(dict.fromkeys(c))
    out = {}
    for k in keys:
        parts = [np.asarray(c[k], np.float64) if k in c else np.full(len(c[TIME]), np.nan) for c in chunks]
        out[k] = parts[0].copy() if len(parts) == 1 else np.concatenate(parts)
    order = np.argsort(out[TIME], kind="stable")
    if not np.array_equal(order, np.arange(len(order))):
        out = {k: v[order] for k, v in out.items()}
    return out


def once_per_time(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Joined columns (:func:`join_columns`) with one row per ``_timestamp``, the first written: a rank or a
    node's host has one sample per tick, so rows of equal time are one sample stored twice. The ClickHouse store
    needs it (agent/store/clickhouse/reader.py): a commit written again after a crash between its INSERTs (a
    root replaying a node's records) stores its system chunks under a new version."""
    t = cols.get(TIME)
    if t is None or len(t) < 2:
        return cols
    keep = np.concatenate(([True], t[1:] != t[:-1]))
    return cols if keep.all() else {k: v[keep] for k, v in cols.items()}
