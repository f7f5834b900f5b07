"""The writer: one per process incarnation of a run. Owns the op deque, the
assembler and the I/O thread that talks to the node agent.

Its parts, one job each: the assembler turns ops into batches (client/assembler.py),
the backlog holds them until the agent acknowledges them, spilling beyond a memory
bound (client/backlog.py), the link speaks HELLO/ACK with the agent and replays
after a restart (client/link.py, with client/respawn.py when the agent is silent),
and the overload switch hands ``log()`` to the coalescer when it outruns this
thread (client/overload.py). All count into one ``DeliveryCounters``
(client/counters.py). The path of one ``log()`` call: docs/architecture.md.

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

Shutdown order (``close``): the training thread appends the finish op and
wakes the I/O thread → the I/O thread drains ops, sends the last batch and
waits for its ACK (bounded by the caller's timeout) → closes the socket with
linger 0 → terminates its context → sets ``done``.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from client.assembler import Assembler
from client.backlog import Backlog
from client.coalesce import Coalescer
from client.counters import DeliveryCounters
from client.framing import ROW_TOO_WIDE
from client.link import AgentLink
from client.ops import OP_SIZE
from client.overload import OverloadSwitch
from client.settings import Settings

log = logging.getLogger("rankwise")


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
        self.counters = DeliveryCounters()
        self.drops: dict[str, int] = {}  # cause -> rows this writer dropped (spill refused, agent rejected)
        self.backlog = Backlog(settings, self.id, self.counters, self.drops)
        self._outbox = self.backlog.outbox  # (the same deque: tests and helpers drain it directly)
        self.link = AgentLink(settings, self.id, hello_run, fork_of, self.backlog, self.counters, self._count_drop)
        self.done = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._warned_causes: set[str] = set()  # drop causes already warned about (once each)
        self.coalescer = Coalescer(self.ops.extend, time.perf_counter)
        self.overload = OverloadSwitch(
            settings, self.counters, self.coalescer, self.assembler, self.ops.extend, hello_run.get("name")
        )

    def __repr__(self) -> str:
        state = "done" if self.done.is_set() else ("closing" if self._closing else "open")
        b = self.backlog
        return (
            f"<Writer {self.id[:8]} {state} ops={len(self.ops)} outbox={len(b.outbox)} "
            f"unacked={len(b.unacked)} held={b.held_bytes}B acked_seq={self.counters.acked_seq}"
            f"{' coalescing' if self.coalescer.active else ''}>"
        )

    # what ``init`` waits for and reads (client/run.py), kept by the link
    @property
    def welcome(self) -> dict | None:
        return self.link.welcome

    @property
    def refusal(self) -> str | None:
        return self.link.refusal

    @property
    def welcomed(self) -> threading.Event:
        return self.link.welcomed

    @property
    def on_late_welcome(self) -> Callable[[dict], None] | None:
        return self.link.on_late_welcome

    @on_late_welcome.setter
    def on_late_welcome(self, callback: Callable[[dict], None] | None) -> None:
        self.link.on_late_welcome = callback

    # ------------------------------------------------------------ training-thread side

    def start(self, agent: dict | None) -> None:
        self.link.agent = agent
        self._thread = threading.Thread(target=self._io_main, name=f"rankwise-io-{self.id[:8]}", daemon=True)
        self._thread.start()

    def bind(self, owner: Any) -> None:
        """The run whose ``_push`` this writer may switch to the coalescer under overload (and back)."""
        self.overload.bind(owner)

    def queued_bytes(self) -> int:
        """The op backlog in bytes (an estimate: ops times the bytes an op was seen to take)."""
        return int((len(self.ops) // OP_SIZE) * self.overload.op_bytes)

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
        ok = self.backlog.empty() and not self.ops
        if self.done.is_set():
            self.backlog.close_spill()
        if not self.done.is_set():
            self._closing = True  # the thread exits at its next turn; we do not wait any longer
        c = self.counters
        if c.overloads:
            log.warning(
                "rankwise: run %s: log() was called faster than the I/O thread could deliver %d time(s); "
                "%d rows were coalesced into %d spans (count, last, mean, min, max per key; the summary is "
                "exact). Raise max_queued_bytes (RANKWISE_MAX_QUEUED_BYTES) to queue more, or log less often",
                self.hello_run.get("name"),
                c.overloads,
                c.coalesced_rows,
                c.coalesced_spans,
            )
        return ok

    def unacked_rows(self) -> int:
        """Rows logged but not acknowledged (held in memory; spilled batches counted as batches)."""
        return self.backlog.rows()

    # ------------------------------------------------------------ assembly (lock held)

    def drop_counts(self) -> dict[str, int]:
        """Everything this writer dropped, by cause: rows (spill refused, rejected by the agent, encode
        error) or single values (oversized value, bad value); see README, Guarantees."""
        out = dict(self.drops)
        for cause, n in list(self.assembler.drops.items()):
            out[cause] = out.get(cause, 0) + n
        if self.coalescer.dropped_keys:  # a merged row beyond MAX_KEYS_PER_ROW, merged on the training thread
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
            self.overload.estimate(items)
        # before feeding: switching the push is what bounds the backlog, and feeding a large one takes long
        # while the loop goes on pushing (on a loaded machine, 26x the bound when the switch came after the
        # feed); the coalescer starts with every define_metric(rate_limit=...) pushed before the switch,
        # those among these items included
        in_flight = self.backlog.held_bytes if self.link.answering() else 0
        self.overload.check(n // OP_SIZE, items, in_flight, self._closing)
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
            self.backlog.add(*batch)

    # ------------------------------------------------------------ I/O thread

    def _io_main(self) -> None:
        ctx = zmq.Context()
        sock = None
        link = self.link
        try:
            sock = link.connect(ctx)
            poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            poller.register(self._wake_r, zmq.POLLIN)
            link.send_hello(sock)
            interval_ms = max(1, int(self.settings.flush_interval_s * 1000))
            failures = 0
            while True:
                # a pending HELLO waits for the connection: look often at first (init is waiting), then at
                # the normal pace (an agent that is gone for long must not cost the training process CPU)
                eager = link.hello_unsent and time.monotonic() - link.hello_sent_at < 0.1
                # a large backlog: look again soon, so the bound on queued ops holds between turns
                events = dict(poller.poll(2 if eager or self.overload.busy else interval_ms))
                if self._wake_r in events:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                try:
                    if sock in events:
                        link.receive(sock)
                    self.sync()
                    if link.hello_unsent:
                        link.try_hello(sock)
                    if self.backlog.spilled:
                        with self.lock:
                            self.backlog.refill()
                    if link.ready:
                        self._send_outbox(sock)
                    sock = link.maybe_retry(ctx, sock, poller)
                    failures = 0
                except (zmq.ContextTerminated, zmq.ZMQError):
                    raise
                except Exception as exc:  # noqa: BLE001 - one bad turn must not end delivery for the run
                    self.counters.io_errors += 1
                    failures += 1
                    self._warn_once("io error", f"{type(exc).__name__}: {exc}")
                    if failures > 100:  # the same failure every turn: give up rather than spin
                        raise
                if self._closing and not self.ops and self.backlog.empty():
                    with self.lock:
                        if not self.assembler.has_work():
                            break
                if link.refusal is not None:
                    break
        except Exception:  # the training process must never see transport trouble
            log.exception("rankwise: I/O thread failed; logged data that was not acknowledged is lost")
        finally:
            if sock is not None:
                sock.close(linger=0)
            ctx.term()
            link.welcomed.set()
            self.done.set()

    def _send_outbox(self, sock: zmq.Socket) -> None:
        self.backlog.send(sock)
