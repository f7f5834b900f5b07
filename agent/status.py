"""Counters of what the agent received, stored and refused, by cause. Shown by ``rankwise status``."""

from __future__ import annotations

import collections
from typing import Any


class Counters:
    """Monotonic counters; one instance per agent, written only by its loop thread."""

    def __init__(self) -> None:
        self.values: collections.Counter[str] = collections.Counter()
        self.malformed: collections.Counter[str] = collections.Counter()
        self.drops: collections.Counter[str] = collections.Counter()

    def add(self, name: str, n: int = 1) -> None:
        self.values[name] += n

    def bad_frame(self, cause: str) -> None:
        self.malformed[cause] += 1

    def drop(self, cause: str, n: int) -> None:
        self.drops[cause] += n

    def snapshot(self) -> dict[str, Any]:
        return {"counters": dict(self.values), "malformed": dict(self.malformed), "drops": dict(self.drops)}

    def __repr__(self) -> str:
        top = ", ".join(f"{k}={v}" for k, v in sorted(self.values.items())[:6])
        return f"<Counters {top} malformed={sum(self.malformed.values())} drops={sum(self.drops.values())}>"
