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

import argparse
import json
import logging
import logging.handlers
import os
import signal
import sys
import time
from typing import Any

from agent.config import AgentConfig, resolve
from agent.errors import AlreadyRunning, StoreInUse
from agent.locks import AgentLock, StoreLock
from agent.loop import Loop
from agent.memory import Allocator
from client import paths
from client.errors import Error

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
        info = {"pid": os.getpid(), "endpoint": endpoint, "started": time.time(), "store": str(self.cfg.store_path)}
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
            ingest.store.close()
            ingest.sink.close()
        self.store_lock.release()
        self.lock.release()
        log.info("agent %d stopped", os.getpid())


def _setup_logging(cfg: AgentConfig, foreground: bool) -> None:
    root = logging.getLogger("rankwise")
    root.setLevel(cfg.log_level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s [agent %(process)d] %(message)s")
    paths.ensure_data_dir(cfg.data_dir)
    handler = logging.handlers.RotatingFileHandler(cfg.log_path, maxBytes=10 << 20, backupCount=2)
    handler.setFormatter(fmt)
    root.addHandler(handler)
    if foreground:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(fmt)
        root.addHandler(stream)


def run_agent(cfg: AgentConfig, foreground: bool = True, ready_fd: int | None = None) -> int:
    """Run until stopped. Exit status: 0 stopped cleanly, 1 could not start, 3 another agent is running,
    4 another agent (of another runtime directory) holds the data directory."""
    os.umask(paths.AGENT_UMASK)  # every file 0600, every folder 0700 (store, WAL, media, spool, log)
    try:
        _setup_logging(cfg, foreground)
        if warning := paths.open_to_others(cfg.data_dir):
            log.warning("%s", warning)
    except OSError as exc:  # an unusable data directory: say so where the spawner can see it
        message = f"rankwise agent: cannot write its log in {cfg.data_dir}: {exc}"
        print(message, file=sys.stderr)
        _signal_ready(ready_fd, b"1", message)
        return 1
    agent = Agent(cfg)
    try:
        agent.start()
    except AlreadyRunning as exc:
        log.info("%s; exiting", exc)
        _signal_ready(ready_fd, b"3")
        return 3
    except StoreInUse as exc:  # the spawning client shows this line (client/spawn.py)
        log.error("agent could not start: %s", exc)  # on stderr too in the foreground
        agent.lock.release()
        _signal_ready(ready_fd, b"4", str(exc))
        return 4
    except Exception as exc:  # the store cannot be opened, the socket cannot be bound, ...
        log.error("agent could not start: %s", exc, exc_info=not isinstance(exc, Error))
        agent.shutdown()
        _signal_ready(ready_fd, b"1", str(exc))
        return 1
    signal.signal(signal.SIGTERM, agent.request_stop)
    signal.signal(signal.SIGINT, agent.request_stop)
    _signal_ready(ready_fd, b"0")
    try:
        agent.serve()
    except Exception:
        log.exception("agent loop failed")
        raise
    finally:
        agent.shutdown()
    return 0


def _signal_ready(fd: int | None, code: bytes, message: str = "") -> None:
    """Tell the waiting ``--detach`` parent the exit status (one byte) and why, when it failed."""
    if fd is not None:
        try:
            os.write(fd, code + message.encode(errors="replace")[:4000])
            os.close(fd)
        except OSError:
            pass


def _detach_and_wait() -> int | None:
    """Fork; the parent waits until the child is serving (or lost the race) and exits with its code."""
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        with os.fdopen(r, "rb") as pipe:
            reply = pipe.read()  # status byte, then the reason of a failure (the child's stderr is gone)
        if reply[1:]:
            sys.stderr.write(reply[1:].decode(errors="replace") + "\n")
            sys.stderr.flush()
        os._exit(int(reply[:1]) if reply[:1].isdigit() else 1)
    os.close(r)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    return w


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rankwise agent",
        description="Run the rankwise agent in the foreground: a node agent that stores (one machine), a root that "
        "also accepts node agents (--listen), or a node agent that forwards to a root (--upstream). See "
        "docs/multinode.md.",
    )
    p.add_argument("--dir", help="data directory (default: RANKWISE_DIR or ~/.local/share/rankwise)")
    p.add_argument("--runtime-dir", help="socket/lock directory (default: RANKWISE_RUNTIME_DIR)")
    p.add_argument(
        "--idle-timeout", type=float,
        help="exit after this many seconds with nothing running (0 = never; default 60, a root: 0)",
    )  # fmt: skip
    p.add_argument("--seal-timeout", type=float, help="seal a step at most this many seconds after it opened")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--listen", metavar="tcp://HOST:PORT", help="be the root: accept node agents here (RANKWISE_LISTEN)")
    p.add_argument("--upstream", metavar="tcp://HOST:PORT",
                   help="be a node agent: forward to the root there instead of storing (RANKWISE_UPSTREAM)")  # fmt: skip
    p.add_argument("--curve-secret", metavar="FILE", help="this agent's NAME.key_secret (rankwise keygen)")
    p.add_argument("--allow", metavar="DIR", help="root: directory of the node public keys (*.key) it accepts")
    p.add_argument("--root-key", metavar="FILE", help="node agent: the root's public key file (ROOT.key)")
    p.add_argument("--insecure", action="store_true", default=None,
                   help="root: accept plain TCP (no Curve) on a non-loopback address")  # fmt: skip
    p.add_argument("--node", help="this machine's name as its ranks report it (default: SLURMD_NODENAME or hostname)")
    p.add_argument("--spool-quota", help="node agent: spool byte quota, e.g. 4G (RANKWISE_SPOOL_BYTES)")
    p.add_argument("--detach", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    from agent.config import parse_bytes

    args = parser().parse_args(argv)
    try:
        cfg = resolve(
            data_dir=args.dir,
            runtime_dir=args.runtime_dir,
            idle_timeout_s=args.idle_timeout,
            seal_timeout_s=args.seal_timeout,
            log_level=args.log_level,
            listen=args.listen,
            upstream=args.upstream,
            curve_secret=args.curve_secret,
            curve_allow=args.allow,
            root_key=args.root_key,
            insecure=args.insecure,
            node_name=args.node,
            spool_quota_bytes=parse_bytes("--spool-quota", args.spool_quota) if args.spool_quota else None,
        )
    except Error as exc:
        print(f"rankwise agent: {exc}", file=sys.stderr)
        return 2
    ready_fd = _detach_and_wait() if args.detach else None
    return run_agent(cfg, foreground=not args.detach, ready_fd=ready_fd)
