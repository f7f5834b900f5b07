"""The op kinds ``log()`` appends, the step/commit rules that turn them into rows, and metric summary kinds.

Pure Python: imported on ``import rankwise``. The rules (``apply_ops``) are shared by the two places that
fold ops into rows: the I/O thread's assembler (client/assembler.py) and, when ``log()`` outruns the I/O
thread, the coalescer on the training thread (client/coalesce.py)."""

from __future__ import annotations

from typing import Any, Callable, Iterable

COMMIT, MERGE, LATE, CONTROL = 0, 1, 2, 3
# a span of committed rows folded by the coalescer (client/coalesce.py): (SPAN, last step, t of its last row, Span)
SPAN = 4
# CONTROL op of the coalescer: commit the pending row as it is (it took over the step rules with a row pending)
COMMIT_PENDING = "_commit_pending"
SUMMARY_KINDS = ("min", "max", "mean", "first", "last", "none")


def apply_ops(pend: list | None, ops: Iterable[tuple], row: Callable, merge: Callable, other: Callable) -> list | None:
    """Fold ops into committed rows by wandb's step/commit rules; returns the pending row after them.

    ``pend`` is the pending row (``[step, t, dict]`` or None). For each op ``(kind, a, b, c)``:

    * ``COMMIT`` at the pending row's step merges into it and commits it; at another step it first
      commits the pending row as it is, then its own row;
    * ``MERGE`` (``commit=False``, or an explicit higher ``step``) merges into the pending row,
      committing a pending row of another step first;
    * anything else goes to ``other(pend, kind, a, b, c)``, which returns the pending row after it.

    Committed rows go to ``row(COMMIT, step, t, dict)``; ``merge(into, new)`` merges. One loop over many
    ops (the assembler's chunk) or one op (the coalescer's push): no call per op on the I/O thread."""
    for kind, a, b, c in ops:
        if kind == COMMIT:
            if pend is None:
                row(COMMIT, a, b, c)
                continue
            if a == pend[0]:
                merge(pend[2], c)
                row(COMMIT, a, b, pend[2])
            else:
                row(COMMIT, pend[0], pend[1], pend[2])
                row(COMMIT, a, b, c)
            pend = None
        elif kind == MERGE:
            if pend is not None and a != pend[0]:
                row(COMMIT, pend[0], pend[1], pend[2])
                pend = None
            if pend is None:
                pend = [a, b, c]
            else:
                merge(pend[2], c)
                pend[1] = b
        else:
            pend = other(pend, kind, a, b, c)
    return pend


def merge_capped(row: dict, new: dict, limit: int) -> int:
    """Merge a call into a pending row, keeping the row within ``limit`` keys: the new keys beyond it are
    left out (the agent refuses a wider row whole). Returns how many were left out (the caller counts them)."""
    if len(row) + len(new) > limit:
        fresh = [k for k in new if k not in row]
        room = limit - len(row)
        if len(fresh) > room:
            extra = set(fresh[max(room, 0):])
            row.update({k: v for k, v in new.items() if k not in extra})
            return len(extra)
    row.update(new)
    return 0


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
