"""One writer per data directory: ``store.lock`` beside ``store.sqlite``.

The agent's own lock (``agent.lock``) lives in the runtime directory, which is per
login session (``XDG_RUNTIME_DIR``): an ssh shell and a batch job of the same user
can each start an agent, and both would open the same ``RANKWISE_DIR``. Two
writers of one store take back each other's live runs after a "restart" and mark
runs crashed that the other one finished. So an agent also holds an exclusive
``flock`` on ``store.lock`` in the data directory for its whole life (released by
the kernel when it dies: a crashed agent never blocks its successor), and writes
who it is into the file (pid, host, runtime dir) so that the agent that loses
says whom it lost to.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from agent.errors import StoreInUse

STORE_LOCK = "store.lock"


class StoreLock:
    """The exclusive flock that makes this process the only writer of a data directory."""

    def __init__(self, data_dir: Path, runtime_dir: Path):
        self.path = data_dir / STORE_LOCK
        self.runtime_dir = runtime_dir
        self.fd: int | None = None

    def __repr__(self) -> str:
        return f"<StoreLock {self.path} {'held' if self.fd is not None else 'not held'}>"

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreInUse(describe_holder(self.path)) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "runtime_dir": str(self.runtime_dir),
                  "started": time.time()}  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def read_holder(path: Path) -> dict:
    """What the holder of ``path`` wrote about itself ({} while it has not written yet)."""
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def describe_holder(path: Path) -> str:
    """One line naming the agent that holds ``path`` and what to do about it."""
    h = read_holder(path)
    who = f"agent pid {h.get('pid', '?')} on host {h.get('host', '?')} (runtime dir {h.get('runtime_dir', '?')})"
    return (
        f"the data directory {path.parent} is in use by another {who}: one store has one writer. "
        f"Use that agent (set RANKWISE_RUNTIME_DIR={h.get('runtime_dir', '?')}), wait until it exits, "
        "or set another RANKWISE_DIR"
    )
