"""Small helpers for the client unit tests (offline runs: no agent, batches decoded in-process)."""

from __future__ import annotations

import os
import time
from typing import Any

from rwtest import SlowCounter, drain_batches, offline_run, rows_of


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


__all__ = ["SlowCounter", "close", "drain_batches", "final_rows", "finish_offline", "offline_run", "rows_after", "rows_of"]
