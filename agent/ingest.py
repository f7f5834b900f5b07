"""Message handling: frames in, state changes and replies out. No sockets here.

The daemon's loop feeds every frame to :meth:`Ingest.handle` (which validates
it and answers HELLO/STATUS/PING at once), calls :meth:`Ingest.commit` after
each drain (one store transaction, then the ACKs it made true) and
:meth:`Ingest.tick` on a timer (crash detection, sealing). A malformed frame is
counted by cause and answered with nothing; it never raises out of here.

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
from collections import deque
from typing import Any

import numpy as np

from agent.apply import SLICE_KEYS, RunUpdates, client_meta
from agent.config import AgentConfig
from agent.groups import GroupState
from agent.malformed import MAX_CAUSES, CauseLog, malformed_cause
from agent.memory import resident
from agent.media import MediaSink
from agent.pending import LINK_PREFIX, PendingWrites
from agent.runs import PidWatch, RunState, WriterState, parent_of
from agent.status import Counters
from agent.store.base import LOST, Store
from agent.storehealth import StoreHealth, is_store_error
from client import wire
from client.errors import ProtocolError
from grouping import finalize, reduce_points

log = logging.getLogger("rankwise.agent")

Reply = tuple[bytes, bytes]
_META_KEYS = ("_timestamp", "_runtime")

MAX_STEP = 1 << 62  # steps (and the next step, step + 1) stay far inside SQLite's int64
MAX_WORLD = 1 << 20  # ranks per group; the sealing policy visits the ranks it knows on every tick
MAX_PID = 1 << 31
SEAL_KEYS_PER_TICK = SLICE_KEYS  # see agent/apply.py


class Ingest(RunUpdates):
    group_class = GroupState  # a node agent and a root seal differently (agent/groups.py, agent/rootgroups.py)
    # a lost store (deleted, corrupt) is replaced by a fresh one and the writers resend (False: hold, say so)
    resets_store_on_loss = True
    store_health = True  # commit() tracks disk full / lost store episodes (a node agent's commit writes a spool)

    def __init__(
        self,
        store: Store,
        cfg: AgentConfig,
        node: str | None = None,
        pids: PidWatch | None = None,
        media: MediaSink | None = None,
    ):
        self.store = store
        self.cfg = cfg
        self.media = media  # None: media values are stored inline (in-memory tests)
        self.node = node or socket.gethostname()
        # is a run's process still there (by pid and start time); tests inject where start times come from
        self.pids = PidWatch() if pids is None else pids
        self.counters = Counters()
        self.pending = PendingWrites()
        self.runs: dict[int, RunState] = {}
        self.groups: dict[int, GroupState] = {}
        self.writers: dict[str, WriterState] = {}
        self._run_index: dict[tuple[str, str, str], int] = {}  # (project, group, name) -> run id
        self.started = time.time()
        self.instance = os.urandom(6).hex()  # told to writers in WELCOME: they count agent restarts by it
        self.last_message = time.monotonic()
        self.stop_requested = False
        self._next_liveness = 0.0
        self._commit_failures = 0
        self._commit_retry_at = 0.0  # monotonic; after a failed commit the next try waits (no busy loop)
        self.health = StoreHealth(cfg.pending_max_bytes)  # disk full, store lost (agent/storehealth.py)
        self._lost_writers: set[str] = set()  # writers known when the store was lost: told so, then rebased
        self._rebase_lost: set[str] = set()  # ... whose first batch after their HELLO sets where they resume
        self._frame_log = CauseLog()  # malformed frames: logged per cause, rate-limited, a new cause always
        self.backlog: deque = deque()  # wide batches applied in slices, one per loop turn (agent/apply.py)
        self._queued: dict[str, int] = {}
        self.pending_bytes_max = 0  # high-water mark of pending.nbytes (``rankwise status``; tests check the budget)
        self._unsent_acks: dict[str, tuple[bytes, int]] = {}  # committed, held back a few ticks (_release_acks)
        self._drain_stop = False  # a budget commit happened in this drain (drain_full ends it)

    def __repr__(self) -> str:
        running = sum(r.running for r in self.runs.values())
        return (
            f"<Ingest runs={len(self.runs)} running={running} groups={len(self.groups)} writers={len(self.writers)} "
            f"pending={self.pending!r}>"
        )

    # ------------------------------------------------------------ dispatch

    def handle(self, peer: bytes, frame: bytes, now: float | None = None) -> list[Reply]:
        now = time.time() if now is None else now
        self.last_message = time.monotonic()
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
                return self._batch(peer, batch, now)
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
            self._bad_frame(malformed_cause(str(exc)), len(frame), exc)
            return []
        except Exception as exc:  # a frame that passed validation and still broke something: count, go on
            if self.store_health and is_store_error(exc):  # not the frame's fault: a HELLO hit a full or lost store
                self.counters.add("store_errors")
                return self._store_failed(exc)
            self._bad_frame(f"internal error: {type(exc).__name__}", len(frame), exc, trace=True)
            return []

    def _bad_frame(self, cause: str, nbytes: int, exc: Exception, trace: bool = False) -> None:
        self._count_malformed(cause)
        trace = trace or cause.startswith("internal error")  # a bug of ours: its traceback says where
        said = self._frame_log.allow(cause, time.monotonic())
        if said is not None:
            more = f" ({said} more of this cause not logged)" if said else ""
            log.warning("malformed frame (%d bytes) ignored: %s%s", nbytes, exc, more, exc_info=trace)

    def _count_malformed(self, cause: str) -> None:
        if cause not in self.counters.malformed and len(self.counters.malformed) >= MAX_CAUSES:
            cause = "other"
        self.counters.bad_frame(cause)

    # ------------------------------------------------------------ HELLO

    def _group_state(self, record: Any, now: float) -> GroupState:
        group = self.groups.get(record.id)
        if group is None:
            group = self.groups[record.id] = self.group_class(record, now)
        elif record.world_size > group.record.world_size:
            group.record.world_size = record.world_size
        return group

    def _add_run(self, run: RunState) -> RunState:
        g, r = run.group.record, run.record
        self.runs[r.id] = run
        run.group.ranks[r.rank] = run
        self._run_index[(g.project, g.name, r.name)] = r.id
        return run

    def _find(self, project: str, group: str, name: str) -> RunState | None:
        key = (project, group, name)
        run = self.runs.get(self._run_index.get(key, -1))
        if run is None and len(self._run_index) != len(self.runs):  # runs were added: index them (once each)
            self._run_index = {(r.group.record.project, r.group.record.name, r.record.name): rid
                               for rid, r in self.runs.items()}  # fmt: skip
            run = self.runs.get(self._run_index.get(key, -1))
        return run

    def _hello(self, peer: bytes, h: wire.Hello, body: dict, now: float) -> list[Reply]:
        self.counters.add("hellos")
        self._check_hello(h)
        got = self._writer_for(peer, h, body, now)
        if isinstance(got, str):
            self.counters.add("refused")
            return [(peer, wire.pack(wire.REFUSE, {"w": h.writer, "error": got}))]
        return self._welcome(peer, got[0], got[1], body, now)

    def _check_hello(self, h: wire.Hello) -> None:
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
                self._rebase_lost.add(h.writer)
            if run.record.pid == h.pid:  # the run's own process (not a forked child of it)
                self.pids.register(h.pid)
                # its launcher: once it and every rank are gone, no rank can join (GroupState.job_over)
                run.launcher = parent_of(h.pid) if self._local(run) else None
            self.writers[h.writer] = ws
            run.writers.add(h.writer)
        else:
            ws.peer = peer
            resumed = True
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
        run = self._find(project, group_name, name)
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
            group = self._group_state(grecord, now)
            run = self._add_run(RunState(record, group, now))
        if found and not reconnect:
            self._resume(run, h, now)
            return run, True
        return run, False

    def _resume(self, run: RunState, h: wire.Hello, now: float) -> None:
        r = run.record
        if r.state == "running" and r.pending:
            self._commit_pending_row(run, now)
        r.state = "running"
        r.exit_code = None
        r.finished = None
        r.pid = h.pid
        r.incarnations += 1
        r.node = h.run["node"]
        if h.run.get("config"):
            r.config.update(h.run["config"])
        r.updated = now
        self.pending.runs[r.id] = r
        self.counters.add("resumed_runs")

    # ------------------------------------------------------------ BATCH

    def _batch(self, peer: bytes, b: wire.Batch, now: float) -> list[Reply]:
        ws = self.writers.get(b.writer)
        if ws is None:
            self.counters.add("unknown_writer")
            return [(peer, wire.pack(wire.NACK, {"w": b.writer, "reason": "unknown-writer"}))]
        if b.seq <= ws.applied:
            self.counters.add("duplicate_batches")
            if b.seq <= ws.stored:
                return [(peer, wire.pack(wire.ACK, {"w": ws.id, "s": ws.stored}))]
            return []
        if ws.id in self._rebase_lost:
            # the store that had this writer's acknowledged batches was lost: the writer resends from the first
            # one it holds (its WELCOME said next_seq 1, it requeued everything unacknowledged, in order)
            self._rebase_lost.discard(ws.id)
            if ws.applied == 0 and b.seq > 1:
                ws.applied = ws.stored = b.seq - 1
                self.counters.add("writers_rebased")
        # applied-but-uncommitted work never passes its byte budget (issue 11); a batch alone may (it is taken
        # with nothing else pending: the budget must not stop a writer whose batches are all bigger)
        over = self.pending.nbytes > 0 and self.pending.nbytes + batch_cost(b) > self.cfg.pending_max_bytes
        if self.health.trouble is not None and (over or self.health.holding(self._uncommitted_bytes())):
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
            if self.pending.nbytes or self.writers.get(b.writer) is not ws:
                # the commit failed (the store is in trouble, or lost and every writer told to start over):
                # this batch is neither applied nor acknowledged, its client resends it
                self.counters.add("held_batches")
                return acks
        return acks + self._take(peer, ws, b, now)

    def _take(self, peer: bytes, ws: WriterState, b: wire.Batch, now: float) -> list[Reply]:
        """Apply the writer's next batch (or queue it, a wide one) within the byte budget."""
        try:
            _check_batch(b)
            sliced = self._sliced(ws, peer, b)  # a wide batch is applied over several loop turns (agent/apply.py)
        except ProtocolError as exc:
            return self._reject(peer, ws, b.seq, b.n, malformed_cause(str(exc)), exc, b.nbytes)
        ws.peer = peer  # only an applied batch moves the writer's ACKs to this connection
        if sliced:
            ws.applied = b.seq  # queued in order: the next seq is no gap, a resend of this one a duplicate
            return []
        try:
            self._apply(ws.run, b, now)
        except Exception as exc:  # valid on the wire and still broke something: rejected, never resent for ever
            return self._reject(peer, ws, b.seq, b.n, f"internal error: {type(exc).__name__}", exc, b.nbytes)
        ws.applied = b.seq
        self._accepted(ws, b)
        return []

    def _accepted(self, ws: WriterState, b: wire.Batch) -> None:
        """A batch applied whole (at once, or its last slice): stored and acknowledged with the next commit."""
        self.pending.nbytes += batch_cost(b)
        if self.pending.nbytes > self.pending_bytes_max:
            self.pending_bytes_max = self.pending.nbytes
        self.pending.writers[ws.id] = (ws.run.record.id, b.seq)
        self.pending.acks[ws.id] = (ws.peer, b.seq)
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
        self._bad_frame(cause, nbytes, exc)  # counted and logged as malformed; the writer is told, below
        ws.applied = seq
        r = ws.run.record
        self.pending.writers[ws.id] = (r.id, seq)
        self.pending.acks[ws.id] = (peer, seq)
        self.pending.drops["rejected"] = self.pending.drops.get("rejected", 0) + rows
        self.counters.drop("rejected", rows)
        drops = r.meta.setdefault("drops", {})
        drops["rejected"] = drops.get("rejected", 0) + rows
        self.pending.runs[r.id] = r
        self.counters.add("rejected_batches")
        return [(peer, wire.pack(wire.NACK, {"w": ws.id, "reason": "rejected", "s": seq, "cause": cause}))]

    # ------------------------------------------------------------ crash handling

    def _crash(self, run: RunState, now: float, why: str) -> None:
        r = run.record
        self._commit_pending_row(run, now)
        r.state = "crashed"
        r.updated = now
        self.pending.runs[r.id] = r
        self.counters.add("crashed_runs")
        log.info("run %s of group %s crashed (%s)", r.name, run.group.record.name, why)

    # ------------------------------------------------------------ timers, commit

    def tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        mono = time.monotonic()
        if mono >= self._next_liveness:
            self._next_liveness = mono + self.cfg.liveness_interval_s
            for run in list(self.runs.values()):
                if run.running and self._local(run) and not self.pids(run.record.pid):
                    self._crash(run, now, f"pid {run.record.pid} is gone")
        budget = SEAL_KEYS_PER_TICK  # group rows of at most this many keys per tick: the loop stays responsive
        # the window budget is the agent's, not each group's: the groups holding points share it
        holding = sum(1 for g in self.groups.values() if g.window.nbytes)
        share = self.cfg.window_max_bytes // max(1, holding)
        for group in self.groups.values():
            group.share = share
            budget -= group.seal(now, self.cfg, self.pending, budget=max(1, budget))

    def busy(self) -> bool:
        """Sliced work waits (a wide batch, a seal of many keys): the loop turns again without waiting."""
        return bool(self.backlog) or any(getattr(g, "sealing", None) is not None for g in self.groups.values())

    def _local(self, run: RunState) -> bool:
        """A run whose process runs on this machine (its pid can be checked here)."""
        return run.via is None and run.record.node == self.node

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
            return False
        return (
            self.pending.points >= self.cfg.max_commit_points
            or self._uncommitted_bytes() >= self.cfg.pending_max_bytes
            or self.window_full()
        )

    def window_full(self) -> bool:
        """Open points past the agent's window budget: the loop reads no frame until its ticks have sealed the
        oldest steps (this always converges: a seal past the budget does not wait for any rank)."""
        return sum(g.window.nbytes for g in self.groups.values()) > self.cfg.window_max_bytes

    def window_bytes(self) -> int:
        """Bytes of open points held in every group's window (the agent-wide window budget counts these)."""
        return sum(getattr(g, "nbytes", g.window.nbytes) for g in self.groups.values())

    def commit_due(self) -> bool:
        """Something waits to be committed and no failed commit asks us to back off."""
        return bool(self.pending) and time.monotonic() >= self._commit_retry_at

    def commit(self, now: float | None = None, force: bool = False) -> list[Reply]:
        """Write everything pending in one transaction; return the ACKs that are now true.

        After a failure the data stays pending and the next attempt waits 10 ms, doubling up to 2 s,
        so a store that keeps failing does not turn the loop into a busy one (``force``: try now)."""
        pending = self.pending
        if self.media is not None:
            for cause, n in self.media.take_skipped().items():
                pending.drops[cause] = pending.drops.get(cause, 0) + n
                self.counters.drop(cause, n)
        if not pending or (not force and time.monotonic() < self._commit_retry_at):
            return self._release_acks()
        t0 = time.perf_counter()
        try:
            with self.store.transaction() as txn:
                pending.write(txn)
                for revision, todo in ((True, pending.recompute), (False, pending.fresh)):
                    for (gid, key), parts in todo.items():
                        steps = np.unique(np.concatenate(parts))
                        s, ranks, values = txn.rank_values(gid, key, steps)
                        rows = finalize(reduce_points(s, ranks, values), self.groups[gid].record.world_size)
                        txn.add_group_rows(gid, key, rows, revision)
                        self.counters.add("group_revisions" if revision else "group_rows_recomputed", len(steps))
        except Exception as exc:  # StoreError and anything under it: keep the data, retry next turn
            self._commit_failures += 1
            self._commit_retry_at = time.monotonic() + min(2.0, 0.01 * 2 ** min(self._commit_failures, 8))
            self.counters.add("commit_failures")
            if not is_store_error(exc):  # a bug, not the store: the trace, rate-limited (store trouble: once)
                if self._commit_failures <= 5 or self._commit_failures % 100 == 0:
                    log.error("store commit failed (%d so far), will retry: %s", self._commit_failures, exc,
                              exc_info=True)  # fmt: skip
                return []
            return self._store_failed(exc)
        self.health.recovered(pending.points)
        self._commit_failures = 0
        self._commit_retry_at = 0.0
        self.counters.add("commits")
        self.counters.add("stored_points", pending.points)
        self.counters.add("commit_us", int((time.perf_counter() - t0) * 1e6))
        for writer, (peer, seq) in pending.acks.items():
            ws = self.writers.get(writer)
            if ws is not None:
                ws.stored = max(ws.stored, seq)
            self._unsent_acks[writer] = (peer, seq)
        self._committed(pending)
        pending.clear()
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
            if ws is not None and not ws.run.running and getattr(ws.run.group, "sealing", None) is not None:
                continue
            del self._unsent_acks[writer]
            acks.append((peer, wire.pack(wire.ACK, {"w": writer, "s": seq})))
        return acks

    def _uncommitted_bytes(self) -> int:
        """Wire bytes of the batches taken but not committed: applied (pending) or queued (wide, in slices)."""
        return self.pending.nbytes + sum(w.b.nbytes for w in self.backlog)

    def _store_failed(self, exc: BaseException) -> list[Reply]:
        """A store operation failed: a full or unavailable store starts (or goes on with) an episode of
        back-pressure; a lost one (deleted, replaced, corrupt) is replaced by a fresh store."""
        if self.health.failed(exc, self.pending.nbytes, hold_lost=not self.resets_store_on_loss) != LOST:
            return []
        if not self.resets_store_on_loss:
            return []
        try:
            return self._store_lost(str(exc))
        except Exception as again:  # cannot even start a fresh store (disk full, permissions): retry later
            self.health.failed(again, self.pending.nbytes, hold_lost=True)
            return []

    def _store_lost(self, why: str) -> list[Reply]:
        """Start over on a fresh store. Everything in memory that mirrored the old one goes: runs, groups,
        writers (their "applied" seqs were never committed in the new store) and pending work. Each writer
        is told (NACK unknown-writer, with a warning it logs): it says HELLO again, is registered in the new
        store and resends from its first unacknowledged batch (``_rebase_lost``)."""
        moved = self.store.reset(why)
        writers = dict(self.writers)
        points = self.pending.points
        self._lost_writers.update(writers)
        self.health.lost(why, moved, len(writers), points)
        self.counters.add("store_losses")
        self.runs.clear()
        self.groups.clear()
        self.writers.clear()
        self._run_index.clear()
        self._rebase_lost.clear()
        self.backlog.clear()  # slices of wide batches of forgotten writers: resent with the rest
        self._unsent_acks.clear()
        self._queued.clear()
        self.pending.clear()
        self._commit_failures = 0
        self._commit_retry_at = 0.0
        self.instance = os.urandom(6).hex()  # the writers count this like an agent restart
        warn = self.health.warning(True)
        return [
            (ws.peer, wire.pack(wire.NACK, {"w": wid, "reason": "unknown-writer", "warn": warn}))
            for wid, ws in writers.items()
        ]

    def _committed(self, pending: PendingWrites) -> None:
        """Called after a successful commit, before ``pending`` is cleared (a root acknowledges records)."""

    def recover(self, now: float | None = None) -> int:
        """After a restart: take back runs left running and reopen their groups' unsealed windows."""
        now = time.time() if now is None else now
        count = 0
        for grecord, record in self.store.open_runs():
            group = self._group_state(grecord, now)
            self._add_run(RunState(record, group, now))
            count += 1
        for group in self.groups.values():
            for key, rank, steps, values in self.store.unsealed_points(group.record.id, group.record.sealed_through):
                if len(steps):
                    self._reopen(group, key, rank, steps, values, now)
        if count:
            log.info("recovered %d running run(s) in %d group(s)", count, len(self.groups))
        return count

    def _reopen(self, group: GroupState, key: str, rank: int, steps: np.ndarray, values: np.ndarray, now: float) -> None:
        """Stored points above a group's seal, after a restart: back into its open window."""
        group.window.add(key, rank, steps, values, now)

    def seal_finished(self, now: float) -> None:
        """At shutdown: seal groups whose every rank is done; running groups stay open for the next agent."""
        for group in self.groups.values():
            if not any(r.running for r in group.ranks.values()):
                group.seal(now, self.cfg, self.pending, everything=True)

    def idle(self) -> bool:
        if self.cfg.idle_timeout_s <= 0 or time.monotonic() - self.last_message <= self.cfg.idle_timeout_s:
            return False
        return not self.pending and not any(r.running for r in self.runs.values())

    def status(self) -> dict[str, Any]:
        states: dict[str, int] = {}
        for run in self.runs.values():
            states[run.record.state] = states.get(run.record.state, 0) + 1
        snap = self.counters.snapshot()
        snap.update(
            pid=os.getpid(),
            node=self.node,
            uptime_s=time.time() - self.started,
            store=str(self.cfg.store_path),
            runs=states,
            groups=len(self.groups),
            writers=len(self.writers),
            window_bytes=self.window_bytes(),
            pending_points=self.pending.points,
            pending_bytes_max=self.pending_bytes_max,
            **resident(),
            **self.health.status(self._uncommitted_bytes()),
            running=[
                {
                    "project": run.group.record.project,
                    "group": run.group.record.name,
                    "name": run.record.name,
                    "rank": run.record.rank,
                    "step": run.record.step,
                    "rows": run.record.rows,
                    "pid": run.record.pid,
                    "lag_s": max(0.0, time.time() - run.last_seen),
                }
                for run in self.runs.values()
                if run.running
            ][:200],
        )
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


def _check_batch(b: wire.Batch) -> None:
    """What the wire decoder cannot know: steps must leave room in the store's int64 (step + 1)."""
    if b.n and int(b.step.max()) >= MAX_STEP:
        raise ProtocolError(f"step {int(b.step.max())} at or above {MAX_STEP}")
    if b.pending is not None and b.pending[0] >= MAX_STEP:
        raise ProtocolError(f"pending step {b.pending[0]} at or above {MAX_STEP}")
