"""The op kinds ``log()`` appends, and metric summary kinds. Pure Python: imported on ``import rankwise``."""

from __future__ import annotations

from typing import Any

COMMIT, MERGE, LATE, CONTROL = 0, 1, 2, 3
SUMMARY_KINDS = ("min", "max", "mean", "first", "last", "none")


def parse_summary_kinds(summary: Any) -> tuple[str, ...]:
    """``define_metric(summary=...)``: "min", "max,min", ["min", "last"], "none" (→ no summary)."""
    if summary is None:
        return ("last",)
    parts = summary.split(",") if isinstance(summary, str) else list(summary)
    kinds = tuple(p.strip().lower() for p in parts if p.strip())
    bad = [k for k in kinds if k not in SUMMARY_KINDS]
    if bad or not kinds:
        raise ValueError(f"define_metric(summary={summary!r}): use a comma-separated choice of {SUMMARY_KINDS}")
    return () if "none" in kinds else kinds
