"""The agent process: lock, socket, loop, and a written shutdown order.

Start-up
    1. take ``agent.lock`` (flock, held for life): a second agent exits at once
       and can never bind a live agent's socket; then ``store.lock`` in the data
       directory (agent/locks.py): an agent of another runtime directory
       that holds it makes this one exit with status 4, naming the holder;
    2. open the store and recover runs a previous agent left running;
    3. remove a stale socket file (safe: we hold the lock), bind the ROUTER,
       write ``agent.json`` (pid, endpoint) atomically: now clients find us.

Loop
    poll → drain up to ``max_drain`` frames (validate, fold into memory, answer
    HELLO/STATUS at once) → apply one slice of queued wide batches → seal what
    may be sealed (group rows of at most ``SLICE_KEYS`` keys per turn) → commit
    one transaction → send the ACKs it made true. While sliced work waits the
    poll does not wait (agent/apply.py). Every ``liveness_interval_s`` the pids of
    running ranks are checked. With no running run and no message for
    ``idle_timeout_s`` the agent exits.

Memory (issue 11: ≤ 150 MB RSS at any load): ZeroMQ queues ``recv_hwm`` frames per
connection; a drain stops at ``pending_max_bytes`` of applied-but-uncommitted
batches (a batch that would pass it is committed after the others) and at
``max_commit_points``; no frame is read while the groups' open points are past
``window_max_bytes``; the WAL is checkpointed once past ``wal_max_bytes`` even
under load; freed heap goes back to the system after bursts (agent/memory.py).

Shutdown (SIGTERM, SIGINT, ``rankwise agent stop``, idle)
    1. stop reading the socket; 2. seal groups whose ranks are all done;
    3. commit and send the last ACKs, then commit the alerts the detectors raised
    on that commit (a crash it stored); 4. remove ``agent.json`` and the socket
    file, close the socket (linger 0); 5. alert sinks send what is queued (for at
    most ``alert_drain_s``: agent/alerts/notify.py), close the store (WAL checkpoint);
    6. release the lock by exiting. Groups still running stay open in the store
    and the next agent reopens them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from agent.config import AgentConfig
from agent.locks import AgentLock, StoreLock
from agent.loop import Loop
from agent.memory import Allocator
from client import paths

log = logging.getLogger("rankwise.agent")


class Agent:
    """One agent: on a single machine the node agent that stores; with ``--listen`` a root that also
    accepts node agents; with ``--upstream`` a node agent that forwards (agent/roles.py)."""

    def __init__(self, cfg: AgentConfig):
        self.cfg = cfg
        self.lock = AgentLock(cfg.runtime_dir)
        self.store_lock = StoreLock(cfg.data_dir, cfg.runtime_dir)
        self.stopping = False
        self.endpoint: str | None = None
        self.ingest: Any = None  # agent.ingest.Ingest (its sink says what the role stores: agent/roles.py)
        self.links: list[Any] = []  # a root's node link, a node agent's upstream (agent/roles.py Link)
        self._sock: Any = None
        self._ctx: Any = None
        self.allocator = Allocator()

    def __repr__(self) -> str:
        return f"<Agent pid={os.getpid()} endpoint={self.endpoint} ingest={self.ingest!r}>"

    def start(self) -> None:
        import zmq

        from client import wire

        paths.ensure_private_dir(self.cfg.runtime_dir)
        paths.ensure_data_dir(self.cfg.data_dir)
        self.allocator.tune()  # before the store, the socket and the first frame allocate (agent/memory.py)
        self.lock.acquire()
        self.store_lock.acquire()  # one writer per data directory, whatever the runtime directory
        self._ctx = zmq.Context()
        from agent.roles import start

        started = start(self.cfg, self._ctx)
        self.ingest, self.links = started.ingest, started.links
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        # the protocol's limit (+64 KiB, so a frame just over it reaches Ingest and is counted as oversize): a
        # bigger frame makes ZeroMQ drop the peer's connection as soon as its size is announced, so a peer
        # sending partial frames pins at most this much each (issue 9: memory pinning)
        sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_FRAME_BYTES + (1 << 16))
        # frames queued per connection before the loop reads them: few, so what waits here is bounded in bytes
        # (connections × (recv_hwm + 1) × frame); a client past it keeps its batches (memory, then spill file)
        sock.setsockopt(zmq.RCVHWM, self.cfg.recv_hwm)
        endpoint = paths.ipc_endpoint(self.cfg.runtime_dir)
        if endpoint is not None and zmq.has("ipc"):
            sock_path = self.cfg.runtime_dir / paths.AGENT_SOCKET
            try:
                sock_path.unlink()
            except FileNotFoundError:
                pass
            sock.bind(endpoint)
            os.chmod(sock_path, 0o600)
        else:
            port = sock.bind_to_random_port("tcp://127.0.0.1")
            endpoint = f"tcp://127.0.0.1:{port}"
        self._sock = sock
        self.endpoint = endpoint
        info = {"pid": os.getpid(), "endpoint": endpoint, "started": time.time(), "store": self.cfg.store_label}
        info.update(started.info)
        tmp = self.cfg.runtime_dir / (paths.AGENT_INFO + ".tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, self.cfg.runtime_dir / paths.AGENT_INFO)
        log.info("agent %d serving %s, %s", os.getpid(), endpoint, started.where)

    def request_stop(self, *_: Any) -> None:
        self.stopping = True

    def serve(self) -> None:
        """Run the loop (agent/loop.py) until stopped: a signal, ``rankwise agent stop`` or idleness."""
        loop = Loop(self._sock, self.ingest, self.links, self.cfg, self.allocator, self._send)
        loop.run(lambda: self.stopping)
        self.stopping = True

    def _send(self, reply: tuple[bytes, bytes]) -> None:
        import zmq

        try:
            self._sock.send_multipart(reply, zmq.NOBLOCK)
        except zmq.ZMQError:  # the peer went away or its queue is full: it will ask again
            self.ingest.counters.add("replies_dropped")

    def shutdown(self) -> None:
        """The written shutdown order (module docstring)."""
        ingest = self.ingest
        if ingest is not None:
            now = time.time()
            for reply in ingest.work(now, None):  # wide batches still queued: applied whole, acknowledged
                self._send(reply)
            ingest.seal_finished(now)
            for reply in ingest.commit(now, force=True):
                self._send(reply)
            if ingest.alerts.pending:  # raised by the detectors that heard that commit (agent/alerts/book.py)
                ingest.alerts.tick(now)
                ingest.commit(now, force=True)
            for link in self.links:
                link.flush(force=True)
        for link in self.links:
            link.close()
        for name in (paths.AGENT_INFO, paths.AGENT_SOCKET) if self.lock.fd is not None else ():
            try:  # only the lock holder owns these (a start that failed before the lock must not touch them)
                (self.cfg.runtime_dir / name).unlink()
            except FileNotFoundError:
                pass
        if self._sock is not None:
            self._sock.close(linger=0)
        if self._ctx is not None:
            self._ctx.term()
        if ingest is not None:
            for part in ingest.parts:  # a part with a worker thread (alert sinks: agent/alerts/notify.py)
                close = getattr(part, "close", None)  # drains what it queued, within its own bound
                if close is not None:
                    close()
            ingest.store.close()
            ingest.sink.close()
        self.store_lock.release()
        self.lock.release()
        log.info("agent %d stopped", os.getpid())
