"""The agent's commit: the sink writes the next commit, then the acknowledgements it made true go out.

After a failure everything stays for the next try, which backs off (agent/backoff.py). A store error starts
or continues a store-health episode (agent/storehealth.py); a lost store is replaced by a fresh one, unless
the sink says to hold (a root). ACKs of writers whose run is done wait while their group is sealed over
several ticks, so that a finished run's group rows are stored when its ``finish()`` returns.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from agent.backoff import Backoff
from agent.store.base import LOST
from agent.storehealth import is_store_error
from client import wire

if TYPE_CHECKING:
    from agent.ingest import Ingest

log = logging.getLogger("rankwise.agent")
Reply = tuple[bytes, bytes]


class Commits:
    def __init__(self, ingest: Ingest):
        self.ingest = ingest
        self.backoff = Backoff(ingest.clock)  # after a failed commit the next try waits (no busy loop)
        self._unsent_acks: dict[str, tuple[bytes, int]] = {}  # committed, held back a few ticks (release_acks)
        self._waiting_since: float | None = None  # when the next commit got its first content (store batching)

    def __repr__(self) -> str:
        return f"<Commits {self.backoff!r} unsent_acks={len(self._unsent_acks)}>"

    def due(self) -> bool:
        """Whether the next commit is to be written now (the ingest's clock): it has content, no failure asks to back off, and
        the store takes commits as they come, or its batch is full (``Store.batch_points``), its oldest content
        waited ``Store.batch_wait_s``, or it ends a run (whose finish() waits for the ACK)."""
        nc = self.ingest.next_commit
        if not nc or not self.backoff.due():
            return False
        store = self.ingest.store
        if not store.batch_wait_s and not store.batch_points:
            return True
        now = self.ingest.clock()
        if self._waiting_since is None:
            self._waiting_since = now
        return (
            now - self._waiting_since >= store.batch_wait_s
            or (store.batch_points > 0 and nc.points >= store.batch_points)
            or any(r.state != "running" for r in nc.runs.values())
        )

    def commit(self, now: float, force: bool = False) -> list[Reply]:
        """Have the sink write the next commit (one transaction, one spool record); return the ACKs that are
        now true. After a failure the data stays and the next attempt backs off (``force``: try now)."""
        ingest = self.ingest
        nc = ingest.next_commit
        if ingest.media is not None:
            for cause, n in ingest.media.take_skipped().items():
                nc.drops[cause] = nc.drops.get(cause, 0) + n
                ingest.counters.drop(cause, n)
        if not nc or (not force and not self.due()):
            return self.release_acks()
        try:
            written = ingest.sink.write(nc, now)
        except Exception as exc:  # StoreError and anything under it: keep the data, retry next turn
            self.backoff.failed()
            ingest.counters.add("commit_failures")
            failures = self.backoff.failures
            if not is_store_error(exc):  # a bug, not the store: the trace, rate-limited (store trouble: once)
                if failures <= 5 or failures % 100 == 0:
                    log.error("store commit failed (%d so far), will retry: %s", failures, exc, exc_info=True)
                return []
            return self.store_failed(exc)
        if not written:  # refused (a full spool): everything stays for the next try
            self.backoff.failed()
            return []
        if ingest.sink.tracks_store_health:
            ingest.health.recovered(nc.points)
        self.backoff.reset()
        ingest.counters.add("commits")
        for writer, (peer, seq) in nc.acks.items():
            ws = ingest.writers.get(writer)
            if ws is not None:
                ws.stored = max(ws.stored, seq)
            self._unsent_acks[writer] = (peer, seq)
        for part in ingest.parts:
            part.committed(nc)
        ingest.alerts.committed(nc)
        nc.clear()
        self._waiting_since = None
        return self.release_acks()

    def release_acks(self) -> list[Reply]:
        """The ACKs of committed batches, but not yet those of a writer whose run is done while its group is
        sealed over several ticks (a window of more than ``SEAL_SLICE_BYTES``, agent/groups.py): when its
        finish() returns, its group rows are in the store (README, "What is guaranteed")."""
        if not self._unsent_acks:
            return []
        acks = []
        for writer, (peer, seq) in list(self._unsent_acks.items()):
            ws = self.ingest.writers.get(writer)
            if ws is not None and not ws.run.running and _still_sealing(ws.run.group):
                continue
            del self._unsent_acks[writer]
            acks.append((peer, wire.pack(wire.ACK, {"w": writer, "s": seq})))
        return acks

    def store_failed(self, exc: BaseException) -> list[Reply]:
        """A store operation failed: a full or unavailable store starts (or goes on with) an episode of
        back-pressure; a lost one (deleted, replaced, corrupt) is replaced by a fresh store."""
        ingest = self.ingest
        resets = ingest.sink.resets_store_on_loss
        if ingest.health.failed(exc, ingest.next_commit.nbytes, hold_lost=not resets) != LOST or not resets:
            return []
        try:
            return self._store_lost(str(exc))
        except Exception as again:  # cannot even start a fresh store (disk full, permissions): retry later
            ingest.health.failed(again, ingest.next_commit.nbytes, hold_lost=True)
            return []

    def _store_lost(self, why: str) -> list[Reply]:
        """Start over on a fresh store. Everything in memory that mirrored the old one goes: runs, groups,
        writers (their "applied" seqs were never committed in the new store) and pending work. Each writer
        is told (NACK unknown-writer, with a warning it logs): it says HELLO again, is registered in the new
        store and resends from its first unacknowledged batch (``Registry.rebase``)."""
        ingest = self.ingest
        moved = ingest.store.reset(why)
        writers = dict(ingest.writers)
        points = ingest.next_commit.points
        ingest.health.lost(why, moved, len(writers), points)
        ingest.counters.add("store_losses")
        ingest.registry.clear()
        ingest.backlog.clear()  # slices of wide batches of forgotten writers: resent with the rest
        self._unsent_acks.clear()
        ingest.next_commit.clear()
        self.backoff.reset()
        ingest.instance = os.urandom(6).hex()  # the writers count this like an agent restart
        warn = ingest.health.warning(True)
        return [
            (ws.peer, wire.pack(wire.NACK, {"w": wid, "reason": "unknown-writer", "warn": warn}))
            for wid, ws in writers.items()
        ]


def _still_sealing(group: Any) -> bool:
    """A group whose rows a done run's finish() must wait for: a seal pass in progress, or, once every rank of it
    joined and none runs, points still in its window. A pass that completes seals through the bound it started with, and a
    run's last batch may have brought steps beyond it: those go in the next pass (one tick later), and the
    ACK waits for it. While other ranks run or have not joined yet, nothing more is held: their steps seal when
    they get there (the join grace or the seal timeout may be far)."""
    if group.sealing is not None:
        return True
    ranks = group.ranks
    return (
        group.window.n_points > 0
        and len(ranks) >= group.record.world_size
        and not any(r.running for r in ranks.values())
    )
