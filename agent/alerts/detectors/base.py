"""What every detector shares: a :class:`agent.sinks.base.Part` that counts what it did, names the rank and
group of a run id, and raises into the agent's alert book (agent/alerts/book.py).

Detectors read what each commit wrote (``Part.committed(nc)``: ``nc.history`` slots ``(run_id, key, late,
is_span)`` → (step arrays, value arrays or lists or span dicts), ``nc.runs`` records) and decide on the
agent's ticks. Their state is bounded per (group, rank, key); each module says its bound.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from agent.alerts.alert import Alert
from agent.sinks.base import Part
from agent.store.base import ROW_KEYS

if TYPE_CHECKING:
    from agent.ingest import Ingest
    from agent.runs import RunState

# keys rankwise writes itself (row times, coalesced spans' extent): never a user's metric
SKIP_KEYS = frozenset(ROW_KEYS)


class Detector(Part):
    """A part that raises alerts of one or more kinds; ``counters`` appear in ``rankwise status`` under
    ``detectors`` (``checked`` chunks or ticks, ``raised`` alerts, and what each detector adds)."""

    name = "detector"
    check_every_s = 0.0  # a detector that judges on a period: the least monotonic time between two (``due``)

    def __init__(self, ingest: Ingest):
        self.ingest = ingest
        self.counters: Counter[str] = Counter()
        self.now = 0.0  # wall time of the last tick (what alerts are stamped with; the sim's clock in tests)
        self._next_check = float("-inf")

    def __repr__(self) -> str:
        shown = " ".join(f"{k}={v}" for k, v in sorted(self.counters.items()))
        return f"<{type(self).__name__} {self.state_summary()} {shown}>".replace("  ", " ")

    def state_summary(self) -> str:
        """A few words on the detector's state (what it tracks), for ``__repr__``."""
        return ""

    def run(self, run_id: int) -> RunState | None:
        return self.ingest.runs.get(run_id)

    def tick(self, now: float) -> None:
        self.now = now
        self.check(now)

    def check(self, now: float) -> None:
        """Decide on the agent's tick (after the agent's own: liveness, sealing)."""

    def due(self) -> bool:
        """Has ``check_every_s`` passed since the last check that was due (counted as ``checks``)?"""
        mono = self.ingest.clock()
        if mono < self._next_check:
            return False
        self._next_check = mono + self.check_every_s
        self.counters["checks"] += 1
        return True

    def wall(self) -> float:
        """When an alert is raised: the last tick's wall time (the loop ticks before it commits)."""
        return self.now or time.time()

    def raise_alert(self, alert: Alert) -> bool:
        raised = self.ingest.alerts.raise_alert(alert)
        self.counters["raised" if raised else "repeated"] += 1
        return raised

    def status(self, snap: dict[str, Any]) -> None:
        snap.setdefault("detectors", {})[self.name] = dict(self.counters)
