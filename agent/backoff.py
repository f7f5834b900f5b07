"""How long a failed commit waits before the next try (store transaction or spool append alike).

A store or spool that keeps failing must not turn the loop into a busy one: the next try waits 10 ms,
doubling up to 2 s; a success starts over. Time comes from the agent's clock (tests inject one).
"""

from __future__ import annotations

from collections.abc import Callable

FIRST_S = 0.01
MAX_S = 2.0


class Backoff:
    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.failures = 0
        self.retry_at = 0.0  # on ``clock``: no try before this (0.0: try at once)

    def __repr__(self) -> str:
        return f"<Backoff failures={self.failures} retry_at={self.retry_at:.3f}>"

    def due(self) -> bool:
        return self.clock() >= self.retry_at

    def failed(self) -> None:
        self.failures += 1
        self.retry_at = self.clock() + min(MAX_S, FIRST_S * 2 ** min(self.failures, 8))

    def reset(self) -> None:
        """A commit went through (or there is nothing left to retry: a fresh store)."""
        self.failures = 0
        self.retry_at = 0.0
