"""The embedded store: one SQLite file in WAL mode.

History is columnar: a row of ``history`` holds one key's values for the steps
of one agent commit (steps and values as little-endian arrays), so a million
points a second is a few hundred inserts, not a million. ``synchronous=NORMAL``
in WAL mode makes commits cheap and durable against process crashes; a power
failure can lose the last commits (documented in the README). Readers (Api, CLI,
UI) open their own connections and never block the agent.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import msgpack
import numpy as np

from agent.errors import SchemaError, StoreError
from agent.ratelimit import SPAN_FIELDS, pack_spans, unpack_spans
from agent.store.base import (
    GROUP_FIELDS, META_KEYS, ROW_KEYS, GroupRecord, Reader, RunRecord, Store, Txn, last_wins, select_steps,
)  # fmt: skip

SCHEMA_VERSION = 1

_SCHEMA = """
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
_NUMERIC_LIKE = frozenset(_NUMERIC) | {"span"}  # encodings whose values are numbers
SPAN_BYTES = 8 * len(SPAN_FIELDS)  # one coalesced span: six 8-byte fields
_RUN_COLUMNS = (
    "id, group_id, name, run_key, rank, local_rank, node, pid, state, created, updated, exit_code, finished, "
    "step, runtime, rows, late, incarnations, summary, config, pending, meta"
)


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _unpack(blob: bytes | None, default: Any) -> Any:
    return default if blob is None else msgpack.unpackb(blob, raw=False, strict_map_key=False)


def _encode_values(values: np.ndarray | list | dict) -> tuple[str, bytes]:
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
    return "mp", _pack(list(values))


def _decode_values(enc: str, blob: bytes) -> np.ndarray | list:
    """Values of a chunk; a coalesced span reads as its last value (the value logged at its step)."""
    dtype = _NUMERIC.get(enc)
    if dtype is not None:
        return np.frombuffer(blob, dtype=dtype)
    if enc == "span":
        return unpack_spans(blob, len(blob) // SPAN_BYTES)["last"]
    return _unpack(blob, [])


def _float_values(enc: str, blob: bytes) -> np.ndarray:
    return np.asarray(_decode_values(enc, blob)).astype(np.float64, copy=False)


def _run(row: tuple) -> RunRecord:
    (rid, gid, name, key, rank, lrank, node, pid, state, created, updated, code, fin, step, rt, rows, late, inc) = row[:18]
    return RunRecord(
        rid, gid, name, key, rank, lrank, node, pid, state, created, updated, code, fin, step, rt, rows, late, inc,
        _unpack(row[18], {}), _unpack(row[19], {}), _unpack(row[20], None), _unpack(row[21], {}),
    )  # fmt: skip


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
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


class _KeyIds:
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


class _SQLiteTxn(Txn):
    def __init__(self, con: sqlite3.Connection, keys: _KeyIds):
        self.con = con
        self.keys = keys
        self.history: list[tuple] = []
        self.group_rows: list[tuple] = []

    def add_history(self, run_id: int, key: str, steps: np.ndarray, values: np.ndarray | list, late: bool) -> None:
        if len(steps) == 0:
            return
        enc, blob = _encode_values(values)
        steps = steps.astype("<i8", copy=False)
        self.history.append(
            (run_id, self.keys.id(key), int(steps.min()), int(steps.max()), len(steps), int(late), enc,
             steps.tobytes(), blob)
        )  # fmt: skip

    def add_group_rows(self, group_id: int, key: str, rows: dict[str, np.ndarray], revision: bool) -> None:
        steps = rows["step"]
        if len(steps) == 0:
            return
        data = _pack({f: np.ascontiguousarray(rows[f]).tobytes() for f in GROUP_FIELDS})
        self.group_rows.append(
            (group_id, self.keys.id(key), int(steps.min()), int(steps.max()), len(steps), int(revision), data)
        )

    def _flush(self) -> None:
        if self.history:
            self.con.executemany(
                "INSERT INTO history(run_id, key_id, step_min, step_max, n, late, enc, steps, vals) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                self.history,
            )
            self.history = []
        if self.group_rows:
            self.con.executemany(
                "INSERT INTO group_rows(group_id, key_id, step_min, step_max, n, revision, data) VALUES (?,?,?,?,?,?,?)",
                self.group_rows,
            )
            self.group_rows = []

    def put_run(self, r: RunRecord) -> None:
        self.con.execute(
            "UPDATE runs SET pid=?, state=?, exit_code=?, updated=?, finished=?, step=?, runtime=?, rows=?, late=?, "
            "incarnations=?, summary=?, config=?, pending=?, meta=?, node=?, local_rank=? WHERE id=?",
            (r.pid, r.state, r.exit_code, r.updated, r.finished, r.step, r.runtime, r.rows, r.late, r.incarnations,
             _pack(r.summary), _pack(r.config), None if r.pending is None else _pack(r.pending), _pack(r.meta),
             r.node, r.local_rank, r.id),
        )  # fmt: skip

    def put_group(self, g: GroupRecord) -> None:
        self.con.execute(
            "UPDATE groups SET world_size=?, updated=?, sealed_through=?, late_rows=? WHERE id=?",
            (g.world_size, g.updated, g.sealed_through, g.late_rows, g.id),
        )

    def put_writer(self, writer: str, run_id: int, seq: int) -> None:
        self.con.execute(
            "INSERT INTO writers(writer, run_id, seq) VALUES (?,?,?) "
            "ON CONFLICT(writer) DO UPDATE SET seq=excluded.seq",
            (writer, run_id, seq),
        )

    def count_drop(self, cause: str, n: int) -> None:
        self.con.execute(
            "INSERT INTO drops(cause, n) VALUES (?,?) ON CONFLICT(cause) DO UPDATE SET n = n + excluded.n", (cause, n)
        )

    def rank_values(self, group_id: int, key: str, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._flush()
        kid = self.keys.id(key, create=False)
        empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
        if kid is None or len(steps) == 0:
            return empty
        rows = self.con.execute(
            "SELECT h.run_id, r.rank, h.enc, h.steps, h.vals FROM history h JOIN runs r ON r.id = h.run_id "
            "WHERE r.group_id=? AND h.key_id=? AND h.step_max >= ? AND h.step_min <= ? ORDER BY h.id",
            (group_id, kid, int(steps.min()), int(steps.max())),
        ).fetchall()
        per_run: dict[int, tuple[int, list, list]] = {}
        for run_id, rank, enc, sblob, vblob in rows:
            if enc not in _NUMERIC_LIKE:
                continue
            entry = per_run.setdefault(run_id, (rank, [], []))
            entry[1].append(np.frombuffer(sblob, "<i8"))
            entry[2].append(_float_values(enc, vblob))
        out_s, out_r, out_v = [], [], []
        for rank, s_list, v_list in per_run.values():
            s, v = last_wins(s_list, v_list)
            mask = np.isin(s, steps)
            out_s.append(s[mask])
            out_r.append(np.full(int(mask.sum()), rank, np.int64))
            out_v.append(np.asarray(v)[mask])
        if not out_s:
            return empty
        return np.concatenate(out_s), np.concatenate(out_r), np.concatenate(out_v)


class SQLiteStore(Store):
    """Write side; one per agent. Not thread-safe: the agent's loop is its only user."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = _connect(self.path, readonly=False)
        try:
            self.con.executescript(_SCHEMA)
            row = self.con.execute("SELECT v FROM meta WHERE k='schema_version'").fetchone()
            if row is None:
                self.con.execute("INSERT INTO meta(k, v) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise SchemaError(
                    f"store {self.path} has schema version {row[0]}, this rankwise writes {SCHEMA_VERSION}; "
                    "use another RANKWISE_DIR or upgrade rankwise"
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot initialise store {self.path}: {exc}") from exc
        self.keys = _KeyIds(self.con)
        self.commits = 0

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path} commits={self.commits}>"

    def register(self, project: str, group: str, world_size: int, run: dict[str, Any], now: float):
        with self._txn():
            row = self.con.execute(
                "SELECT id, project, name, world_size, created, updated, sealed_through, late_rows FROM groups "
                "WHERE project=? AND name=?",
                (project, group),
            ).fetchone()
            if row is None:
                gid = self.con.execute(
                    "INSERT INTO groups(project, name, world_size, created, updated) VALUES (?,?,?,?,?)",
                    (project, group, world_size, now, now),
                ).lastrowid
                g = GroupRecord(gid, project, group, world_size, now, now)
            else:
                g = GroupRecord(*row)
                if world_size > g.world_size:
                    g.world_size = world_size
                    self.con.execute("UPDATE groups SET world_size=? WHERE id=?", (world_size, g.id))
            row = self.con.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE group_id=? AND name=?", (g.id, run["name"])
            ).fetchone()
            if row is not None:
                return g, _run(row), False
            rid = self.con.execute(
                "INSERT INTO runs(group_id, name, run_key, rank, local_rank, node, pid, state, created, updated, "
                "config, meta) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (g.id, run["name"], run["run_key"], run["rank"], run["local_rank"], run["node"], run["pid"],
                 "running", now, now, _pack(run.get("config") or {}), _pack(run.get("meta") or {})),
            ).lastrowid  # fmt: skip
            r = RunRecord(rid, g.id, run["name"], run["run_key"], run["rank"], run["local_rank"], run["node"],
                          run["pid"], "running", now, now, config=dict(run.get("config") or {}),
                          meta=dict(run.get("meta") or {}))  # fmt: skip
            return g, r, True

    def find_run(self, project: str, group: str, name: str) -> RunRecord | None:
        row = self.con.execute(
            f"SELECT {', '.join('r.' + c.strip() for c in _RUN_COLUMNS.split(','))} FROM runs r "
            "JOIN groups g ON g.id = r.group_id WHERE g.project=? AND g.name=? AND r.name=?",
            (project, group, name),
        ).fetchone()
        return None if row is None else _run(row)

    def unsealed_points(self, group_id: int, after_step: int) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
        rows = self.con.execute(
            "SELECT h.run_id, r.rank, h.key_id, h.enc, h.steps, h.vals FROM history h JOIN runs r ON r.id = h.run_id "
            "WHERE r.group_id=? AND h.step_max > ? ORDER BY h.id",
            (group_id, after_step),
        ).fetchall()
        chunks: dict[tuple[int, int, int], tuple[list, list]] = {}
        for run_id, rank, kid, enc, sblob, vblob in rows:
            if enc in _NUMERIC_LIKE:
                entry = chunks.setdefault((run_id, rank, kid), ([], []))
                entry[0].append(np.frombuffer(sblob, "<i8"))
                entry[1].append(_float_values(enc, vblob))
        out = []
        for (_, rank, kid), (s_list, v_list) in chunks.items():
            name = self.keys.name(kid)
            if name in ROW_KEYS:
                continue
            steps, values = last_wins(s_list, v_list)
            keep = steps > after_step
            out.append((name, rank, steps[keep], np.asarray(values)[keep]))
        return out

    def writer_seq(self, writer: str) -> int:
        row = self.con.execute("SELECT seq FROM writers WHERE writer=?", (writer,)).fetchone()
        return 0 if row is None else int(row[0])

    @contextmanager
    def _txn(self) -> Iterator[None]:
        try:
            self.con.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot begin a transaction on {self.path}: {exc}") from exc
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        try:
            self.con.execute("COMMIT")
        except sqlite3.Error as exc:
            self.con.execute("ROLLBACK")
            raise StoreError(f"commit to {self.path} failed: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[Txn]:
        txn = _SQLiteTxn(self.con, self.keys)
        try:
            with self._txn():
                yield txn
                txn._flush()
        except sqlite3.Error as exc:
            raise StoreError(f"write to {self.path} failed: {exc}") from exc
        self.commits += 1

    def open_runs(self) -> list[tuple[GroupRecord, RunRecord]]:
        out = []
        for row in self.con.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE state='running'").fetchall():
            run = _run(row)
            g = self.con.execute(
                "SELECT id, project, name, world_size, created, updated, sealed_through, late_rows FROM groups "
                "WHERE id=?",
                (run.group_id,),
            ).fetchone()
            out.append((GroupRecord(*g), run))
        return out

    def reader(self) -> "SQLiteReader":
        return SQLiteReader(self.path)

    def checkpoint(self) -> None:
        """Copy the WAL into the database file. PASSIVE: never waits for readers."""
        try:
            self.con.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass

    def close(self) -> None:
        try:
            self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self.con.close()


class SQLiteReader(Reader):
    """Read side over its own connection (WAL readers never block the agent's writes)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if not self.path.exists():
            raise StoreError(f"no store at {self.path}; log a run first or pass the right path")
        self.con = _connect(self.path, readonly=True)
        self.keys = _KeyIds(self.con)
        self._lock = threading.Lock()  # the UI server may share one reader between threads

    def __repr__(self) -> str:
        return f"<SQLiteReader {self.path}>"

    def _all(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self.con.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"reading {self.path} failed: {exc}") from exc

    def projects(self) -> list[str]:
        return [r[0] for r in self._all("SELECT DISTINCT project FROM groups ORDER BY project")]

    def groups(self, project: str | None = None) -> list[GroupRecord]:
        cols = "id, project, name, world_size, created, updated, sealed_through, late_rows"
        if project is None:
            rows = self._all(f"SELECT {cols} FROM groups ORDER BY created DESC, id DESC")
        else:
            rows = self._all(f"SELECT {cols} FROM groups WHERE project=? ORDER BY created DESC, id DESC", (project,))
        return [GroupRecord(*r) for r in rows]

    def group(self, project: str, name: str) -> GroupRecord | None:
        rows = self._all(
            "SELECT id, project, name, world_size, created, updated, sealed_through, late_rows FROM groups "
            "WHERE project=? AND name=?",
            (project, name),
        )
        return GroupRecord(*rows[0]) if rows else None

    def runs(self, group_id: int) -> list[RunRecord]:
        return [_run(r) for r in self._all(f"SELECT {_RUN_COLUMNS} FROM runs WHERE group_id=? ORDER BY rank, id", (group_id,))]

    def run_keys(self, run_id: int) -> list[str]:
        rows = self._all("SELECT DISTINCT key_id FROM history WHERE run_id=?", (run_id,))
        with self._lock:
            names = [self.keys.name(r[0]) for r in rows]
        return sorted(n for n in names if n not in ROW_KEYS)

    def run_history(self, run_id: int, keys: list[str] | None = None) -> dict[str, tuple[np.ndarray, Any]]:
        if keys is None:
            rows = self._all("SELECT key_id, enc, steps, vals FROM history WHERE run_id=? ORDER BY id", (run_id,))
        else:
            with self._lock:
                ids = [k for k in (self.keys.id(name, create=False) for name in keys) if k is not None]
            if not ids:
                return {}
            marks = ",".join("?" * len(ids))
            rows = self._all(
                f"SELECT key_id, enc, steps, vals FROM history WHERE run_id=? AND key_id IN ({marks}) ORDER BY id",
                (run_id, *ids),
            )
        chunks: dict[int, tuple[list, list]] = {}
        for kid, enc, sblob, vblob in rows:
            entry = chunks.setdefault(kid, ([], []))
            entry[0].append(np.frombuffer(sblob, "<i8"))
            entry[1].append(_decode_values(enc, vblob))
        with self._lock:
            named = {self.keys.name(kid): sv for kid, sv in chunks.items()}
        return {k: last_wins(s, v, first=k in META_KEYS) for k, (s, v) in named.items()}

    def run_spans(self, run_id: int, keys: list[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
        """Per key, the coalesced spans of a run (``step`` = last step, and ``SPAN_FIELDS``)."""
        rows = self._all("SELECT id, key_id, steps, vals FROM history WHERE run_id=? AND enc='span'", (run_id,))
        rows.sort(key=lambda r: r[0])
        parts: dict[str, list[dict]] = {}
        with self._lock:
            for _, kid, sblob, vblob in rows:
                name = self.keys.name(kid)
                if keys is None or name in keys:
                    spans = dict(unpack_spans(vblob, len(vblob) // SPAN_BYTES), step=np.frombuffer(sblob, "<i8"))
                    parts.setdefault(name, []).append(spans)
        return {k: {f: np.concatenate([p[f] for p in v]) for f in v[0]} for k, v in parts.items()}

    def group_keys(self, group_id: int) -> list[str]:
        rows = self._all("SELECT DISTINCT key_id FROM group_rows WHERE group_id=?", (group_id,))
        with self._lock:
            return sorted(self.keys.name(r[0]) for r in rows)

    def group_history(self, group_id: int, key: str) -> dict[str, np.ndarray]:
        with self._lock:
            kid = self.keys.id(key, create=False)
        if kid is None:
            return {f: np.empty(0) for f in GROUP_FIELDS}
        # sorting ids in Python: ORDER BY would make SQLite copy every blob through a temporary sort
        rows = self._all("SELECT id, data FROM group_rows WHERE group_id=? AND key_id=?", (group_id, kid))
        rows.sort(key=lambda r: r[0])
        return decode_group_chunks([r[1] for r in rows])

    def drops(self) -> dict[str, int]:
        return dict(self._all("SELECT cause, n FROM drops"))

    def use_mmap(self, nbytes: int) -> None:
        """Read the file through a memory map of up to ``nbytes`` (a long-lived reader such as the web UI:
        history blobs span overflow pages, and a read per page is several times slower than a map)."""
        with self._lock:
            self.con.execute(f"PRAGMA mmap_size={int(nbytes)}")

    def group_key_stats(self, group_id: int) -> dict[str, tuple[int, int, int]]:
        rows = self._all(
            "SELECT key_id, SUM(CASE WHEN revision=0 THEN n ELSE 0 END), MIN(step_min), MAX(step_max) "
            "FROM group_rows WHERE group_id=? GROUP BY key_id",
            (group_id,),
        )
        with self._lock:
            return {self.keys.name(kid): (int(n), int(lo), int(hi)) for kid, n, lo, hi in rows}

    def group_history_since(self, group_id: int, key: str, after: int = 0) -> tuple[int, dict[str, np.ndarray]]:
        with self._lock:
            kid = self.keys.id(key, create=False)
        # no ORDER BY: sorting in SQLite would copy every blob through a temporary b-tree; a few hundred
        # (id, blob) tuples sort in Python for free
        rows = [] if kid is None else self._all(
            "SELECT id, data FROM group_rows WHERE group_id=? AND key_id=? AND id>?", (group_id, kid, after)
        )  # fmt: skip
        rows.sort(key=lambda r: r[0])
        return (rows[-1][0] if rows else after), decode_group_chunks([r[1] for r in rows])

    def group_rank_history(
        self, group_id: int, key: str, after: int = 0
    ) -> tuple[int, dict[int, tuple[np.ndarray, np.ndarray]]]:
        with self._lock:
            kid = self.keys.id(key, create=False)
        if kid is None:
            return after, {}
        rows = self._all(
            "SELECT h.id, h.run_id, h.enc, h.steps, h.vals FROM history h JOIN runs r ON r.id = h.run_id "
            "WHERE r.group_id=? AND h.key_id=? AND h.id>?",
            (group_id, kid, after),
        )
        rows.sort(key=lambda r: r[0])
        chunks: dict[int, tuple[list, list]] = {}
        for _, run_id, enc, sblob, vblob in rows:
            if enc in _NUMERIC_LIKE:
                entry = chunks.setdefault(run_id, ([], []))
                entry[0].append(np.frombuffer(sblob, "<i8"))
                entry[1].append(_float_values(enc, vblob))
        first = key in META_KEYS
        out = {run_id: _ordered_or_last_wins(s, v, first) for run_id, (s, v) in chunks.items()}
        return (rows[-1][0] if rows else after), out

    # ---------------------------------------------------------------- values of one key, by step
    # (media views: the steps blob is read without the values; values only of the chunks holding wanted steps)

    def _key_id(self, key: str) -> int | None:
        with self._lock:
            return self.keys.id(key, create=False)

    def group_value_steps(self, group_id: int, key: str) -> dict[int, np.ndarray]:
        kid = self._key_id(key)
        if kid is None:
            return {}
        rows = self._all(
            "SELECT h.run_id, h.steps FROM history h JOIN runs r ON r.id = h.run_id WHERE r.group_id=? AND h.key_id=?",
            (group_id, kid),
        )
        parts: dict[int, list[np.ndarray]] = {}
        for run_id, sblob in rows:
            parts.setdefault(run_id, []).append(np.frombuffer(sblob, "<i8"))
        return {rid: np.unique(np.concatenate(p)) for rid, p in parts.items()}

    def _values(self, where: str, args: tuple, key: str, steps: np.ndarray | None, start: int | None,
                end: int | None) -> dict[int, tuple[np.ndarray, list]]:  # fmt: skip
        kid = self._key_id(key)
        if kid is None:
            return {}
        sql = f"SELECT h.id, h.run_id, h.steps FROM history h {where} AND h.key_id=?"
        args = (*args, kid)
        if start is not None:
            sql, args = sql + " AND h.step_max >= ?", (*args, int(start))
        if end is not None:
            sql, args = sql + " AND h.step_min <= ?", (*args, int(end))
        want = None if steps is None else np.asarray(steps, np.int64)
        if want is not None and len(want) == 0:
            return {}
        if want is not None:
            sql, args = sql + " AND h.step_max >= ? AND h.step_min <= ?", (*args, int(want.min()), int(want.max()))
        chunks = []
        for cid, run_id, sblob in self._all(sql, args):
            s = np.frombuffer(sblob, "<i8")
            if want is None or np.isin(s, want).any():
                chunks.append((cid, run_id, s))
        chunks.sort(key=lambda c: c[0])
        blobs: dict[int, tuple[str, bytes]] = {}
        ids = [c[0] for c in chunks]
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ",".join("?" * len(part))
            for cid, enc, vblob in self._all(f"SELECT id, enc, vals FROM history WHERE id IN ({marks})", tuple(part)):
                blobs[cid] = (enc, vblob)
        per_run: dict[int, tuple[list, list]] = {}
        for cid, run_id, s in chunks:
            enc, vblob = blobs[cid]
            entry = per_run.setdefault(run_id, ([], []))
            entry[0].append(s)
            entry[1].append(_decode_values(enc, vblob))
        out = {}
        for run_id, (s_list, v_list) in per_run.items():
            st, vals = last_wins(s_list, v_list, first=key in META_KEYS)
            st, vals = select_steps(st, vals, want, start, end)
            if len(st):
                out[run_id] = (st, vals)
        return out

    def group_values(self, group_id: int, key: str, steps: np.ndarray | None = None, start: int | None = None,
                     end: int | None = None) -> dict[int, tuple[np.ndarray, list]]:  # fmt: skip
        return self._values("JOIN runs r ON r.id = h.run_id WHERE r.group_id=?", (group_id,), key, steps, start, end)

    def run_values(self, run_id: int, key: str, steps: np.ndarray | None = None, start: int | None = None,
                   end: int | None = None) -> tuple[np.ndarray, list]:  # fmt: skip
        out = self._values("WHERE h.run_id=?", (run_id,), key, steps, start, end)
        return out.get(run_id, (np.empty(0, np.int64), []))

    def group_media_keys(self, group_id: int) -> dict[str, dict[str, Any]]:
        rows = self._all(
            "SELECT h.key_id, COUNT(DISTINCT h.run_id), MIN(h.step_min), MAX(h.step_max) "
            "FROM history h JOIN runs r ON r.id = h.run_id WHERE r.group_id=? AND h.enc='mp' GROUP BY h.key_id",
            (group_id,),
        )
        out: dict[str, dict[str, Any]] = {}
        for kid, runs, lo, hi in rows:
            # the sample: the value at the key's highest step, from the latest chunk holding it (only its id is
            # sorted; the one chunk is read after)
            top = self._all(
                "SELECT h.id FROM history h JOIN runs r ON r.id = h.run_id WHERE r.group_id=? AND h.key_id=? "
                "AND h.enc='mp' AND h.step_max=? ORDER BY h.id DESC LIMIT 1",
                (group_id, kid, hi),
            )
            sample = None
            if top:
                sblob, vblob = self._all("SELECT steps, vals FROM history WHERE id=?", (top[0][0],))[0]
                steps, values = np.frombuffer(sblob, "<i8"), _unpack(vblob, [])
                at = np.flatnonzero(steps == hi)
                sample = values[int(at[-1])] if len(at) and len(values) == len(steps) else None
            with self._lock:
                name = self.keys.name(kid)
            out[name] = {"runs": int(runs), "first": int(lo), "last": int(hi), "sample": sample}
        return out

    def close(self) -> None:
        self.con.close()


def _ordered_or_last_wins(
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
        d = _unpack(blob, {})
        parts.append({f: np.frombuffer(d[f], _GROUP_DTYPES.get(f, "<f8")) for f in GROUP_FIELDS})
    if not parts:
        return {f: np.empty(0, _GROUP_DTYPES.get(f, "<f8")) for f in GROUP_FIELDS}
    steps = np.concatenate([p["step"] for p in parts])
    _, idx = last_wins([steps], [np.arange(len(steps))])
    return {f: np.concatenate([p[f] for p in parts])[idx] for f in GROUP_FIELDS}
