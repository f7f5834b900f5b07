"""The writer: one per process incarnation of a run. Owns the op deque, the
assembler and the I/O thread that talks to the node agent.

Threads and locks
-----------------
* The training thread only pushes to ``ops``: each op is four items added by one
  ``deque.extend`` (atomic under the GIL). Four flat items instead of one tuple
  matter: a tuple holding a dict is never untracked by CPython's GC, so a backlog
  of 100k tuples would make every full collection of the training process slow.
* ``lock`` guards the assembler (rows, summary, sequence numbers) and the
  outbox. The I/O thread takes it to turn ops into batches; the training thread
  takes it only for rare reads that must see everything logged so far
  (``run.summary``) and for ``flush``.
* Everything that touches the socket runs on the I/O thread; the socket is
  created there and never shared.

Delivery
--------
Batches carry a per-writer sequence number. The agent acknowledges "stored
through seq N" after its store commit; until then a batch stays in
``unacked`` (bounded in bytes). After a reconnect or an agent restart the
writer says HELLO again, the agent answers WELCOME with the next seq it
expects, and the writer resends from there; the agent drops duplicates. So
nothing is lost when ZeroMQ drops queued messages on a peer restart.

Replays are bounded so that an outage does not turn into a resend storm:

* the socket has ``ZMQ_IMMEDIATE``: frames are queued only on a live
  connection, never for an agent that is gone (they would reach its successor
  as a burst of batches from an unknown writer); a HELLO that cannot go out yet
  stays pending and is sent as soon as the connection is up;
* every HELLO carries a number ``h`` that the WELCOME echoes, and remembers
  the highest seq sent before it. Only the WELCOME of the latest HELLO
  resends, and only up to that mark: later batches travel behind the HELLO on
  the same connection (if that connection breaks, no ACK comes and the retry
  timer says HELLO again);
* while a HELLO is outstanding no batch is sent: its WELCOME says where to
  resume, and a batch sent behind the HELLO would reach a restarted agent
  before the replay and come back as a gap, to be replayed a second time;
* a NACK for an unknown writer sends a HELLO only when none is outstanding,
  and a NACK for a gap resends from a given seq at most once per retry period.

Shutdown order (``close``): the training thread appends the finish op and
wakes the I/O thread → the I/O thread drains ops, sends the last batch and
waits for its ACK (bounded by the caller's timeout) → closes the socket with
linger 0 → terminates its context → sets ``done``.
"""

from __future__ import annotations

import collections
import logging
import os
import struct
import sys
import threading
import time
import weakref
from typing import Any, Callable

import zmq

from client import spawn, wire
from client.assembler import Assembler
from client.coalesce import Coalescer
from client.ops import CONTROL
from client.spill import SpillFifo
from client.settings import Settings

log = logging.getLogger("rankwise")
_SPILL_HEAD = struct.Struct("<QI")  # seq, rows: what the writer needs back with a spilled frame
_OP_BASE_BYTES = 96  # one queued op besides its dict: four deque slots, the step int and the time float
_VALUE_BYTES = 32  # one value of a row (a float object, with allocator rounding)
_BUSY_CALLS = 256  # calls found queued at a turn above which the I/O thread looks again after 2 ms


class Counters:
    """What the writer did, for ``run.stats`` and the finish report. Written only by the I/O thread.

    ``rows_sent`` counts every row once, when its batch first goes out; ``resends`` (batches) and
    ``rows_resent`` count the replays after an agent restart or a lost connection;
    ``agent_restarts`` counts WELCOMEs from an agent instance other than the previous one's;
    ``overloads`` counts the times the op backlog passed ``max_queued_bytes`` (log() outran this thread),
    ``coalesced_rows``/``coalesced_spans`` the rows folded into spans then and the spans sent
    (client/coalesce.py), ``queued_peak_bytes`` the largest backlog seen (an estimate)."""

    __slots__ = (
        "batches_sent",
        "rows_sent",
        "resends",
        "rows_resent",
        "hellos",
        "agent_restarts",
        "spawns",
        "acked_seq",
        "refused",
        "dropped_rows",
        "spilled_batches",
        "rejected_batches",
        "io_errors",
        "overloads",
        "coalesced_rows",
        "coalesced_spans",
        "queued_peak_bytes",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class Writer:
    """Ops in, acknowledged batches out. See the module docstring for threads and shutdown."""

    def __init__(self, settings: Settings, hello_run: dict, writer_id: str | None = None, fork_of: str | None = None):
        self.settings = settings
        self.id = writer_id or os.urandom(8).hex()
        self.hello_run = hello_run
        self.fork_of = fork_of
        self.ops: collections.deque = collections.deque()
        self.lock = threading.Lock()
        self.assembler = Assembler(self.id, hello_run["started"], max_rows=settings.batch_max_rows)
        self.counters = Counters()
        self.welcome: dict | None = None
        self.refusal: str | None = None
        self.welcomed = threading.Event()
        self.done = threading.Event()
        self._outbox: collections.deque = collections.deque()  # (seq, frame, rows) not yet sent
        self._unacked: collections.OrderedDict = collections.OrderedDict()  # seq -> (frame, rows, sent_at)
        self._held_bytes = 0  # frames in the outbox and unacked (memory); beyond the bound they spill
        self._spill: SpillFifo | None = None
        self._tail: collections.deque = collections.deque()  # frames/tombstones queued behind a refused spill
        self._tail_bytes = 0
        self._closing = False
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._agent: dict | None = None
        self._hello_sent_at = 0.0
        self._hello_n = 0  # number of the latest HELLO; its WELCOME is the one that counts
        self._hello_pending = False  # the latest HELLO could not be queued yet (no live connection)
        self._hello_answered = False
        self._hello_marks: dict[int, int] = {}  # HELLO number -> highest seq sent before it
        self._max_sent = 0  # highest seq ever handed to the socket
        self._gap_resent: tuple[int, float] = (0, 0.0)  # (from seq, when) of the last resend for a gap
        self._agent_id: str | None = None  # the instance that sent the last WELCOME (a restart changes it)
        self._warned: str | None = None  # the agent's last warning (its store is full or was lost), logged once
        self._last_ack_at = time.monotonic()
        self._retry_after = settings.retry_after_s
        self.on_late_welcome: Callable[[dict], None] | None = None
        self.drops: dict[str, int] = {}  # cause -> rows this writer dropped (spill refused, agent rejected)
        self._warned_causes: set[str] = set()  # drop causes already warned about (once each)
        # overload (client/coalesce.py): the run whose push we switch, the coalescer, bytes per queued op
        self._owner: Callable[[], Any] | None = None
        self.coalescer = Coalescer(self.ops.extend, time.perf_counter)
        self._op_bytes = float(_OP_BASE_BYTES + 256)  # estimated from the ops assembled (see _estimate)
        self._overload_since = 0.0
        self._busy = False  # calls come fast (or overload): look again soon
        self._busy_until = 0.0

    def __repr__(self) -> str:
        state = "done" if self.done.is_set() else ("closing" if self._closing else "open")
        return (
            f"<Writer {self.id[:8]} {state} ops={len(self.ops)} outbox={len(self._outbox)} "
            f"unacked={len(self._unacked)} held={self._held_bytes}B acked_seq={self.counters.acked_seq}"
            f"{' coalescing' if self.coalescer.active else ''}>"
        )

    # ------------------------------------------------------------ training-thread side

    def start(self, agent: dict | None) -> None:
        self._agent = agent
        self._thread = threading.Thread(target=self._io_main, name=f"rankwise-io-{self.id[:8]}", daemon=True)
        self._thread.start()

    def bind(self, owner: Any) -> None:
        """The run whose ``_push`` this writer may switch to the coalescer under overload (and back)."""
        self._owner = weakref.ref(owner)

    def queued_bytes(self) -> int:
        """The op backlog in bytes (an estimate: ops times the bytes an op was seen to take)."""
        return int((len(self.ops) >> 2) * self._op_bytes)

    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    def sync(self) -> None:
        """Turn every op appended so far into batches (in the outbox), the coalescer's open span included
        (run.summary, flush: everything committed so far). Safe from any thread."""
        with self.lock:
            if self.coalescer.active:
                self.coalescer.close_open()
            self._assemble_locked()

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything appended so far is acknowledged; False on timeout."""
        self.sync()
        with self.lock:
            target = self.assembler.next_seq - 1
        self.wake()
        deadline = time.monotonic() + timeout_s
        while self.counters.acked_seq < target:
            if self.done.is_set() or time.monotonic() > deadline:
                return self.counters.acked_seq >= target
            time.sleep(0.001)
        return True

    def close(self, timeout_s: float) -> bool:
        """Deliver what is left, then stop the I/O thread. True when everything was acknowledged."""
        self._closing = True
        self.wake()
        if self._thread is not None:
            self.done.wait(timeout_s)
        ok = not self._unacked and not self._outbox and not self.ops and not self._spilled
        if self._spill is not None and self.done.is_set():
            self._spill.close()
        if not self.done.is_set():
            self._closing = True  # the thread exits at its next turn; we do not wait any longer
        c = self.counters
        if c.overloads:
            log.warning(
                "rankwise: run %s: log() was called faster than the I/O thread could deliver %d time(s); "
                "%d rows were coalesced into %d spans (count, last, mean, min, max per key; the summary is "
                "exact). Raise max_queued_bytes (RANKWISE_MAX_QUEUED_BYTES) to queue more, or log less often",
                self.hello_run.get("name"), c.overloads, c.coalesced_rows, c.coalesced_spans,
            )  # fmt: skip
        return ok

    def unacked_rows(self) -> int:
        """Rows logged but not acknowledged (held in memory; spilled batches counted as batches)."""
        return sum(r for _, r, _ in list(self._unacked.values())) + sum(r for _, _, r in list(self._outbox))

    # ------------------------------------------------------------ assembly (lock held)

    def drop_counts(self) -> dict[str, int]:
        """Everything this writer dropped, by cause: rows (spill refused, rejected by the agent, encode
        error) or single values (oversized value, bad value); see README, Guarantees."""
        out = dict(self.drops)
        for cause, n in list(self.assembler.drops.items()):
            out[cause] = out.get(cause, 0) + n
        if self.coalescer.dropped_keys:  # a merged row beyond MAX_KEYS_PER_ROW, merged on the training thread
            from client.framing import ROW_TOO_WIDE

            out[ROW_TOO_WIDE] = out.get(ROW_TOO_WIDE, 0) + self.coalescer.dropped_keys
        return out

    def _count_drop(self, cause: str, rows: int, detail: str) -> None:
        self.drops[cause] = self.drops.get(cause, 0) + rows
        self.counters.dropped_rows += rows
        self._warn_once(cause, detail)

    def _warn_once(self, cause: str, detail: str) -> None:
        if cause in self._warned_causes:
            return
        self._warned_causes.add(cause)
        log.warning(
            "rankwise: data of run %s was dropped: %s (%s); later drops are counted silently in run.stats['drops'] "
            "and reported by finish()",
            self.hello_run.get("name"),
            cause,
            detail,
        )

    def _assemble_locked(self) -> None:
        ops = self.ops
        # each op is four items pushed by one deque.extend, atomic under the GIL, so the length a
        # thread sees is a multiple of four (the mask only guards against a future change of that)
        n = len(ops) & ~3
        items = None
        if n:
            pop = ops.popleft
            items = [pop() for _ in range(n)]
            self._estimate(items)
        # before feeding: switching the push is what bounds the backlog, and feeding a large one takes long
        # while the loop goes on pushing (on a loaded machine, 26x the bound when the switch came after the
        # feed); the coalescer starts with every define_metric(rate_limit=...) pushed before the switch,
        # those among these items included
        self._check_overload(n >> 2, items)
        if items:
            try:
                self.assembler.feed_flat(items)
            except Exception as exc:  # noqa: BLE001 - nothing a caller logged may stop the I/O thread
                self.counters.io_errors += 1
                self.assembler.abandon(exc)
        coalescer = self.coalescer
        if coalescer.active:
            coalescer.learn_rules(self.assembler.raw_rules)
            coalescer.tick()
        while True:
            try:
                batch = self.assembler.take_batch()
            except Exception as exc:  # noqa: BLE001 - a batch that cannot be built is dropped, counted
                self.counters.io_errors += 1
                self.assembler.abandon(exc)
                continue
            notes = self.assembler.drop_notes
            while notes:
                cause, _, detail = notes.pop(0).partition(" (")
                self._warn_once(cause, detail[:-1])
            if batch is None:
                break
            self.counters.coalesced_rows = self.assembler.span_rows_total
            self.counters.coalesced_spans = self.assembler.spans_total
            seq, frame, rows = batch
            over = self._held_bytes + len(frame) > self.settings.max_unacked_bytes
            if self._spilled or (over and (self._outbox or self._unacked)):
                self._spill_batch(seq, frame, rows)
            else:
                self._outbox.append((seq, frame, rows))
                self._held_bytes += len(frame)

    # ------------------------------------------------------------ overload: coalescing (client/coalesce.py)

    min_overload_s = 0.25  # once entered, overload lasts at least this long (no switching back and forth)

    def _estimate(self, items: list) -> None:
        """Bytes one queued op takes, from the last row op of a drained chunk: its four deque slots, step
        and time objects, the dict and its values (an upper estimate: small ints and shared keys cost less)."""
        data = items[-1]
        if isinstance(data, dict):
            est = _OP_BASE_BYTES + sys.getsizeof(data) + _VALUE_BYTES * len(data)
            self._op_bytes += (est - self._op_bytes) * 0.25

    def _check_overload(self, queued: int, items: list | None = None) -> None:
        """Past ``max_queued_bytes`` of backlog: the run's push becomes the coalescer's; below a quarter of
        it again (after ``min_overload_s``): back to the deque. Lock held (writer's).

        The backlog is what was logged and is held in memory for delivery: queued ops, and, while the agent
        answers, the frames waiting for it (sent or not). An agent that stores slower than the loop logs
        makes frames pile up as surely as a slow I/O thread makes ops pile up. While the agent does not
        answer (an outage: no ACK for retry_after_s) frames are not counted: they spill to disk beyond
        max_unacked_bytes, row for row, as before."""
        nbytes = int(queued * self._op_bytes)
        bound = self.settings.max_queued_bytes
        c = self.counters
        if nbytes > c.queued_peak_bytes:
            c.queued_peak_bytes = nbytes
        # look again soon (2 ms, not flush_interval_s) while calls come fast, in overload and for a second
        # after it: between two looks the loop can queue a poll interval's worth of calls (bound + slack)
        now = time.monotonic()
        self._busy = queued > _BUSY_CALLS or self.coalescer.active or now < self._busy_until
        if self.welcome is not None and time.monotonic() - self._last_ack_at < self.settings.retry_after_s:
            nbytes += self._held_bytes
        coalescer = self.coalescer
        if not coalescer.active:
            if nbytes > bound and not self._closing:
                self._enter_overload(queued, nbytes, items)
        elif nbytes < bound // 4 and now - self._overload_since >= self.min_overload_s:
            self._leave_overload()

    def _enter_overload(self, queued: int, nbytes: int, items: list | None = None) -> None:
        owner = self._owner() if self._owner is not None else None
        if owner is None or owner._push != self.ops.extend:  # finished, a fork's first push, or not bound
            return
        coalescer = self.coalescer
        coalescer.learn_rules(self.assembler.raw_rules + _rate_rules(items))
        coalescer.start()
        owner._push = coalescer.push  # ops pushed before this (even through a stale reference) come first
        self._overload_since = time.monotonic()
        self.counters.overloads += 1
        if "overload" not in self._warned_causes:
            self._warned_causes.add("overload")
            log.warning(
                "rankwise: run %s: log() is called faster than the I/O thread can deliver (%d calls, ~%d MB "
                "queued, above max_queued_bytes = %d MB, RANKWISE_MAX_QUEUED_BYTES): consecutive rows are now "
                "coalesced into spans (count, last, mean, min, max per key, like the agent's rate limiter; "
                "the summary stays exact), counted in run.stats['coalesced_rows']",
                self.hello_run.get("name"), queued, nbytes >> 20, self.settings.max_queued_bytes >> 20,
            )  # fmt: skip

    def _leave_overload(self) -> None:
        """The coalescer's open span and pending row go to the deque first (under its lock: a push in
        progress on the training thread finishes before, or finds it inactive and appends after)."""
        coalescer = self.coalescer
        coalescer.stop()
        self._busy_until = time.monotonic() + 1.0  # the loop likely goes on as fast: watch the backlog closely
        owner = self._owner() if self._owner is not None else None
        if owner is not None and owner._push == coalescer.push:
            owner._push = self.ops.extend

    # ------------------------------------------------------------ beyond the memory bound

    @property
    def _spilled(self) -> int:
        return (len(self._spill) if self._spill is not None else 0) + len(self._tail)

    def _spill_batch(self, seq: int, frame: bytes, rows: int) -> None:
        """Past max_unacked_bytes: batches wait in a local file, in order. When the disk refuses them,
        they wait in memory behind it (``_tail``) as long as memory allows; beyond that a batch is
        dropped, the one way data is lost: it becomes a tombstone with the same seq and without its
        rows (its summary, pending row and control ops stay), so the agent counts the rows (cause
        ``spill_failed``) and the sequence has no gap."""
        if not self._tail:
            if self._spill is None:
                self._spill = SpillFifo(self.settings.data_dir / "spill", self.id)
            if self._spill.push(_SPILL_HEAD.pack(seq, rows) + frame):
                self.counters.spilled_batches += 1
                return
        if self._held_bytes + self._tail_bytes + len(frame) <= self.settings.max_unacked_bytes:
            self._tail.append((seq, frame, rows))
            self._tail_bytes += len(frame)
            return
        self.counters.dropped_rows += rows
        self.drops["spill_failed"] = self.drops.get("spill_failed", 0) + rows
        # only the rows go: the batch's pending row, summary and control ops (finish!) are kept
        _, body = wire.unpack(frame)
        body["rows"] = None
        body.pop("spans", None)
        body["ctl"] = (body.get("ctl") or []) + [["dropped", {"rows": rows, "cause": "spill_failed"}]]
        tomb = wire.pack(wire.BATCH, body)
        self._tail.append((seq, tomb, 0))
        self._tail_bytes += len(tomb)

    def _refill(self) -> None:
        """Bring spilled batches back into the outbox once memory has room (half the bound)."""
        if not self._spilled:
            return
        with self.lock:
            room = self.settings.max_unacked_bytes // 2
            while self._held_bytes < room:
                if self._spill is not None and len(self._spill):
                    raw = self._spill.pop()
                    if raw is None:
                        break
                    seq, rows = _SPILL_HEAD.unpack_from(raw)
                    frame = raw[_SPILL_HEAD.size :]
                elif self._tail:
                    seq, frame, rows = self._tail.popleft()
                    self._tail_bytes -= len(frame)
                else:
                    break
                self._outbox.append((seq, frame, rows))
                self._held_bytes += len(frame)

    # ------------------------------------------------------------ I/O thread

    def _io_main(self) -> None:
        ctx = zmq.Context()
        sock = None
        try:
            sock = self._connect(ctx)
            poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            poller.register(self._wake_r, zmq.POLLIN)
            self._send_hello(sock)
            interval_ms = max(1, int(self.settings.flush_interval_s * 1000))
            failures = 0
            while True:
                # a pending HELLO waits for the connection: look often at first (init is waiting), then at
                # the normal pace (an agent that is gone for long must not cost the training process CPU)
                eager = self._hello_pending and time.monotonic() - self._hello_sent_at < 0.1
                # a large backlog: look again soon, so the bound on queued ops holds between turns
                events = dict(poller.poll(2 if eager or self._busy else interval_ms))
                if self._wake_r in events:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                try:
                    if sock in events:
                        self._receive(sock)
                    self.sync()
                    if self._hello_pending:
                        self._try_hello(sock)
                    self._refill()
                    if self.welcome is not None and self._hello_answered:
                        self._send_outbox(sock)
                    sock = self._maybe_retry(ctx, sock, poller)
                    failures = 0
                except (zmq.ContextTerminated, zmq.ZMQError):
                    raise
                except Exception as exc:  # noqa: BLE001 - one bad turn must not end delivery for the run
                    self.counters.io_errors += 1
                    failures += 1
                    self._warn_once("io error", f"{type(exc).__name__}: {exc}")
                    if failures > 100:  # the same failure every turn: give up rather than spin
                        raise
                if self._closing and not self.ops and not self._outbox and not self._unacked and not self._spilled:
                    with self.lock:
                        if not self.assembler.has_work():
                            break
                if self.refusal is not None:
                    break
        except Exception:  # the training process must never see transport trouble
            log.exception("rankwise: I/O thread failed; logged data that was not acknowledged is lost")
        finally:
            if sock is not None:
                sock.close(linger=0)
            ctx.term()
            self.welcomed.set()
            self.done.set()

    def _connect(self, ctx: zmq.Context) -> zmq.Socket:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_FRAME_BYTES)
        sock.setsockopt(zmq.RECONNECT_IVL, 20)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
        sock.setsockopt(zmq.SNDHWM, 10000)
        # queue only on a live connection: frames for an agent that died are not delivered to the next one
        sock.setsockopt(zmq.IMMEDIATE, 1)
        endpoint = (self._agent or {}).get("endpoint")
        if endpoint is None:
            from client import paths

            endpoint = paths.ipc_endpoint(self.settings.runtime_dir) or "ipc://" + str(self.settings.runtime_dir)
        sock.connect(endpoint)
        return sock

    def _send_hello(self, sock: zmq.Socket) -> None:
        """Start a new HELLO (older ones become stale); it goes out now or once the connection is up."""
        self._hello_n += 1
        self._hello_pending = True
        self._hello_answered = False
        self._hello_sent_at = time.monotonic()
        self.counters.hellos += 1
        self._try_hello(sock)

    def _try_hello(self, sock: zmq.Socket) -> bool:
        body = {
            "w": self.id,
            "pid": os.getpid(),
            "run": self.hello_run,
            "re": self.welcome is not None,
            "h": self._hello_n,
        }
        if self.fork_of:
            body["fork_of"] = self.fork_of
        try:
            sock.send(wire.pack(wire.HELLO, body), zmq.NOBLOCK)
        except zmq.Again:
            return False
        self._hello_pending = False
        self._hello_marks = {self._hello_n: self._max_sent}
        self._hello_sent_at = time.monotonic()
        return True

    def _receive(self, sock: zmq.Socket) -> None:
        while True:
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                kind, body = wire.unpack(frame)
            except wire.ProtocolError:
                continue
            if not isinstance(body, dict) or body.get("w") != self.id:
                continue
            if isinstance(body.get("warn"), str) and body["warn"] != self._warned:
                self._warned = body["warn"]
                log.warning("rankwise: %s", self._warned)
            if kind == wire.ACK:
                self._on_ack(int(body.get("s", 0)))
            elif kind == wire.WELCOME:
                self._on_welcome(body)
            elif kind == wire.NACK:
                self._on_nack(body, sock)
            elif kind == wire.REFUSE:
                self.refusal = str(body.get("error", "refused"))
                self.counters.refused += 1
                self.welcomed.set()

    def _on_ack(self, seq: int) -> None:
        if seq <= self.counters.acked_seq:
            return
        self.counters.acked_seq = seq
        self._last_ack_at = time.monotonic()
        self._retry_after = self.settings.retry_after_s
        while self._unacked:
            first = next(iter(self._unacked))
            if first > seq:
                break
            frame, _, _ = self._unacked.pop(first)
            self._held_bytes -= len(frame)

    def _on_welcome(self, body: dict) -> None:
        first = self.welcome is None
        n = body.get("h")
        mark = self._hello_marks.get(n) if isinstance(n, int) else None
        if not first and isinstance(n, int) and (n != self._hello_n or mark is None):
            return  # the answer to an older HELLO: the latest one's WELCOME follows
        self.welcome = body
        self._hello_answered = True
        self._hello_marks.clear()
        agent_id = body.get("agent")
        if agent_id is not None and self._agent_id is not None and agent_id != self._agent_id:
            self.counters.agent_restarts += 1
        self._agent_id = agent_id if agent_id is not None else self._agent_id
        # seqs below `expect` were applied by the agent; their ACK follows its commit. What was sent
        # before the HELLO from `expect` on was lost with a connection: resend it, in order, before newer
        # batches. What was sent after the HELLO is on its way behind it.
        self._requeue(int(body.get("next_seq", 1)), self._max_sent if mark is None else mark)
        if first:
            self.welcomed.set()
        elif self.on_late_welcome is not None:
            self.on_late_welcome(body)
        self._last_ack_at = time.monotonic()

    def _requeue(self, first: int, last: int) -> None:
        """Move unacknowledged batches ``first..last`` back to the front of the outbox."""
        resend = [(s, f, r) for s, (f, r, _) in self._unacked.items() if first <= s <= last]
        for s, _, _ in resend:
            del self._unacked[s]
        if resend:
            self.counters.resends += len(resend)
            self._outbox.extendleft(reversed(resend))

    def _on_nack(self, body: dict, sock: zmq.Socket) -> None:
        now = time.monotonic()
        if body.get("reason") == "rejected":
            # the agent could not use this batch and took its seq as consumed: resending it unchanged would
            # be refused for ever and hold up every later row. Drop it, count its rows, go on.
            seq = body.get("s")
            entry = self._unacked.pop(seq, None) if isinstance(seq, int) else None
            if entry is None:
                for i, (s, f, r) in enumerate(self._outbox):
                    if s == seq:
                        del self._outbox[i]
                        entry = (f, r, now)
                        break
            if entry is not None:
                self._held_bytes -= len(entry[0])
                self.counters.rejected_batches += 1
                self._count_drop("rejected", entry[1], f"the agent rejected batch {seq}: {body.get('cause')}")
            return
        if body.get("reason") == "unknown-writer":
            # every batch in flight to a restarted agent comes back like this: one HELLO answers them all
            if self._hello_answered or now - self._hello_sent_at > self._retry_after:
                self._send_hello(sock)
            return
        expect = body.get("expect")
        if not isinstance(expect, int) or expect < 1:
            return
        # a gap: batches from `expect` on were lost with a connection. Each later batch in flight reports
        # the same gap; resend once per retry period (if the resend is lost too, the retry timer acts).
        last_from, last_at = self._gap_resent
        if expect == last_from and now - last_at < self._retry_after:
            return
        self._gap_resent = (expect, now)
        self._requeue(expect, self._max_sent)

    def _send_outbox(self, sock: zmq.Socket) -> None:
        now = time.monotonic()
        while self._outbox:
            seq, frame, rows = self._outbox[0]
            try:
                sock.send(frame, zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._outbox.popleft()
            self._unacked[seq] = (frame, rows, now)
            self.counters.batches_sent += 1
            if seq > self._max_sent:
                self._max_sent = seq
                self.counters.rows_sent += rows
            else:
                self.counters.rows_resent += rows

    def _maybe_retry(self, ctx: zmq.Context, sock: zmq.Socket, poller: zmq.Poller) -> zmq.Socket:
        """No answer for a while: make sure an agent runs (start one if needed) and say HELLO again."""
        now = time.monotonic()
        # an outbox that cannot drain (no live connection: ZMQ_IMMEDIATE) waits for an agent as well
        waiting = self.welcome is None or self._unacked or self._outbox
        if not waiting:
            self._last_ack_at = now
            return sock
        since = now - (self._hello_sent_at if self.welcome is None else max(self._last_ack_at, self._hello_sent_at))
        if since < self._retry_after:
            return sock
        self._retry_after = min(self._retry_after * 2, 10.0)
        info = spawn.agent_ready(self.settings.runtime_dir)
        if info is None and self.settings.spawn_agent:
            self.counters.spawns += 1
            info = spawn.ensure_agent(self.settings, timeout_s=10.0)
        if info is not None and info != self._agent:
            # a new agent (restart): its endpoint may differ (TCP port); a fresh socket starts clean
            self._agent = info
            poller.unregister(sock)
            sock.close(linger=0)
            sock = self._connect(ctx)
            poller.register(sock, zmq.POLLIN)
        self._send_hello(sock)
        return sock


def _rate_rules(items: list | None) -> list[tuple[str, bool]]:
    """The define_metric(name, rate_limit=...) ops among drained ``items`` (four per op), as the assembler
    records them (``Assembler.raw_rules``): (name or glob, kept row for row)."""
    if not items:
        return []
    kinds = items[0::4]
    if CONTROL not in kinds:  # (one C-level scan: the usual case)
        return []
    return [
        (arg["name"], arg["rate_limit"] is False)
        for kind, name, arg in zip(kinds, items[1::4], items[2::4])
        if kind == CONTROL and name == "define" and isinstance(arg, dict) and "rate_limit" in arg
    ]
