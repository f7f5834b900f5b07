"""The embedded store's write side: one SQLite file in WAL mode, written by the agent alone.

``synchronous=NORMAL`` in WAL mode makes commits cheap and durable against
process crashes; a power failure can lose the last commits (documented in the
README). Readers (Api, CLI, UI) open their own connections
(:class:`agent.store.sqlite_reader.SQLiteReader`) and never block the agent.
The file format is in :mod:`agent.store.sqlite_format`, one commit's statements in
:mod:`agent.store.sqlite_txn`, the check that the file is still the store's (and moving
a lost one aside) in :mod:`agent.store.sqlite_file`; sqlite3's exceptions leave as
agent/errors.py's StoreError classes (:mod:`agent.store.sqlite_errors`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.errors import SchemaError, StoreLost
from agent.fsync import fsync_path
from agent.store.base import ROW_KEYS, GroupRecord, RunRecord, Store, Txn, last_wins, new_run
from agent.store.sqlite_errors import map_exceptions
from agent.store.sqlite_file import StoreFile
from agent.store.sqlite_format import (
    RUN_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    KeyIds,
    connect,
    numeric_chunk,
    pack,
    run_record,
)
from agent.store.sqlite_txn import SQLiteTxn

if TYPE_CHECKING:
    from agent.store.sqlite_reader import SQLiteReader

log = logging.getLogger("rankwise.agent")

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
        self.file = StoreFile(self.path)
        self._half_open = False  # a reset whose fresh store could not be opened (retried at the next commit)
        try:
            self._open()
        except StoreLost as exc:
            moved = self.file.move_aside()
            log.error("store %s is damaged (%s): moved it to %s, starting a fresh store", self.path, exc, moved)
            self._open()

    def _open(self) -> None:
        self.con = connect(self.path, readonly=False)
        try:
            with map_exceptions(f"cannot initialise store {self.path}", os_errors=True):
                self._initialise()
        except BaseException:
            self.con.close()
            raise
        self.keys = KeyIds(self.con)
        self._dir_synced = False

    def _initialise(self) -> None:
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
        self.file.pin()

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path} commits={self.commits} resets={self.resets}>"

    @property
    def moved_aside(self) -> list[str]:
        """Where lost or damaged store files went (agent/store/sqlite_file.py), oldest first."""
        return self.file.moved_aside

    def check(self) -> None:
        """Raise :class:`StoreLost` if the file at ``path`` is no longer this store's, or not SQLite's."""
        self.file.check()

    def reset(self, why: str) -> str | None:
        """Close the lost store, move whatever is left of it aside (``store.sqlite.corrupt-<UTC time>``, with
        its -wal and -shm) and start an empty store at ``path``. Returns the moved main file's path."""
        try:
            self.con.close()
        except sqlite3.Error:  # closing a connection to a lost file: nothing of it is kept anyway
            pass
        self.file.release()
        if self._half_open:  # what a failed earlier attempt created is nobody's data: no pile of moved files
            moved = None
            self.file.remove()
        else:
            moved = self.file.move_aside()
        self.resets += 1
        self._half_open = True
        self._open()
        self._half_open = False
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
            r = new_run(0, g.id, run, now)
            r.id = self.con.execute(
                "INSERT INTO runs(group_id, name, run_key, rank, local_rank, node, pid, state, created, updated, "
                "config, meta) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    r.group_id,
                    r.name,
                    r.run_key,
                    r.rank,
                    r.local_rank,
                    r.node,
                    r.pid,
                    r.state,
                    r.created,
                    r.updated,
                    pack(r.config),
                    pack(r.meta),
                ),
            ).lastrowid
            return g, r, True

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Rows of a query outside a transaction (the store's boundary: sqlite3's errors leave as StoreError)."""
        with map_exceptions(f"reading {self.path} failed"):
            return self.con.execute(sql, args).fetchall()

    def find_run(self, project: str, group: str, name: str) -> RunRecord | None:
        rows = self._read(
            f"SELECT {', '.join('r.' + c.strip() for c in RUN_COLUMNS.split(','))} FROM runs r "
            "JOIN groups g ON g.id = r.group_id WHERE g.project=? AND g.name=? AND r.name=?",
            (project, group, name),
        )
        return run_record(rows[0]) if rows else None

    def unsealed_points(self, group_id: int, after_step: int) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
        rows = self._read(
            "SELECT h.run_id, r.rank, h.key_id, h.enc, h.steps, h.vals FROM history h JOIN runs r ON r.id = h.run_id "
            "WHERE r.group_id=? AND h.step_max > ? ORDER BY h.id",
            (group_id, after_step),
        )
        chunks: dict[tuple[int, int, int], tuple[list, list]] = {}
        for run_id, rank, kid, enc, sblob, vblob in rows:
            chunk = numeric_chunk(enc, sblob, vblob)
            if chunk is not None:
                entry = chunks.setdefault((run_id, rank, kid), ([], []))
                entry[0].append(chunk[0])
                entry[1].append(chunk[1])
        out = []
        for (_, rank, kid), (s_list, v_list) in chunks.items():
            with map_exceptions(f"reading {self.path} failed"):
                name = self.keys.name(kid)
            if name in ROW_KEYS:
                continue
            steps, values = last_wins(s_list, v_list)
            keep = steps > after_step
            out.append((name, rank, steps[keep], np.asarray(values)[keep]))
        return out

    def writer_seq(self, writer: str) -> int:
        rows = self._read("SELECT seq FROM writers WHERE writer=?", (writer,))
        return int(rows[0][0]) if rows else 0

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
        with map_exceptions(f"begin a transaction on {self.path} failed"):
            self.con.execute("BEGIN IMMEDIATE")
        try:
            with map_exceptions(f"write to {self.path} failed"):
                yield
                self.con.execute("COMMIT")
        except BaseException:
            self._rollback()
            self.keys.rolled_back()
            raise
        self.keys.committed()
        self.check()  # deleted while we committed: these rows went to an unlinked file, they must not be ACKed

    @contextmanager
    def transaction(self) -> Iterator[Txn]:
        txn = SQLiteTxn(self.con, self.keys)
        with self._txn():
            yield txn
            txn.flush()
        self.commits += 1

    def open_runs(self) -> list[tuple[GroupRecord, RunRecord]]:
        out = []
        for row in self._read(f"SELECT {RUN_COLUMNS} FROM runs WHERE state='running'"):
            run = run_record(row)
            (g,) = self._read(
                "SELECT id, project, name, world_size, created, updated, sealed_through, late_rows FROM groups "
                "WHERE id=?",
                (run.group_id,),
            )
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
            with map_exceptions(f"cannot sync {path}", os_errors=True):
                fsync_path(path, strict=True)
        self._dir_synced = True

    def close(self) -> None:
        try:
            self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self.con.close()
        self.file.release()
