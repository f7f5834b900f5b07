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
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from client import paths
from client.settings import Settings

log = logging.getLogger("rankwise")
STORE_IN_USE = 4  # the agent's exit status when another agent holds the data directory (agent/locks.py)
_warned_start_failure = False


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
    """The info of the agent serving ``runtime``, or None when none is (yet) serving.

    An agent killed with SIGKILL leaves its ``agent.json`` behind; while its successor holds the
    lock but has not bound its socket yet, that file names the dead one. The lock file holds the
    holder's pid, so such a stale file is recognised and not returned."""
    if not lock_is_held(runtime / paths.AGENT_LOCK):
        return None
    info = read_info(runtime)
    if info is None:
        return None
    try:
        holder = int((runtime / paths.AGENT_LOCK).read_text().strip() or 0)
    except (OSError, ValueError):
        holder = 0
    return None if holder and info.get("pid") != holder else info


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
        # --detach makes the agent fork and the command return once the agent is ready (status 0), lost a
        # race (3), could not start (1: the reason is in agent.log) or found the data directory held by an
        # agent of another runtime directory (4: the reason, naming that agent, is on its stderr)
        done = subprocess.run(
            agent_command(settings),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,
            timeout=max(1.0, deadline - time.monotonic()),
            check=False,
        )
        if done.returncode not in (0, 3):
            _warn_start_failure(settings, done.returncode, done.stderr)
            return agent_ready(runtime)  # waiting longer would not help: it said it cannot start
        return _wait_ready(runtime, max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return agent_ready(runtime)
    finally:
        os.close(fd)  # closing releases the flock


def _warn_start_failure(settings: Settings, code: int, stderr: bytes) -> None:
    global _warned_start_failure
    if _warned_start_failure:
        return
    _warned_start_failure = True
    detail = stderr.decode(errors="replace").strip().splitlines()[-1:] if stderr else []
    if code == STORE_IN_USE:
        log.warning(
            "rankwise: no agent started for runtime dir %s: %s. Logging continues and is delivered once an "
            "agent runs here.",
            settings.runtime_dir,
            detail[0] if detail else "another agent holds the data directory",
        )
        return
    log.warning(
        "rankwise: the agent could not start (exit status %d%s); see %s. Logging continues and is "
        "delivered once an agent runs.",
        code,
        ": " + detail[0] if detail else "",
        settings.data_dir / "agent.log",
    )


def _wait_ready(runtime: Path, timeout_s: float) -> dict | None:
    deadline = time.monotonic() + timeout_s
    while True:
        info = agent_ready(runtime)
        if info or time.monotonic() >= deadline:
            return info
        time.sleep(0.01)
