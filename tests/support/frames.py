"""Client frames built by hand for in-process agent tests: a HELLO and a batch of numeric columns, encoded
with the client's own wire encoder (client/wire.py). Step ``s`` is committed at wall time ``T0 + s``
unless a test says otherwise."""

from __future__ import annotations

import os

import numpy as np

from client import wire

T0 = 1_000_000.0


def hello(
    writer: str,
    rank: int = 0,
    world: int = 1,
    group: str = "g",
    *,
    project: str = "p",
    node: str = "n1",
    pid: int | None = None,
    name: str | None = None,
    run_id: str | None = None,
    reconnect: bool = False,
    h: int = 1,
) -> bytes:
    """A writer's HELLO for rank ``rank`` of ``world`` in ``group`` (run name ``rank-<rank>`` unless ``name``;
    the pid this test process's unless ``pid``)."""
    run = {
        "project": project,
        "group": group,
        "name": name or f"rank-{rank}",
        "rank": rank,
        "world_size": world,
        "local_rank": rank,
        "node": node,
        "launcher": "none",
        "resume": "allow",
        "started": 1.0,
        "run_id": run_id or f"{group}-{rank}",
    }
    pid = os.getpid() if pid is None else pid
    return wire.pack(wire.HELLO, {"w": writer, "pid": pid, "run": run, "re": reconnect, "h": h})


def batch(writer: str, seq: int, steps, columns: dict[str, np.ndarray], late=None, ctl=None, t=None) -> bytes:
    """A client batch of numeric columns; rows committed at ``t`` (default: one second per step)."""
    steps = np.asarray(steps, np.int64)
    n = len(steps)
    t = (T0 + steps).astype(np.float64) if t is None else np.asarray(t, np.float64)
    blocks = [[[k], None, [["f8", np.asarray(v, np.float64).tobytes()]]] for k, v in columns.items()]
    late_b = None if late is None else np.asarray(late, bool).tobytes()
    return wire.encode_batch(
        writer, seq, steps.tobytes(), t.tobytes(), (steps * 0.1).tobytes(), late_b, n, blocks, None, None, ctl
    )
