"""Message handling: frames in, state changes and replies out. No sockets here.

The daemon's loop feeds every frame to :meth:`Ingest.handle` (which validates
it and answers HELLO/STATUS/PING at once), calls :meth:`Ingest.commit` after
each drain (the sink writes the next commit, then the ACKs it made true) and
:meth:`Ingest.tick` on a timer (crash detection, sealing). A malformed frame is
counted by cause and answered with nothing; it never raises out of here.

``Ingest`` keeps dispatch, de-duplication (writers' seqs) and the run registry;
what an applied batch becomes is its sink's business (agent/sinks/base.py: the
store, a node agent's spool, memory in tests). The same class serves every role:
a root adds its record applier as a part (agent/root.py), a node agent is built
with the spool sink (agent/node.py). Monotonic time (liveness, commit backoff,
idleness, lookups) comes from ``clock``: tests drive it without sleeping.

Validation goes beyond the wire decoders where a value would otherwise reach
SQLite or a loop bound (agent/registry.py ``check_hello``, agent/apply.py
``check_batch``). Anything a frame still manages to break while it is handled
is counted as ``internal error: <type>`` and logged; the loop goes on.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from agent.alerts.book import AlertBook
from agent.apply import SLICE_KEYS, Applier, batch_cost, check_batch, check_width
from agent.commits import Commits
from agent.config import AgentConfig
from agent.groups import seal_groups
from agent.hellos import Hellos
from agent.malformed import MAX_CAUSES, CauseLog, malformed_cause
from agent.media import MediaSink
from agent.nextcommit import NextCommit
from agent.registry import Registry
from agent.runs import PidWatch, RunState, WriterState
from agent.sinks.base import Part, Sink
from agent.sinks.store import StoreSink
from agent.slices import WideBatches
from agent.status import Counters
from agent.statusview import status_view
from agent.store.base import Store
from agent.storehealth import StoreHealth, is_store_error
from client import wire
from client.errors import ProtocolError

log = logging.getLogger("rankwise.agent")

Reply = tuple[bytes, bytes]
SEAL_KEYS_PER_TICK = SLICE_KEYS  # group rows of at most this many keys per tick: the loop stays responsive


class Ingest:
    def __init__(
        self,
        store: Store,
        cfg: AgentConfig,
        node: str | None = None,
        pids: PidWatch | None = None,
        media: MediaSink | None = None,
        sink: Sink | None = None,
        clock: Callable[[], float] | None = None,
    ):
        self.store = store  # the run registry's store (at a node agent: its catalog, node.sqlite)
        self.cfg = cfg
        self.media = media  # None: media values are stored inline (in-memory tests)
        self.node = node or socket.gethostname()
        self.clock = time.monotonic if clock is None else clock  # read at construction: tests may patch it
        # is a run's process still there (by pid and start time); tests inject where start times come from
        self.pids = PidWatch() if pids is None else pids
        self.counters = Counters()
        self.next_commit = NextCommit()
        self.applier = Applier(cfg, media, self.counters, self.next_commit, self._count_malformed)
        self.sink = StoreSink() if sink is None else sink
        self.parts: list[Part] = []  # plugged in beside the sink (a root's record applier: agent/root.py)
        self.alerts = AlertBook(self)  # what detectors (parts) raise, into the next commit (agent/alerts/book.py)
        self.registry = Registry(store, self.sink.group_class, self.pids, self.applier, self.is_local)
        # the registry's (cleared in place when the store is lost, never replaced)
        self.runs, self.groups, self.writers = self.registry.runs, self.registry.groups, self.registry.writers
        self.started = time.time()
        self.instance = os.urandom(6).hex()  # told to writers in WELCOME: they count agent restarts by it
        self.last_message = self.clock()
        self.stop_requested = False
        self._next_liveness = 0.0
        self.health = StoreHealth(cfg.pending_max_bytes)  # disk full, store lost (agent/storehealth.py)
        self._frame_log = CauseLog()  # malformed frames: logged per cause, rate-limited, a new cause always
        self.backlog = WideBatches()  # wide batches applied in slices, one per loop turn (agent/slices.py)
        self.next_commit_bytes_max = 0  # high-water mark of next_commit.nbytes (``rankwise status``; tests check it)
        self._drain_stop = False  # a budget commit happened in this drain (drain_full ends it)
        self.upstream: Any = None  # the agent this one forwards to (agent.upstream.Upstream at a node agent)
        self.hellos = Hellos(self)  # HELLOs answered, or held for the upstream's view of their run
        self.outbox: list[Reply] = []  # replies made outside handle() (parked HELLOs answered)
        self.commits = Commits(self)
        self.sink.bind(self)

    def __repr__(self) -> str:
        running = sum(r.running for r in self.runs.values())
        return (
            f"<Ingest runs={len(self.runs)} running={running} groups={len(self.groups)} writers={len(self.writers)} "
            f"next={self.next_commit!r} sink={self.sink!r}>"
        )

    # ------------------------------------------------------------ dispatch

    def handle(self, peer: bytes, frame: bytes, now: float | None = None) -> list[Reply]:
        now = time.time() if now is None else now
        self.last_message = self.clock()
        self.counters.add("frames")
        try:
            kind, body = wire.unpack(frame)
            if kind == wire.BATCH:
                try:
                    batch = wire.decode_batch(body, len(frame))
                except ProtocolError as exc:
                    # a batch whose writer and seq can be read: answer, or its writer resends it for ever
                    rejected = self._reject_batch(peer, body, malformed_cause(str(exc)), exc, len(frame))
                    if rejected is None:
                        raise
                    return rejected
                return self._batch(peer, batch, frame, now)
            if kind == wire.HELLO:
                return self._hello(peer, wire.decode_hello(body), body, now)
            if kind == wire.STATUS:
                return [(peer, wire.pack(wire.STATUS, self.status()))]
            if kind == wire.PING:
                return [(peer, wire.pack(wire.PING, {"pid": os.getpid()}))]
            if kind == wire.STOP:
                self.stop_requested = True
                return [(peer, wire.pack(wire.STOP, {"pid": os.getpid()}))]
            raise ProtocolError(f"unexpected message kind {kind!r} from a client")
        except ProtocolError as exc:
            self.bad_frame(malformed_cause(str(exc)), len(frame), exc)
            return []
        except Exception as exc:  # a frame that passed validation and still broke something: count, go on
            if self.sink.tracks_store_health and is_store_error(exc):  # not the frame's fault: a full or lost store
                self.counters.add("store_errors")
                return self.commits.store_failed(exc)
            self.bad_frame(f"internal error: {type(exc).__name__}", len(frame), exc, trace=True)
            return []

    def bad_frame(self, cause: str, nbytes: int, exc: Exception, trace: bool = False) -> None:
        self._count_malformed(cause)
        trace = trace or cause.startswith("internal error")  # a bug of ours: its traceback says where
        said = self._frame_log.allow(cause, self.clock())
        if said is not None:
            more = f" ({said} more of this cause not logged)" if said else ""
            log.warning("malformed frame (%d bytes) ignored: %s%s", nbytes, exc, more, exc_info=trace)

    def _count_malformed(self, cause: str) -> None:
        if cause not in self.counters.malformed and len(self.counters.malformed) >= MAX_CAUSES:
            cause = "other"
        self.counters.bad_frame(cause)

    def _hello(self, peer: bytes, h: wire.Hello, body: dict, now: float) -> list[Reply]:
        self.counters.add("hellos")
        self.registry.check_hello(h)
        if self.hellos.holds(peer, h, body):  # answered once the upstream says what it knows of the run
            return []
        return self.hellos.answer(peer, h, body, now)

    # ------------------------------------------------------------ BATCH

    def _batch(self, peer: bytes, b: wire.Batch, frame: bytes, now: float) -> list[Reply]:
        ws = self.writers.get(b.writer)
        if ws is None:
            self.counters.add("unknown_writer")
            return [(peer, wire.pack(wire.NACK, {"w": b.writer, "reason": "unknown-writer"}))]
        if b.seq <= ws.applied:
            self.counters.add("duplicate_batches")
            if b.seq <= ws.stored:
                return [(peer, wire.pack(wire.ACK, {"w": ws.id, "s": ws.stored}))]
            return []
        if ws.id in self.registry.rebase:
            # the store (or a node agent's catalog) that had this writer's acknowledged batches was lost: the
            # writer resends from the first one it holds (its WELCOME said next_seq 1, it requeued everything
            # unacknowledged, in order)
            self.registry.rebase.discard(ws.id)
            if ws.applied == 0 and b.seq > 1:
                ws.applied = ws.stored = b.seq - 1
                self.counters.add("writers_rebased")
        held = self.sink.refusing()
        if held is not None:  # backpressure (a full spool): the client keeps the batch and resends it
            self.counters.add(held)
            return []
        # applied-but-uncommitted work never passes its byte budget (issue 11); a batch alone may (it is taken
        # with nothing else pending: the budget must not stop a writer whose batches are all bigger)
        taken = self.next_commit.nbytes
        over = taken > 0 and taken + batch_cost(b) > self.cfg.pending_max_bytes
        if self.health.trouble is not None and (over or self.health.holding(self.uncommitted_bytes())):
            # back-pressure: the store refuses commits and uncommitted work is at its budget. Neither applied
            # nor acknowledged, the batch stays with its client (memory, then spill file), resent after a HELLO
            self.counters.add("held_batches")
            return []
        if b.seq > ws.applied + 1:
            self.counters.add("gaps")
            return [(peer, wire.pack(wire.NACK, {"w": ws.id, "reason": "gap", "expect": ws.applied + 1}))]
        acks: list[Reply] = []
        if over:  # commit what is applied first
            self.counters.add("budget_commits")
            self._drain_stop = True  # and end this drain after the batch: the loop's WAL check and ticks come next
            acks = self.commit(force=True)
            if self.next_commit.nbytes or self.writers.get(b.writer) is not ws:
                # the commit failed (the store is in trouble, or lost and every writer told to start over):
                # this batch is neither applied nor acknowledged, its client resends it
                self.counters.add("held_batches")
                return acks
        return acks + self._take(peer, ws, b, frame, now)

    def _take(self, peer: bytes, ws: WriterState, b: wire.Batch, frame: bytes, now: float) -> list[Reply]:
        """Apply the writer's next batch (or queue it, a wide one) within the byte budget."""
        try:
            check_batch(b)
            check_width(b)
        except ProtocolError as exc:
            return self._reject(peer, ws, b.seq, b.n, malformed_cause(str(exc)), exc, b.nbytes)
        ws.peer = peer  # only an applied batch moves the writer's ACKs to this connection
        # a wide batch is applied over several loop turns (agent/slices.py), if the sink applies batches in parts
        if self.sink.sliced and self.backlog.take(ws, b):
            self.counters.add("sliced_batches")
            ws.applied = b.seq  # queued in order: the next seq is no gap, a resend of this one a duplicate
            return []
        try:
            self.sink.apply(ws.run, b, frame, now)
        except Exception as exc:  # valid on the wire and still broke something: rejected, never resent for ever
            return self._reject(peer, ws, b.seq, b.n, f"internal error: {type(exc).__name__}", exc, b.nbytes)
        ws.applied = b.seq
        self._accepted(ws, b)
        return []

    def _accepted(self, ws: WriterState, b: wire.Batch) -> None:
        """A batch applied whole (at once, or its last slice): stored and acknowledged with the next commit."""
        nc = self.next_commit
        nc.nbytes += batch_cost(b)
        if nc.nbytes > self.next_commit_bytes_max:
            self.next_commit_bytes_max = nc.nbytes
        nc.writers[ws.id] = (ws.run.record.id, b.seq)
        nc.acks[ws.id] = (ws.peer, b.seq)
        self.counters.add("batches")
        self.counters.add("bytes", b.nbytes)

    def _reject_batch(self, peer: bytes, body: Any, cause: str, exc: Exception, nbytes: int) -> list[Reply] | None:
        """A batch that fails validation but names a known writer and a seq: duplicates and gaps are
        answered as usual, the next seq is rejected (see :meth:`_reject`). None: not even that can be read."""
        if not isinstance(body, dict):
            return None
        writer, seq = body.get("w"), body.get("s")
        if not isinstance(writer, str) or type(seq) is not int or seq < 1:
            return None
        ws = self.writers.get(writer)
        if ws is None or seq > ws.applied + 1 or seq <= ws.applied:
            return None  # unknown writers, gaps and duplicates: counted as malformed, the writer retries
        rows = body.get("rows")
        n = rows[0] if isinstance(rows, list) and rows and type(rows[0]) is int and 0 <= rows[0] < (1 << 40) else 0
        return self._reject(peer, ws, seq, n, cause, exc, nbytes)

    def _reject(
        self, peer: bytes, ws: WriterState, seq: int, rows: int, cause: str, exc: Exception, nbytes: int
    ) -> list[Reply]:
        """Reject the writer's next batch: its seq counts as consumed (applied now, acknowledged with the next
        commit, so the writer's sequence goes on), its rows are counted as dropped by cause ``rejected``,
        and the writer is told (NACK "rejected") so that it drops the batch instead of resending it."""
        self.bad_frame(cause, nbytes, exc)  # counted and logged as malformed; the writer is told, below
        ws.applied = seq
        r = ws.run.record
        nc = self.next_commit
        nc.writers[ws.id] = (r.id, seq)
        nc.acks[ws.id] = (peer, seq)
        nc.drops["rejected"] = nc.drops.get("rejected", 0) + rows
        self.counters.drop("rejected", rows)
        drops = r.meta.setdefault("drops", {})
        drops["rejected"] = drops.get("rejected", 0) + rows
        nc.runs[r.id] = r
        self.counters.add("rejected_batches")
        return [(peer, wire.pack(wire.NACK, {"w": ws.id, "reason": "rejected", "s": seq, "cause": cause}))]

    def work(self, now: float, budget: int | None = SLICE_KEYS) -> list[Reply]:
        """Apply queued wide batches for about ``budget`` columns (None: all of them, at shutdown); returns
        the NACKs of batches that broke something while applied (rejected like malformed ones)."""

        def rejected(ws: WriterState, b: wire.Batch, exc: Exception) -> list[Reply]:
            return self._reject(ws.peer, ws, b.seq, b.n, f"internal error: {type(exc).__name__}", exc, b.nbytes)

        return self.backlog.work(self.applier, now, budget, self._accepted, rejected)

    def crash(self, run: RunState, now: float, why: str) -> None:
        r = run.record
        self.applier.commit_pending_row(run, now)
        r.state = "crashed"
        r.updated = now
        self.next_commit.runs[r.id] = r
        self.counters.add("crashed_runs")
        log.info("run %s of group %s crashed (%s)", r.name, run.group.record.name, why)
        self.sink.crash(run, why)

    # ------------------------------------------------------------ timers

    def tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        mono = self.clock()
        if mono >= self._next_liveness:
            self._next_liveness = mono + self.cfg.liveness_interval_s
            for run in list(self.runs.values()):
                if run.running and self.is_local(run) and not self.pids(run.record.pid):
                    self.crash(run, now, f"pid {run.record.pid} is gone")
        seal_groups(self.groups.values(), now, self.cfg, self.next_commit, SEAL_KEYS_PER_TICK)
        if self.hellos.parked:
            self.hellos.tick(now)
        for part in self.parts:
            part.tick(now)
        self.alerts.tick(now)

    def busy(self) -> bool:
        """Sliced work waits (a wide batch, a seal of many keys): the loop turns again without waiting."""
        return bool(self.backlog) or any(g.sealing is not None for g in self.groups.values())

    def is_local(self, run: RunState) -> bool:
        """A run whose process runs on this machine (its pid can be checked here)."""
        return self.sink.every_run_local or (run.via is None and run.record.node == self.node)

    def drain_full(self) -> bool:
        """Enough points (or batch bytes) wait for the store: commit before draining more frames (bounded commit
        memory). Not while the store refuses commits: then the drain goes on, and batches over the byte budget
        are held (not applied, not acknowledged), so frames do not pile up in the socket either."""
        if self._drain_stop:
            # a commit made room for a batch inside this drain: end it here, or a client resending a backlog
            # keeps one drain going over many commits, and the WAL grows unchecked (agent/daemon.py checks it
            # between drains; a WAL past the disk's room cannot be checkpointed nor committed to again)
            self._drain_stop = False
            return True
        if self.health.trouble is not None:
            return self.sink.drain_full()
        return (
            self.next_commit.points >= self.cfg.max_commit_points
            or self.uncommitted_bytes() >= self.cfg.pending_max_bytes
            or self.window_full()
            or self.sink.drain_full()
        )

    def window_full(self) -> bool:
        """Open points past the agent's window budget: the loop reads no frame until its ticks have sealed the
        oldest steps (this always converges: a seal past the budget does not wait for any rank)."""
        return sum(g.window.nbytes for g in self.groups.values()) > self.cfg.window_max_bytes

    def window_bytes(self) -> int:
        """Bytes of open points held in every group's window (the agent-wide window budget counts these)."""
        return sum(g.nbytes for g in self.groups.values())

    # ------------------------------------------------------------ commit

    def commit_due(self) -> bool:
        """Something waits to be committed now: no failed commit asks us to back off, and the store's batch is
        ready (agent/commits.py ``Commits.due``)."""
        return self.commits.due()

    def commit(self, now: float | None = None, force: bool = False) -> list[Reply]:
        """Have the sink write the next commit; return the ACKs that are now true (agent/commits.py)."""
        return self.commits.commit(time.time() if now is None else now, force)

    def uncommitted_bytes(self) -> int:
        """Wire bytes of the batches taken but not committed: applied (next commit) or queued (wide, in slices)."""
        return self.next_commit.nbytes + sum(b.nbytes for b in self.backlog)

    def found(self, writer: str, run: dict | None, writer_seq: int, now: float | None = None) -> None:
        """The upstream's answer to a lookup (agent/hellos.py)."""
        self.hellos.found(writer, run, writer_seq, time.time() if now is None else now)

    def root_done(self, names: list) -> None:
        """The root says every rank of these groups has joined (agent/hellos.py)."""
        self.hellos.root_done(names)

    # ------------------------------------------------------------ restart, shutdown, status

    def recover(self, now: float | None = None) -> int:
        """After a restart: take back runs left running and reopen their groups' unsealed windows."""
        self.sink.recover()
        return self.registry.recover(time.time() if now is None else now)

    def seal_finished(self, now: float) -> None:
        """At shutdown: seal groups whose every rank is done; running groups stay open for the next agent."""
        seal_groups(self.groups.values(), now, self.cfg, self.next_commit, None)

    def idle(self) -> bool:
        if self.cfg.idle_timeout_s <= 0 or self.clock() - self.last_message <= self.cfg.idle_timeout_s:
            return False
        if self.next_commit or any(r.running for r in self.runs.values()) or self.hellos.parked:
            return False
        return self.sink.idle() and all(part.idle() for part in self.parts) and self.alerts.idle()

    def status(self) -> dict[str, Any]:
        snap = status_view(self)
        self.sink.status(snap)
        for part in self.parts:
            part.status(snap)
        self.alerts.status(snap)
        return snap
