"""Malformed frames: a bounded set of causes to count them by, and which of them get a log line.

A peer controls the text of a ProtocolError (it quotes names, numbers, lists the
peer sent): :func:`malformed_cause` strips those, so the counters in ``rankwise
status`` stay a small fixed table. :class:`CauseLog` rate-limits the log per
cause without ever silencing a new one.
"""

from __future__ import annotations

import re

MAX_CAUSES = 64  # distinct malformed-frame causes kept (the decoders have ~40); beyond, "other" (bounded counters)
_LITERALS = re.compile(r"b?'[^']*'|b?\"[^\"]*\"|-?\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\b|-?\b(?:inf|nan)\b")


class CauseLog:
    """Which bad frames get a log line: the first ``first`` of each cause, then one per cause every
    ``every_s`` seconds (saying how many were not logged). A flood of one cause never silences another:
    a new cause is always logged (beyond ``max_causes`` distinct ones, the rest share one budget)."""

    def __init__(self, first: int = 5, every_s: float = 60.0, max_causes: int = 256):
        self.first, self.every_s, self.max_causes = first, every_s, max_causes
        self._seen: dict[str, list] = {}  # cause -> [logged, not logged since, next log time]

    def __repr__(self) -> str:
        return f"<CauseLog causes={len(self._seen)}>"

    def allow(self, cause: str, now: float) -> int | None:
        """None: do not log; else log, and this many of the cause were not logged since the last line."""
        entry = self._seen.get(cause)
        if entry is None:
            if len(self._seen) < self.max_causes:
                entry = self._seen[cause] = [0, 0, 0.0]
            else:  # a peer inventing causes cannot grow this table: the rest share one budget
                entry = self._seen.setdefault("\0overflow", [0, 0, 0.0])
        if entry[0] < self.first:
            entry[0] += 1
            entry[2] = now + self.every_s
            return 0
        if now >= entry[2]:
            skipped, entry[1], entry[2] = entry[1], 0, now + self.every_s
            return skipped
        entry[1] += 1
        return None


# the repr of a list or map the peer sent (after its literals became …): brackets holding no lowercase word
# (the fixed text of a message, "[version, kind, body]", keeps its brackets)
_CONTAINERS = re.compile(r"\[[^\[\]{}a-z]*\]|\{[^\[\]{}a-z]*\}|\b(?:None|True|False)\b")


def malformed_cause(message: str) -> str:
    """A ProtocolError's message without the peer's literals (names, numbers, and the reprs of lists,
    maps, None and bools that some messages quote): a bounded set of causes."""
    text = _LITERALS.sub("…", message)
    while True:  # innermost brackets first, until none is left
        shorter = _CONTAINERS.sub("…", text)
        if shorter == text:
            return text[:80]
        text = shorter
