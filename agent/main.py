"""``python -m agent`` and ``rankwise agent``: the agent's command line, and running one agent process to its end.

:func:`main` parses the options (each overrides its ``RANKWISE_*`` variable, agent/config.py), forks away
with ``--detach`` (agent/detach.py) and calls :func:`run_agent`, which sets up the agent's log, starts
:class:`agent.daemon.Agent`, serves until stopped and shuts it down in the written order (agent/daemon.py).
Exit status: 0 stopped cleanly, 1 could not start, 2 bad options, 3 another agent is running, 4 another agent
(of another runtime directory) holds the data directory.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import signal
import sys

from agent.config import AgentConfig, parse_bytes, resolve
from agent.daemon import Agent
from agent.detach import detach_and_wait, signal_ready
from agent.errors import AlreadyRunning, StoreInUse
from client import paths
from client.errors import Error

log = logging.getLogger("rankwise.agent")

# option (argparse's name) -> the resolve() flag it sets; None (not given) keeps the environment's or the default
_FLAGS = {
    "dir": "data_dir",
    "runtime_dir": "runtime_dir",
    "idle_timeout": "idle_timeout_s",
    "seal_timeout": "seal_timeout_s",
    "log_level": "log_level",
    "listen": "listen",
    "upstream": "upstream",
    "curve_secret": "curve_secret",
    "allow": "curve_allow",
    "root_key": "root_key",
    "insecure": "insecure",
    "node": "node_name",
    "store": "store",
}


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
        signal_ready(ready_fd, b"1", message)
        return 1
    agent = Agent(cfg)
    try:
        agent.start()
    except AlreadyRunning as exc:
        log.info("%s; exiting", exc)
        signal_ready(ready_fd, b"3")
        return 3
    except StoreInUse as exc:  # the spawning client shows this line (client/spawn.py)
        log.error("agent could not start: %s", exc)  # on stderr too in the foreground
        agent.lock.release()
        signal_ready(ready_fd, b"4", str(exc))
        return 4
    except Exception as exc:  # the store cannot be opened, the socket cannot be bound, ...
        log.error("agent could not start: %s", exc, exc_info=not isinstance(exc, Error))
        agent.shutdown()
        signal_ready(ready_fd, b"1", str(exc))
        return 1
    signal.signal(signal.SIGTERM, agent.request_stop)
    signal.signal(signal.SIGINT, agent.request_stop)
    signal_ready(ready_fd, b"0")
    try:
        agent.serve()
    except Exception:
        log.exception("agent loop failed")
        raise
    finally:
        agent.shutdown()
    return 0


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
        "--idle-timeout",
        type=float,
        help="exit after this many seconds with nothing running (0 = never; default 60, a root: 0)",
    )
    p.add_argument("--seal-timeout", type=float, help="seal a step at most this many seconds after it opened")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--listen", metavar="tcp://HOST:PORT", help="be the root: accept node agents here (RANKWISE_LISTEN)")
    p.add_argument(
        "--upstream",
        metavar="tcp://HOST:PORT",
        help="be a node agent: forward to the root there instead of storing (RANKWISE_UPSTREAM)",
    )
    p.add_argument("--curve-secret", metavar="FILE", help="this agent's NAME.key_secret (rankwise keygen)")
    p.add_argument("--allow", metavar="DIR", help="root: directory of the node public keys (*.key) it accepts")
    p.add_argument("--root-key", metavar="FILE", help="node agent: the root's public key file (ROOT.key)")
    p.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="root: accept plain TCP (no Curve) on a non-loopback address",
    )
    p.add_argument("--node", help="this machine's name as its ranks report it (default: SLURMD_NODENAME or hostname)")
    p.add_argument(
        "--store",
        metavar="PATH|URL",
        help="single agent or root: where to store, a SQLite file or clickhouse://host:port/db "
        "(docs/scale.md; RANKWISE_STORE; default $RANKWISE_DIR/store.sqlite)",
    )
    p.add_argument("--spool-quota", help="node agent: spool byte quota, e.g. 4G (RANKWISE_SPOOL_BYTES)")
    p.add_argument("--detach", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        cfg = resolve(
            **{flag: getattr(args, option) for option, flag in _FLAGS.items()},
            spool_quota_bytes=parse_bytes("--spool-quota", args.spool_quota) if args.spool_quota else None,
        )
    except Error as exc:
        print(f"rankwise agent: {exc}", file=sys.stderr)
        return 2
    ready_fd = detach_and_wait() if args.detach else None
    return run_agent(cfg, foreground=not args.detach, ready_fd=ready_fd)
