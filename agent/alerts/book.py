"""The agent's alert book: detectors raise alerts into it, it keeps one of each and hands them to the commit.

Detectors run in the parts' hooks (agent/sinks/base.py ``Part``): ``committed`` (after a commit, on what it
wrote) and ``tick``. What they raise goes into the *next* commit: the book has the hooks of a part, called by
the ingest after every part's (``Ingest.alerts``): on each tick it moves the alerts raised so far into
``ingest.next_commit.alerts``, written in that commit's transaction (agent/nextcommit.py); then ``committed``
hands the stored alerts to the notifiers (a command, a webhook), outside the transaction.

An alert is raised once: the book drops one whose identity (``Alert.identity``) this agent raised before or the
store holds already (:class:`StoredAlerts`: an agent restarted over the store, seeing the same hang, crash or NaN
again, neither stores it twice nor hands it to the notifiers again).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.alerts.alert import Alert
from agent.sinks.base import Part

if TYPE_CHECKING:
    from agent.ingest import Ingest
    from agent.nextcommit import NextCommit


class StoredAlerts:
    """The identities of the alerts the store holds per group (``Reader.alert_identities``), read once per group
    when the book first raises something about it: the alerts an agent before this one raised."""

    def __init__(self, ingest: Ingest):
        self.ingest = ingest
        self.by_group: dict[int, set[tuple]] = {}

    def __repr__(self) -> str:
        return f"<StoredAlerts groups={len(self.by_group)}>"

    def has(self, identity: tuple) -> bool:
        group_id, rest = identity[0], identity[1:]
        known = self.by_group.get(group_id)
        if known is None:
            known = self.by_group[group_id] = self._read(group_id)
        return rest in known

    def _read(self, group_id: int) -> set[tuple]:
        store = self.ingest.store
        try:
            reader = store.reader()
        except Exception:  # noqa: BLE001 - no store file yet (nothing stored), or a node's catalog
            return set()
        try:
            return reader.alert_identities(group_id)
        except Exception:  # noqa: BLE001 - a store without the alerts table, or unreachable: raise as new
            return set()
        finally:
            if reader is not store:  # the in-memory store reads itself
                reader.close()


class AlertBook(Part):
    def __init__(self, ingest: Ingest):
        self.ingest = ingest
        self.pending: list[Alert] = []
        self.seen: set[tuple] = set()  # identities raised by this agent
        self.stored = StoredAlerts(ingest)  # and those the store held before it started
        self.raised = 0
        self.notifiers: list[Callable[[list[Alert]], None]] = []  # called with the alerts of each commit

    def __repr__(self) -> str:
        return f"<AlertBook raised={self.raised} pending={len(self.pending)} notifiers={len(self.notifiers)}>"

    def known(self, alert: Alert) -> bool:
        """Raised before, by this agent or (stored) by one before it: ``raise_alert`` would drop it."""
        return alert.identity in self.seen or self.stored.has(alert.identity)

    def raise_alert(self, alert: Alert) -> bool:
        """Raise ``alert`` unless this agent raised the same one before or the store holds it (True: it will be
        stored and notified)."""
        if alert.identity in self.seen:
            return False
        self.seen.add(alert.identity)
        if self.stored.has(alert.identity):
            return False
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
