"""Coalescing under overload: when ``log()`` outruns the I/O thread, rows fold into spans on the training thread.

``Run.log`` appends one op per call to the writer's deque (client/transport.py); the I/O thread
turns ops into batches. A tight loop calls ``log()`` faster (~0.4 µs) than the I/O thread can
assemble (it only gets GIL slices), so the deque would grow without bound. When the writer sees
the queued ops pass ``max_queued_bytes`` it switches the run's push (``Run._push``) to
:meth:`Coalescer.push`; when the backlog is drained below a low mark it switches it back
(client/overload.py decides when).

The coalescer applies the same step/commit rules as the assembler (``client.ops.apply_ops``) and
folds consecutive committed rows of numbers into a :class:`Span` with the agent rate limiter's
semantics (agent/ratelimit.py): per key count, last, mean, min, max and its first and last step.
A span closes after ``rows_per_span`` rows, ``cells_per_span`` values or ``span_s`` seconds and
goes into the deque as one op (``SPAN``), so the deque holds one op per span instead of one per
call, and the open span at most ``cells_per_span`` values. Per key it also keeps what the run's
summary needs to stay exact over every logged value: the first and last value, the min and max
values as logged (an int stays an int, NaN skipped) and the sum and count for the mean.

Keys that opted out of rate limiting (``define_metric(key, rate_limit=False)``) keep every value: a
span carries their steps and values as arrays (16 bytes a value instead of a queued op), and the
agent stores them row for row, as its own rate limiter does.

Not folded (the row goes as a row, in order, after the open span is closed): rows with a value that
is not a Python number (strings, media, tables, device tensors), late updates (``step`` below the
current one) and control ops. Such rows are not bounded by coalescing: a run that logs them at every
call of a tight loop keeps its backlog of them (rare in practice; the deque's bytes are still counted).

Threads: ``push`` runs on the training thread, ``start``/``stop``/``tick``/``close_open`` on the I/O
thread (or a flush); all take ``lock``, so the I/O thread may switch the mode back while the training
thread is inside ``push`` (the push then finds the coalescer inactive and appends the op as it is,
after what ``stop`` flushed: nothing is reordered).
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Callable
from itertools import repeat
from typing import Any

import numpy as np

from client.columns import same_keys
from client.fastconv import NumpyRow, resolve_numpy
from client.ops import COMMIT, COMMIT_PENDING, CONTROL, LATE, MERGE, OP_ARG, OP_NAME, SPAN, apply_ops, merge_capped
from client.values import MAX_KEYS_PER_ROW

_NUMBER = frozenset({float, int, bool})

# per key of a span: the stored fields (agent/ratelimit.py SPAN_FIELDS, plus the key's last step) and
# what the summary needs (first/last/min/max as logged, the sum and count of the mean)
STEP, FIRST_STEP, COUNT, LAST, MEAN, MIN, MAX, FIRST_V, LAST_V, MIN_V, MAX_V, TOTAL = range(12)


class Span:
    """Consecutive committed rows of one run folded into one record per key (see the module docstring)."""

    __slots__ = ("first", "step", "t", "rows", "keys", "raw")

    def __init__(self, first: int, step: int, t: float, rows: int, keys: dict[str, list], raw: dict | None = None):
        self.first = first  # step of its first row
        self.step = step  # step of its last row
        self.t = t  # perf_counter() of its last row
        self.rows = rows  # rows it stands for
        self.keys = keys  # key -> [STEP, FIRST_STEP, COUNT, LAST, MEAN, MIN, MAX, FIRST_V, LAST_V, MIN_V, MAX_V, TOTAL]
        # keys that opted out of rate limiting: key -> (steps as int64 bytes, encoded column), every value
        # (their entry in ``keys`` serves the summary only)
        self.raw = raw or {}

    def __repr__(self) -> str:
        return f"<Span steps {self.first}..{self.step} rows={self.rows} keys={len(self.keys)}>"

    def __len__(self) -> int:
        return len(self.keys)


def fold(steps: list[int], ts: list[float], dicts: list[dict], keeps_raw: Callable[[str], bool] | None = None) -> Span:
    """Reduce committed rows (steps ascending, every value a Python number) into one span; the values of
    keys for which ``keeps_raw`` is true travel as they are besides (their steps and an encoded column)."""
    n = len(dicts)
    keys: dict[str, list] = {}
    raw: dict[str, tuple] = {}
    same = same_keys(dicts)  # the common case: one C-level pass per key, no Python loop per row
    if same is not None:
        columns = zip(same[0], same[1], repeat(steps))
    else:
        columns = _by_key(steps, dicts)
    for key, col, key_steps in columns:
        values = np.asarray(col, dtype=np.float64)
        total = float(values.sum())
        count = len(col)
        low, high = int(values.argmin()), int(values.argmax())  # first of equal ones; a NaN if there is one
        entry = [
            key_steps[-1],
            key_steps[0],
            count,
            float(values[-1]),
            total / count,
            float(values[low]),
            float(values[high]),
            col[0],
            col[-1],
            col[low],
            col[high],
            total,
        ]
        if total != total:  # NaN among them: the stored min/max are NaN (as the agent's), the summary's skip it
            nan = np.isnan(values)
            entry[MIN] = entry[MAX] = float("nan")
            entry[MIN_V] = None if nan.all() else col[int(np.nanargmin(values))]
            entry[MAX_V] = None if nan.all() else col[int(np.nanargmax(values))]
        keys[key] = entry
        if keeps_raw is not None and keeps_raw(key):
            from client.columns import encode_column

            raw[key] = (np.asarray(key_steps, dtype="<i8").tobytes(), encode_column(col)[0])
    return Span(steps[0], steps[-1], ts[-1], n, keys, raw)


def _never(pend: Any, kind: int, *rest: Any) -> Any:
    raise AssertionError(f"op kind {kind} reached the coalescer's step rules")  # push handles the others


def _by_key(steps: list[int], dicts: list[dict]):
    """(key, its values, their steps) for rows whose key sets differ."""
    names = dict.fromkeys(k for d in dicts for k in d)
    for key in names:
        where = [i for i, d in enumerate(dicts) if key in d]
        yield key, [dicts[i][key] for i in where], [steps[i] for i in where]


class Coalescer:
    """The training thread's push while the writer is overloaded. See the module docstring."""

    rows_per_span = 1024
    # values held by the open span: wide rows close it sooner (folding 16k values takes ~1.5 ms of the
    # log() call that closes the span; 1024 rows of 4 keys ~0.4 ms, once per 1024 calls)
    cells_per_span = 1 << 14
    span_s = 0.05  # an open span older than this is closed (by the next push or the I/O thread's tick)

    def __init__(self, extend: Callable[[tuple], Any], now: Callable[[], float]):
        self.lock = threading.Lock()
        self.active = False
        self._extend = extend  # the writer's ops.extend
        self._now = now
        self._handover = True  # the assembler may hold an open row: see _take_over
        self._outside: int | None = None  # step of the open row passed through to the assembler
        self.open_row: list | None = None  # [step, t, dict]: the row not committed yet, while the coalescer owns it
        self._steps: list[int] = []
        self._ts: list[float] = []
        self._dicts: list[dict] = []
        self._cells = 0
        self._raw_rules: list[tuple[str, bool]] = []  # define_metric(name, rate_limit=...): (name or glob, kept raw)
        self._raw_cache: dict[str, bool] = {}
        self.rows = 0  # rows folded into spans
        self.spans = 0
        self.raw_rows = 0  # committed rows that went as rows while active
        self.dropped_keys = 0  # keys left out of a merged row beyond MAX_KEYS_PER_ROW (the assembler's rule)

    def __repr__(self) -> str:
        state = "active" if self.active else "idle"
        return f"<Coalescer {state} open={len(self._steps)} rows={self.rows} spans={self.spans} raw={self.raw_rows}>"

    # ------------------------------------------------------------ I/O thread (or flush)

    def start(self) -> None:
        """Take over the step rules from the next op on (the caller then points the run's push here)."""
        with self.lock:
            self._handover = True
            self._outside = None
            self.open_row = None
            self.active = True

    def stop(self) -> None:
        """Give the step rules back to the assembler: the open span and the open row go to the deque
        first, so every op pushed after this (directly or through a stale reference to ``push``) follows."""
        with self.lock:
            self._close()
            if self.open_row is not None:
                p = self.open_row
                self.open_row = None
                self._extend((MERGE, p[0], p[1], p[2]))  # the assembler holds it open, as it was here
            self.active = False

    def learn_rules(self, rules: list[tuple[str, bool]]) -> None:
        """The rate_limit definitions the assembler saw before this coalescer did (I/O thread)."""
        if len(rules) > len(self._raw_rules):
            with self.lock:
                self._raw_rules = list(rules)
                self._raw_cache.clear()

    def tick(self) -> None:
        """Close a span left open longer than ``span_s`` (the loop stopped logging, or a flush)."""
        if self._steps:
            with self.lock:
                if self._steps and self._now() - self._ts[0] > self.span_s:
                    self._close()

    def close_open(self) -> None:
        """Close the open span now (``flush``, ``run.summary``: everything committed so far is summarised)."""
        if self._steps:
            with self.lock:
                self._close()

    # ------------------------------------------------------------ training thread

    def push(self, op: tuple) -> None:
        with self.lock:
            if not self.active:
                self._extend(op)
                return
            kind, step, t, data = op  # (client/ops.py: the shape of an op)
            if type(data) is NumpyRow:  # numpy scalars kept by the fast path: their Python numbers, before a fold
                resolve_numpy(data)
            if kind == COMMIT and self.open_row is None and not self._handover:  # log(d): the usual call
                self._commit(COMMIT, step, t, data)
            elif kind == CONTROL:
                self._control(op)
            elif self._handover and not self._take_over(kind, step, op):
                return
            elif kind == LATE:
                self._close()  # a late update after what came before it (the summary's "last" on ties)
                self._extend(op)
            else:
                self.open_row = apply_ops(self.open_row, (op,), self._commit, self._merge, _never)

    def _take_over(self, kind: int, step: int, op: tuple) -> bool:
        """The first ops after ``start``: the assembler may hold an open row we have not seen. Pass ops
        through while they may merge into it; then take over (True: the caller applies ``op``)."""
        if kind in (COMMIT, LATE):
            self._handover = False
            if kind == COMMIT:  # commits whatever row the assembler holds open: it holds none after it
                self._extend(op)
                return False
            return True
        if self._outside is None or step == self._outside:
            self._outside = step  # the assembler holds an open row at this step now
            self._extend(op)
            return False
        self._extend((CONTROL, COMMIT_PENDING, None, None))  # a new step: the assembler commits its row
        self._handover = False
        return True

    def _control(self, op: tuple) -> None:
        self._close()
        name, arg = op[OP_NAME], op[OP_ARG]
        if name == "finish" and not self._handover:
            if self.open_row is not None:
                p = self.open_row
                self.open_row = None
                self._extend((COMMIT, p[0], p[1], p[2]))
        elif name == "define" and isinstance(arg, dict) and "rate_limit" in arg:
            self._raw_rules.append((arg["name"], arg["rate_limit"] is False))
            self._raw_cache.clear()
        self._extend(op)

    def _merge(self, into: dict, new: dict) -> None:
        self.dropped_keys += merge_capped(into, new, MAX_KEYS_PER_ROW)

    def _commit(self, kind: int, step: int, t: float, d: dict) -> None:
        if (type(d) is dict or type(d) is NumpyRow) and _NUMBER.issuperset(map(type, d.values())) and d:
            steps = self._steps
            steps.append(step)
            self._ts.append(t)
            self._dicts.append(d)
            self._cells += len(d)
            if len(steps) >= self.rows_per_span or self._cells >= self.cells_per_span or t - self._ts[0] > self.span_s:
                self._close()
        else:
            self._close()
            self.raw_rows += 1
            self._extend((COMMIT, step, t, d))

    def _keeps_raw(self, key: str) -> bool:
        raw = self._raw_cache.get(key)
        if raw is None:
            raw = False
            for pattern, keep in self._raw_rules:  # later definitions win (agent/runs.py keeps_raw)
                if pattern == key or fnmatch.fnmatchcase(key, pattern):
                    raw = keep
            self._raw_cache[key] = raw
        return raw

    def _close(self) -> None:
        if not self._steps:
            return
        span = fold(self._steps, self._ts, self._dicts, self._keeps_raw if self._raw_rules else None)
        self._steps, self._ts, self._dicts, self._cells = [], [], [], 0
        self.rows += span.rows
        self.spans += 1
        self._extend((SPAN, span.step, span.t, span))
