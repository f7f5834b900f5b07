"""When a live view of a group may stop: ``rankwise tail`` (rankwise/_tail.py) and the UI's event stream
(rankwise/_ui/events.py) follow a group until it has finished and its last group rows are there.

The last rank finishing is not the end: the agent seals the last steps on its next tick after it, so a
view that stopped at once would miss the last group rows. A view waits until every committed step has its
group row, or ``SETTLE_S`` at most (a group whose keys stop early never catches up).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

SETTLE_S = 5.0  # after the last rank finished, how long to wait for the agent to seal the last steps


def caught_up(sealed_through: int, runs: Any) -> bool:
    """Every committed step of the group has its group row (``step`` is the next step a run commits)."""
    return sealed_through >= max((r.step for r in runs), default=0) - 1


class Settling:
    """One live view's end, decided poll by poll: each poll says the group is :meth:`running` or asks whether
    the view may end now that it is :meth:`stopped` (caught up, or stopped for ``settle_s``); a group that
    runs again (a restarted rank) starts the wait over."""

    def __init__(self, settle_s: float = SETTLE_S, clock: Callable[[], float] = time.monotonic):
        self.settle_s = settle_s
        self._clock = clock
        self.stopped_at: float | None = None  # when the group was first seen not running (None: running)

    def __repr__(self) -> str:
        state = "running" if self.stopped_at is None else f"stopped {self._clock() - self.stopped_at:.1f}s ago"
        return f"<Settling {state} settle_s={self.settle_s}>"

    def running(self) -> None:
        self.stopped_at = None

    def stopped(self, sealed_through: int, runs: Any) -> bool:
        """No rank runs: whether the view may end (``runs``: the group's runs, each with its ``step``)."""
        if self.stopped_at is None:
            self.stopped_at = self._clock()
        return caught_up(sealed_through, runs) or self._clock() - self.stopped_at > self.settle_s
