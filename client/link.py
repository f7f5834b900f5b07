"""A writer's connection to its node agent: the HELLO/WELCOME/ACK/NACK state machine (client/wire.py kinds).

Delivery
--------
Batches carry a per-writer sequence number. The agent acknowledges "stored
through seq N" after its store commit; until then a batch stays in
``unacked`` (client/backlog.py, bounded in bytes). After a reconnect or an agent
restart the writer says HELLO again, the agent answers WELCOME with the next seq
it expects, and the writer resends from there; the agent drops duplicates. So
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

When nothing answers for a while, client/respawn.py finds (or starts) an agent
and the link says HELLO again, on a fresh socket if the agent changed. Everything
here runs on the writer's I/O thread; the socket never leaves it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import zmq

from client import paths, wire
from client.backlog import Backlog
from client.counters import DeliveryCounters
from client.respawn import Respawn
from client.settings import Settings

log = logging.getLogger("rankwise")


class AgentLink:
    """HELLO and its answers for one writer. ``welcome``/``refusal``/``welcomed`` are what ``init`` waits for."""

    def __init__(
        self,
        settings: Settings,
        writer_id: str,
        hello_run: dict,
        fork_of: str | None,
        backlog: Backlog,
        counters: DeliveryCounters,
        count_drop: Callable[[str, int, str], None],
    ):
        self.settings = settings
        self.writer_id = writer_id
        self.hello_run = hello_run
        self.fork_of = fork_of
        self.backlog = backlog
        self.counters = counters
        self.respawn = Respawn(settings, counters)
        self._count_drop = count_drop  # the writer's: counts and warns about dropped rows
        self.agent: dict | None = None  # the agent's info (endpoint) as found in the runtime directory
        self.welcome: dict | None = None
        self.refusal: str | None = None
        self.welcomed = threading.Event()
        self.on_late_welcome: Callable[[dict], None] | None = None
        self.hello_sent_at = 0.0
        self._hello_n = 0  # number of the latest HELLO; its WELCOME is the one that counts
        self.hello_unsent = False  # the latest HELLO could not be queued yet (no live connection)
        self._hello_answered = False
        self._hello_marks: dict[int, int] = {}  # HELLO number -> highest seq sent before it
        self._gap_resent: tuple[int, float] = (0, 0.0)  # (from seq, when) of the last resend for a gap
        self._agent_id: str | None = None  # the instance that sent the last WELCOME (a restart changes it)
        self._warned: str | None = None  # the agent's last warning (its store is full or was lost), logged once

    def __repr__(self) -> str:
        if self.refusal is not None:
            state = "refused"
        elif self.hello_unsent or not self._hello_answered:
            state = f"hello#{self._hello_n}"
        else:
            state = "welcomed"
        return f"<AgentLink {self.writer_id[:8]} {state} agent={self._agent_id} {self.respawn!r}>"

    @property
    def ready(self) -> bool:
        """Batches may go: welcomed, and no HELLO outstanding."""
        return self.welcome is not None and self._hello_answered

    def answering(self) -> bool:
        """Welcomed, and the agent answered within ``retry_after_s`` (not in an outage)."""
        return self.welcome is not None and self.respawn.answering(time.monotonic())

    def connect(self, ctx: zmq.Context) -> zmq.Socket:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_FRAME_BYTES)
        sock.setsockopt(zmq.RECONNECT_IVL, 20)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
        sock.setsockopt(zmq.SNDHWM, 10000)
        # queue only on a live connection: frames for an agent that died are not delivered to the next one
        sock.setsockopt(zmq.IMMEDIATE, 1)
        endpoint = (self.agent or {}).get("endpoint")
        if endpoint is None:
            endpoint = paths.ipc_endpoint(self.settings.runtime_dir) or "ipc://" + str(self.settings.runtime_dir)
        sock.connect(endpoint)
        return sock

    def send_hello(self, sock: zmq.Socket) -> None:
        """Start a new HELLO (older ones become stale); it goes out now or once the connection is up."""
        self._hello_n += 1
        self.hello_unsent = True
        self._hello_answered = False
        self.hello_sent_at = time.monotonic()
        self.counters.hellos += 1
        self.try_hello(sock)

    def try_hello(self, sock: zmq.Socket) -> bool:
        body = {
            "w": self.writer_id,
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
        self.hello_unsent = False
        self._hello_marks = {self._hello_n: self.backlog.max_sent}
        self.hello_sent_at = time.monotonic()
        return True

    def receive(self, sock: zmq.Socket) -> None:
        while True:
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                kind, body = wire.unpack(frame)
            except wire.ProtocolError:
                continue
            if not isinstance(body, dict) or body.get("w") != self.writer_id:
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
        self.respawn.acked(time.monotonic())
        self.backlog.ack(seq)

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
        self.backlog.requeue(int(body.get("next_seq", 1)), self.backlog.max_sent if mark is None else mark)
        if first:
            self.welcomed.set()
        elif self.on_late_welcome is not None:
            self.on_late_welcome(body)
        self.respawn.heard(time.monotonic())

    def _on_nack(self, body: dict, sock: zmq.Socket) -> None:
        now = time.monotonic()
        if body.get("reason") == "rejected":
            # the agent could not use this batch and took its seq as consumed: resending it unchanged would
            # be refused for ever and hold up every later row. Drop it, count its rows, go on.
            seq = body.get("s")
            rows = self.backlog.reject(seq)
            if rows is not None:
                self.counters.rejected_batches += 1
                self._count_drop("rejected", rows, f"the agent rejected batch {seq}: {body.get('cause')}")
            return
        if body.get("reason") == "unknown-writer":
            # every batch in flight to a restarted agent comes back like this: one HELLO answers them all
            if self._hello_answered or now - self.hello_sent_at > self.respawn.retry_after:
                self.send_hello(sock)
            return
        expect = body.get("expect")
        if not isinstance(expect, int) or expect < 1:
            return
        # a gap: batches from `expect` on were lost with a connection. Each later batch in flight reports
        # the same gap; resend once per retry period (if the resend is lost too, the retry timer acts).
        last_from, last_at = self._gap_resent
        if expect == last_from and now - last_at < self.respawn.retry_after:
            return
        self._gap_resent = (expect, now)
        self.backlog.requeue(expect, self.backlog.max_sent)

    def maybe_retry(self, ctx: zmq.Context, sock: zmq.Socket, poller: zmq.Poller) -> zmq.Socket:
        """No answer for a while: make sure an agent runs (start one if needed) and say HELLO again."""
        now = time.monotonic()
        respawn = self.respawn
        # an outbox that cannot drain (no live connection: ZMQ_IMMEDIATE) waits for an agent as well
        if self.welcome is not None and not self.backlog.in_flight:
            respawn.heard(now)
            return sock
        since = now - (self.hello_sent_at if self.welcome is None else max(respawn.last_answer, self.hello_sent_at))
        if since < respawn.retry_after:
            return sock
        info = respawn.find_agent()
        if info is not None and info != self.agent:
            # a new agent (restart): its endpoint may differ (TCP port); a fresh socket starts clean
            self.agent = info
            poller.unregister(sock)
            sock.close(linger=0)
            sock = self.connect(ctx)
            poller.register(sock, zmq.POLLIN)
        self.send_hello(sock)
        return sock
