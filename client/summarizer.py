"""The summary rules: ``run.summary`` kept from the values the writer's assembler batches (client/assembler.py).

The summary follows from the columns (last, first, min, max, mean per ``define_metric``), so its cost
is per key per batch, not per row. It does not depend on where batches were cut:

* "last" is the value at the key's highest step (a late update of an older
  step does not replace it; a key logged only late still gets one);
* min/max are the logged values themselves (first of equal ones; NaN skipped),
  mean is over every number (NaN makes it NaN); None/str in a column are
  skipped by min/max/mean;
* a ``define_metric`` ends the current batch, so rows logged before it are
  summarised by the rules in force then; when it changes a key's kinds, that
  key's aggregates restart from the values logged after it;
* spans the coalescer folded (client/coalesce.py) are summarised exactly, as if
  their rows had come one by one;
* a key set or deleted by hand (``run.summary[k] = v``) is not summarised any more.

What changed since the last batch (``dirty``) travels with the next batch; a key whose summary must go
becomes a ``summary_del`` control op among the batch's (the list the assembler passes in). Not
thread-safe: the writer's lock is held by every caller.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import numpy as np

from client.coalesce import COUNT, FIRST_V, LAST_V, MAX_V, MIN_V, STEP, TOTAL
from client.columns import to_wire
from client.values import strip_bytes

NUMBER_TYPES = (int, float, bool)


class Summarizer:
    """One writer's summary and the define_metric rules it follows. See the module docstring."""

    def __init__(self, control: list[list]):
        self.summary: dict[str, Any] = {}
        self.dirty: dict[str, Any] = {}  # changed since the last batch: sent with the next one
        self.manual: set[str] = set()
        self._control = control  # the assembler's control ops for the next batch: summary_del goes there
        self._rules: list[tuple[str, tuple[str, ...]]] = []
        self._rule_cache: dict[str, tuple[str, ...]] = {}
        self._applied: dict[str, tuple[str, ...]] = {}  # key -> the summary kinds its aggregates were built with
        self._last_step: dict[str, int] = {}  # key -> step of the value its "last" summary holds
        self._mean: dict[str, list[float]] = {}
        self._first: set[str] = set()
        self._deleted: set[str] = set()  # keys with a "summary_del" in the control ops

    def __repr__(self) -> str:
        return (
            f"<Summarizer keys={len(self.summary)} dirty={len(self.dirty)} manual={len(self.manual)} "
            f"rules={len(self._rules)}>"
        )

    # ------------------------------------------------------------ what the caller changes

    def define(self, spec: dict) -> None:
        """A ``define_metric`` in force from now on (the assembler defers it past rows logged before it)."""
        self._rules.append((spec["name"], tuple(spec["summary"])))
        self._rule_cache.clear()

    def set_manual(self, key: str, value: Any) -> None:
        """``run.summary[key] = value``: set, and no longer summarised."""
        self.manual.add(key)
        self._undelete(key)
        value = to_wire(value)
        self.summary[key] = value
        self.dirty[key] = value

    def del_manual(self, key: str) -> None:
        """``del run.summary[key]``: gone, and no longer summarised."""
        self.manual.add(key)
        self.summary.pop(key, None)
        self.dirty.pop(key, None)
        self._delete(key)

    def take_dirty(self) -> dict | None:
        """What changed since the last batch, for the batch that carries the control ops; then clean."""
        summary = self.dirty or None
        self.dirty = {}
        self._deleted.clear()
        return summary

    def forget_dirty(self) -> None:
        """The assembler dropped what was not batched yet (``Assembler.abandon``): so do we."""
        self.dirty = {}
        self._deleted.clear()

    # ------------------------------------------------------------ rules

    def rule(self, key: str) -> tuple[str, ...]:
        kinds = self._rule_cache.get(key)
        if kinds is None:
            kinds = ("last",)
            for pattern, k in self._rules:  # later definitions win
                if pattern == key or fnmatch.fnmatchcase(key, pattern):
                    kinds = k
            self._rule_cache[key] = kinds
        return kinds

    def _set_summary(self, key: str, kind: str, value: Any) -> None:
        kinds = self.rule(key)
        if len(kinds) == 1:
            self.summary[key] = value
        else:
            current = self.summary.get(key)
            current = dict(current) if isinstance(current, dict) else {}
            current[kind] = value
            self.summary[key] = current
        self.dirty[key] = self.summary[key]
        if self._deleted:
            self._undelete(key)

    def _reset(self, key: str, kinds: tuple[str, ...]) -> None:
        """A define_metric changed the key's kinds: aggregates restart from the values logged after it."""
        self.summary.pop(key, None)
        self.dirty.pop(key, None)
        self._mean.pop(key, None)
        self._first.discard(key)
        self._last_step.pop(key, None)
        if not kinds:  # summary="none": nothing replaces the old value, so the agent must drop it
            self._delete(key)

    def _delete(self, key: str) -> None:
        if key not in self._deleted:
            self._deleted.add(key)
            self._control.append(["summary_del", key])

    def _undelete(self, key: str) -> None:
        """The agent applies a batch's summary before its control ops: a value set after a delete
        in the same batch must not be deleted by it."""
        if key in self._deleted:
            self._deleted.discard(key)
            self._control.remove(["summary_del", key])

    def _kinds(self, key: str) -> tuple[str, ...] | None:
        """The key's summary kinds now (its aggregates reset if they changed), None when it is not summarised."""
        if key in self.manual:
            return None
        kinds = self.rule(key)
        if self._applied.setdefault(key, kinds) != kinds:
            self._applied[key] = kinds
            self._reset(key, kinds)
        return kinds or None

    # ------------------------------------------------------------ values

    def column(self, key, col, arr, idx, steps, late, newest) -> None:
        """One encoded column of a batch (``arr`` its numeric array or None, ``idx`` its rows); the key's
        value at its highest step goes to ``newest`` (``settle_last`` applies them once per batch)."""
        kinds = self._kinds(key)
        if kinds is None:
            return
        if "last" in kinds:
            if late is None:  # committed rows only: steps never decrease, the last row is the newest
                pos = len(col) - 1
                step = int(steps[idx[pos]])
            else:
                s = steps[np.asarray(idx)]
                pos = len(s) - 1 - int(np.argmax(s[::-1]))
                step = int(s[pos])
            old = newest.get(key)
            if old is None or (old[0], old[1]) <= (step, idx[pos]):
                newest[key] = (step, idx[pos], col[pos])
        if "first" in kinds and key not in self._first:
            self._first.add(key)
            self._set_summary(key, "first", strip_bytes(to_wire(col[0])))
        if not ("min" in kinds or "max" in kinds or "mean" in kinds):
            return
        src: Any = col
        if arr is None:  # a column mixing numbers with None, strings, lists: summarise its numbers
            src = [v for v in col if type(v) in NUMBER_TYPES]
            if not src:
                return
            values = np.asarray([float(v) for v in src])
        elif arr.dtype.kind in "fiub":
            values = arr.astype(np.float64, copy=False)
        else:
            return
        if ("min" in kinds or "max" in kinds) and not np.isnan(values).all():
            # the logged value itself (an int stays an int in a float column), first one on ties:
            # the same result however the rows were cut into batches
            if "min" in kinds:
                low = to_wire(src[int(np.nanargmin(values))])
                old = self._current(key, "min")
                self._set_summary(key, "min", low if old is None else min(old, low))
            if "max" in kinds:
                high = to_wire(src[int(np.nanargmax(values))])
                old = self._current(key, "max")
                self._set_summary(key, "max", high if old is None else max(old, high))
        if "mean" in kinds:
            acc = self._mean.setdefault(key, [0.0, 0])
            acc[0] += float(values.sum())
            acc[1] += len(values)
            self._set_summary(key, "mean", acc[0] / acc[1])

    def settle_last(self, newest: dict[str, tuple[int, int, Any]]) -> None:
        """The "last" of every key of a batch: key -> (step, row, value) at its highest step."""
        for key, (step, _, value) in newest.items():
            # a late update of an older step changes "last" only if the key has nothing newer
            if step >= self._last_step.get(key, -1):
                self._last_step[key] = step
                self._set_summary(key, "last", strip_bytes(to_wire(value)))

    def spans(self, spans: list) -> None:
        """The summary over every value a span stands for: exact, as if its rows had come one by one."""
        for sp in spans:
            for key, e in sp.keys.items():
                kinds = self._kinds(key)
                if kinds is None:
                    continue
                if "last" in kinds and e[STEP] >= self._last_step.get(key, -1):
                    self._last_step[key] = e[STEP]
                    self._set_summary(key, "last", e[LAST_V])
                if "first" in kinds and key not in self._first:
                    self._first.add(key)
                    self._set_summary(key, "first", e[FIRST_V])
                if "min" in kinds and e[MIN_V] is not None:
                    old = self._current(key, "min")
                    self._set_summary(key, "min", e[MIN_V] if old is None else min(old, e[MIN_V]))
                if "max" in kinds and e[MAX_V] is not None:
                    old = self._current(key, "max")
                    self._set_summary(key, "max", e[MAX_V] if old is None else max(old, e[MAX_V]))
                if "mean" in kinds:
                    acc = self._mean.setdefault(key, [0.0, 0])
                    acc[0] += e[TOTAL]
                    acc[1] += e[COUNT]
                    self._set_summary(key, "mean", acc[0] / acc[1])

    def _current(self, key: str, kind: str) -> Any:
        """The key's current aggregate of ``kind``, or None when there is no usable number."""
        value = self.summary.get(key)
        if len(self.rule(key)) != 1:
            value = value.get(kind) if isinstance(value, dict) else None
        if type(value) not in NUMBER_TYPES or value != value:  # e.g. a restored string, or NaN
            return None
        return value
