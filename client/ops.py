"""The op kinds ``log()`` appends and their shape, the step/commit rules that turn them into rows, and metric
summary kinds.

Pure Python and a leaf: it imports nothing of this repository (client/run.py, the assembler and the coalescer
import it), and ``import rankwise`` imports it (through client/run.py), so it stays light. The rules (``apply_ops``) are shared by the two places that fold ops into rows: the I/O thread's
assembler (client/assembler.py) and, when ``log()`` outruns the I/O thread, the coalescer on the training
thread (client/coalesce.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

# The shape of an op. ``log()`` builds one per call on the training thread, so an op is a plain 4-tuple, never
# a named type: a NamedTuple costs ~0.2 µs more to build than a tuple literal, half the price of a whole
# ``log()`` call (measured, benchmarks/log_forms.py). The writer's deque holds its four items flat, pushed by
# one ``deque.extend`` (client/transport.py). By kind:
#
#   COMMIT, MERGE, LATE   (kind, step, t, row)            t = perf_counter() of the call, row = {key: value}
#   CONTROL               (CONTROL, name, arg, None)      name: "summary_set", "define", "config", "finish", ...
#   SPAN                  (SPAN, last step, t, Span)      t of its last row; Span: client/coalesce.py
#
# Code that indexes an op (``op[OP_STEP]``) or a flat chunk of them (``items[OP_DATA::OP_SIZE]``) uses these.
OP_KIND, OP_STEP, OP_T, OP_DATA = range(4)
OP_NAME, OP_ARG = OP_STEP, OP_T  # the fields of a CONTROL op
OP_SIZE = 4

COMMIT, MERGE, LATE, CONTROL = 0, 1, 2, 3
# a span of committed rows folded by the coalescer (client/coalesce.py): (SPAN, last step, t of its last row, Span)
SPAN = 4
# CONTROL op of the coalescer: commit the open row as it is (it took over the step rules with a row open)
COMMIT_PENDING = "_commit_pending"
SUMMARY_KINDS = ("min", "max", "mean", "first", "last", "none")


def apply_ops(pend: list | None, ops: Iterable[tuple], row: Callable, merge: Callable, other: Callable) -> list | None:
    """Fold ops into committed rows by wandb's step/commit rules; returns the open row after them.

    ``pend`` is the open row (``[step, t, dict]`` or None: the row not committed yet). For each op
    ``(kind, step, t, data)`` (the shapes above):

    * ``COMMIT`` at the open row's step merges into it and commits it; at another step it first
      commits the open row as it is, then its own row;
    * ``MERGE`` (``commit=False``, or an explicit higher ``step``) merges into the open row,
      committing an open row of another step first;
    * anything else goes to ``other(pend, kind, step, t, data)`` (for CONTROL: name, arg, None), which
      returns the open row after it.

    Committed rows go to ``row(COMMIT, step, t, dict)``; ``merge(into, new)`` merges. One loop over many
    ops (the assembler's chunk) or one op (the coalescer's push): no call per op on the I/O thread."""
    for kind, step, t, data in ops:
        if kind == COMMIT:
            if pend is None:
                row(COMMIT, step, t, data)
                continue
            if step == pend[0]:
                merge(pend[2], data)
                row(COMMIT, step, t, pend[2])
            else:
                row(COMMIT, pend[0], pend[1], pend[2])
                row(COMMIT, step, t, data)
            pend = None
        elif kind == MERGE:
            if pend is not None and step != pend[0]:
                row(COMMIT, pend[0], pend[1], pend[2])
                pend = None
            if pend is None:
                pend = [step, t, data]
            else:
                merge(pend[2], data)
                pend[1] = t
        else:
            pend = other(pend, kind, step, t, data)
    return pend


def merge_capped(row: dict, new: dict, limit: int) -> int:
    """Merge a call into a pending row, keeping the row within ``limit`` keys: the new keys beyond it are
    left out (the agent refuses a wider row whole). Returns how many were left out (the caller counts them)."""
    if len(row) + len(new) > limit:
        fresh = [k for k in new if k not in row]
        room = limit - len(row)
        if len(fresh) > room:
            extra = set(fresh[max(room, 0) :])
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
