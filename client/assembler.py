"""Rows from the op stream, and batches from rows: the I/O thread's half of ``log()``.

``Run.log`` only appends an op ``(kind, step, t, data)`` to a deque; the step is
already resolved by the wandb rules, ``t`` is ``perf_counter()``. Here, off the
training loop's thread, ops become committed rows:

* ``COMMIT`` at the pending row's step merges into it and commits it;
  at another step it first commits the pending row as it is;
* ``MERGE`` (``commit=False``, or an explicit higher ``step``) merges into the
  pending row, committing a pending row of a lower step first;
* ``LATE`` (a step below the current one) is a late update of that row: kept,
  flagged, never dropped;
* ``CONTROL`` carries summary edits, config updates, metric definitions, finish.

A batch is columnar: row steps and times as arrays, then per set of keys one
array per key (``client.wire``). The summary follows from the columns (last,
first, min, max, mean per ``define_metric``), so its cost is per key per batch,
not per row.
"""

from __future__ import annotations

import fnmatch
import time
from operator import itemgetter
from typing import Any, Iterable

import numpy as np

from client import wire
from client.ops import COMMIT, CONTROL, LATE, MERGE, parse_summary_kinds  # noqa: F401  (re-exported)
from client.values import WireValue

_I64 = np.iinfo(np.int64)


def to_wire(value: Any) -> Any:
    """Make a logged value msgpack-able (media objects encode themselves here, on the I/O thread)."""
    if isinstance(value, WireValue):
        return value._to_wire()
    if isinstance(value, list):
        return [to_wire(v) for v in value]
    if type(value) is int and not _I64.min <= value <= _I64.max:
        return float(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _encode_column(col: tuple | list) -> tuple[list, np.ndarray | None]:
    """Encode one column: a numpy array when every value is a number, else a msgpack list."""
    kinds = {type(v) for v in col}
    if kinds <= {float, int, bool} or all(issubclass(k, (np.number, np.bool_)) for k in kinds - {float, int, bool}):
        try:
            arr = np.asarray(col)
        except (OverflowError, ValueError):
            arr = None
        if arr is not None and arr.ndim == 1:
            kind = arr.dtype.kind
            if kind == "f":
                arr = arr.astype("<f8", copy=False)
                return ["f8", arr.tobytes()], arr
            if kind == "b":
                return ["b1", arr.tobytes()], arr
            if kind in "iu" and (kind == "i" or arr.max(initial=0) <= _I64.max):
                arr = arr.astype("<i8", copy=False)
                return ["i8", arr.tobytes()], arr
            if kind == "O":  # ints beyond int64 mixed in
                arr = np.asarray(col, dtype="<f8")
                return ["f8", arr.tobytes()], arr
    return [wire.OBJECT_ENCODING, [to_wire(v) for v in col]], None


class Assembler:
    """The row/batch state of one writer. Not thread-safe: the caller holds the writer's lock."""

    def __init__(self, writer: str, start_wall: float, runtime_offset: float = 0.0, max_rows: int = 8192):
        self.writer = writer
        self.max_rows = max_rows
        self.next_seq = 1
        self.start_wall = start_wall
        self.runtime_offset = runtime_offset
        self.rows: list[tuple] = []
        self.pending: list | None = None  # [step, t, dict]
        self.pending_dirty = False
        self.control: list[list] = []
        self.summary: dict[str, Any] = {}
        self.summary_dirty: dict[str, Any] = {}
        self.manual: set[str] = set()
        self._rules: list[tuple[str, tuple[str, ...]]] = []
        self._rule_cache: dict[str, tuple[str, ...]] = {}
        self._mean: dict[str, list[float]] = {}
        self._first: set[str] = set()
        self.finished = False
        self.rows_total = 0
        self.late_total = 0

    def __repr__(self) -> str:
        return (
            f"<Assembler writer={self.writer[:8]} next_seq={self.next_seq} rows={len(self.rows)} "
            f"pending={'yes' if self.pending else 'no'} summary_keys={len(self.summary)}>"
        )

    # ------------------------------------------------------------ ops → rows

    def feed(self, ops: Iterable[tuple]) -> None:
        rows = self.rows
        append = rows.append
        pend = self.pending
        for op in ops:
            kind = op[0]
            if kind == COMMIT:
                if pend is None:
                    append(op)
                    continue
                if op[1] == pend[0]:
                    pend[2].update(op[3])
                    append((COMMIT, pend[0], op[2], pend[2]))
                else:
                    append((COMMIT, pend[0], pend[1], pend[2]))
                    append(op)
                pend = None
                self.pending_dirty = True
            elif kind == MERGE:
                if pend is not None and op[1] != pend[0]:
                    append((COMMIT, pend[0], pend[1], pend[2]))
                    pend = None
                if pend is None:
                    pend = [op[1], op[2], op[3]]
                else:
                    pend[2].update(op[3])
                    pend[1] = op[2]
                self.pending_dirty = True
            elif kind == LATE:
                append(op)
                self.late_total += 1
            else:
                if op[1] == "finish" and pend is not None:
                    append((COMMIT, pend[0], pend[1], pend[2]))
                    pend = None
                    self.pending_dirty = True
                self._apply_control(op[1], op[2])
        self.pending = pend

    def _apply_control(self, name: str, arg: Any) -> None:
        if name == "summary_set":
            key, value = arg
            self.manual.add(key)
            value = to_wire(value)
            self.summary[key] = value
            self.summary_dirty[key] = value
        elif name == "summary_del":
            self.manual.add(arg)
            self.summary.pop(arg, None)
            self.summary_dirty.pop(arg, None)
            self.control.append(["summary_del", arg])
        elif name == "define":
            kinds = parse_summary_kinds(arg.get("summary"))
            self._rules.append((arg["name"], kinds))
            self._rule_cache.clear()
            self.control.append(["define", dict(arg, summary=list(kinds))])
        elif name == "finish":
            self.finished = True
            self.control.append(["finish", arg])
        else:  # config, meta: forwarded as they are
            self.control.append([name, to_wire(arg)])

    # ------------------------------------------------------------ rows → batch

    def has_work(self) -> bool:
        return bool(self.rows or self.control or self.summary_dirty or self.pending_dirty)

    def take_batch(self) -> tuple[int, bytes, int] | None:
        """Encode up to ``max_rows`` rows (and, with the last of them, the rest) as the next batch."""
        if not self.has_work():
            return None
        rows = self.rows[: self.max_rows]
        del self.rows[: self.max_rows]
        last = not self.rows
        n = len(rows)
        step_b = t_b = rt_b = b""
        late_b = None
        blocks: list = []
        if n:
            kinds, steps, ts, dicts = zip(*rows)
            offset = time.time() - time.perf_counter()
            t = np.asarray(ts, dtype="<f8") + offset
            step_b = np.asarray(steps, dtype="<i8").tobytes()
            t_b = t.tobytes()
            rt_b = (t - self.start_wall + self.runtime_offset).tobytes()
            late = None
            if LATE in kinds:
                late = np.asarray(kinds, dtype=np.int8) == LATE
                late_b = late.tobytes()
            blocks = self._blocks(dicts, late)
            self.rows_total += n
        pending = None
        if last and self.pending is not None:
            p = self.pending
            pending = [p[0], p[1] + (time.time() - time.perf_counter()), {k: to_wire(v) for k, v in p[2].items()}]
        summary = control = None
        if last:
            self.pending_dirty = False
            summary = self.summary_dirty or None
            self.summary_dirty = {}
            control = self.control or None
            self.control = []
        seq = self.next_seq
        self.next_seq += 1
        frame = wire.encode_batch(self.writer, seq, step_b, t_b, rt_b, late_b, n, blocks, pending, summary, control)
        return seq, frame, n

    def _blocks(self, dicts: tuple, late: np.ndarray | None) -> list:
        n = len(dicts)
        groups: dict[frozenset, tuple[tuple, list[int]]] = {}
        prev = None
        cur: list[int] = []
        for i, d in enumerate(dicts):
            keys = d.keys()
            if keys != prev:
                fk = frozenset(keys)
                entry = groups.get(fk)
                if entry is None:
                    entry = groups[fk] = (tuple(keys), [])
                cur = entry[1]
                prev = keys
            cur.append(i)
        blocks = []
        # key -> (row position of its newest non-late value, value) for the "last" summary
        newest: dict[str, tuple[int, Any]] = {}
        for keys, idx in groups.values():
            if not keys:
                continue
            get = itemgetter(*keys)
            if len(idx) == n:
                vals = list(map(get, dicts))
                idx_b = None
            else:
                vals = [get(dicts[i]) for i in idx]
                idx_b = np.asarray(idx, dtype="<i4").tobytes()
            cols = [vals] if len(keys) == 1 else list(zip(*vals))
            encoded = []
            for key, col in zip(keys, cols):
                enc, arr = _encode_column(col)
                encoded.append(enc)
                self._summarize(key, col, arr, idx, late, newest)
            blocks.append([list(keys), idx_b, encoded])
        for key, (_, value) in newest.items():
            self._set_summary(key, "last", to_wire(value))
        return blocks

    # ------------------------------------------------------------ summary

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
        self.summary_dirty[key] = self.summary[key]

    def _summarize(self, key, col, arr, idx, late, newest) -> None:
        if key in self.manual:
            return
        kinds = self.rule(key)
        if not kinds:
            return
        if "last" in kinds:
            if late is None:
                pos = len(col) - 1
            else:
                ok = np.flatnonzero(~late[np.asarray(idx)])
                pos = int(ok[-1]) if len(ok) else -1
            if pos >= 0 and (key not in newest or newest[key][0] < idx[pos]):
                newest[key] = (idx[pos], col[pos])
        if "first" in kinds and key not in self._first:
            self._first.add(key)
            self._set_summary(key, "first", to_wire(col[0]))
        if arr is None or arr.dtype.kind not in "fiub":
            return
        values = arr.astype(np.float64, copy=False)
        finite = values[~np.isnan(values)]
        if "min" in kinds and len(finite):
            old = self._current(key, "min")
            low = float(finite.min())
            self._set_summary(key, "min", low if old is None else min(old, low))
        if "max" in kinds and len(finite):
            old = self._current(key, "max")
            high = float(finite.max())
            self._set_summary(key, "max", high if old is None else max(old, high))
        if "mean" in kinds:
            acc = self._mean.setdefault(key, [0.0, 0])
            acc[0] += float(values.sum())
            acc[1] += len(values)
            self._set_summary(key, "mean", acc[0] / acc[1])

    def _current(self, key: str, kind: str) -> Any:
        value = self.summary.get(key)
        if len(self.rule(key)) == 1:
            return value
        return value.get(kind) if isinstance(value, dict) else None

