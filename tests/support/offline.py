"""Runs without an agent, for unit tests of log() semantics: a Run whose writer is never started, its
batches decoded in-process by the agent's own decoder, and the finish op appended by hand."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np


def offline_run(**kwargs: Any):
    """A Run whose writer is never started: its batches stay in the outbox for :func:`drain_batches`."""
    from client import settings as settings_mod
    from client.run import Run
    from client.transport import Writer

    kwargs.setdefault("project", "unit")
    kwargs.setdefault("group", "g")
    config = kwargs.pop("config", None)  # before resolve(), which rejects unknown settings
    run = Run(settings_mod.resolve(**kwargs), config)
    run._writer = Writer(run.settings, run._hello_run())
    run._push = run._writer.ops.extend
    return run


def drain_batches(run) -> list:
    """Every batch the run's writer has produced so far, decoded by the agent-side decoder."""
    from client import wire

    run._writer.sync()
    batches = []
    while run._writer._outbox:
        _, frame, _ = run._writer._outbox.popleft()
        kind, body = wire.unpack(frame)
        assert kind == wire.BATCH
        batches.append(wire.decode_batch(body, len(frame)))
    return batches


def rows_of(batches: list) -> list[dict[str, Any]]:
    """Committed rows in commit order as dicts with _step, _late and the keys."""
    rows = []
    for b in batches:
        base = len(rows)
        for i in range(b.n):
            rows.append({"_step": int(b.step[i]), "_late": bool(b.late[i]) if b.late is not None else False})
        for col in b.columns:
            idx = range(b.n) if col.rows is None else col.rows.tolist()
            vals = col.values.tolist() if isinstance(col.values, np.ndarray) else col.values
            for i, v in zip(idx, vals):
                rows[base + i][col.key] = v
    return rows


class SlowCounter:
    """Wraps a run's ``_log_slow`` to count the ``log()`` calls that did not take the fast path."""

    def __init__(self, run: Any):
        self.calls = 0
        self._slow = run._log_slow
        run._log_slow = self

    def __call__(self, data: Any, step: Any, commit: Any) -> None:
        self.calls += 1
        self._slow(data, step, commit)


def finish_offline(run: Any, exit_code: int = 0) -> None:
    """What ``run.finish()`` appends for the I/O thread: the CONTROL finish op (commits the pending row)."""
    run._control("finish", {"exit_code": exit_code, "t": time.time(), "late": run._late})


def close(run: Any) -> None:
    """Release the wake pipe of an offline run's writer (its I/O thread was never started)."""
    w = run._writer
    for fd in (w._wake_r, w._wake_w):
        try:
            os.close(fd)
        except OSError:
            pass


def rows_after(run: Any) -> list[dict[str, Any]]:
    """Rows committed so far (decoded exactly as the agent would), draining the writer."""
    return rows_of(drain_batches(run))


def final_rows(run: Any) -> list[dict[str, Any]]:
    """finish the offline run and return every committed row since the last drain."""
    finish_offline(run)
    rows = rows_after(run)
    close(run)
    return rows
