"""One alert: what happened, to which rank of which group, for which key, at which step, and when."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

LEVELS = ("INFO", "WARN", "ERROR")  # wandb's AlertLevel names
KINDS = ("nan", "diverged", "hang", "stalled", "straggler", "crashed", "user")


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert as stored. ``rank``/``run_id`` are None for an alert about the whole group (``stalled``),
    ``key`` None when no key is concerned (``hang``, ``crashed``), ``step`` None when no step is.

    ``token`` tells apart alerts that share (group, kind, rank, key): the store keeps the first alert of each
    (group_id, kind, rank, key, token), so a detector that says the same thing twice (after an agent restart,
    a replay) stores one row. Detectors that may alert again about the same thing later (a user alert after
    its ``wait_duration``) put what makes the new one new in the token.
    """

    kind: str
    group_id: int
    time: float  # seconds since the epoch: when the agent raised it
    message: str  # one line, for people: names the rank, the key and the step
    rank: int | None = None
    run_id: int | None = None
    key: str | None = None
    step: int | None = None
    level: str = "WARN"
    details: dict[str, Any] = field(default_factory=dict)  # JSON-able: the numbers behind the message
    token: str = ""

    @property
    def identity(self) -> tuple:
        """What the store de-duplicates by."""
        return (self.group_id, self.kind, self.rank, self.key, self.token)

    def details_json(self) -> str:
        return json.dumps(self.details, sort_keys=True, default=str)

    def to_dict(self) -> dict[str, Any]:
        """The alert as ``Reader.alerts``, ``Group.alerts`` and the alert sinks give it."""
        return {
            "kind": self.kind,
            "level": self.level,
            "rank": self.rank,
            "key": self.key,
            "step": self.step,
            "time": self.time,
            "message": self.message,
            "details": dict(self.details),
        }
