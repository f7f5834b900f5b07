"""``crashed``: a run whose state became ``crashed`` (its process was seen gone without finishing) or
``failed`` (it finished with an exception or a non-zero exit code); one alert per run incarnation.

The message carries the exception the training process caught on its way out (``RunRecord.meta
["exception"]``, built by client/failure.py: type, message, traceback, thread) and the exit code, or the
signal when the code says one; a process killed without a word (SIGKILL, the OOM killer) leaves the agent
only its vanished pid: "exit status unknown". State: the (run, incarnation) pairs alerted.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from agent.alerts.alert import Alert
from agent.alerts.detectors.base import Detector

if TYPE_CHECKING:
    from agent.ingest import Ingest
    from agent.nextcommit import NextCommit
    from agent.store.base import RunRecord

MAX_TRACEBACK = 8000  # characters of the traceback kept in the alert's details (its end: the raise)


class CrashedDetector(Detector):
    name = "crashed"

    def __init__(self, ingest: Ingest):
        super().__init__(ingest)
        self.alerted: set[tuple[int, int]] = set()  # (run id, incarnation)

    def state_summary(self) -> str:
        return f"runs={len(self.alerted)}"

    def committed(self, nc: NextCommit) -> None:
        for r in nc.runs.values():
            if r.state not in ("crashed", "failed") or (r.id, r.incarnations) in self.alerted:
                continue
            self.alerted.add((r.id, r.incarnations))
            self.counters["runs"] += 1
            self.raise_alert(crash_alert(r, self.wall()))


def exit_status(code: int | None) -> str:
    """How the process ended, in words: ``exit code 3``, ``killed by signal 9 (SIGKILL)``, or unknown."""
    if code is None:
        return "exit status unknown"
    if code < 0:  # as subprocess reports a death by signal
        return f"killed by signal {-code} ({_signame(-code)})"
    if code > 128 and code - 128 < 65:  # as a shell reports it
        return f"exit code {code} (signal {code - 128}, {_signame(code - 128)}?)"
    return f"exit code {code}"


def _signame(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return "unknown signal"


def crash_alert(r: RunRecord, now: float) -> Alert:
    exc = r.meta.get("exception")
    status = exit_status(r.exit_code)
    details: dict = {"state": r.state, "exit_code": r.exit_code, "exit_status": status, "run": r.name}
    if isinstance(exc, dict):
        what = f"{exc.get('type', 'Exception')}: {exc.get('message', '')}"
        if exc.get("thread"):
            what += f" (in thread {exc['thread']})"
        details["exception"] = {k: exc[k] for k in ("type", "message", "thread") if k in exc}
        tb = exc.get("traceback")
        if isinstance(tb, str):
            details["traceback"] = tb[-MAX_TRACEBACK:]
    else:
        what = "no exception reported" if r.state == "failed" else "the process vanished"
    step = r.step - 1 if r.rows else None  # its last committed step
    where = f" at step {step}" if step is not None else " before its first step"
    return Alert(
        kind="crashed",
        group_id=r.group_id,
        time=now,
        message=f"rank {r.rank} {r.state}{where}: {what}; {status}",
        rank=r.rank,
        run_id=r.id,
        step=step,
        level="ERROR",
        details=details,
        token=str(r.incarnations),
    )
