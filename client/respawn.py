"""A writer's patience with a silent agent: when to say HELLO again, and finding (or starting) an agent.

While batches or a WELCOME are outstanding and nothing answers for ``retry_after_s``, the link
(client/link.py) asks for an agent here: the one the runtime directory names (client/spawn.py), or, with
``spawn_agent`` and none running, a new one. Each such turn doubles the period, up to 10 s, so an agent
that is gone for long costs the training process nothing but a look now and then; an ACK resets it.
"""

from __future__ import annotations

import time

from client import spawn
from client.counters import DeliveryCounters
from client.settings import Settings


class Respawn:
    """The retry period (with backoff) and when the agent last answered. Used by the I/O thread only."""

    max_retry_s = 10.0

    def __init__(self, settings: Settings, counters: DeliveryCounters):
        self.settings = settings
        self.counters = counters
        self.retry_after = settings.retry_after_s
        self.last_answer = time.monotonic()  # last ACK or WELCOME (or a turn with nothing to wait for)

    def __repr__(self) -> str:
        return f"<Respawn retry_after={self.retry_after:g}s silent={time.monotonic() - self.last_answer:.1f}s>"

    def acked(self, now: float) -> None:
        """The agent stored something: it works, back to the first retry period."""
        self.last_answer = now
        self.retry_after = self.settings.retry_after_s

    def heard(self, now: float) -> None:
        self.last_answer = now

    def answering(self, now: float) -> bool:
        """The agent answered within ``retry_after_s`` (not in an outage)."""
        return now - self.last_answer < self.settings.retry_after_s

    def find_agent(self) -> dict | None:
        """The retry period ran out: the agent that runs now (started if none does and we may), or None.
        The next period is twice as long."""
        self.retry_after = min(self.retry_after * 2, self.max_retry_s)
        info = spawn.agent_ready(self.settings.runtime_dir)
        if info is None and self.settings.spawn_agent:
            self.counters.spawns += 1
            info = spawn.ensure_agent(self.settings, timeout_s=10.0)
        return info
