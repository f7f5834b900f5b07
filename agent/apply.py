"""What a client batch does to its run: rows, coalesced spans, media, metric definitions, control ops.

:class:`RunUpdates` is the half of :class:`agent.ingest.Ingest` that turns one
validated, de-duplicated batch into state: per-run history chunks and group
points in :class:`agent.pending.PendingWrites`, the run record (step, rows,
summary, config, state) and counters. No sockets and no sequence numbers here:
those stay in ingest. A node agent and a root override ``_apply`` / ``_paced``
(agent/node.py, agent/root.py) and reuse the rest.

Order inside a batch matters and is fixed: metric definitions first (they decide
whether a key opts out of rate limiting), then rows, then the pending row and
the summary (whose media references find the files the rows wrote), then the
other control ops (``finish`` last of all in practice, as the client sends it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from agent.ratelimit import coalesce_column, span_starts
from agent.runs import RunState
from client import wire

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.media import MediaSink
    from agent.pending import PendingWrites
    from agent.status import Counters


class RunUpdates:
    """Batch → run state. Mixed into Ingest, which provides the attributes below."""

    cfg: AgentConfig
    media: MediaSink | None
    pending: PendingWrites
    counters: Counters

    def _count_malformed(self, cause: str) -> None:  # provided by Ingest
        raise NotImplementedError

    def _paced(self, run: RunState, b: wire.Batch, now: float) -> float:
        """The time the row and media budgets of a batch count by (a root paces forwarded batches by their
        own commit times: a backlog replayed after an outage must not look like a burst)."""
        return now

    def _apply(self, run: RunState, b: wire.Batch, now: float) -> None:
        r = run.record
        group = run.group
        pending = self.pending
        run.last_seen = now
        paced = self._paced(run, b, now)
        for op, arg in b.control:
            # metric definitions first: they decide how this batch's rows are kept (rate_limit=False)
            if op == "define":
                self._control(run, op, arg, now)
        if b.n:
            late = b.late
            normal = None if late is None else ~late
            n_late = 0 if late is None else int(late.sum())
            allowed = run.allow(b.n - n_late, paced, self.cfg.rows_per_s) if b.n > n_late else 0
            if allowed < b.n - n_late:
                self._apply_coalesced(run, b, allowed, now, paced)
            else:
                self._add_rows(run, b.step, {"_timestamp": b.t, "_runtime": b.runtime}, late, normal)
            for col in b.columns if allowed >= b.n - n_late else ():
                steps = b.step if col.rows is None else b.step[col.rows]
                values = col.values
                if not col.numeric and self.media is not None:
                    values = self.media.column(r.id, values, paced)
                col_late = None if late is None else (late if col.rows is None else late[col.rows])
                self._add_column(run, col.key, steps, values, col_late)
                if col.numeric:
                    group.add(r.rank, col.key, steps, values, now, pending)
            self._count_rows(run, b, n_late)
        if b.pending is not None or r.pending is not None:
            r.pending = None if b.pending is None else [b.pending[0], b.pending[1], self._media_map(r.id, b.pending[2], paced)]
        if b.summary:
            # after the history: byte-less media references in the summary find their files
            r.summary.update(self._media_map(r.id, b.summary, paced))
        for op, arg in b.control:
            if op != "define":
                self._control(run, op, arg, now)
        r.updated = now
        pending.runs[r.id] = r

    def _count_rows(self, run: RunState, b: wire.Batch, n_late: int) -> None:
        """A batch's rows on its run record and in the counters: the step moves past the rows on time."""
        r = run.record
        committed = b.step if b.late is None else b.step[~b.late]
        if len(committed):
            r.step = max(r.step, int(committed.max()) + 1)
        r.rows += b.n - n_late
        r.late += n_late
        r.runtime = max(r.runtime, float(b.runtime.max()))
        self.counters.add("rows", b.n)
        self.counters.add("late_rows", n_late)
        self.counters.add("points", sum(len(c.values) for c in b.columns))

    def _apply_coalesced(self, run: RunState, b: wire.Batch, spans: int, now: float, paced: float) -> None:
        """Over its row budget: the batch's on-time rows become ``spans`` rows (agent/ratelimit.py).

        Each stored row sits at the last step of its span with that step's time, plus ``_first_step``
        and ``_rows`` (how many logged rows it stands for: counts add up). Numeric keys keep last,
        mean, min, max and count; other keys and keys that opted out keep every value. Late rows and
        the group windows get the raw values."""
        r = run.record
        rid = r.id
        late = b.late
        on_time = np.arange(b.n) if late is None else np.flatnonzero(~late)
        pos = span_starts(len(on_time), spans)
        starts = on_time[pos]  # batch row where each span begins
        last = on_time[np.r_[pos[1:], len(on_time)] - 1]
        steps = b.step[last]
        pending = self.pending
        pending.add_history(rid, "_timestamp", steps, b.t[last], False)
        pending.add_history(rid, "_runtime", steps, b.runtime[last], False)
        pending.add_history(rid, "_first_step", steps, b.step[starts], False)
        pending.add_history(rid, "_rows", steps, np.diff(np.r_[pos, len(on_time)]).astype(np.int64), False)
        if late is not None and late.any():
            pending.add_history(rid, "_timestamp", b.step[late], b.t[late], True)
            pending.add_history(rid, "_runtime", b.step[late], b.runtime[late], True)
        coalesced = 0
        for col in b.columns:
            rows = np.arange(b.n) if col.rows is None else col.rows.astype(np.int64)
            values = col.values
            if not col.numeric and self.media is not None:
                values = self.media.column(rid, values, paced)
            col_steps = b.step[rows]
            col_late = None if late is None else late[rows]
            if col.numeric:
                run.group.add(r.rank, col.key, col_steps, values, now, pending)
            if not col.numeric or run.keeps_raw(col.key):
                self._add_column(run, col.key, col_steps, values, col_late)
                continue
            if col_late is not None and col_late.any():
                pending.add_history(rid, col.key, col_steps[col_late], values[col_late], True)
                keep = ~col_late
                rows, col_steps, values = rows[keep], col_steps[keep], values[keep]
            if len(rows):
                spans_of_key = coalesce_column(rows, col_steps, values, starts)
                pending.add_history(rid, col.key, spans_of_key["step"], spans_of_key, False)
                coalesced += len(rows)
        self.counters.add("coalesced_rows", len(on_time) - len(pos))
        self.counters.add("coalesced_points", coalesced)
        tally = r.meta.setdefault("coalesced", {"rows": 0, "spans": 0})
        tally["rows"] += len(on_time)
        tally["spans"] += len(pos)

    def _media_map(self, run_id: int, values: dict, now: float) -> dict:
        if self.media is None or not any(isinstance(v, (dict, list)) for v in values.values()):
            return values
        return {k: self.media.value(run_id, v, now) for k, v in values.items()}

    def _add_rows(self, run: RunState, steps: np.ndarray, columns: dict, late: Any, normal: Any) -> None:
        for key, values in columns.items():
            self._add_column(run, key, steps, values, late)

    def _add_column(self, run: RunState, key: str, steps: np.ndarray, values: Any, late: Any) -> None:
        rid = run.record.id
        if late is None or not late.any():
            self.pending.add_history(rid, key, steps, values, False)
            return
        keep = ~late
        if isinstance(values, np.ndarray):
            on_time, late_values = values[keep], values[late]
        else:
            on_time = [v for v, k in zip(values, keep) if k]
            late_values = [v for v, k in zip(values, keep) if not k]
        if keep.any():
            self.pending.add_history(rid, key, steps[keep], on_time, False)
        self.pending.add_history(rid, key, steps[late], late_values, True)

    def _control(self, run: RunState, op: str, arg: Any, now: float) -> None:
        r = run.record
        if op == "config" and isinstance(arg, dict):
            r.config.update(arg)
        elif op == "config_del" and isinstance(arg, list):
            for key in arg:
                r.config.pop(key, None)
        elif op == "summary_del" and isinstance(arg, str):
            r.summary.pop(arg, None)
        elif op == "define" and isinstance(arg, dict):
            r.meta.setdefault("metrics", {})[str(arg.get("name"))] = arg
            run.forget_metric_rules()
        elif op == "finish" and isinstance(arg, dict):
            code = arg.get("exit_code", 0)
            if not isinstance(code, int) or isinstance(code, bool) or not -(1 << 31) <= code < (1 << 31):
                self._count_malformed("finish exit_code not a 32-bit integer")
                code = 1
            r.exit_code = code
            r.state = "finished" if code == 0 else "failed"
            r.finished = float(arg.get("t", now)) if isinstance(arg.get("t"), (int, float)) else now
            r.pending = None
            self.counters.add("finished_runs")
        elif op == "meta" and isinstance(arg, dict):
            r.meta.update(arg)
        elif op == "dropped" and isinstance(arg, dict):
            # rows a writer could not keep (its spill file refused them): counted by cause, per run too
            rows, cause = arg.get("rows"), str(arg.get("cause", "unknown"))[:40]
            if isinstance(rows, int) and 0 <= rows < (1 << 40):
                drops = r.meta.setdefault("drops", {})
                drops[cause] = drops.get(cause, 0) + rows
                self.pending.drops[cause] = self.pending.drops.get(cause, 0) + rows
                self.counters.drop(cause, rows)
        else:
            self._count_malformed("unknown control op")

    # ------------------------------------------------------------ a vanished run

    def _commit_pending_row(self, run: RunState, now: float) -> None:
        """A run that vanished leaves its uncommitted row: commit it, nothing is dropped."""
        r = run.record
        if not r.pending:
            return
        step, t, data = r.pending
        r.pending = None
        steps = np.array([step], np.int64)
        self._add_column(run, "_timestamp", steps, np.array([t]), None)
        self._add_column(run, "_runtime", steps, np.array([max(0.0, t - r.created)]), None)
        for key, value in data.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                big = isinstance(value, int) and not -(1 << 63) <= value < (1 << 63)
                arr = np.array([value], dtype=np.float64 if isinstance(value, float) or big else np.int64)
                self._add_column(run, key, steps, arr, None)
                run.group.add(r.rank, key, steps, arr, now, self.pending)
            else:
                self._add_column(run, key, steps, [value], None)
        r.step = max(r.step, step + 1)
        r.rows += 1
