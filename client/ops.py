"""The op kinds ``log()`` appends, and metric summary kinds. Pure Python: imported on ``import rankwise``."""

from __future__ import annotations

from typing import Any

COMMIT, MERGE, LATE, CONTROL = 0, 1, 2, 3
SUMMARY_KINDS = ("min", "max", "mean", "first", "last", "none")


def parse_summary_kinds(summary: Any) -> tuple[str, ...]:
    """``define_metric(summary=...)``: "min", "max,min", ["min", "last"], "none" (→ no summary)."""
    if summary is None:
        return ("last",)
    error = ValueError(f"define_metric(summary={summary!r}): use a comma-separated choice of {SUMMARY_KINDS}")
    if isinstance(summary, str):
        parts = summary.split(",")
    elif isinstance(summary, (list, tuple)) and all(isinstance(p, str) for p in summary):
        parts = list(summary)
    else:
        raise error
    kinds = tuple(dict.fromkeys(p.strip().lower() for p in parts if p.strip()))  # ordered, no repeats
    bad = [k for k in kinds if k not in SUMMARY_KINDS]
    if bad or not kinds or ("none" in kinds and len(kinds) > 1):
        raise error
    return () if "none" in kinds else kinds
