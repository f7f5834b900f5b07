"""The agent's two locks: one agent per runtime directory, one writer per data directory.

``agent.lock`` in the runtime directory makes a process *the* agent its clients
find there (a second one exits with status 3 and never binds a live agent's
socket). ``store.lock`` beside ``store.sqlite`` makes it the store's only writer.
Both are exclusive ``flock`` s held for the process's life and released by the
kernel when it dies, so a crashed agent never blocks its successor.

Why two: the runtime directory is per login session (``XDG_RUNTIME_DIR``): an ssh shell and a batch job of the same user
can each start an agent, and both would open the same ``RANKWISE_DIR``. Two
writers of one store take back each other's live runs after a "restart" and mark
runs crashed that the other one finished. So an agent also holds ``store.lock``, and
writes who it is into it (pid, host, runtime dir) so that the agent that loses
says whom it lost to.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from agent.errors import AlreadyRunning, StoreInUse
from client import paths

STORE_LOCK = "store.lock"


class FileLock:
    """An exclusive, non-blocking flock on ``path`` held until ``release`` (or the process's death), with a
    note of who holds it written inside."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path} {'held' if self.fd is not None else 'not held'}>"

    def _take(self, holder: bytes) -> bool:
        """False when another process holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder, 0)
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class AgentLock(FileLock):
    """*The* agent of a runtime directory (its pid inside)."""

    def __init__(self, runtime_dir: Path):
        super().__init__(runtime_dir / paths.AGENT_LOCK)

    def acquire(self) -> None:
        if not self._take(str(os.getpid()).encode()):
            raise AlreadyRunning(f"another agent holds {self.path}")


class StoreLock(FileLock):
    """The only writer of a data directory (pid, host and runtime directory inside, for the one that loses)."""

    def __init__(self, data_dir: Path, runtime_dir: Path):
        super().__init__(data_dir / STORE_LOCK)
        self.runtime_dir = runtime_dir

    def acquire(self) -> None:
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "runtime_dir": str(self.runtime_dir),
            "started": time.time(),
        }
        if not self._take(json.dumps(holder).encode()):
            raise StoreInUse(describe_holder(self.path))


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
