"""Talking to the running agent from tools (``rankwise status``, ``rankwise agent stop``)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from client import paths, spawn, wire


def request(
    kind: str, body: Any = None, runtime_dir: str | os.PathLike | None = None, timeout_s: float = 2.0
) -> dict | None:
    """Send one request to the agent and return its reply body; None when no agent answers in time."""
    import zmq

    runtime = Path(runtime_dir) if runtime_dir else paths.runtime_dir()
    info = spawn.agent_ready(runtime)
    if info is None:
        return None
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(info["endpoint"])
        sock.send(wire.pack(kind, body or {}))
        if not sock.poll(int(timeout_s * 1000)):
            return None
        reply_kind, reply = wire.unpack(sock.recv())
        return reply if reply_kind == kind and isinstance(reply, dict) else None
    finally:
        sock.close(linger=0)
        ctx.term()


def wait_stopped(runtime_dir: str | os.PathLike | None, timeout_s: float) -> bool:
    """Wait until no agent holds the lock of ``runtime_dir``."""
    runtime = Path(runtime_dir) if runtime_dir else paths.runtime_dir()
    deadline = time.monotonic() + timeout_s
    while spawn.lock_is_held(runtime / paths.AGENT_LOCK):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
