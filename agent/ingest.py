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
SQLite or a loop bound: integers must fit the store (a pid or step of 2**64
would make every later commit fail) and a world size must be plausible (the
sealing policy looks at every rank). Anything a frame still manages to break
while it is handled is counted as ``internal error: <type>`` and logged; the
loop goes on.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any, Callable

import numpy as np

from agent.apply import SLICE_KEYS, Applier, check_width, client_meta
from agent.backoff import Backoff
from agent.config import AgentConfig
from agent.groups import GroupState
from agent.lookups import Lookups
from agent.malformed import MAX_CAUSES, CauseLog, malformed_cause
from agent.media import MediaSink
from agent.nextcommit import LINK_PREFIX, NextCommit
from agent.runs import PidWatch, RunState, WriterState, parent_of
from agent.sinks.base import Part, Sink
from agent.sinks.store import StoreSink
from agent.slices import WideBatches
from agent.status import Counters
from agent.statusview import status_view
from agent.store.base import LOST, Store
from agent.storehealth import StoreHealth, is_store_error
from client import wire
from client.errors import ProtocolError

log = logging.getLogger("rankwise.agent")

Reply = tuple[bytes, bytes]
_META_KEYS = ("_timestamp", "_runtime")

MAX_STEP = 1 << 62  # steps (and the next step, step + 1) stay far inside SQLite's int64
MAX_WORLD = 1 << 20  # ranks per group; the sealing policy visits the ranks it knows on every tick
MAX_PID = 1 << 31
SEAL_KEYS_PER_TICK = SLICE_KEYS  # see agent/apply.py


class Ingest:
    def __init__(
        self,
        store: Store,
        cfg: AgentConfig,
        node: str | None = None,
        pids: PidWatch | None = None,
        media: MediaSink | None = None,
        sink: Sink | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.store = store  # the run registry's store (at a node agent: its catalog, node.sqlite)
        self.cfg = cfg
        self.media = media  # None: media values are stored inline (in-memory tests)
        self.node = node or socket.gethostname()
        self.clock = clock
        # is a run's process still there (by pid and start time); tests inject where start times come from
        self.pids = PidWatch() if pids is None else pids
        self.counters = Counters()
        self.next_commit = NextCommit()
        self.applier = Applier(cfg, media, self.counters, self.next_commit, self._count_malformed)
        self.sink = StoreSink() if sink is None else sink
        self.parts: list[Part] = []  # plugged in beside the sink (a root's record applier: agent/root.py)
        self.runs: dict[int, RunState] = {}
        self.groups: dict[int, GroupState] = {}
        self.writers: dict[str, WriterState] = {}
        self._run_index: dict[tuple[str, str, str], int] = {}  # (project, group, name) -> run id
        self.started = time.time()
        self.instance = os.urandom(6).hex()  # told to writers in WELCOME: they count agent restarts by it
        self.last_message = clock()
        self.stop_requested = False
        self._next_liveness = 0.0
        self.backoff = Backoff(clock)  # after a failed commit the next try waits (no busy loop)
        self.health = StoreHealth(cfg.pending_max_bytes)  # disk full, store lost (agent/storehealth.py)
        self._lost_writers: set[str] = set()  # writers known when the store was lost: told so, then rebased
        # writers whose first batch after their HELLO sets where they resume: known when the store was lost, or
        # reconnecting to a node agent that has no seq for them (its catalog was lost)
        self._rebase: set[str] = set()
        self._frame_log = CauseLog()  # malformed frames: logged per cause, rate-limited, a new cause always
        self.backlog = WideBatches()  # wide batches applied in slices, one per loop turn (agent/slices.py)
        self.next_commit_bytes_max = 0  # high-water mark of next_commit.nbytes (``rankwise status``; tests check it)
        self._unsent_acks: dict[str, tuple[bytes, int]] = {}  # committed, held back a few ticks (_release_acks)
        self._drain_stop = False  # a budget commit happened in this drain (drain_full ends it)
        self.upstream: Any = None  # the agent this one forwards to (agent.upstream.Upstream at a node agent)
        self.lookups = Lookups(self)  # HELLOs of unknown runs waiting for the upstream's view of them
        self.outbox: list[Reply] = []  # replies made outside handle() (parked HELLOs answered)
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
                return self._store_failed(exc)
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

    # ------------------------------------------------------------ the run registry

    def group_state(self, record: Any, now: float) -> GroupState:
        group = self.groups.get(record.id)
        if group is None:
            group = self.groups[record.id] = self.sink.group_class(record, now)
        elif record.world_size > group.record.world_size:
            group.record.world_size = record.world_size
        return group

    def add_run(self, run: RunState) -> RunState:
        g, r = run.group.record, run.record
        self.runs[r.id] = run
        run.group.ranks[r.rank] = run
        self._run_index[(g.project, g.name, r.name)] = r.id
        return run

    def find(self, project: str, group: str, name: str) -> RunState | None:
        key = (project, group, name)
        run = self.runs.get(self._run_index.get(key, -1))
        if run is None and len(self._run_index) != len(self.runs):  # runs were added: index them (once each)
            self._run_index = {(r.group.record.project, r.group.record.name, r.record.name): rid
                               for rid, r in self.runs.items()}  # fmt: skip
            run = self.runs.get(self._run_index.get(key, -1))
        return run

    # ------------------------------------------------------------ HELLO

    def _hello(self, peer: bytes, h: wire.Hello, body: dict, now: float) -> list[Reply]:
        self.counters.add("hellos")
        self.check_hello(h)
        if self.lookups.holds(peer, h, body):  # answered once the upstream says what it knows of the run
            return []
        return self.hello_now(peer, h, body, now)

    def hello_now(self, peer: bytes, h: wire.Hello, body: dict, now: float) -> list[Reply]:
        new = h.writer not in self.writers
        got = self._writer_for(peer, h, body, now)
        if isinstance(got, str):
            self.counters.add("refused")
            return [(peer, wire.pack(wire.REFUSE, {"w": h.writer, "error": got}))]
        ws, resumed = got
        if new:
            if self.sink.rebases_reconnects and h.reconnect and ws.stored == 0 and not ws.fork:
                self._rebase.add(ws.id)
            self.sink.hello(ws.run, h, body, resumed)
        return self._welcome(peer, ws, resumed, body, now)

    def check_hello(self, h: wire.Hello) -> None:
        info = h.run
        if not 0 <= h.pid < MAX_PID:
            raise ProtocolError(f"pid {h.pid} out of range")
        if info["world_size"] > MAX_WORLD:
            raise ProtocolError(f"world_size {info['world_size']} above {MAX_WORLD}")
        if not 0 <= info["local_rank"] < MAX_PID:
            raise ProtocolError(f"local_rank {info['local_rank']} out of range")
        if h.writer.startswith(LINK_PREFIX):
            raise ProtocolError(f"writer id {h.writer!r} uses the reserved prefix {LINK_PREFIX!r}")

    def _writer_for(self, peer: bytes, h: wire.Hello, body: dict, now: float) -> tuple[WriterState, bool] | str:
        """The writer of a HELLO, registered (with its run) if new: (writer, resumed), or why it is refused."""
        ws = self.writers.get(h.writer)
        if ws is None:
            stored = self.store.writer_seq(h.writer)
            fork_of = self.writers.get(body.get("fork_of", "")) if isinstance(body.get("fork_of"), str) else None
            resumed = False
            if fork_of is not None:
                run = fork_of.run
            else:
                # a forked child whose parent writer this agent does not know (it restarted, and the parent
                # has not said HELLO again yet) continues the live run like a reconnect: no resume, no refusal
                forked = isinstance(body.get("fork_of"), str)
                opened = self._open_run(h, now, reconnect=stored > 0 or h.reconnect or forked)
                if isinstance(opened, str):
                    return opened
                run, resumed = opened
            ws = WriterState(h.writer, run, stored, peer, h.pid, fork_of is not None)
            if h.writer in self._lost_writers and stored == 0:  # its acknowledged seqs went with the lost store
                self._rebase.add(h.writer)
            if run.record.pid == h.pid:  # the run's own process (not a forked child of it)
                self.pids.register(h.pid)
                # its launcher: once it and every rank are gone, no rank can join (GroupState.job_over)
                run.launcher = parent_of(h.pid) if self._local(run) else None
            self.writers[h.writer] = ws
            run.writers.add(h.writer)
        else:
            ws.peer = peer
            resumed = True
        if ws.run.via is not None:  # at a root: a rank that was behind a node agent now talks to it directly
            ws.run.via = None
            ws.run.record.meta.pop("via", None)
            self.next_commit.runs[ws.run.record.id] = ws.run.record
        return ws, resumed

    def _welcome(self, peer: bytes, ws: WriterState, resumed: bool, body: dict, now: float) -> list[Reply]:
        run = ws.run
        run.last_seen = now
        r = run.record
        welcome = {
            "w": ws.id,
            "run_id": r.id,
            "step": r.step,
            "summary": r.summary,
            "runtime": r.runtime,
            "resumed": bool(resumed),
            "next_seq": ws.applied + 1,
            "agent": self.instance,
        }
        if isinstance(body.get("h"), int):
            welcome["h"] = body["h"]  # which HELLO this answers: the writer acts on the latest one only
        warn = self.health.warning(ws.id in self._lost_writers)
        if warn:
            welcome["warn"] = warn  # the client logs it once (client/transport.py)
        replies = [(peer, wire.pack(wire.WELCOME, welcome))]
        if ws.stored:
            replies.append((peer, wire.pack(wire.ACK, {"w": ws.id, "s": ws.stored})))
        return replies

    def _open_run(self, h: wire.Hello, now: float, reconnect: bool) -> tuple[RunState, bool] | str:
        """Register a new run or resume an existing one: (run, resumed), or a refusal reason."""
        info = h.run
        project, group_name, name = info["project"], info["group"], info["name"]
        run = self.find(project, group_name, name)
        record = run.record if run is not None else self.store.find_run(project, group_name, name)
        resume = info.get("resume", "allow")
        found = record is not None
        if not reconnect:
            if record is None and resume == "must":
                return f"run {name!r} of group {group_name!r} does not exist and resume='must'"
            if record is not None and resume == "never":
                return f"run {name!r} of group {group_name!r} exists and resume='never'; pick another group or name"
            if (
                record is not None
                and record.state == "running"
                and record.pid != h.pid
                and record.node == info["node"]
                and self.pids(record.pid)
            ):
                return (
                    f"run {name!r} of group {group_name!r} is already running as pid {record.pid} on {record.node}; "
                    "two processes cannot log as the same rank (pass name= or rank=)"
                )
        if run is None:
            # meta keys the agent keeps itself (metric rules, drops, coalesced tally, via) are not a peer's to set
            fields = dict(info, run_key=str(info.get("run_id", "")), pid=h.pid, meta=client_meta(info.get("meta")))
            grecord, record, _ = self.store.register(project, group_name, info["world_size"], fields, now)
            group = self.group_state(grecord, now)
            run = self.add_run(RunState(record, group, now))
        if found and not reconnect:
            self.resume(run, h, now)
            return run, True
        return run, False

    def resume(self, run: RunState, h: wire.Hello, now: float) -> None:
        r = run.record
        if r.state == "running" and r.pending:
            self.applier.commit_pending_row(run, now)
        r.state = "running"
        r.exit_code = None
        r.finished = None
        r.pid = h.pid
        r.incarnations += 1
        r.node = h.run["node"]
        if h.run.get("config"):
            r.config.update(h.run["config"])
        r.updated = now
        self.next_commit.runs[r.id] = r
        self.counters.add("resumed_runs")

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
        if ws.id in self._rebase:
            # the store (or a node agent's catalog) that had this writer's acknowledged batches was lost: the
            # writer resends from the first one it holds (its WELCOME said next_seq 1, it requeued everything
            # unacknowledged, in order)
            self._rebase.discard(ws.id)
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

    # ------------------------------------------------------------ crash handling

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
                if run.running and self._local(run) and not self.pids(run.record.pid):
                    self.crash(run, now, f"pid {run.record.pid} is gone")
        budget = SEAL_KEYS_PER_TICK  # group rows of at most this many keys per tick: the loop stays responsive
        # the window budget is the agent's, not each group's: the groups holding points share it
        holding = sum(1 for g in self.groups.values() if g.window.nbytes)
        share = self.cfg.window_max_bytes // max(1, holding)
        for group in self.groups.values():
            group.share = share
            budget -= group.seal(now, self.cfg, self.next_commit, budget=max(1, budget))
        if self.lookups.parked:
            self.lookups.tick(now)
        for part in self.parts:
            part.tick(now)

    def busy(self) -> bool:
        """Sliced work waits (a wide batch, a seal of many keys): the loop turns again without waiting."""
        return bool(self.backlog) or any(g.sealing is not None for g in self.groups.values())

    def _local(self, run: RunState) -> bool:
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
        """Something waits to be committed and no failed commit asks us to back off."""
        return bool(self.next_commit) and self.backoff.due()

    def commit(self, now: float | None = None, force: bool = False) -> list[Reply]:
        """Have the sink write the next commit (one transaction, one spool record); return the ACKs that are
        now true. After a failure the data stays and the next attempt backs off (``force``: try now)."""
        nc = self.next_commit
        if self.media is not None:
            for cause, n in self.media.take_skipped().items():
                nc.drops[cause] = nc.drops.get(cause, 0) + n
                self.counters.drop(cause, n)
        if not nc or (not force and not self.backoff.due()):
            return self._release_acks()
        try:
            written = self.sink.write(nc, time.time() if now is None else now)
        except Exception as exc:  # StoreError and anything under it: keep the data, retry next turn
            self.backoff.failed()
            self.counters.add("commit_failures")
            failures = self.backoff.failures
            if not is_store_error(exc):  # a bug, not the store: the trace, rate-limited (store trouble: once)
                if failures <= 5 or failures % 100 == 0:
                    log.error("store commit failed (%d so far), will retry: %s", failures, exc, exc_info=True)
                return []
            return self._store_failed(exc)
        if not written:  # refused (a full spool): everything stays for the next try
            self.backoff.failed()
            return []
        if self.sink.tracks_store_health:
            self.health.recovered(nc.points)
        self.backoff.reset()
        self.counters.add("commits")
        for writer, (peer, seq) in nc.acks.items():
            ws = self.writers.get(writer)
            if ws is not None:
                ws.stored = max(ws.stored, seq)
            self._unsent_acks[writer] = (peer, seq)
        for part in self.parts:
            part.committed(nc)
        nc.clear()
        return self._release_acks()

    def _release_acks(self) -> list[Reply]:
        """The ACKs of committed batches, but not yet those of a writer whose run is done while its group is
        sealed over several ticks (a window of more than ``SEAL_SLICE_BYTES``, agent/groups.py): when its
        finish() returns, its group rows are in the store (README, "What is guaranteed")."""
        if not self._unsent_acks:
            return []
        acks = []
        for writer, (peer, seq) in list(self._unsent_acks.items()):
            ws = self.writers.get(writer)
            if ws is not None and not ws.run.running and ws.run.group.sealing is not None:
                continue
            del self._unsent_acks[writer]
            acks.append((peer, wire.pack(wire.ACK, {"w": writer, "s": seq})))
        return acks

    def uncommitted_bytes(self) -> int:
        """Wire bytes of the batches taken but not committed: applied (next commit) or queued (wide, in slices)."""
        return self.next_commit.nbytes + sum(b.nbytes for b in self.backlog)

    def _store_failed(self, exc: BaseException) -> list[Reply]:
        """A store operation failed: a full or unavailable store starts (or goes on with) an episode of
        back-pressure; a lost one (deleted, replaced, corrupt) is replaced by a fresh store."""
        resets = self.sink.resets_store_on_loss
        if self.health.failed(exc, self.next_commit.nbytes, hold_lost=not resets) != LOST or not resets:
            return []
        try:
            return self._store_lost(str(exc))
        except Exception as again:  # cannot even start a fresh store (disk full, permissions): retry later
            self.health.failed(again, self.next_commit.nbytes, hold_lost=True)
            return []

    def _store_lost(self, why: str) -> list[Reply]:
        """Start over on a fresh store. Everything in memory that mirrored the old one goes: runs, groups,
        writers (their "applied" seqs were never committed in the new store) and pending work. Each writer
        is told (NACK unknown-writer, with a warning it logs): it says HELLO again, is registered in the new
        store and resends from its first unacknowledged batch (``_rebase``)."""
        moved = self.store.reset(why)
        writers = dict(self.writers)
        points = self.next_commit.points
        self._lost_writers.update(writers)
        self.health.lost(why, moved, len(writers), points)
        self.counters.add("store_losses")
        self.runs.clear()
        self.groups.clear()
        self.writers.clear()
        self._run_index.clear()
        self._rebase.clear()
        self.backlog.clear()  # slices of wide batches of forgotten writers: resent with the rest
        self._unsent_acks.clear()
        self.next_commit.clear()
        self.backoff.reset()
        self.instance = os.urandom(6).hex()  # the writers count this like an agent restart
        warn = self.health.warning(True)
        return [
            (ws.peer, wire.pack(wire.NACK, {"w": wid, "reason": "unknown-writer", "warn": warn}))
            for wid, ws in writers.items()
        ]

    # ------------------------------------------------------------ the upstream's answers (a node agent)

    def found(self, writer: str, run: dict | None, writer_seq: int, now: float | None = None) -> None:
        """The upstream's answer to a lookup (agent/lookups.py)."""
        self.lookups.found(writer, run, writer_seq, time.time() if now is None else now)

    def root_done(self, names: list) -> None:
        """The root says every rank of these groups has joined (agent/lookups.py)."""
        self.lookups.root_done(names)

    # ------------------------------------------------------------ restart, shutdown, status

    def recover(self, now: float | None = None) -> int:
        """After a restart: take back runs left running and reopen their groups' unsealed windows."""
        now = time.time() if now is None else now
        self.sink.recover()
        count = 0
        for grecord, record in self.store.open_runs():
            group = self.group_state(grecord, now)
            self.add_run(RunState(record, group, now))
            count += 1
        for group in self.groups.values():
            for key, rank, steps, values in self.store.unsealed_points(group.record.id, group.record.sealed_through):
                if len(steps):
                    group.reopen(key, rank, steps, values, now)
        if count:
            log.info("recovered %d running run(s) in %d group(s)", count, len(self.groups))
        return count

    def seal_finished(self, now: float) -> None:
        """At shutdown: seal groups whose every rank is done; running groups stay open for the next agent."""
        for group in self.groups.values():
            if not any(r.running for r in group.ranks.values()):
                group.seal(now, self.cfg, self.next_commit, everything=True)

    def idle(self) -> bool:
        if self.cfg.idle_timeout_s <= 0 or self.clock() - self.last_message <= self.cfg.idle_timeout_s:
            return False
        if self.next_commit or any(r.running for r in self.runs.values()) or self.lookups.parked:
            return False
        return self.sink.idle() and all(part.idle() for part in self.parts)

    def status(self) -> dict[str, Any]:
        snap = status_view(self)
        self.sink.status(snap)
        for part in self.parts:
            part.status(snap)
        return snap


# what one value of a list column (strings, mixed types: encoding "mp") costs once decoded, beyond its wire
# bytes: a list slot and a Python object. Numeric columns decode to arrays over their wire bytes (no extra).
LIST_VALUE_BYTES = 56


def batch_cost(b: wire.Batch) -> int:
    """The bytes a batch counts against the pending budget: its frame, plus its decoded Python objects."""
    extra = 0
    for col in b.columns:
        if not isinstance(col.values, np.ndarray):
            extra += LIST_VALUE_BYTES * len(col.values)
    return b.nbytes + extra


def check_batch(b: wire.Batch) -> None:
    """What the wire decoder cannot know: steps must leave room in the store's int64 (step + 1)."""
    if b.n and int(b.step.max()) >= MAX_STEP:
        raise ProtocolError(f"step {int(b.step.max())} at or above {MAX_STEP}")
    if b.pending is not None and b.pending[0] >= MAX_STEP:
        raise ProtocolError(f"pending step {b.pending[0]} at or above {MAX_STEP}")
