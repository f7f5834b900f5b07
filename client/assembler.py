"""Rows from the op stream, and batches from rows: the I/O thread's half of ``log()``.

``Run.log`` only appends an op ``(kind, step, t, data)`` to a deque; the step is
already resolved by the wandb rules, ``t`` is ``perf_counter()``. Here, off the
training loop's thread, ops become committed rows:

* ``COMMIT`` at the open row's step merges into it and commits it;
  at another step it first commits the open row as it is;
* ``MERGE`` (``commit=False``, or an explicit higher ``step``) merges into the
  open row, committing an open row of a lower step first;
* ``LATE`` (a step below the current one) is a late update of that row: kept,
  flagged, never dropped;
* ``CONTROL`` carries summary edits, config updates, metric definitions, finish.

A batch is columnar (client/batchrows.py cuts the rows and builds their blocks;
``client.wire`` encodes the batch); the summary follows from its columns
(client/summarizer.py, the summary rules). A ``define_metric`` ends the current
batch, so rows logged before it are summarised by the rules in force then.

The row not committed yet (wandb's pending row: ``commit=False``, or an explicit
``step`` not yet passed) is ``open_row``; it travels with the last batch of what
was assembled (the wire calls it "pend") until a later op commits it.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from client import batchrows, wire
from client.batchrows import MAX_BATCH_MEDIA_BYTES, safe_blocks, wire_map
from client.columns import to_wire
from client.fastconv import NumpyRow, TensorRow, resolve_numpy, resolve_tensors
from client.framing import BAD_VALUE, ENCODE_ERROR, FRAME_BUDGET, ROW_TOO_WIDE, sanitize, split
from client.ops import (
    COMMIT,
    COMMIT_PENDING,
    LATE,
    OP_DATA,
    OP_KIND,
    OP_SIZE,
    OP_STEP,
    OP_T,
    SPAN,
    apply_ops,
    merge_capped,
    parse_summary_kinds,
)
from client.summarizer import Summarizer
from client.values import MAX_KEYS_PER_ROW, MediaRow


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
        self.open_row: list | None = None  # [step, t, dict]: the row not committed yet (module docstring)
        self.open_row_dirty = False  # it changed since the last batch
        # control ops for the next batch; one list for good (the summarizer appends summary_del ops to it)
        self.control: list[list] = []
        self.summarizer = Summarizer(self.control)
        self._defines: list[tuple[int, list]] = []  # (rows assembled before it, op)
        # define_metric ops that arrived after rows not yet summarised: (rows_total at which they apply, spec)
        self._deferred: list[tuple[int, dict]] = []
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
            f"open_row={'yes' if self.open_row else 'no'} summary_keys={len(self.summary)}>"
        )

    @property
    def summary(self) -> dict[str, Any]:
        """``run.summary`` as assembled so far (the summarizer's dict itself: callers update it in place)."""
        return self.summarizer.summary

    # ------------------------------------------------------------ ops → rows

    def feed_flat(self, items: list) -> None:
        """Ops as the deque holds them: four items each (kind, step, t, data), concatenated.

        When every op commits and no row is open (a training loop calling ``log(d)``), the rows
        are the op columns themselves: four slices, no Python work per op."""
        kinds = items[OP_KIND::OP_SIZE]
        dicts = items[OP_DATA::OP_SIZE]
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
        if self.open_row is None and kinds.count(COMMIT) == len(kinds):
            self._kinds += kinds
            self._steps += items[OP_STEP::OP_SIZE]
            self._ts += items[OP_T::OP_SIZE]
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
        before = self.open_row
        self.open_row = pend = apply_ops(before, ops, self._row, self._merge, self._other)
        if before is not None or pend is not None:
            self.open_row_dirty = True

    def _other(self, pend: list | None, kind: int, step: Any, t: Any, data: Any) -> list | None:
        """LATE, SPAN and CONTROL ops (``apply_ops`` folds COMMIT and MERGE itself). For CONTROL, ``step`` and
        ``t`` are the op's name and argument (client/ops.py, the shape of an op)."""
        if kind == LATE:
            self._row(LATE, step, t, data)
            self.late_total += 1
            return pend
        if kind == SPAN:  # rows the coalescer folded (client/coalesce.py); it owned the open row
            if pend is not None:
                self._row(COMMIT, pend[0], pend[1], pend[2])
                pend = None
                self.open_row_dirty = True
            self._row(SPAN, step, t, data)
            self._spans += 1
            return pend
        name, arg = step, t
        if (name == "finish" or name == COMMIT_PENDING) and pend is not None:
            self._row(COMMIT, pend[0], pend[1], pend[2])
            pend = None
            self.open_row_dirty = True
        if name == COMMIT_PENDING:
            return pend
        self.open_row = pend  # a control op may look at it (none does today); keep the state consistent
        try:
            self._apply_control(name, arg)
        except Exception as exc:  # noqa: BLE001 - e.g. a summary value whose encoder fails: drop the op
            self._drop(BAD_VALUE, 1, f"{name} op: {type(exc).__name__}: {exc}"[:200])
        return pend

    def _merge(self, row: dict, new: dict) -> None:
        """Merge a call into the open row. ``flatten`` held each call to ``MAX_KEYS_PER_ROW`` keys; a row
        merged from several calls (``commit=False``, ``step=``) that would grow beyond it keeps its first
        keys, and the new keys beyond the limit are dropped and counted (the agent refuses a wider row
        whole). Checked here, not at the call, so that ``log(d, step=i)`` pays nothing for it."""
        extra = merge_capped(row, new, MAX_KEYS_PER_ROW)
        if extra:
            self._drop(
                ROW_TOO_WIDE,
                extra,
                f"a row merged from several calls would hold more than "
                f"{MAX_KEYS_PER_ROW} keys; log the rest at other steps",
            )

    def _apply_control(self, name: str, arg: Any) -> None:
        if name == "summary_set":
            key, value = arg
            self.summarizer.set_manual(key, value)
        elif name == "summary_del":
            self.summarizer.del_manual(arg)
        elif name == "define":
            spec = dict(arg, summary=list(parse_summary_kinds(arg.get("summary"))))
            if "rate_limit" in spec:
                self.raw_rules.append((spec["name"], spec["rate_limit"] is False))
            if self._kinds:
                # rows logged before define_metric are summarised by the rules in force when they were
                # logged, however the I/O thread happens to cut batches: end a batch at this point
                self._deferred.append((self.rows_total + len(self._kinds), spec))
            else:
                self.summarizer.define(spec)
            # with the batch holding the rows logged before it, not the last of a burst: the agent
            # applies definitions before a batch's rows (define_metric(key, rate_limit=False))
            self._defines.append((self.rows_total + len(self._kinds), ["define", spec]))
        elif name == "finish":
            self.finished = True
            self.control.append(["finish", arg])
        else:  # config, meta: forwarded as they are
            self.control.append([name, to_wire(arg)])

    # ------------------------------------------------------------ rows → batch

    def has_work(self) -> bool:
        return bool(
            self._kinds
            or self.control
            or self._defines
            or self.summarizer.dirty
            or self.open_row_dirty
            or self._ready
            or self._told
        )

    def _drop(self, cause: str, n: int, what: str) -> None:
        if cause not in self.drops:
            self.drop_notes.append(f"{cause} ({what})")
        self.drops[cause] = self.drops.get(cause, 0) + n
        self._told.append(["dropped", {"rows": n, "cause": cause}])

    def abandon(self, exc: BaseException) -> None:
        """Last resort after ``take_batch`` raised: drop what is not batched yet (rows counted by cause
        ``ENCODE_ERROR``, the open row too) so that the next batch cannot fail the same way; the
        finish op is kept."""
        rows = len(self._kinds) + (1 if self.open_row is not None else 0)
        for column in (self._kinds, self._steps, self._ts, self._dicts):
            column.clear()
        self.open_row = None
        self.open_row_dirty = True
        self._media_bytes = 0
        self._spans = 0
        self.summarizer.forget_dirty()
        self._defines = []
        self.control[:] = [op for op in self.control if op[0] == "finish"]
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
            limit = batchrows.kind_limit(self._kinds, self._dicts, limit)
            if self._kinds[0] == SPAN:
                return self._take_spans(limit)
        if self._media_bytes > MAX_BATCH_MEDIA_BYTES:
            limit = batchrows.media_limit(self._dicts, limit)
        if limit > 1 and len(self._kinds) > 1:
            limit = batchrows.cells_limit(self._dicts, limit)
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
            blocks = safe_blocks(dicts, step_a, late, self.summarizer, self._drop)
            if blocks is None:  # not even value by value: the rows go, counted (their steps stay taken)
                self._drop(ENCODE_ERROR, n, "rows that could not be encoded")
                n = 0
                late_b = None
                blocks = []
            self.rows_total += len(kinds)
            while self._deferred and self._deferred[0][0] <= self.rows_total:
                self.summarizer.define(self._deferred.pop(0)[1])
        open_row, summary, early, rest = self._tail(last, time.time() - time.perf_counter())
        rows = [n, step_b, t_b, rt_b, late_b, blocks] if n else None
        try:
            return self._encode(rows, open_row, summary, early, rest)
        except Exception:  # noqa: BLE001 - a value msgpack refuses (a media encoder's odd output): find it
            summary = sanitize(rows, summary, early, rest, self._drop)
        try:
            return self._encode(rows, open_row, summary, early, rest)
        except Exception:
            self._drop(ENCODE_ERROR, n, "rows that could not be encoded")
            raise

    # ------------------------------------------------------------ spans (client/coalesce.py)

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
            self.summarizer.define(self._deferred.pop(0)[1])
        self.summarizer.spans(spans)
        represented = sum(sp.rows for sp in spans)
        self.spans_total += len(spans)
        self.span_rows_total += represented
        open_row, summary, early, rest = self._tail(last, offset)
        seq = self.next_seq
        control = (early + rest + self._told) or None
        body = {
            "w": self.writer,
            "s": seq,
            "rows": None,
            "pend": open_row,
            "sum": summary,
            "ctl": control,
            "spans": block,
        }
        frame = wire.pack(wire.BATCH, body)
        self._told = []
        self.next_seq += 1
        return seq, frame, represented

    def _tail(self, last: bool, offset: float) -> tuple[Any, Any, list, list]:
        """What a batch carries besides its rows or spans: the open row (with the last batch of what was
        assembled; its time moved to the wall clock by ``offset``), the defines due by now (``early``), and with
        the last batch the summary changes and the control ops (``rest``)."""
        open_row = None
        if last and self.open_row is not None:
            p = self.open_row
            open_row = [p[0], p[1] + offset, wire_map(p[2], self._drop)]
        end = self.rows_total  # rows assembled through this batch (rows_total already counts it)
        early = [op for pos, op in self._defines if last or pos < end]
        self._defines = [(pos, op) for pos, op in self._defines if not (last or pos < end)]
        summary = None
        rest: list = []
        if last:
            self.open_row_dirty = False
            summary = self.summarizer.take_dirty()
            rest = self.control[:]
            self.control.clear()
        return open_row, summary, early, rest

    def _encode(self, rows: list | None, open_row: list | None, summary: dict | None, early: list, rest: list):
        seq = self.next_seq
        if not self._ready:  # the usual case: one frame, packed once
            control = (early + rest + self._told) or None
            body = {"w": self.writer, "s": seq, "rows": rows, "pend": open_row, "sum": summary, "ctl": control}
            frame = wire.pack(wire.BATCH, body)
            if len(frame) <= FRAME_BUDGET:
                self._told = []
                self.next_seq += 1
                return seq, frame, rows[0] if rows else 0
        frames = split(rows, open_row, summary, early, rest, self._drop)
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
