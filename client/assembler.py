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
not per row. It does not depend on where batches were cut:

* "last" is the value at the key's highest step (a late update of an older
  step does not replace it; a key logged only late still gets one);
* min/max are the logged values themselves (first of equal ones; NaN skipped),
  mean is over every number (NaN makes it NaN); None/str in a column are
  skipped by min/max/mean;
* a ``define_metric`` ends the current batch, so rows logged before it are
  summarised by the rules in force then; when it changes a key's kinds, that
  key's aggregates restart from the values logged after it.
"""

from __future__ import annotations

import collections
import fnmatch
import time
from operator import itemgetter
from typing import Any, Iterable

import msgpack
import numpy as np

from client import wire
from client.ops import (  # noqa: F401  (re-exported)
    COMMIT,
    COMMIT_PENDING,
    CONTROL,
    LATE,
    MERGE,
    SPAN,
    apply_ops,
    merge_capped,
    parse_summary_kinds,
)
from client.columns import encode_column, same_keys, to_wire  # noqa: F401  (to_wire re-exported)
from client.framing import BAD_VALUE, ENCODE_ERROR, FRAME_BUDGET, ROW_TOO_WIDE, sanitize, split
from client.values import (
    MAX_KEYS_PER_ROW,
    MediaRow,
    NumpyRow,
    TensorRow,
    nbytes_hint,
    resolve_numpy,
    resolve_tensors,
    strip_bytes,
)

# bytes of strings, lists, tables and media per batch (their estimate): frames stay well under
# wire.MAX_FRAME_BYTES; a single row above it travels alone
MAX_BATCH_MEDIA_BYTES = 24 << 20
class Assembler:
    """The row/batch state of one writer. Not thread-safe: the caller holds the writer's lock."""

    def __init__(self, writer: str, start_wall: float, runtime_offset: float = 0.0, max_rows: int = 8192):
        self.writer = writer
        self.max_rows = max_rows
        self.next_seq = 1
        self.start_wall = start_wall
        self.runtime_offset = runtime_offset
        # committed rows not yet batched, as four parallel columns (no tuple per row: see feed_flat)
        self._kinds: list[int] = []
        self._steps: list[int] = []
        self._ts: list[float] = []
        self._dicts: list[dict] = []
        self.pending: list | None = None  # [step, t, dict]
        self.pending_dirty = False
        self.control: list[list] = []
        self._defines: list[tuple[int, list]] = []  # (rows assembled before it, op)
        self.summary: dict[str, Any] = {}
        self.summary_dirty: dict[str, Any] = {}
        self.manual: set[str] = set()
        self._rules: list[tuple[str, tuple[str, ...]]] = []
        self._rule_cache: dict[str, tuple[str, ...]] = {}
        # define_metric ops that arrived after rows not yet summarised: (rows_total at which they apply, spec)
        self._deferred: list[tuple[int, dict]] = []
        self._applied: dict[str, tuple[str, ...]] = {}  # key -> the summary kinds its aggregates were built with
        self._last_step: dict[str, int] = {}  # key -> step of the value its "last" summary holds
        self._mean: dict[str, list[float]] = {}
        self._first: set[str] = set()
        self._deleted: set[str] = set()  # keys with a "summary_del" in self.control
        self.finished = False
        self._media_bytes = 0  # media bytes among rows not yet batched (cut batches by bytes, not only rows)
        self.rows_total = 0
        self.late_total = 0
        self._ready: collections.deque = collections.deque()  # (seq, frame, rows) of a batch split in frames
        self.drops: dict[str, int] = {}  # cause -> values (or rows, for ENCODE_ERROR) dropped here
        self.drop_notes: list[str] = []  # one line per new cause, for the writer's warning
        self._told: list[list] = []  # "dropped" ops for the agent, sent with the next batch
        self._spans = 0  # SPAN entries among the rows not yet batched (client/coalesce.py)
        self.spans_total = 0  # spans batched, and the rows they stand for (run.stats)
        self.span_rows_total = 0
        self.raw_rules: list[tuple[str, bool]] = []  # define_metric(name, rate_limit=...), for the coalescer

    def __repr__(self) -> str:
        return (
            f"<Assembler writer={self.writer[:8]} next_seq={self.next_seq} rows={len(self._kinds)} "
            f"pending={'yes' if self.pending else 'no'} summary_keys={len(self.summary)}>"
        )

    # ------------------------------------------------------------ ops → rows

    def feed_flat(self, items: list) -> None:
        """Ops as the deque holds them: four items each (kind, step, t, data), concatenated.

        When every op commits and no row is pending (a training loop calling ``log(d)``), the rows
        are the op columns themselves: four slices, no Python work per op."""
        kinds = items[0::4]
        dicts = items[3::4]
        types = set(map(type, dicts))
        if TensorRow in types:  # device tensors logged by the fast path: their values, before any merge
            for note in resolve_tensors(dicts):
                self._drop(BAD_VALUE, 1, note)
        if NumpyRow in types:  # numpy scalars the fast path kept as they are: their Python numbers
            for d in dicts:
                if type(d) is NumpyRow:
                    resolve_numpy(d)
        if MediaRow in types:
            self._media_bytes += sum(d.nbytes for d in dicts if type(d) is MediaRow)
        if self.pending is None and kinds.count(COMMIT) == len(kinds):
            self._kinds += kinds
            self._steps += items[1::4]
            self._ts += items[2::4]
            self._dicts += dicts
            return
        it = iter(items)
        self.feed(zip(it, it, it, it))

    def _row(self, kind: int, step: int, t: float, data: dict) -> None:
        self._kinds.append(kind)
        self._steps.append(step)
        self._ts.append(t)
        self._dicts.append(data)

    def feed(self, ops: Iterable[tuple]) -> None:
        """Ops one by one, applying the step/commit rules (module docstring; ``client.ops.apply_ops``).
        (Media bytes of the rows are counted by the caller, ``feed_flat``.)"""
        before = self.pending
        self.pending = pend = apply_ops(before, ops, self._row, self._merge, self._other)
        if before is not None or pend is not None:
            self.pending_dirty = True

    def _other(self, pend: list | None, kind: int, a: Any, b: Any, c: Any) -> list | None:
        """LATE, SPAN and CONTROL ops (``apply_ops`` folds COMMIT and MERGE itself)."""
        if kind == LATE:
            self._row(LATE, a, b, c)
            self.late_total += 1
            return pend
        if kind == SPAN:  # rows the coalescer folded (client/coalesce.py); it owned the pending row
            if pend is not None:
                self._row(COMMIT, pend[0], pend[1], pend[2])
                pend = None
                self.pending_dirty = True
            self._row(SPAN, a, b, c)
            self._spans += 1
            return pend
        if (a == "finish" or a == COMMIT_PENDING) and pend is not None:
            self._row(COMMIT, pend[0], pend[1], pend[2])
            pend = None
            self.pending_dirty = True
        if a == COMMIT_PENDING:
            return pend
        self.pending = pend  # a control op may look at it (none does today); keep the state consistent
        try:
            self._apply_control(a, b)
        except Exception as exc:  # noqa: BLE001 - e.g. a summary value whose encoder fails: drop the op
            self._drop(BAD_VALUE, 1, f"{a} op: {type(exc).__name__}: {exc}"[:200])
        return pend

    def _merge(self, row: dict, new: dict) -> None:
        """Merge a call into the pending row. ``flatten`` held each call to ``MAX_KEYS_PER_ROW`` keys; a row
        merged from several calls (``commit=False``, ``step=``) that would grow beyond it keeps its first
        keys, and the new keys beyond the limit are dropped and counted (the agent refuses a wider row
        whole). Checked here, not at the call, so that ``log(d, step=i)`` pays nothing for it."""
        extra = merge_capped(row, new, MAX_KEYS_PER_ROW)
        if extra:
            self._drop(ROW_TOO_WIDE, extra, f"a row merged from several calls would hold more than "
                       f"{MAX_KEYS_PER_ROW} keys; log the rest at other steps")

    def _define(self, spec: dict) -> None:
        self._rules.append((spec["name"], tuple(spec["summary"])))
        self._rule_cache.clear()

    def _apply_control(self, name: str, arg: Any) -> None:
        if name == "summary_set":
            key, value = arg
            self.manual.add(key)
            self._undelete(key)
            value = to_wire(value)
            self.summary[key] = value
            self.summary_dirty[key] = value
        elif name == "summary_del":
            self.manual.add(arg)
            self.summary.pop(arg, None)
            self.summary_dirty.pop(arg, None)
            self._delete(arg)
        elif name == "define":
            spec = dict(arg, summary=list(parse_summary_kinds(arg.get("summary"))))
            if "rate_limit" in spec:
                self.raw_rules.append((spec["name"], spec["rate_limit"] is False))
            if self._kinds:
                # rows logged before define_metric are summarised by the rules in force when they were
                # logged, however the I/O thread happens to cut batches: end a batch at this point
                self._deferred.append((self.rows_total + len(self._kinds), spec))
            else:
                self._define(spec)
            # with the batch holding the rows logged before it, not the last of a burst: the agent
            # applies definitions before a batch's rows (define_metric(key, rate_limit=False))
            self._defines.append((self.rows_total + len(self._kinds), ["define", spec]))
        elif name == "finish":
            self.finished = True
            self.control.append(["finish", arg])
        else:  # config, meta: forwarded as they are
            self.control.append([name, to_wire(arg)])

    # ------------------------------------------------------------ rows → batch

    def _media_limit(self, limit: int) -> int:
        """Rows that fit in one batch by their media bytes (at least one row)."""
        total = 0
        for i, row in enumerate(self._dicts[:limit]):
            for v in row.values():
                if type(v) not in _NUMBER_TYPES:
                    total += nbytes_hint(v)
            if total > MAX_BATCH_MEDIA_BYTES and i:
                return i
        return limit

    def _cells_limit(self, limit: int) -> int:
        """Rows that fit in one batch by their number of values (wide rows: 8192 rows of 10k numbers would
        make a frame of 700 MB) and, for wide rows, by their columns (keys per key set: the agent decodes a
        frame in one piece, ~3 µs per column, so a frame of 30k columns would keep it from answering anyone
        for 100 ms or more); at least one row."""
        dicts = self._dicts[:limit]
        cells = sum(map(len, dicts))
        wide = cells > MAX_BATCH_COLUMNS and cells > _WIDE_ROW * len(dicts)
        if not wide and cells * _CELL_BYTES <= MAX_BATCH_CELL_BYTES:
            return limit
        total = columns = 0
        prev: dict = {}
        for i, d in enumerate(dicts):
            total += len(d)
            if wide and (len(d) != len(prev) or d.keys() != prev.keys()):
                columns += len(d)  # a new key set: a block of its own in the frame
            prev = d
            if i and (total * _CELL_BYTES > MAX_BATCH_CELL_BYTES or columns > MAX_BATCH_COLUMNS):
                return i
        return limit

    def has_work(self) -> bool:
        return bool(
            self._kinds or self.control or self._defines or self.summary_dirty or self.pending_dirty or self._ready
            or self._told
        )  # fmt: skip

    def _drop(self, cause: str, n: int, what: str) -> None:
        if cause not in self.drops:
            self.drop_notes.append(f"{cause} ({what})")
        self.drops[cause] = self.drops.get(cause, 0) + n
        self._told.append(["dropped", {"rows": n, "cause": cause}])

    def abandon(self, exc: BaseException) -> None:
        """Last resort after ``take_batch`` raised: drop what is not batched yet (rows counted by cause
        ``ENCODE_ERROR``, the pending row too) so that the next batch cannot fail the same way; the
        finish op is kept."""
        rows = len(self._kinds) + (1 if self.pending is not None else 0)
        for column in (self._kinds, self._steps, self._ts, self._dicts):
            column.clear()
        self.pending = None
        self.pending_dirty = True
        self._media_bytes = 0
        self._spans = 0
        self.summary_dirty = {}
        self._defines = []
        self._deleted.clear()
        self.control = [op for op in self.control if op[0] == "finish"]
        self._told = []  # (frames in _ready have their seqs: they go, or the sequence would have a gap)
        self._drop(ENCODE_ERROR, rows, f"{type(exc).__name__}: {exc}"[:200])

    def take_batch(self) -> tuple[int, bytes, int] | None:
        """Encode up to ``max_rows`` rows (and, with the last of them, the rest) as the next batch."""
        if self._ready:
            return self._ready.popleft()
        if not self.has_work():
            return None
        limit = self.max_rows
        if self._deferred:
            limit = min(limit, self._deferred[0][0] - self.rows_total)
        if self._spans:  # a batch holds rows or spans, never both: the summary sees them in order
            limit = self._kind_limit(limit)
            if self._kinds[0] == SPAN:
                return self._take_spans(limit)
        if self._media_bytes > MAX_BATCH_MEDIA_BYTES:
            limit = self._media_limit(limit)
        if limit > 1 and len(self._kinds) > 1:
            limit = self._cells_limit(limit)
        kinds, steps, ts, dicts = self._kinds[:limit], self._steps[:limit], self._ts[:limit], self._dicts[:limit]
        for column in (self._kinds, self._steps, self._ts, self._dicts):
            del column[:limit]
        last = not self._kinds
        if last:
            self._media_bytes = 0
        n = len(kinds)
        step_b = t_b = rt_b = b""
        late_b = None
        blocks: list = []
        if n:
            offset = time.time() - time.perf_counter()
            t = np.asarray(ts, dtype="<f8") + offset
            step_a = np.asarray(steps, dtype="<i8")
            step_b = step_a.tobytes()
            t_b = t.tobytes()
            # time.time() at start and perf_counter() + offset now can disagree by microseconds
            rt_b = np.maximum(t - self.start_wall + self.runtime_offset, 0.0).tobytes()
            late = None
            if LATE in kinds:
                late = np.asarray(kinds, dtype=np.int8) == LATE
                late_b = late.tobytes()
            blocks = self._safe_blocks(dicts, step_a, late)
            if blocks is None:  # not even value by value: the rows go, counted (their steps stay taken)
                self._drop(ENCODE_ERROR, n, "rows that could not be encoded")
                n = 0
                late_b = None
                blocks = []
            self.rows_total += len(kinds)
            while self._deferred and self._deferred[0][0] <= self.rows_total:
                self._define(self._deferred.pop(0)[1])
        pending, summary, early, rest = self._tail(last, time.time() - time.perf_counter())
        rows = [n, step_b, t_b, rt_b, late_b, blocks] if n else None
        try:
            return self._encode(rows, pending, summary, early, rest)
        except Exception:  # noqa: BLE001 - a value msgpack refuses (a media encoder's odd output): find it
            summary = sanitize(rows, summary, early, rest, self._drop)
        try:
            return self._encode(rows, pending, summary, early, rest)
        except Exception:
            self._drop(ENCODE_ERROR, n, "rows that could not be encoded")
            raise

    # ------------------------------------------------------------ spans (client/coalesce.py)

    def _kind_limit(self, limit: int) -> int:
        """Rows up to the first change between spans and rows (at least one); spans also by their values."""
        kinds = self._kinds
        end = min(limit, len(kinds))
        if kinds[0] != SPAN:
            try:
                return max(1, kinds.index(SPAN, 0, end))
            except ValueError:
                return end
        cells = 0
        for i in range(end):
            if kinds[i] != SPAN:
                return max(1, i)
            cells += len(self._dicts[i].keys)
            if cells > MAX_SPAN_CELLS and i:
                return i
        return end

    def _take_spans(self, limit: int) -> tuple[int, bytes, int] | None:
        """A batch of spans: their block (``wire.encode_spans``) and their part of the summary. Its rows
        count is the rows the spans stand for (what the writer counts as sent)."""
        spans = self._dicts[:limit]
        ts = self._ts[:limit]
        for column in (self._kinds, self._steps, self._ts, self._dicts):
            del column[:limit]
        self._spans -= len(spans)
        last = not self._kinds
        offset = time.time() - time.perf_counter()
        t = np.asarray(ts, dtype="<f8") + offset
        runtime = np.maximum(t - self.start_wall + self.runtime_offset, 0.0)
        block = wire.encode_spans(spans, t, runtime)
        self.rows_total += len(spans)
        while self._deferred and self._deferred[0][0] <= self.rows_total:
            self._define(self._deferred.pop(0)[1])
        self._summarize_spans(spans)
        represented = sum(sp.rows for sp in spans)
        self.spans_total += len(spans)
        self.span_rows_total += represented
        pending, summary, early, rest = self._tail(last, offset)
        seq = self.next_seq
        control = (early + rest + self._told) or None
        body = {"w": self.writer, "s": seq, "rows": None, "pend": pending, "sum": summary, "ctl": control,
                "spans": block}  # fmt: skip
        frame = wire.pack(wire.BATCH, body)
        self._told = []
        self.next_seq += 1
        return seq, frame, represented

    def _summarize_spans(self, spans: list) -> None:
        """The summary over every value a span stands for: exact, as if its rows had come one by one."""
        from client.coalesce import FIRST_V, LAST_V, MAX_V, MIN_V, STEP, TOTAL, COUNT

        for sp in spans:
            for key, e in sp.keys.items():
                if key in self.manual:
                    continue
                kinds = self.rule(key)
                if self._applied.setdefault(key, kinds) != kinds:
                    self._applied[key] = kinds
                    self._reset(key, kinds)
                if not kinds:
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

    def _tail(self, last: bool, offset: float) -> tuple[Any, Any, list, list]:
        """What a batch carries besides its rows or spans: the pending row (with the last batch of what was
        assembled; its time moved to the wall clock by ``offset``), the defines due by now (``early``), and with
        the last batch the summary changes and the control ops (``rest``)."""
        pending = None
        if last and self.pending is not None:
            p = self.pending
            pending = [p[0], p[1] + offset, self._wire_map(p[2])]
        end = self.rows_total  # rows assembled through this batch (rows_total already counts it)
        early = [op for pos, op in self._defines if last or pos < end]
        self._defines = [(pos, op) for pos, op in self._defines if not (last or pos < end)]
        summary = None
        rest: list = []
        if last:
            self.pending_dirty = False
            summary = self.summary_dirty or None
            self.summary_dirty = {}
            rest = self.control
            self.control = []
            self._deleted.clear()
        return pending, summary, early, rest

    def _encode(self, rows: list | None, pending: list | None, summary: dict | None, early: list, rest: list):
        seq = self.next_seq
        if not self._ready:  # the usual case: one frame, packed once
            control = (early + rest + self._told) or None
            body = {"w": self.writer, "s": seq, "rows": rows, "pend": pending, "sum": summary, "ctl": control}
            frame = wire.pack(wire.BATCH, body)
            if len(frame) <= FRAME_BUDGET:
                self._told = []
                self.next_seq += 1
                return seq, frame, rows[0] if rows else 0
        frames = split(rows, pending, summary, early, rest, self._drop)
        if self._told:  # what was dropped on the way, for the agent's counters (with the last frame)
            body = frames[-1][0]
            body["ctl"] = (body["ctl"] or []) + self._told
        packed = []
        for i, (body, nrows) in enumerate(frames):  # every frame packed before any seq is taken: no gaps
            body["w"], body["s"] = self.writer, seq + i
            packed.append((seq + i, wire.pack(wire.BATCH, body), nrows))
        self._told = []
        self.next_seq += len(packed)
        self._ready.extend(packed)
        return self._ready.popleft()

    # ------------------------------------------------------------ values the I/O thread cannot encode

    def _wire_map(self, values: dict) -> dict:
        """``to_wire`` of a dict's values; a value that fails is dropped (counted) instead of the batch."""
        out = {}
        for k, v in values.items():
            try:
                w = to_wire(v)
                msgpack.packb(w, use_bin_type=True)
            except Exception as exc:  # noqa: BLE001 - a value must never stop the I/O thread
                self._drop(BAD_VALUE, 1, f"key {k!r}: {type(exc).__name__}: {exc}"[:200])
                continue
            out[k] = w
        return out

    def _safe_blocks(self, dicts: list, steps: np.ndarray, late: np.ndarray | None) -> list | None:
        """``_blocks``; when a value cannot be encoded (an int beyond int64 by the fast path, a media object
        whose encoder fails), that value is dropped from its row and counted, and the rest goes."""
        try:
            return self._blocks(dicts, steps, late)
        except Exception:  # noqa: BLE001 - find the culprits value by value
            pass
        for d in dicts:
            for k, v in list(d.items()):
                if type(v) is float or type(v) is bool:
                    continue
                try:
                    msgpack.packb(to_wire(v), use_bin_type=True)
                except Exception as exc:  # noqa: BLE001
                    del d[k]
                    self._drop(BAD_VALUE, 1, f"key {k!r}: {type(exc).__name__}: {exc}"[:200])
        try:
            return self._blocks(dicts, steps, late)
        except Exception:  # noqa: BLE001
            return None

    def _blocks(self, dicts: tuple, steps: np.ndarray, late: np.ndarray | None) -> list:
        n = len(dicts)
        groups: dict[Any, tuple[tuple, Any]] = {}
        same = same_keys(dicts)
        if same is not None:  # the common case: one block, columns built without a Python loop per row
            groups[None] = (same[0], range(n))
        else:
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
        todo: list = []
        # key -> (step, row position, value) of its value at the highest step (latest row on ties)
        newest: dict[str, tuple[int, int, Any]] = {}
        for keys, idx in groups.values():
            if not keys:
                continue
            if same is not None:
                cols = same[1]
                idx_b = None
            else:
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
                enc, arr = encode_column(col)
                encoded.append(enc)
                todo.append((key, col, arr, idx))
            blocks.append([list(keys), idx_b, encoded])
        # every column encoded before any is summarised: a value that fails to encode leaves no trace in
        # the summary, and the caller may drop it and build the blocks again
        for key, col, arr, idx in todo:
            self._summarize(key, col, arr, idx, steps, late, newest)
        for key, (step, _, value) in newest.items():
            # a late update of an older step changes "last" only if the key has nothing newer
            if step >= self._last_step.get(key, -1):
                self._last_step[key] = step
                self._set_summary(key, "last", strip_bytes(to_wire(value)))
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
        if self._deleted:
            self._undelete(key)

    def _reset(self, key: str, kinds: tuple[str, ...]) -> None:
        """A define_metric changed the key's kinds: aggregates restart from the values logged after it."""
        self.summary.pop(key, None)
        self.summary_dirty.pop(key, None)
        self._mean.pop(key, None)
        self._first.discard(key)
        self._last_step.pop(key, None)
        if not kinds:  # summary="none": nothing replaces the old value, so the agent must drop it
            self._delete(key)

    def _delete(self, key: str) -> None:
        if key not in self._deleted:
            self._deleted.add(key)
            self.control.append(["summary_del", key])

    def _undelete(self, key: str) -> None:
        """The agent applies a batch's summary before its control ops: a value set after a delete
        in the same batch must not be deleted by it."""
        if key in self._deleted:
            self._deleted.discard(key)
            self.control.remove(["summary_del", key])

    def _summarize(self, key, col, arr, idx, steps, late, newest) -> None:
        if key in self.manual:
            return
        kinds = self.rule(key)
        if self._applied.setdefault(key, kinds) != kinds:
            self._applied[key] = kinds
            self._reset(key, kinds)
        if not kinds:
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
            src = [v for v in col if type(v) in _NUMBER_TYPES]
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

    def _current(self, key: str, kind: str) -> Any:
        """The key's current aggregate of ``kind``, or None when there is no usable number."""
        value = self.summary.get(key)
        if len(self.rule(key)) != 1:
            value = value.get(kind) if isinstance(value, dict) else None
        if type(value) not in _NUMBER_TYPES or value != value:  # e.g. a restored string, or NaN
            return None
        return value


_NUMBER_TYPES = (int, float, bool)
_CELL_BYTES = 16  # a generous wire size of one numeric value of a row (8 bytes, plus keys of blocks by set)
# values of one batch, in _CELL_BYTES: 8192 rows of up to 32 numbers fit, wider rows make batches of fewer
# rows. The agent lets ZeroMQ queue a frame or two per connection (its recv_hwm), so the frame size of
# scalar batches is what bounds that memory: 8 ranks of 128-key rows sent 8 MB frames (agent peak 154 MB)
MAX_BATCH_CELL_BYTES = 4 << 20
MAX_SPAN_CELLS = 1 << 18  # key records of spans per batch (~56 bytes each on the wire)
MAX_BATCH_COLUMNS = MAX_KEYS_PER_ROW  # columns of one batch's rows (one row of the widest kind still fits)
_WIDE_ROW = 64  # keys per row on average above which the columns of a batch are counted
