"""Finding the node agent, and starting one when none is running.

One agent per node and user. Liveness is a lock: the agent holds an exclusive
``flock`` on ``agent.lock`` for its whole life, so a crashed agent can never look
alive and a second agent can never bind a live agent's socket. ``agent.json``
(pid, endpoint) is written once the socket is bound; the agent is *ready* when
the lock is held and that file exists.

When eight ranks call ``init()`` at the same instant they serialise on
``spawn.lock``: the first starts the agent and waits until it is ready, the
others then find it ready. The agent is started detached (its own session) so
that it outlives the rank that started it and exits by itself after an idle
timeout.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from client import paths
from client.settings import Settings


def lock_is_held(path: Path) -> bool:
    """True when some process holds ``flock(LOCK_EX)`` on ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def read_info(runtime: Path) -> dict | None:
    """The running agent's ``agent.json`` (pid, endpoint, version), or None."""
    try:
        with open(runtime / paths.AGENT_INFO) as fh:
            info = json.load(fh)
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and "endpoint" in info else None


def agent_ready(runtime: Path) -> dict | None:
    if not lock_is_held(runtime / paths.AGENT_LOCK):
        return None
    return read_info(runtime)


def agent_command(settings: Settings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "agent",
        "--detach",
        "--dir",
        str(settings.data_dir),
        "--runtime-dir",
        str(settings.runtime_dir),
        "--idle-timeout",
        str(settings.agent_idle_timeout_s),
    ]


def ensure_agent(settings: Settings, timeout_s: float) -> dict | None:
    """Return the ready agent's info, starting the agent if needed; None when none became ready in time."""
    runtime = paths.ensure_private_dir(settings.runtime_dir)
    info = agent_ready(runtime)
    if info or not settings.spawn_agent:
        return info or _wait_ready(runtime, timeout_s if not settings.spawn_agent else 0)
    deadline = time.monotonic() + timeout_s
    fd = os.open(runtime / paths.SPAWN_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:  # a bounded wait for the spawn lock: a stuck spawner must not hang init forever
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return agent_ready(runtime)
                time.sleep(0.005)
        info = agent_ready(runtime)
        if info:
            return info
        paths.ensure_data_dir(settings.data_dir)
        # --detach makes the agent fork and the command return once the agent is ready (or lost a race)
        subprocess.run(
            agent_command(settings),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            start_new_session=True,
            timeout=max(1.0, deadline - time.monotonic()),
            check=False,
        )
        return _wait_ready(runtime, max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return agent_ready(runtime)
    finally:
        os.close(fd)  # closing releases the flock


def _wait_ready(runtime: Path, timeout_s: float) -> dict | None:
    deadline = time.monotonic() + timeout_s
    while True:
        info = agent_ready(runtime)
        if info or time.monotonic() >= deadline:
            return info
        time.sleep(0.01)
