"""The embedded store's write side: one SQLite file in WAL mode, written by the agent alone.

``synchronous=NORMAL`` in WAL mode makes commits cheap and durable against
process crashes; a power failure can lose the last commits (documented in the
README). Readers (Api, CLI, UI) open their own connections
(:class:`agent.store.sqlite_reader.SQLiteReader`) and never block the agent.
The file format is in :mod:`agent.store.sqlite_format`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from agent.errors import SchemaError, StoreError, StoreLost
from agent.fsync import fsync_path
from agent.store.base import (
    GROUP_FIELDS, LOST, ROW_KEYS, GroupRecord, RunRecord, Store, Txn, last_wins, store_problem,
)  # fmt: skip
from agent.store.sqlite_format import (
    RUN_COLUMNS, SCHEMA, SCHEMA_VERSION, KeyIds, connect, encode_values, numeric_chunk, pack, run_record,
)  # fmt: skip

if TYPE_CHECKING:
    from agent.store.sqlite_reader import SQLiteReader

log = logging.getLogger("rankwise.agent")
_HEADER = b"SQLite format 3\x00"


class _SQLiteTxn(Txn):
    def __init__(self, con: sqlite3.Connection, keys: KeyIds):
        self.con = con
        self.keys = keys
        self.history: list[tuple] = []
        self.group_rows: list[tuple] = []

    def add_history(self, run_id: int, key: str, steps: np.ndarray, values: np.ndarray | list, late: bool) -> None:
        if len(steps) == 0:
            return
        enc, blob = encode_values(values)
        steps = steps.astype("<i8", copy=False)
        self.history.append(
            (run_id, key, int(steps.min()), int(steps.max()), len(steps), int(late), enc, steps.tobytes(), blob)
        )

    def add_group_rows(self, group_id: int, key: str, rows: dict[str, np.ndarray], revision: bool) -> None:
        steps = rows["step"]
        if len(steps) == 0:
            return
        data = pack({f: np.ascontiguousarray(rows[f]).tobytes() for f in GROUP_FIELDS})
        self.group_rows.append(
            (group_id, key, int(steps.min()), int(steps.max()), len(steps), int(revision), data)
        )

    def _flush(self) -> None:
        """Write the chunks gathered so far. Their keys get ids here, every new key of the commit in one
        statement (KeyIds.ensure): a row of 100k new keys is not 100k INSERTs."""
        if not self.history and not self.group_rows:
            return
        self.keys.ensure({row[1] for row in self.history} | {row[1] for row in self.group_rows})
        ids = self.keys.ids
        self.history = [(r[0], ids[r[1]], *r[2:]) for r in self.history]
        self.group_rows = [(r[0], ids[r[1]], *r[2:]) for r in self.group_rows]
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
             pack(r.summary), pack(r.config), None if r.pending is None else pack(r.pending), pack(r.meta),
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
            chunk = numeric_chunk(enc, sblob, vblob)
            if chunk is None:
                continue
            entry = per_run.setdefault(run_id, (rank, [], []))
            entry[1].append(chunk[0])
            entry[2].append(chunk[1])
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


WAL_KEEP_BYTES = 4 << 20  # a WAL emptied by a checkpoint is cut back to this size (journal_size_limit)


class SQLiteStore(Store):
    """Write side; one per agent. Not thread-safe: the agent's loop is its only user.

    Every transaction first checks that the file at ``path`` is still the one this store opened (same
    device and inode) and still starts with SQLite's header, and checks the inode again after COMMIT: a
    store deleted, replaced or overwritten under the agent raises :class:`StoreLost` instead of taking
    rows (and the ACKs that follow them) into an unlinked or damaged file. The agent then calls
    :meth:`reset`. A store found damaged when the agent starts is moved aside the same way."""

    def __init__(self, path: Path | str, wal_max_bytes: int = 64 << 20):
        self.path = Path(path)
        self.wal_max_bytes = int(wal_max_bytes)
        self._wal = self.path.with_name(self.path.name + "-wal")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.commits = 0
        self.resets = 0
        self.moved_aside: list[str] = []
        self._fd = -1
        self._half_open = False  # a reset whose fresh store could not be opened (retried at the next commit)
        try:
            self._open()
        except StoreError as exc:
            if isinstance(exc, SchemaError) or store_problem(exc)[0] != LOST:
                raise
            moved = self._move_aside()
            log.error("store %s is damaged (%s): moved it to %s, starting a fresh store", self.path, exc, moved)
            self._open()

    def _open(self) -> None:
        self.con = connect(self.path, readonly=False)
        try:
            self.con.executescript(SCHEMA)
            # a WAL that a checkpoint emptied is cut back to this size when it restarts (it never shrinks
            # otherwise): its space returns to the filesystem, which a nearly full disk needs
            self.con.execute(f"PRAGMA journal_size_limit={min(self.wal_max_bytes, WAL_KEEP_BYTES)}")
            row = self.con.execute("SELECT v FROM meta WHERE k='schema_version'").fetchone()
            if row is None:
                self.con.execute("INSERT INTO meta(k, v) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise SchemaError(
                    f"store {self.path} has schema version {row[0]}, this rankwise writes {SCHEMA_VERSION}; "
                    "use another RANKWISE_DIR or upgrade rankwise"
                )
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            st = os.fstat(self._fd)
        except (sqlite3.Error, OSError) as exc:
            self.con.close()
            raise StoreError(f"cannot initialise store {self.path}: {exc}") from exc
        except BaseException:
            self.con.close()
            raise
        self._ident = (st.st_dev, st.st_ino)
        self.keys = KeyIds(self.con)
        self._dir_synced = False

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path} commits={self.commits} resets={self.resets}>"

    def check(self) -> None:
        """Raise :class:`StoreLost` if the file at ``path`` is no longer this store's, or not SQLite's."""
        if self._fd < 0:
            raise StoreLost(f"store {self.path} could not be started afresh after it was lost")
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise StoreLost(f"store {self.path} was deleted while the agent was writing it") from None
        except OSError as exc:
            raise StoreError(f"cannot stat store {self.path}: {exc}") from exc
        if (st.st_dev, st.st_ino) != self._ident:
            raise StoreLost(f"store {self.path} was replaced by another file while the agent was writing it")
        head = os.pread(self._fd, len(_HEADER), 0)
        if head and head != _HEADER:
            raise StoreLost(f"store {self.path} is damaged: its first bytes are not an SQLite header")

    def reset(self, why: str) -> str | None:
        """Close the lost store, move whatever is left of it aside (``store.sqlite.corrupt-<UTC time>``, with
        its -wal and -shm) and start an empty store at ``path``. Returns the moved main file's path."""
        try:
            self.con.close()
        except sqlite3.Error:
            pass
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._half_open:  # what a failed earlier attempt created is nobody's data: no pile of moved files
            moved = None
            for suffix in ("", "-wal", "-shm"):
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
        else:
            moved = self._move_aside()
        self.resets += 1
        self._half_open = True
        self._open()
        self._half_open = False
        return moved

    def _move_aside(self) -> str | None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        name = f"{self.path.name}.corrupt-{stamp}"
        n = 1
        while any(self.path.with_name(name + s).exists() for s in ("", "-wal", "-shm")):
            n += 1
            name = f"{self.path.name}.corrupt-{stamp}-{n}"
        moved = None
        for suffix in ("", "-wal", "-shm"):  # an old -wal must never meet the fresh file
            try:
                os.replace(self.path.with_name(self.path.name + suffix), self.path.with_name(name + suffix))
            except FileNotFoundError:
                continue
            if not suffix:
                moved = str(self.path.with_name(name))
        if moved:
            self.moved_aside.append(moved)
        return moved

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
                f"SELECT {RUN_COLUMNS} FROM runs WHERE group_id=? AND name=?", (g.id, run["name"])
            ).fetchone()
            if row is not None:
                return g, run_record(row), False
            rid = self.con.execute(
                "INSERT INTO runs(group_id, name, run_key, rank, local_rank, node, pid, state, created, updated, "
                "config, meta) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (g.id, run["name"], run["run_key"], run["rank"], run["local_rank"], run["node"], run["pid"],
                 "running", now, now, pack(run.get("config") or {}), pack(run.get("meta") or {})),
            ).lastrowid  # fmt: skip
            r = RunRecord(rid, g.id, run["name"], run["run_key"], run["rank"], run["local_rank"], run["node"],
                          run["pid"], "running", now, now, config=dict(run.get("config") or {}),
                          meta=dict(run.get("meta") or {}))  # fmt: skip
            return g, r, True

    def find_run(self, project: str, group: str, name: str) -> RunRecord | None:
        row = self.con.execute(
            f"SELECT {', '.join('r.' + c.strip() for c in RUN_COLUMNS.split(','))} FROM runs r "
            "JOIN groups g ON g.id = r.group_id WHERE g.project=? AND g.name=? AND r.name=?",
            (project, group, name),
        ).fetchone()
        return None if row is None else run_record(row)

    def unsealed_points(self, group_id: int, after_step: int) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
        rows = self.con.execute(
            "SELECT h.run_id, r.rank, h.key_id, h.enc, h.steps, h.vals FROM history h JOIN runs r ON r.id = h.run_id "
            "WHERE r.group_id=? AND h.step_max > ? ORDER BY h.id",
            (group_id, after_step),
        ).fetchall()
        chunks: dict[tuple[int, int, int], tuple[list, list]] = {}
        for run_id, rank, kid, enc, sblob, vblob in rows:
            chunk = numeric_chunk(enc, sblob, vblob)
            if chunk is not None:
                entry = chunks.setdefault((run_id, rank, kid), ([], []))
                entry[0].append(chunk[0])
                entry[1].append(chunk[1])
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

    def _error(self, what: str, exc: sqlite3.Error) -> StoreError:
        kind = StoreLost if store_problem(exc)[0] == LOST else StoreError
        return kind(f"{what} {self.path} failed: {exc}")

    def _rollback(self) -> None:
        """Undo a failed transaction. SQLite may have rolled it back already (a COMMIT or INSERT that hit a
        full disk does): a ROLLBACK then fails with "no transaction is active" and would hide the real
        error, so it is skipped; a ROLLBACK that fails anyway is logged, never raised over the cause."""
        if not self.con.in_transaction:
            return
        try:
            self.con.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.warning("rollback on %s failed after a failed transaction: %s", self.path, exc)

    @contextmanager
    def _txn(self) -> Iterator[None]:
        """One write transaction. The key-id cache follows it: ids learnt inside are forgotten if it rolls
        back (SQLite hands the same ids out again), kept once it committed."""
        self.check()
        try:
            self.con.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._error("begin a transaction on", exc) from exc
        try:
            yield
            self.con.execute("COMMIT")
        except BaseException as exc:
            self._rollback()
            self.keys.rolled_back()
            if isinstance(exc, sqlite3.Error):
                raise self._error("write to", exc) from exc
            raise
        self.keys.committed()
        self.check()  # deleted while we committed: these rows went to an unlinked file, they must not be ACKed

    @contextmanager
    def transaction(self) -> Iterator[Txn]:
        txn = _SQLiteTxn(self.con, self.keys)
        with self._txn():
            yield txn
            txn._flush()
        self.commits += 1

    def open_runs(self) -> list[tuple[GroupRecord, RunRecord]]:
        out = []
        for row in self.con.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE state='running'").fetchall():
            run = run_record(row)
            g = self.con.execute(
                "SELECT id, project, name, world_size, created, updated, sealed_through, late_rows FROM groups "
                "WHERE id=?",
                (run.group_id,),
            ).fetchone()
            out.append((GroupRecord(*g), run))
        return out

    def reader(self) -> SQLiteReader:
        from agent.store.sqlite_reader import SQLiteReader

        return SQLiteReader(self.path)

    def wal_bytes(self) -> int:
        """The write-ahead log's size on disk now (0: none)."""
        try:
            return os.stat(self._wal).st_size
        except OSError:
            return 0

    def wal_full(self) -> bool:
        """Checkpoint now, even with commits waiting (a sustained burst never leaves the loop idle, and the WAL
        would grow by every byte written): the WAL passed ``wal_max_bytes``, or a third of the free space of
        its filesystem. A checkpoint copies the WAL into the database file, which needs up to that much room:
        on a nearly full disk a WAL allowed to grow to ``wal_max_bytes`` could leave no room to checkpoint it,
        and then none to commit again (a store stuck in "disk full" after space returned)."""
        size = self.wal_bytes()
        if size > self.wal_max_bytes:
            return True
        if size <= WAL_KEEP_BYTES:
            return False
        try:
            fs = os.statvfs(self.path.parent)
        except OSError:
            return False
        return size > fs.f_bavail * fs.f_frsize // 3

    def checkpoint(self) -> None:
        """Copy the WAL into the database file. PASSIVE: never waits for readers."""
        try:
            self.con.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass

    def sync(self) -> None:
        """fsync the WAL: with ``synchronous=NORMAL`` a commit reaches the page cache only; the WAL holds
        every commit not yet checkpointed (a checkpoint fsyncs what it copies), so this makes them all
        durable. The directory is synced once, for the WAL file's own entry (it lives as long as the
        connection)."""
        targets = [self.path.with_name(self.path.name + "-wal")]  # missing: nothing committed since open
        if not self._dir_synced:
            targets.append(self.path.parent)
        for path in targets:
            try:
                fsync_path(path, strict=True)
            except OSError as exc:
                raise StoreError(f"cannot sync {path}: {exc}") from exc
        self._dir_synced = True

    def close(self) -> None:
        try:
            self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self.con.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

