"""The sink protocol: what happens to the batches an agent applied, and the parts its loop calls.

An agent (agent/ingest.py) is one dispatcher over one :class:`Sink` and any number of
:class:`Part`\\ s. The dispatcher validates frames, de-duplicates writers' seqs, keeps the run
registry and folds what it applies into a :class:`agent.nextcommit.NextCommit`; the sink decides
what a batch becomes there and how a commit is written:

* agent/sinks/store.py: the store (a single agent, a root): history, group rows, records;
* agent/sinks/spool.py: the write-ahead spool of a node agent, on to the root;
* agent/sinks/memory.py: the store sink over an in-memory store that also keeps every commit in
  plain Python structures (tests read them).

The loop (agent/loop.py) calls the same methods whatever the sink: ``apply`` through the
dispatcher, ``write`` at each commit, then the maintenance hooks ``pump``, ``wal_full`` and
``checkpoint``, and ``close`` at shutdown. A part (a root's record applier, later a system-metrics
sampler) hears of commits and ticks and adds to the status, without the loop knowing it is there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.groups import GroupState

if TYPE_CHECKING:
    from agent.ingest import Ingest
    from agent.nextcommit import NextCommit
    from agent.runs import RunState
    from client import wire


class Part:
    """Something plugged into an agent beside its sink; every hook does nothing unless overridden."""

    def tick(self, now: float) -> None:
        """Called on every loop turn after the agent's own tick (timers, sealing)."""

    def committed(self, nc: NextCommit) -> None:
        """A commit went through; ``nc`` still holds what it wrote (cleared after every part heard it)."""

    def status(self, snap: dict[str, Any]) -> None:
        """Add to (or correct) the agent's status (``rankwise status``): keys are read by users and tests."""

    def idle(self) -> bool:
        """May the agent exit for being idle (no run, no message for ``idle_timeout_s``)?"""
        return True


class Sink(Part):
    """What applied batches become. Subclasses set the policy attributes and implement ``apply`` and ``write``."""

    group_class: type[GroupState] = GroupState  # how the agent's groups seal (agent/groups.py, agent/rootgroups.py)
    sliced = True  # wide batches may be applied a slice of columns per loop turn (agent/slices.py)
    tracks_store_health = True  # a commit writes the store: disk full and lost store episodes (agent/storehealth.py)
    resets_store_on_loss = True  # a lost store is replaced by a fresh one and the writers resend (False: hold)
    rebases_reconnects = False  # a reconnecting writer this agent has no seq for: its first batch sets it
    every_run_local = False  # every run's process runs on this machine (a node agent's private socket)

    def bind(self, ingest: Ingest) -> None:
        """Called once by the agent that owns this sink: what ``apply`` and ``write`` read and fold into."""
        self.ingest = ingest

    def apply(self, run: RunState, b: wire.Batch, frame: bytes, now: float) -> None:
        """A validated batch, next in its writer's sequence (``frame``: as the client sent it)."""
        raise NotImplementedError

    def hello(self, run: RunState, h: wire.Hello, body: dict, resumed: bool) -> None:
        """A HELLO registered a new writer of ``run``."""

    def crash(self, run: RunState, why: str) -> None:
        """``run``'s process was seen gone."""

    def refusing(self) -> str | None:
        """Back-pressure: the name of the counter of batches held (neither applied nor acknowledged), or None."""
        return None

    def drain_full(self) -> bool:
        """Commit before draining more frames, whatever the agent's own budgets say."""
        return False

    def write(self, nc: NextCommit, now: float) -> bool:
        """Write ``nc`` (one transaction, one record): True once written; False when refused (it stays for the
        next try); raises on a store error (the agent's store health decides what follows)."""
        raise NotImplementedError

    def recover(self) -> None:
        """Start-up, before the agent takes back the runs its store knows."""

    def pump(self) -> None:
        """Each loop turn after the commit: durability work that may lag the commit (a spool's fsync)."""

    def wal_full(self) -> bool:
        """The store's write-ahead log is past its bound: checkpoint now, even under load."""
        return False

    def checkpoint(self) -> bool:
        """Checkpoint the store's write-ahead log, if it has one (True: done)."""
        return False

    def close(self) -> None:
        """At shutdown, after the last commit (the agent closes its store itself)."""
