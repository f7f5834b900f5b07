"""The store sink: a single agent's (and a root's) applied batches become history, group rows and records in
the store (agent/store/base.py ``Store``/``Txn``: SQLite today), one transaction per commit."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from agent.groups import GroupState, recompute_rows
from agent.sinks.base import Sink

if TYPE_CHECKING:
    from agent.nextcommit import NextCommit
    from agent.runs import RunState
    from client import wire


class StoreSink(Sink):
    def __init__(self, resets_on_loss: bool = True, group_class: type[GroupState] = GroupState):
        # a root keeps its node links' acknowledged seqs in the store: it holds and says so instead of resetting
        self.resets_store_on_loss = resets_on_loss
        self.group_class = group_class

    def __repr__(self) -> str:
        return f"<{type(self).__name__} groups={self.group_class.__name__} resets_on_loss={self.resets_store_on_loss}>"

    def apply(self, run: RunState, b: wire.Batch, frame: bytes, now: float) -> None:
        self.ingest.applier.apply(run, b, now)

    def write(self, nc: NextCommit, now: float) -> bool:
        ingest = self.ingest
        t0 = time.perf_counter()
        with ingest.store.transaction() as txn:
            nc.write(txn)
            recompute_rows(txn, nc, ingest.groups, ingest.counters)
        ingest.counters.add("stored_points", nc.points)
        ingest.counters.add("commit_us", int((time.perf_counter() - t0) * 1e6))
        return True

    def wal_full(self) -> bool:
        return self.ingest.store.wal_full()

    def checkpoint(self) -> bool:
        self.ingest.store.checkpoint()
        return True
