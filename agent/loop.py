"""The agent's loop: poll, drain, apply, tick, commit, acknowledge; the same whatever the agent's role.

One turn (agent/daemon.py's docstring says why in this order): poll the clients' socket and the links
→ drain up to ``max_drain`` frames into the ingest (agent/ingest.py) → the links handle theirs → one
slice of queued wide batches → tick (liveness, sealing) → commit → the ACKs → the sink's durability
work (``pump``) and the links' flush → replies made outside a frame (``outbox``) → the WAL check and
checkpoint → heap trimming. The loop knows the ingest, its sink's maintenance hooks and the links
(agent/roles.py ``Link``); what the role stores is the sink's business.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from agent.config import AgentConfig
from agent.memory import Allocator

log = logging.getLogger("rankwise.agent")
CHECKPOINT_QUIET_S = 0.1  # no frame read for this long before a periodic (not a size-bound) WAL checkpoint


class Loop:
    def __init__(
        self,
        sock: Any,
        ingest: Any,
        links: list[Any],
        cfg: AgentConfig,
        allocator: Allocator,
        send: Callable[[tuple[bytes, bytes]], None],
    ):
        self.sock = sock  # the clients' ROUTER socket
        self.ingest = ingest  # agent.ingest.Ingest
        self.links = links  # agent.roles.Link: a root's node link, a node agent's upstream
        self.cfg = cfg
        self.allocator = allocator
        self.send = send  # one reply to a client (a full queue or a gone peer: counted, not raised)

    def __repr__(self) -> str:
        return f"<Loop links={len(self.links)} ingest={self.ingest!r}>"

    def run(self, stopping: Callable[[], bool]) -> None:
        """Turn until ``stopping()`` says so, the agent is told to stop, or it is idle."""
        import zmq

        sock = self.sock
        ingest = self.ingest
        sink = ingest.sink
        links = self.links
        send = self.send
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        for link in links:
            for extra in link.sockets():
                poller.register(extra, zmq.POLLIN)
        drain_full = ingest.drain_full
        max_drain = self.cfg.max_drain
        next_checkpoint = time.monotonic() + 1.0
        next_wal_check = 0.0
        last_frame = 0.0  # monotonic time of the last frame read: the periodic checkpoint waits for a quiet spell
        while not stopping():
            # sliced work (a wide batch, a seal of many keys) goes on at once, a slice per turn
            timeout_ms = 0 if ingest.commit_due() or ingest.busy() else 50
            events = dict(poller.poll(timeout_ms))
            # nothing is read while the open points are past their budget: frames wait in ZeroMQ (recv_hwm per
            # connection), then in their clients, until the ticks have sealed the oldest steps
            if sock in events and not ingest.window_full():
                last_frame = time.monotonic()
                for _ in range(max_drain):
                    try:
                        peer, frame = sock.recv_multipart(zmq.NOBLOCK, copy=True)[:2]
                    except zmq.Again:
                        break
                    except ValueError:  # a frame without identity: cannot happen on ROUTER, count it anyway
                        ingest.counters.bad_frame("no identity")
                        continue
                    for reply in ingest.handle(peer, frame):
                        send(reply)
                    if drain_full():
                        break
            for link in links:
                link.handle(events)
            for reply in ingest.work(time.time()):  # one slice of queued wide batches (agent/slices.py)
                send(reply)
            try:
                ingest.tick()
            except Exception:  # sealing or liveness broke on some state: keep serving, say so
                ingest.counters.add("tick_errors")
                if ingest.counters.values["tick_errors"] <= 5:
                    log.exception("agent tick failed; serving on")
            for reply in ingest.commit():
                send(reply)
            sink.pump()  # durability work that may lag the commit (a node agent's spool fsync)
            for link in links:
                link.flush()
            if ingest.outbox:  # replies made outside handle() (HELLOs answered once the root answered)
                outbox, ingest.outbox = ingest.outbox, []
                for reply in outbox:
                    send(reply)
            now = time.monotonic()
            wal_full = False
            if now >= next_wal_check:  # a stat() and a statvfs() every 10 ms at most (a few µs)
                next_wal_check = now + 0.01
                wal_full = sink.wal_full()
            # a quiet spell, or a second late (a steady stream of frames is never quiet for long)
            quiet = now - last_frame >= CHECKPOINT_QUIET_S or now >= next_checkpoint + 1.0
            if wal_full or (now >= next_checkpoint and quiet and not ingest.commit_due()):
                # after the ACKs went out, when nothing waits and no frame came for a moment: the WAL's fsync
                # delays no one (between two batches of a burst it would hold up the next commit, and the
                # finish() waiting for it, by the checkpoint's 30+ ms); a WAL past its size bound is
                # checkpointed even under load (agent/store/sqlite.py)
                next_checkpoint = now + 1.0
                if sink.checkpoint():
                    ingest.counters.add("checkpoints_wal_full" if wal_full else "checkpoints")
            if self.allocator.trim(now):  # freed heap back to the system after a burst (agent/memory.py)
                ingest.counters.add("malloc_trims")
            if ingest.stop_requested:
                return
            if ingest.idle():
                log.info("idle for %.0f s with no running run: exiting", self.cfg.idle_timeout_s)
                return
