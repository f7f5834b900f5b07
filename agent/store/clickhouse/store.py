"""The ClickHouse store's write side: one agent (a root, or a single-node agent) writing into a ClickHouse
server (``clickhouse://``) or chdb in its own process (``chdb://<dir>``).

Ids of groups and runs come from counters (the largest stored id + 1), read once when the store opens:
the store has one writer, and register() INSERTs the new record before it returns, so an agent that
restarts after kill -9 finds its runs by (group, name) and gets the same ids back. Commit numbers (the
high bits of every version: agent/store/clickhouse/txn.py) start above the largest version stored and
are never reused, not even by the retry of a commit that failed half-way.

``sync`` does nothing: an INSERT acknowledged by the server is the commit. The server writes parts
without fsync (18.16 has no setting for it), so a power failure of the server's host can lose the last
inserts; a process crash of the server or of the agent cannot.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from agent.store.base import META_KEYS, ROW_KEYS, GroupRecord, RunRecord, Store, Txn, new_run
from agent.store.clickhouse import points
from agent.store.clickhouse.conn import connect, lit, shard_conns
from agent.store.clickhouse.reader import ClickHouseReader
from agent.store.clickhouse.records import pack_record
from agent.store.clickhouse.schema import VERSIONED, Schema, types
from agent.store.clickhouse.txn import CHUNK_BITS, ClickHouseTxn
from agent.store.clickhouse.url import parse_url

log = logging.getLogger("rankwise.agent")


# The agent writes from its loop thread: a server that hangs (stopped, overloaded, a dead peer behind a live TCP
# connection) must fail the commit within this, so that the loop answers status, HELLOs and ACKs between retries
# (a commit that failed stays for the next try; agent/commits.py). The INSERTs of one commit take milliseconds.
WRITE_TIMEOUT_S = 5.0


class ClickHouseStore(Store):
    """Write side; one per agent. Not thread-safe: the agent's loop is its only user."""

    # every INSERT makes a part per table that the server merges later (18.16 refuses inserts past 300 parts a
    # partition): the agent commits in batches of 10k points or 1 s, whichever first (agent/commits.py)
    batch_points = 10_000
    batch_wait_s = 1.0

    def __init__(self, url: str):
        self.url = parse_url(url)
        self.conn = connect(self.url, timeout=WRITE_TIMEOUT_S)
        self.commits = 0
        self.resets = 0
        try:
            self._open()
        except BaseException:
            self.conn.close()
            raise

    def _open(self) -> None:
        self.schema = Schema(self.conn, self.url.database, cluster=self.url.cluster, shard_conns=shard_conns)
        self.read = ClickHouseReader(self.url, self.conn)  # the store's own reads, over its connection
        top = 0
        for table in VERSIONED:
            (v,) = self.conn.query(f"SELECT max(ver) FROM {self.schema.t(table)}", 1)
            top = max(top, int(v[0]) if len(v) else 0)
        self._next_commit = (top >> CHUNK_BITS) + 1
        ids = {}
        for table in ("groups", "runs"):
            (v,) = self.conn.query(f"SELECT max(id) FROM {self.schema.t(table)}", 1)
            ids[table] = int(v[0]) if len(v) else 0
        self._group_id, self._run_id = ids["groups"], ids["runs"]
        self._runs: dict[int, tuple[int, int]] = {}  # run id → (group id, rank): neither ever changes

    def __repr__(self) -> str:
        return (
            f"<ClickHouseStore {self.url} {self.conn.engine} {self.conn.version} codecs={self.schema.codecs} "
            f"commits={self.commits} next_commit={self._next_commit}>"
        )

    # ---------------------------------------------------------------- ids and versions
    def _commit_number(self) -> int:
        n = self._next_commit
        self._next_commit += 1
        return n

    def _insert_record(self, table: str, rec: GroupRecord | RunRecord) -> None:
        cols: dict[str, Any] = {"id": np.array([rec.id], np.uint64), "name": [rec.name]}
        if isinstance(rec, GroupRecord):
            cols["project"] = [rec.project]
        else:
            cols["group_id"] = np.array([rec.group_id], np.uint64)
            cols["state"] = [rec.state]
        cols["ver"] = np.array([self._commit_number() << CHUNK_BITS], np.uint64)
        cols["rec"] = [pack_record(rec)]
        self.conn.insert(self.schema.t(table), cols, types(table))

    def group_of(self, run_id: int) -> int:
        if run_id not in self._runs:
            self._learn(run_id)
        return self._runs[run_id][0]

    def rank_of(self, run_id: int) -> int:
        if run_id not in self._runs:
            self._learn(run_id)
        return self._runs[run_id][1]

    def _learn(self, run_id: int) -> None:
        rs = self.read._records(RunRecord, "runs", f"id = {lit(run_id)}")
        if not rs:
            raise ValueError(f"run id {run_id} is not registered in {self.url}: register() it first")
        self._runs[run_id] = (rs[0].group_id, rs[0].rank)

    # ---------------------------------------------------------------- Store
    def register(self, project: str, group: str, world_size: int, run: dict[str, Any], now: float):
        g = self.read.group(project, group)
        if g is None:
            self._group_id += 1
            g = GroupRecord(self._group_id, project, group, world_size, now, now)
            self._insert_record("groups", g)
        elif world_size > g.world_size:
            g.world_size = world_size
            self._insert_record("groups", g)
        found = self.read._records(RunRecord, "runs", f"group_id = {lit(g.id)} AND name = {lit(run['name'])}")
        if found:
            r = found[0]
            self._runs[r.id] = (r.group_id, r.rank)
            return g, r, False
        self._run_id += 1
        r = new_run(self._run_id, g.id, run, now)
        self._insert_record("runs", r)
        self._runs[r.id] = (r.group_id, r.rank)
        return g, r, True

    def find_run(self, project: str, group: str, name: str) -> RunRecord | None:
        g = self.read.group(project, group)
        if g is None:
            return None
        found = self.read._records(RunRecord, "runs", f"group_id = {lit(g.id)} AND name = {lit(name)}")
        return found[0] if found else None

    def unsealed_points(self, group_id: int, after_step: int) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
        chunks = self.read.chunks(
            f"group_id = {lit(group_id)} AND step_max > {lit(int(after_step))} AND key NOT IN {lit(list(ROW_KEYS))}"
        )
        parts: dict[tuple[str, int], list[points.Chunk]] = {}
        for c in chunks:
            parts.setdefault((c[1], c[0]), []).append(c)
        out = []
        for (key, run_id), cs in sorted(parts.items()):
            got = points.join(cs, first=key in META_KEYS, numeric=True)
            if got is None:
                continue
            keep = got[0] > after_step
            if keep.any():
                out.append((key, self.rank_of(run_id), got[0][keep], got[1][keep].astype(np.float64, copy=False)))
        return out

    def writer_seq(self, writer: str) -> int:
        (seq,) = self.conn.query(
            f"SELECT argMax(seq, ver) FROM {self.schema.t('writers')} WHERE writer = {lit(writer)} HAVING count() > 0",
            1,
        )
        return int(seq[0]) if len(seq) else 0

    @contextmanager
    def transaction(self) -> Iterator[Txn]:
        txn = ClickHouseTxn(self, self._commit_number())
        yield txn
        txn.flush()
        self.commits += 1

    def open_runs(self) -> list[tuple[GroupRecord, RunRecord]]:
        runs = [r for r in self.read._records(RunRecord, "runs") if r.state == "running"]
        groups = {g.id: g for g in self.read._records(GroupRecord, "groups")}
        return [(groups[r.group_id], r) for r in runs if r.group_id in groups]

    def reader(self) -> ClickHouseReader:
        """A reader over its own connection (chdb: over the store's, the process has one session anyway)."""
        return ClickHouseReader(self.url, self.conn if self.url.engine == "chdb" else None)

    def reset(self, why: str) -> str | None:
        """The database or a table went away under the agent (dropped): create the tables again and start
        over; nothing is moved anywhere (None)."""
        log.error("ClickHouse store %s was lost (%s): creating its tables again", self.url, why)
        self.resets += 1
        self._open()
        return None

    def close(self) -> None:
        self.conn.close()
