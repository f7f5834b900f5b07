"""Alert sinks: each stored alert handed to people and programs, off the agent's loop thread.

The alert book (agent/alerts/book.py) calls its ``notifiers`` with the alerts of each commit, on the loop
thread. A :class:`Notifier` only turns them into JSON-able payloads and puts them in a bounded queue there;
its worker thread does the slow part (run a command, POST a webhook: agent/alerts/senders.py), so a slow or
dead sink never delays a commit. A full queue drops the alert and counts it. Each notifier is also a part
(agent/sinks/base.py ``Part``) for the status (``rankwise status``: sent / failed / dropped per sink) and is
closed at agent exit (agent/daemon.py), draining what is queued within a bound.

Which sinks an agent has is decided once, from its settings (``RANKWISE_ALERT_CMD``,
``RANKWISE_ALERT_WEBHOOK``: agent/config.py), by :func:`plug_notifiers` (agent/plugged.py, for a single agent
and a root: the agents that store alerts).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.alerts.alert import Alert
from agent.alerts.senders import SendFailed, command_sender, webhook_sender
from agent.sinks.base import Part

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.ingest import Ingest

log = logging.getLogger("rankwise.agent")

QUEUE_MAX = 256  # alerts waiting for one sink; beyond it new ones are dropped (counted): the book de-duplicates


def payload(alert: Alert, project: str | None, group: str | None) -> dict[str, Any]:
    """What a sink receives for one alert: ``Alert.to_dict`` plus the group it is about."""
    return {"project": project, "group": group, **alert.to_dict()}


class Notifier(Part):
    """One sink (``name``: "cmd" or "webhook") with its queue and worker thread. ``send(payload)`` runs on the
    worker and raises :class:`SendFailed` (or anything) when the alert did not get through."""

    def __init__(
        self,
        name: str,
        send: Callable[[dict], None],
        queue_max: int = QUEUE_MAX,
        drain_s: float = 5.0,
        stopping: threading.Event | None = None,
    ):
        self.name = name
        self.send = send
        self.queue_max = queue_max
        self.drain_s = drain_s  # at close, how long queued alerts may still take
        self.queue: collections.deque[dict] = collections.deque()
        self.cond = threading.Condition()
        # set at close: a retry's backoff wait (the sender waits on it) ends early
        self.stopping = threading.Event() if stopping is None else stopping
        self.thread: threading.Thread | None = None
        self.busy = False  # the worker holds an alert (taken from the queue, not yet sent or failed)
        self.sent = self.failed = self.dropped = 0
        self.last_error = ""
        self.describe: Callable[[int], tuple[str | None, str | None]] = lambda gid: (None, None)

    def __repr__(self) -> str:
        return (
            f"<Notifier {self.name} sent={self.sent} failed={self.failed} dropped={self.dropped} "
            f"queued={len(self.queue)} busy={self.busy} stopping={self.stopping.is_set()}>"
        )

    # ------------------------------------------------------------ loop thread

    def notify(self, alerts: list[Alert]) -> None:
        """The alerts a commit stored (the book's notifier call): queued, never waited for."""
        items = [payload(a, *self.describe(a.group_id)) for a in alerts]
        with self.cond:
            if self.stopping.is_set():
                self.dropped += len(items)
                return
            for item in items:
                if len(self.queue) >= self.queue_max:
                    self.dropped += 1
                    continue
                self.queue.append(item)
            self.cond.notify()
        if self.thread is None:
            self.thread = threading.Thread(target=self._work, name=f"rankwise-alert-{self.name}", daemon=True)
            self.thread.start()

    def status(self, snap: dict[str, Any]) -> None:
        sinks = snap.setdefault("alert_sinks", {})
        sinks[self.name] = {
            "sent": self.sent,
            "failed": self.failed,
            "dropped": self.dropped,
            "queued": len(self.queue) + self.busy,
            "last_error": self.last_error,
        }

    def close(self) -> None:
        """Agent exit: let the worker send what is queued for at most ``drain_s``, then stop it; what it could
        not send by then is counted as dropped (the worker is a daemon thread: it never holds the exit)."""
        thread = self.thread
        if thread is not None:
            deadline = time.monotonic() + self.drain_s
            with self.cond:
                while (self.queue or self.busy) and time.monotonic() < deadline:
                    self.cond.wait(max(0.0, min(0.1, deadline - time.monotonic())))
        with self.cond:
            self.stopping.set()
            self.dropped += len(self.queue)
            self.queue.clear()
            self.cond.notify_all()
        if thread is not None:
            thread.join(timeout=0.5)

    # ------------------------------------------------------------ worker thread

    def _work(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.stopping.is_set():
                    self.cond.wait()
                if not self.queue:
                    return
                item = self.queue.popleft()
                self.busy = True
            try:
                self.send(item)
                ok, error = True, ""
            except SendFailed as exc:
                ok, error = False, str(exc)
            except Exception as exc:  # noqa: BLE001 - a sink's failure must not end the worker
                ok, error = False, f"{type(exc).__name__}: {exc}"
            with self.cond:
                if ok:
                    self.sent += 1
                else:
                    self.failed += 1
                    self.last_error = error[:300]
                self.busy = False
                self.cond.notify_all()
            if not ok:
                log.warning("alert sink %s failed for %s alert %r: %s", self.name, item["kind"], item["key"], error)


def plug_notifiers(ingest: Ingest, cfg: AgentConfig) -> list[Notifier]:
    """The sinks ``cfg`` names, each registered with the alert book and as a part of ``ingest``. A sink whose
    setting is unusable is logged and left out: an agent never refuses to start (ranks need it) over it."""
    made: list[Notifier] = []
    for name, setting, build in (
        ("cmd", cfg.alert_cmd, command_sender),
        ("webhook", cfg.alert_webhook, webhook_sender),
    ):
        if not setting:
            continue
        stopping = threading.Event()
        try:
            send = build(setting, cfg.alert_timeout_s, stopping)
        except ValueError as exc:
            log.error("alert sink %s not started: %s", name, exc)
            continue
        made.append(Notifier(name, send, drain_s=cfg.alert_drain_s, stopping=stopping))
    for notifier in made:
        notifier.describe = _describer(ingest)
        ingest.alerts.notifiers.append(notifier.notify)
        ingest.parts.append(notifier)
    return made


def _describer(ingest: Ingest) -> Callable[[int], tuple[str | None, str | None]]:
    def describe(group_id: int) -> tuple[str | None, str | None]:
        group = ingest.groups.get(group_id)
        return (None, None) if group is None else (group.record.project, group.record.name)

    return describe
