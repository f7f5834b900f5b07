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
    3. commit and send the last ACKs; 4. remove ``agent.json`` and the socket
    file, close the socket (linger 0); 5. close the store (WAL checkpoint);
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
from agent.memory import Allocator
from client import paths

log = logging.getLogger("rankwise.agent")
CHECKPOINT_QUIET_S = 0.1  # no frame read for this long before a periodic (not a size-bound) WAL checkpoint


class Agent:
    """One agent: on a single machine the node agent that stores; with ``--listen`` a root that also
    accepts node agents; with ``--upstream`` a node agent that forwards (agent/roles.py)."""

    def __init__(self, cfg: AgentConfig):
        self.cfg = cfg
        self.lock = AgentLock(cfg.runtime_dir)
        self.store_lock = StoreLock(cfg.data_dir, cfg.runtime_dir)
        self.stopping = False
        self.endpoint: str | None = None
        self.ingest: Any = None
        self.link: Any = None  # a root: agent.rootlink.RootLink
        self.upstream: Any = None  # a node agent: agent.upstream.Upstream
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
        if self.cfg.upstream:
            from agent.roles import start_node

            self.ingest, self.upstream = start_node(self.cfg, self._ctx)
        else:
            from agent.roles import start_store

            self.ingest, self.link = start_store(self.cfg, self._ctx)
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
        info = {"pid": os.getpid(), "endpoint": endpoint, "started": time.time(), "store": str(self.cfg.store_path)}
        if self.link is not None:
            info.update(role="root", listen=self.link.endpoint)
        elif self.upstream is not None:
            info.update(role="node", upstream=self.cfg.upstream, store=None)
        tmp = self.cfg.runtime_dir / (paths.AGENT_INFO + ".tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, self.cfg.runtime_dir / paths.AGENT_INFO)
        where = f"forwarding to {self.cfg.upstream}" if self.upstream is not None else f"store {self.cfg.store_path}"
        if self.link is not None:
            where += f", node agents on {self.link.endpoint}"
        log.info("agent %d serving %s, %s", os.getpid(), endpoint, where)

    def request_stop(self, *_: Any) -> None:
        self.stopping = True

    def serve(self) -> None:
        import zmq

        sock = self._sock
        ingest = self.ingest
        link, upstream = self.link, self.upstream
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        for extra in (link.sockets() if link is not None else []) + ([upstream.sock] if upstream is not None else []):
            poller.register(extra, zmq.POLLIN)
        drain_full = ingest.drain_full
        max_drain = self.cfg.max_drain
        next_checkpoint = time.monotonic() + 1.0
        next_wal_check = 0.0
        last_frame = 0.0  # monotonic time of the last frame read: the periodic checkpoint waits for a quiet spell
        while not self.stopping:
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
                        self._send(reply)
                    if drain_full():
                        break
            if link is not None:
                link.handle(events)
            if upstream is not None and upstream.sock in events:
                upstream.handle()
            for reply in ingest.work(time.time()):  # one slice of queued wide batches (agent/apply.py)
                self._send(reply)
            try:
                ingest.tick()
            except Exception:  # sealing or liveness broke on some state: keep serving, say so
                ingest.counters.add("tick_errors")
                if ingest.counters.values["tick_errors"] <= 5:
                    log.exception("agent tick failed; serving on")
            for reply in ingest.commit():
                self._send(reply)
            if link is not None:
                link.flush()
            if upstream is not None:
                ingest.spool.maybe_fsync()  # records go upstream once fsynced (agent/spool.py)
                upstream.pump()
                outbox, ingest.outbox = ingest.outbox, []
                for reply in outbox:
                    self._send(reply)
            now = time.monotonic()
            wal_full = False
            if now >= next_wal_check:  # a stat() and a statvfs() every 10 ms at most (a few µs)
                next_wal_check = now + 0.01
                wal_full = getattr(ingest.store, "wal_full", bool)()
            # a quiet spell, or a second late (a steady stream of frames is never quiet for long)
            quiet = now - last_frame >= CHECKPOINT_QUIET_S or now >= next_checkpoint + 1.0
            if wal_full or (now >= next_checkpoint and quiet and not ingest.commit_due()):
                # after the ACKs went out, when nothing waits and no frame came for a moment: the WAL's fsync
                # delays no one (between two batches of a burst it would hold up the next commit, and the
                # finish() waiting for it, by the checkpoint's 30+ ms); a WAL past its size bound is
                # checkpointed even under load (agent/store/sqlite.py)
                next_checkpoint = now + 1.0
                checkpoint = getattr(ingest.store, "checkpoint", None)
                if checkpoint is not None:
                    checkpoint()
                    ingest.counters.add("checkpoints_wal_full" if wal_full else "checkpoints")
            if self.allocator.trim(now):  # freed heap back to the system after a burst (agent/memory.py)
                ingest.counters.add("malloc_trims")
            if ingest.stop_requested:
                self.stopping = True
            elif ingest.idle():
                log.info("idle for %.0f s with no running run: exiting", self.cfg.idle_timeout_s)
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
            if self.link is not None:
                self.link.flush(force=True)
            if self.upstream is not None:
                from agent.roles import flush_upstream

                flush_upstream(self.upstream, self.cfg.shutdown_flush_s)
        for part in (self.link, self.upstream):
            if part is not None:
                part.close()
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
            ingest.store.close()
            spool = getattr(ingest, "spool", None)
            if spool is not None:
                spool.close()
        self.store_lock.release()
        self.lock.release()
        log.info("agent %d stopped", os.getpid())
