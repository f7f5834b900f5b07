"""The agent's alert book: detectors raise alerts into it, it keeps one of each and hands them to the commit.

Detectors run in the parts' hooks (agent/sinks/base.py ``Part``): ``committed`` (after a commit, on what it
wrote) and ``tick``. What they raise goes into the *next* commit: the book has the hooks of a part, called by
the ingest after every part's (``Ingest.alerts``): on each tick it moves the alerts raised so far into
``ingest.next_commit.alerts``, written in that commit's transaction (agent/nextcommit.py); then ``committed``
hands the stored alerts to the notifiers (a command, a webhook), outside the transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.alerts.alert import Alert
from agent.sinks.base import Part

if TYPE_CHECKING:
    from agent.ingest import Ingest
    from agent.nextcommit import NextCommit


class AlertBook(Part):
    def __init__(self, ingest: Ingest):
        self.ingest = ingest
        self.pending: list[Alert] = []
        self.seen: set[tuple] = set()  # identities raised by this agent (the store de-duplicates across restarts)
        self.raised = 0
        self.notifiers: list[Callable[[list[Alert]], None]] = []  # called with the alerts of each commit

    def __repr__(self) -> str:
        return f"<AlertBook raised={self.raised} pending={len(self.pending)} notifiers={len(self.notifiers)}>"

    def raise_alert(self, alert: Alert) -> bool:
        """Raise ``alert`` unless this agent raised the same one before (True: it will be stored)."""
        if alert.identity in self.seen:
            return False
        self.seen.add(alert.identity)
        self.pending.append(alert)
        self.raised += 1
        self.ingest.counters.add("alerts")
        self.ingest.counters.add(f"alerts_{alert.kind}")
        return True

    def tick(self, now: float) -> None:
        if self.pending:
            self.ingest.next_commit.alerts.extend(self.pending)
            self.pending = []

    def committed(self, nc: NextCommit) -> None:
        if nc.alerts:
            for notify in self.notifiers:
                notify(list(nc.alerts))

    def status(self, snap: dict[str, Any]) -> None:
        snap["alerts"] = self.raised

    def idle(self) -> bool:
        return not self.pending
