"""The SQLite store's file format: schema, value encodings, connections, key ids.

History is columnar: a row of ``history`` holds one key's values for the steps
of one agent commit (steps and values as little-endian arrays), so a million
points a second is a few hundred inserts, not a million. Group rows are stored
the same way, one chunk per key and commit, revisions appended (the latest
revision of a step wins on read). The writer (:mod:`agent.store.sqlite`) and the
readers (:mod:`agent.store.sqlite_reader`) share what is here.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from agent.errors import StoreError
from agent.ratelimit import SPAN_FIELDS, pack_spans, unpack_spans
from agent.store.base import GROUP_FIELDS, RunRecord, last_wins

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS groups (
    id INTEGER PRIMARY KEY,
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    world_size INTEGER NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    sealed_through INTEGER NOT NULL DEFAULT -1,
    late_rows INTEGER NOT NULL DEFAULT 0,
    UNIQUE (project, name)
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL REFERENCES groups(id),
    name TEXT NOT NULL,
    run_key TEXT NOT NULL,
    rank INTEGER NOT NULL,
    local_rank INTEGER NOT NULL,
    node TEXT NOT NULL,
    pid INTEGER NOT NULL,
    state TEXT NOT NULL,
    exit_code INTEGER,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    finished REAL,
    step INTEGER NOT NULL DEFAULT 0,
    runtime REAL NOT NULL DEFAULT 0,
    rows INTEGER NOT NULL DEFAULT 0,
    late INTEGER NOT NULL DEFAULT 0,
    incarnations INTEGER NOT NULL DEFAULT 1,
    summary BLOB,
    config BLOB,
    pending BLOB,
    meta BLOB,
    UNIQUE (group_id, name)
);
CREATE TABLE IF NOT EXISTS keys (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    step_min INTEGER NOT NULL,
    step_max INTEGER NOT NULL,
    n INTEGER NOT NULL,
    late INTEGER NOT NULL,
    enc TEXT NOT NULL,
    steps BLOB NOT NULL,
    vals BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS history_run_key ON history (run_id, key_id, step_min);
CREATE TABLE IF NOT EXISTS group_rows (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    step_min INTEGER NOT NULL,
    step_max INTEGER NOT NULL,
    n INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS group_rows_group_key ON group_rows (group_id, key_id, step_min);
CREATE TABLE IF NOT EXISTS writers (writer TEXT PRIMARY KEY, run_id INTEGER NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS drops (cause TEXT PRIMARY KEY, n INTEGER NOT NULL);
"""

_NUMERIC = {"f8": np.dtype("<f8"), "i8": np.dtype("<i8"), "b1": np.dtype("?")}
NUMERIC_LIKE = frozenset(_NUMERIC) | {"span"}  # encodings whose values are numbers
SPAN_BYTES = 8 * len(SPAN_FIELDS)  # one coalesced span: six 8-byte fields
RUN_COLUMNS = (
    "id, group_id, name, run_key, rank, local_rank, node, pid, state, created, updated, exit_code, finished, "
    "step, runtime, rows, late, incarnations, summary, config, pending, meta"
)


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(blob: bytes | None, default: Any) -> Any:
    return default if blob is None else msgpack.unpackb(blob, raw=False, strict_map_key=False)


def encode_values(values: np.ndarray | list | dict) -> tuple[str, bytes]:
    if isinstance(values, dict):  # coalesced spans (agent/ratelimit.py)
        return "span", pack_spans(values)
    if isinstance(values, np.ndarray):
        kind = values.dtype.kind
        if kind == "f":
            return "f8", values.astype("<f8", copy=False).tobytes()
        if kind in "iu":
            return "i8", values.astype("<i8", copy=False).tobytes()
        if kind == "b":
            return "b1", values.astype("?", copy=False).tobytes()
        values = values.tolist()
    return "mp", pack(list(values))


def decode_values(enc: str, blob: bytes) -> np.ndarray | list:
    """Values of a chunk; a coalesced span reads as its last value (the value logged at its step)."""
    dtype = _NUMERIC.get(enc)
    if dtype is not None:
        return np.frombuffer(blob, dtype=dtype)
    if enc == "span":
        return unpack_spans(blob, len(blob) // SPAN_BYTES)["last"]
    return unpack(blob, [])


def float_values(enc: str, blob: bytes) -> np.ndarray:
    return np.asarray(decode_values(enc, blob)).astype(np.float64, copy=False)


def run_record(row: tuple) -> RunRecord:
    (rid, gid, name, key, rank, lrank, node, pid, state, created, updated, code, fin, step, rt, rows, late, inc) = row[:18]
    return RunRecord(
        rid, gid, name, key, rank, lrank, node, pid, state, created, updated, code, fin, step, rt, rows, late, inc,
        unpack(row[18], {}), unpack(row[19], {}), unpack(row[20], None), unpack(row[21], {}),
    )  # fmt: skip


def connect(path: Path, readonly: bool) -> sqlite3.Connection:
    try:
        if readonly:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=30)
        else:
            con = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            # a checkpoint (and its fsync) must not run inside the commit the ACKs wait for:
            # the agent checkpoints between drains instead (SQLiteStore.checkpoint)
            con.execute("PRAGMA wal_autocheckpoint=0")
        con.execute("PRAGMA busy_timeout=30000")
        return con
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open store {path}: {exc}") from exc


class KeyIds:
    """Key name ↔ id, cached (keys are few and never change id)."""

    def __init__(self, con: sqlite3.Connection):
        self.con = con
        self.ids: dict[str, int] = {}
        self.names: dict[int, str] = {}

    def id(self, name: str, create: bool = True) -> int | None:
        kid = self.ids.get(name)
        if kid is None:
            row = self.con.execute("SELECT id FROM keys WHERE name=?", (name,)).fetchone()
            if row is None:
                if not create:
                    return None
                kid = self.con.execute("INSERT INTO keys(name) VALUES (?)", (name,)).lastrowid
            else:
                kid = row[0]
            self.ids[name] = kid
            self.names[kid] = name
        return kid

    def name(self, kid: int) -> str:
        name = self.names.get(kid)
        if name is None:
            name = self.con.execute("SELECT name FROM keys WHERE id=?", (kid,)).fetchone()[0]
            self.names[kid] = name
            self.ids[name] = kid
        return name


def ordered_or_last_wins(
    steps: list[np.ndarray], values: list[np.ndarray], first: bool
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`last_wins` over numeric chunks, skipping its sort in the usual case of chunks that follow each
    other in step order without overlap (then there is nothing to choose between)."""
    s = np.concatenate(steps) if len(steps) > 1 else steps[0]
    if len(s) < 2 or bool(np.all(s[1:] > s[:-1])):
        return s, (np.concatenate(values) if len(values) > 1 else values[0])
    return last_wins(steps, values, first=first)


_GROUP_DTYPES = {"step": "<i8", "count": "<i8", "expected": "<i8", "min_rank": "<i8", "max_rank": "<i8"}


def decode_group_chunks(blobs: list[bytes]) -> dict[str, np.ndarray]:
    """Group-row chunks in write order → arrays over steps, the latest revision of each step winning."""
    parts = []
    for blob in blobs:
        d = unpack(blob, {})
        parts.append({f: np.frombuffer(d[f], _GROUP_DTYPES.get(f, "<f8")) for f in GROUP_FIELDS})
    if not parts:
        return {f: np.empty(0, _GROUP_DTYPES.get(f, "<f8")) for f in GROUP_FIELDS}
    steps = np.concatenate([p["step"] for p in parts])
    _, idx = last_wins([steps], [np.arange(len(steps))])
    return {f: np.concatenate([p[f] for p in parts])[idx] for f in GROUP_FIELDS}
