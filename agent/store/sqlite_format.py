"""The SQLite store's file format: schema, value encodings, connections, key ids.

History is columnar: a row of ``history`` holds one key's values for the steps
of one agent commit (steps and values as little-endian arrays), so a million
points a second is a few hundred inserts, not a million. Group rows are stored
the same way, one chunk per key and commit, revisions appended (the latest
revision of a step wins on read). The writer (:mod:`agent.store.sqlite`) and the
readers (:mod:`agent.store.sqlite_reader`) share what is here.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from agent.errors import StoreError
from agent.ratelimit import SPAN_FIELDS, pack_spans, unpack_spans
from agent.store.base import GROUP_FIELDS, RunRecord, last_wins
from agent.store.sqlite_errors import map_exceptions
from grouping import numeric_entries

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
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL,
    run_id INTEGER,
    rank INTEGER,
    kind TEXT NOT NULL,
    key TEXT,
    step INTEGER,
    time REAL NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    details TEXT NOT NULL,
    token TEXT NOT NULL
);
-- one alert per identity (agent/alerts/alert.py): NULL rank or key compare equal here through IFNULL
CREATE UNIQUE INDEX IF NOT EXISTS alerts_identity
    ON alerts (group_id, kind, IFNULL(rank, -1), IFNULL(key, ''), token);
"""
# system samples (agent/store/system_chunks.py): one chunk per commit and rank (run_id) or node (run_id NULL:
# host rows, stored under each group the node ran ranks of); data = msgpack {key: little-endian float64}
SCHEMA += """
CREATE TABLE IF NOT EXISTS system (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL,
    run_id INTEGER,
    node TEXT NOT NULL,
    t_min REAL NOT NULL,
    t_max REAL NOT NULL,
    n INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS system_run ON system (run_id);
CREATE INDEX IF NOT EXISTS system_group ON system (group_id, node);
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
    if values and all(type(v) is bool for v in values):  # bools the agent kept as objects (agent/apply.py)
        return "b1", np.asarray(values, dtype="?").tobytes()
    return "mp", pack(list(values))


def decode_values(enc: str, blob: bytes) -> np.ndarray | list:
    """Values of a chunk; a coalesced span reads as its last value (the value logged at its step).

    Bools read as an object array of Python bools: joined with a chunk of other numbers of the same key
    (``last_wins`` concatenates), they stay bools instead of becoming 1.0 (wandb keeps them)."""
    dtype = _NUMERIC.get(enc)
    if dtype is not None:
        values = np.frombuffer(blob, dtype=dtype)
        return values.astype(object) if enc == "b1" else values
    if enc == "span":
        return unpack_spans(blob, len(blob) // SPAN_BYTES)["last"]
    return unpack(blob, [])


def float_values(enc: str, blob: bytes) -> np.ndarray:
    dtype = _NUMERIC.get(enc)
    if dtype is not None:  # numbers for group rows and charts: a bool is 0/1
        return np.frombuffer(blob, dtype=dtype).astype(np.float64, copy=False)
    return np.asarray(decode_values(enc, blob)).astype(np.float64, copy=False)


def numeric_chunk(enc: str, sblob: bytes, vblob: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, float64 values) of the numbers of a history chunk, for group rows and charts: a numeric chunk
    whole, a list chunk ("mp": a key that had a string or None in that commit) by its numbers
    (grouping/numbers.py); None for a chunk without numbers."""
    steps = np.frombuffer(sblob, "<i8")
    if enc in NUMERIC_LIKE:
        return steps, float_values(enc, vblob)
    if enc != "mp":
        return None
    where, numbers = numeric_entries(unpack(vblob, []))
    return (steps[where], numbers) if len(where) else None


def run_record(row: tuple) -> RunRecord:
    (rid, gid, name, key, rank, lrank, node, pid, state, created, updated, code, fin, step, rt, rows, late, inc) = row[
        :18
    ]
    return RunRecord(
        rid,
        gid,
        name,
        key,
        rank,
        lrank,
        node,
        pid,
        state,
        created,
        updated,
        code,
        fin,
        step,
        rt,
        rows,
        late,
        inc,
        unpack(row[18], {}),
        unpack(row[19], {}),
        unpack(row[20], None),
        unpack(row[21], {}),
    )


def connect(path: Path, readonly: bool) -> sqlite3.Connection:
    with map_exceptions(f"cannot open store {path}"):
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


class KeyIds:
    """Key name ↔ id, cached (keys never change id once committed).

    The writer creates ids inside its transactions: :meth:`ensure` registers every new name of a commit with
    one statement, and the names it learns stay *tentative* until :meth:`committed`. A transaction that
    rolls back (disk full, a lost store) calls :meth:`rolled_back`, which forgets them: an id SQLite handed
    out in a rolled-back transaction is handed out again to another key, and a cached copy would file the
    first key's values under the second's id."""

    def __init__(self, con: sqlite3.Connection):
        self.con = con
        self.ids: dict[str, int] = {}
        self.names: dict[int, str] = {}
        self._tentative: list[str] = []  # names cached since the current transaction began

    def __repr__(self) -> str:
        return f"<KeyIds cached={len(self.ids)} tentative={len(self._tentative)}>"

    def _cache(self, name: str, kid: int) -> None:
        self.ids[name] = kid
        self.names[kid] = name
        if self.con.in_transaction:
            self._tentative.append(name)

    def ensure(self, names: Any) -> None:
        """Make sure every name has an id: one INSERT and one SELECT for all the names not cached yet,
        however many (a row of 100k keys is two statements, not 200k)."""
        todo = list(dict.fromkeys(n for n in names if n not in self.ids))
        if not todo:
            return
        blob = json.dumps(todo, ensure_ascii=False)
        try:
            self.con.execute("INSERT OR IGNORE INTO keys(name) SELECT value FROM json_each(?)", (blob,))
            found = self.con.execute(
                "SELECT id, name FROM keys WHERE name IN (SELECT value FROM json_each(?))", (blob,)
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "json_each" not in str(exc):
                raise
            # an SQLite built without JSON functions (before 3.38, optional): one prepared statement, many rows
            self.con.executemany("INSERT OR IGNORE INTO keys(name) VALUES (?)", [(n,) for n in todo])
            found = [(self.con.execute("SELECT id FROM keys WHERE name=?", (n,)).fetchone()[0], n) for n in todo]
        for kid, name in found:
            self._cache(name, kid)

    def id(self, name: str, create: bool = True) -> int | None:
        kid = self.ids.get(name)
        if kid is None:
            if create:
                self.ensure((name,))
                return self.ids[name]
            row = self.con.execute("SELECT id FROM keys WHERE name=?", (name,)).fetchone()
            if row is None:
                return None
            kid = row[0]
            self._cache(name, kid)
        return kid

    def name(self, kid: int) -> str:
        name = self.names.get(kid)
        if name is None:
            row = self.con.execute("SELECT name FROM keys WHERE id=?", (kid,)).fetchone()
            if row is None:
                raise StoreError(f"key id {kid} is not in the store's key table (a damaged store?)")
            name = row[0]
            self._cache(name, kid)
        return name

    def committed(self) -> None:
        self._tentative = []

    def rolled_back(self) -> None:
        """Forget what the rolled-back transaction taught us (ids that may not exist, or may be reused)."""
        for name in self._tentative:
            kid = self.ids.pop(name, None)
            if kid is not None:
                self.names.pop(kid, None)
        self._tentative = []


def ordered_or_last_wins(
    steps: list[np.ndarray], values: list[np.ndarray], first: bool
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`last_wins` over numeric chunks, skipping its sort in the usual case of chunks that follow each
    other in step order without overlap (then there is nothing to choose between)."""
    s = np.concatenate(steps) if len(steps) > 1 else steps[0]
    if len(s) < 2 or bool(np.all(s[1:] > s[:-1])):
        return s, (np.concatenate(values) if len(values) > 1 else values[0])
    return last_wins(steps, values, first=first)


_GROUP_DTYPES = {
    "step": "<i8",
    "count": "<i8",
    "expected": "<i8",
    "min_rank": "<i8",
    "max_rank": "<i8",
    "nan_count": "<i8",
    "nan_rank": "<i8",
}
# Fields group-row chunks written before them do not hold, and the value they mean there (those rows were
# reduced before non-finite values were counted apart).
_GROUP_DEFAULTS = {"nan_count": 0, "nan_rank": -1}


def _group_field(d: dict, f: str, n: int) -> np.ndarray:
    raw = d.get(f)
    if raw is None and f in _GROUP_DEFAULTS:
        return np.full(n, _GROUP_DEFAULTS[f], _GROUP_DTYPES[f])
    return np.frombuffer(raw, _GROUP_DTYPES.get(f, "<f8"))


def decode_group_chunks(blobs: list[bytes]) -> dict[str, np.ndarray]:
    """Group-row chunks in write order → arrays over steps, the latest revision of each step winning.
    A chunk written before nan_count/nan_rank existed reads as nan_count 0 and nan_rank -1."""
    parts = []
    for blob in blobs:
        d = unpack(blob, {})
        n = len(d["step"]) // 8
        parts.append({f: _group_field(d, f, n) for f in GROUP_FIELDS})
    if not parts:
        return {f: np.empty(0, _GROUP_DTYPES.get(f, "<f8")) for f in GROUP_FIELDS}
    steps = np.concatenate([p["step"] for p in parts])
    _, idx = last_wins([steps], [np.arange(len(steps))])
    return {f: np.concatenate([p[f] for p in parts])[idx] for f in GROUP_FIELDS}
