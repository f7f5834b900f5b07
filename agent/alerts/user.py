"""User alerts: ``run.alert(title, text, level, wait_duration)`` in a training process becomes an alert.

The client (client/wandb_surface.py ``alert``) checks the arguments, applies ``wait_duration`` (no second
alert with the same title from that process within it) and sends an ``alert`` control op with its batch::

    {"title": str, "text": str, "level": "INFO" | "WARN" | "ERROR", "wait": seconds, "t": wall time, "step": int}

The agent that stores (a single agent, a root applying the batches its node agents forward) raises it as
``Alert(kind="user", key=title, message=text, level, rank, step)`` through its alert book; a node agent
ignores the op (the root applies the forwarded batch). ``t``, the client's time of the call, is the token: a
batch the client sends again after an agent restart raises the same alert, stored once; a later call with the
same title, past its ``wait_duration``, is a new alert.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.alerts.alert import LEVELS, Alert

if TYPE_CHECKING:
    from agent.ingest import Ingest
    from agent.runs import RunState

MAX_TITLE = 256
MAX_TEXT = 4096


def checked(arg: Any) -> dict | None:
    """The op's argument if it has the documented shape, else None (counted as malformed)."""
    if not isinstance(arg, dict):
        return None
    title, text, level, t = arg.get("title"), arg.get("text"), arg.get("level"), arg.get("t")
    step, wait = arg.get("step", 0), arg.get("wait", 0.0)
    if not (isinstance(title, str) and 0 < len(title) <= MAX_TITLE and isinstance(text, str) and len(text) <= MAX_TEXT):
        return None
    if level not in LEVELS or not _number(t) or not _number(wait):
        return None
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step < (1 << 62):
        return None
    return {"title": title, "text": text, "level": level, "t": float(t), "step": step, "wait": float(wait)}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) < 1e18


class UserAlerts:
    """What ``Applier.control`` calls for an ``alert`` op on an agent that stores (agent/plugged.py)."""

    def __init__(self, ingest: Ingest):
        self.ingest = ingest
        self.raised = 0

    def __repr__(self) -> str:
        return f"<UserAlerts raised={self.raised}>"

    def __call__(self, run: RunState, arg: Any, now: float) -> None:
        op = checked(arg)
        if op is None:
            self.ingest.applier.malformed("alert op not a map of title, text, level, t, step, wait")
            return
        r = run.record
        alert = Alert(
            kind="user",
            group_id=r.group_id,
            time=now,
            message=op["text"],
            rank=r.rank,
            run_id=r.id,
            key=op["title"],
            step=op["step"],
            level=op["level"],
            details={"title": op["title"], "wait_duration": op["wait"], "sent": op["t"]},
            token=repr(op["t"]),
        )
        if self.ingest.alerts.raise_alert(alert):
            self.raised += 1
