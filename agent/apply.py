"""What a client batch does to its run: rows, coalesced spans, media, metric definitions, control ops.

:class:`Applier` turns one validated, de-duplicated batch into state: per-run
history chunks and group points in :class:`agent.nextcommit.NextCommit`, the
run record (step, rows, summary, config, state) and counters. No sockets and no
sequence numbers here: those stay in agent/ingest.py. The store sink applies
batches with it (agent/sinks/store.py); a node agent's spool sink uses its
control ops and row counts only (agent/sinks/spool.py). What the wire decoder
cannot check of a batch (``check_batch``, ``check_width``) and what it counts
against the agent's byte budget (``batch_cost``) are here too.

Order inside a batch matters and is fixed: metric definitions first (they decide
whether a key opts out of rate limiting), then rows, then the pending row and
the summary (whose media references find the files the rows wrote), then the
other control ops (``finish`` last of all in practice, as the client sends it).

Wide batches are applied in slices: a batch of more than ``SLICE_KEYS`` columns is
queued (agent/slices.py) and applied ``SLICE_KEYS`` of its columns per loop
turn — the head (definitions, row budget, row times) with the
first slice, the tail (step, pending row, summary, control) with the last, so
sealing never passes rows whose columns are still queued. Later batches of the
same writer queue behind it; the batch is acknowledged after its last slice is
committed. Per-key Python work (about 0.1 ms a key from apply to commit) thus
never blocks the loop for more than a slice: pings and other ranks are answered
in between. An agent killed between slices stores the first slices again when
the client resends the batch (identical values; readers keep the last write).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.ratelimit import coalesce_column, span_starts
from agent.runs import RunState
from client import failure, wire
from client.errors import ProtocolError
from client.values import MAX_KEYS_PER_ROW

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.media import MediaSink
    from agent.nextcommit import NextCommit
    from agent.status import Counters


# A batch with more columns than this is applied in slices of this many columns, one slice per loop
# turn: the loop goes on answering pings and other ranks while a wide row is stored (about 20 ms of
# work per slice on a 2-core machine). Sealing is sliced by the same number of keys (agent/groups.py).
SLICE_KEYS = 500
# The widest row the agent takes: the client refuses a log() call with more keys at the call site
# (client/values.py); a batch with a wider row is refused as malformed, never stored in part.
# (MAX_KEYS_PER_ROW itself is imported from client/values.py: one number for both ends.)


def row_width(b: wire.Batch) -> int:
    """The number of keys of the widest row of ``b``."""
    full = 0
    parts = []
    for col in b.columns:
        if col.rows is None:
            full += 1
        else:
            parts.append(col.rows)
    if not parts or not b.n:
        return full
    return full + int(np.bincount(np.concatenate(parts), minlength=b.n).max())


# run meta the agent keeps itself: a client's HELLO or "meta" op must not replace them with another type
AGENT_META = frozenset({"metrics", "drops", "coalesced", "via", "exception"})


def client_meta(meta: Any) -> dict:
    """A peer's run meta without the keys the agent owns (``AGENT_META``)."""
    if not isinstance(meta, dict):
        return {}
    return {k: v for k, v in meta.items() if k not in AGENT_META}


class Applying:
    """A batch being applied: what its first part decided and every slice of its columns needs."""

    __slots__ = ("paced", "n_late", "starts")

    def __init__(self, paced: float):
        self.paced = paced  # the time its row and media budgets count by
        self.n_late = 0
        self.starts: np.ndarray | None = None  # over the row budget: the batch row where each span begins

    def __repr__(self) -> str:
        return f"<Applying late={self.n_late} coalesced={self.starts is not None}>"


MAX_STEP = 1 << 62  # steps (and the next step, step + 1) stay far inside SQLite's int64


# what one value of a list column (strings, mixed types: encoding "mp") costs once decoded, beyond its wire
# bytes: a list slot and a Python object. Numeric columns decode to arrays over their wire bytes (no extra).
LIST_VALUE_BYTES = 56


def batch_cost(b: wire.Batch) -> int:
    """The bytes a batch counts against the pending budget: its frame, plus its decoded Python objects."""
    extra = 0
    for col in b.columns:
        if not isinstance(col.values, np.ndarray):
            extra += LIST_VALUE_BYTES * len(col.values)
    return b.nbytes + extra


def check_batch(b: wire.Batch) -> None:
    """What the wire decoder cannot know: steps must leave room in the store's int64 (step + 1)."""
    if b.n and int(b.step.max()) >= MAX_STEP:
        raise ProtocolError(f"step {int(b.step.max())} at or above {MAX_STEP}")
    if b.open_row is not None and b.open_row[0] >= MAX_STEP:
        raise ProtocolError(f"pending step {b.open_row[0]} at or above {MAX_STEP}")


def check_width(b: wire.Batch) -> None:
    """Refuse a batch with a row wider than ``MAX_KEYS_PER_ROW`` (ProtocolError: counted as malformed)."""
    width = row_width(b)
    if width > MAX_KEYS_PER_ROW:
        raise ProtocolError(f"a row of {width} keys, above the agent's limit of {MAX_KEYS_PER_ROW} keys per row")


class Applier:
    """Batch → run state, into the next commit; counts what it did and what it could not read."""

    def __init__(
        self,
        cfg: AgentConfig,
        media: MediaSink | None,
        counters: Counters,
        next_commit: NextCommit,
        malformed: Callable[[str], None],
    ):
        self.cfg = cfg
        self.media = media  # None: media values are stored inline (in-memory tests, a node agent)
        self.counters = counters
        self.next_commit = next_commit  # cleared in place after each commit: this reference stays valid
        self.malformed = malformed  # counts a malformed part of a batch by cause (agent/ingest.py)
        self.user_alert: Callable = lambda run, arg, now: None  # run.alert(): agent/alerts/user.py where stored

    def __repr__(self) -> str:
        return f"<Applier media={self.media is not None} next={self.next_commit!r}>"

    def paced(self, run: RunState, b: wire.Batch, now: float) -> float:
        """The time the row and media budgets of a batch count by. A batch forwarded by a node agent (at a
        root) counts at the time its rows were committed: a node's backlog, replayed at once after an outage
        of the root, was logged at its own pace and must not look like a burst."""
        if run.via is None or not b.n:
            return now
        return min(now, float(b.t.max()))

    def apply(self, run: RunState, b: wire.Batch, now: float) -> None:
        """A whole batch at once."""
        state = self.head(run, b, now)
        self.columns(run, b, b.columns, state, now)
        self.tail(run, b, state, now)

    def head(self, run: RunState, b: wire.Batch, now: float) -> Applying:
        """What a batch does once, before its columns: metric definitions, the row budget, the rows' times."""
        run.last_seen = now
        state = Applying(self.paced(run, b, now))
        for op, arg in b.control:
            # metric definitions first: they decide how this batch's rows are kept (rate_limit=False)
            if op == "define":
                self.control(run, op, arg, now)
        if b.n:
            late = b.late
            normal = None if late is None else ~late
            state.n_late = n_late = 0 if late is None else int(late.sum())
            allowed = run.allow(b.n - n_late, state.paced, self.cfg.rows_per_s) if b.n > n_late else 0
            if allowed < b.n - n_late:
                state.starts = self._coalesced_rows(run, b, allowed)
            else:
                self._add_rows(run, b.step, {"_timestamp": b.t, "_runtime": b.runtime}, late, normal)
        return state

    def columns(self, run: RunState, b: wire.Batch, columns: list, state: Applying, now: float) -> None:
        """Some of a batch's columns (all, or one slice of a wide batch): history and group points."""
        if not b.n:
            return
        if state.starts is not None:
            self._coalesced_columns(run, b, columns, state, now)
            return
        r = run.record
        group = run.group
        nc = self.next_commit
        late = b.late
        for col in columns:
            steps = b.step if col.rows is None else b.step[col.rows]
            values = col.values
            if not col.numeric and self.media is not None:
                values = self.media.column(r.id, values, state.paced)
            col_late = None if late is None else (late if col.rows is None else late[col.rows])
            self.add_column(run, col.key, steps, values, col_late)
            # a list column's numbers too: group rows must not depend on batching (agent/groups.py)
            group.add_column(r.rank, col.key, steps, col.values, now, nc)

    def tail(self, run: RunState, b: wire.Batch, state: Applying, now: float) -> None:
        """What a batch does once, after its columns: the step moves (sealing may pass these rows only
        now), the pending row, the summary, control ops."""
        r = run.record
        paced = state.paced
        if b.n:
            self.count_rows(run, b, state.n_late)
        if b.spans is not None:  # rows the client coalesced under overload: stored as spans (agent/clientspans.py)
            from agent.clientspans import apply_client_spans

            apply_client_spans(self, run, b.spans, now)
        if b.open_row is not None or r.open_row is not None:
            r.open_row = (
                None
                if b.open_row is None
                else [b.open_row[0], b.open_row[1], self._media_map(r.id, b.open_row[2], paced)]
            )
        if b.summary:
            # after the history: byte-less media references in the summary find their files
            r.summary.update(self._media_map(r.id, b.summary, paced))
        for op, arg in b.control:
            if op != "define":
                self.control(run, op, arg, now)
        if r.state == "crashed" and r.open_row:
            # its process was seen gone before this batch was applied (a wide batch takes several loop
            # turns): nobody will commit this row later, so commit it now, as the crash did
            self.commit_pending_row(run, now)
        r.updated = now
        self.next_commit.runs[r.id] = r

    def count_rows(self, run: RunState, b: wire.Batch, n_late: int) -> None:
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

    def _coalesced_rows(self, run: RunState, b: wire.Batch, spans: int) -> np.ndarray:
        """Over its row budget: the batch's on-time rows become ``spans`` rows (agent/ratelimit.py).

        Each stored row sits at the last step of its span with that step's time, plus ``_first_step``
        and ``_rows`` (how many logged rows it stands for: counts add up). Numeric keys keep last,
        mean, min, max and count; other keys and keys that opted out keep every value. Late rows and
        the group windows get the raw values. Returns the batch row where each span begins."""
        r = run.record
        rid = r.id
        late = b.late
        on_time = np.arange(b.n) if late is None else np.flatnonzero(~late)
        pos = span_starts(len(on_time), spans)
        starts = on_time[pos]  # batch row where each span begins
        last = on_time[np.r_[pos[1:], len(on_time)] - 1]
        steps = b.step[last]
        nc = self.next_commit
        nc.add_history(rid, "_timestamp", steps, b.t[last], False)
        nc.add_history(rid, "_runtime", steps, b.runtime[last], False)
        nc.add_history(rid, "_first_step", steps, b.step[starts], False)
        nc.add_history(rid, "_rows", steps, np.diff(np.r_[pos, len(on_time)]).astype(np.int64), False)
        if late is not None and late.any():
            nc.add_history(rid, "_timestamp", b.step[late], b.t[late], True)
            nc.add_history(rid, "_runtime", b.step[late], b.runtime[late], True)
        self.counters.add("coalesced_rows", len(on_time) - len(pos))
        tally = r.meta.setdefault("coalesced", {"rows": 0, "spans": 0})
        tally["rows"] += len(on_time)
        tally["spans"] += len(pos)
        return starts

    def _coalesced_columns(self, run: RunState, b: wire.Batch, columns: list, state: Applying, now: float) -> None:
        """Columns of a batch over its row budget: numeric ones into the spans of ``state.starts``."""
        r = run.record
        rid = r.id
        late = b.late
        nc = self.next_commit
        coalesced = 0
        for col in columns:
            rows = np.arange(b.n) if col.rows is None else col.rows.astype(np.int64)
            values = col.values
            if not col.numeric and self.media is not None:
                values = self.media.column(rid, values, state.paced)
            col_steps = b.step[rows]
            col_late = None if late is None else late[rows]
            run.group.add_column(r.rank, col.key, col_steps, col.values, now, nc)
            if not col.numeric or run.keeps_raw(col.key):
                self.add_column(run, col.key, col_steps, values, col_late)
                continue
            if col_late is not None and col_late.any():
                nc.add_history(rid, col.key, col_steps[col_late], values[col_late], True)
                keep = ~col_late
                rows, col_steps, values = rows[keep], col_steps[keep], values[keep]
            if len(rows):
                spans_of_key = coalesce_column(rows, col_steps, values, state.starts)
                nc.add_history(rid, col.key, spans_of_key["step"], spans_of_key, False)
                coalesced += len(rows)
        self.counters.add("coalesced_points", coalesced)

    def _media_map(self, run_id: int, values: dict, now: float) -> dict:
        if self.media is None or not any(isinstance(v, (dict, list)) for v in values.values()):
            return values
        return {k: self.media.value(run_id, v, now) for k, v in values.items()}

    def _add_rows(self, run: RunState, steps: np.ndarray, columns: dict, late: Any, normal: Any) -> None:
        for key, values in columns.items():
            self.add_column(run, key, steps, values, late)

    def add_column(self, run: RunState, key: str, steps: np.ndarray, values: Any, late: Any) -> None:
        rid = run.record.id
        if isinstance(values, np.ndarray) and values.dtype.kind == "b":
            # as Python bools: a commit that joins them with other numbers of the key keeps them bools (the
            # store writes an all-bool chunk as "b1" again); group rows got the numeric array (0/1)
            values = values.astype(object)
        if late is None or not late.any():
            self.next_commit.add_history(rid, key, steps, values, False)
            return
        keep = ~late
        if isinstance(values, np.ndarray):
            on_time, late_values = values[keep], values[late]
        else:
            on_time = [v for v, k in zip(values, keep) if k]
            late_values = [v for v, k in zip(values, keep) if not k]
        if keep.any():
            self.next_commit.add_history(rid, key, steps[keep], on_time, False)
        self.next_commit.add_history(rid, key, steps[late], late_values, True)

    def control(self, run: RunState, op: str, arg: Any, now: float) -> None:
        r = run.record
        if op == "config" and isinstance(arg, dict):
            r.config.update(arg)
        elif op == "config_del" and isinstance(arg, list):
            for key in arg:
                if isinstance(key, str):  # anything else names no config key (and may not even hash)
                    r.config.pop(key, None)
        elif op == "summary_del" and isinstance(arg, str):
            r.summary.pop(arg, None)
        elif op == "define" and isinstance(arg, dict):
            r.meta.setdefault("metrics", {})[str(arg.get("name"))] = arg
            run.forget_metric_rules()
        elif op == "finish" and isinstance(arg, dict):
            code = arg.get("exit_code", 0)
            if not isinstance(code, int) or isinstance(code, bool) or not -(1 << 31) <= code < (1 << 31):
                self.malformed("finish exit_code not a 32-bit integer")
                code = 1
            r.exit_code = code
            r.state = "finished" if code == 0 else "failed"
            if "exception" in arg:  # why it failed, as the training process saw it (client/failure.py)
                described = failure.checked(arg["exception"])
                if described is None:
                    self.malformed("finish exception not a map of bounded strings")
                else:
                    r.meta["exception"] = described
            r.finished = float(arg.get("t", now)) if isinstance(arg.get("t"), (int, float)) else now
            r.open_row = None
            self.counters.add("finished_runs")
        elif op == "meta" and isinstance(arg, dict):
            if AGENT_META.intersection(arg):
                self.malformed("meta op sets a key the agent keeps")
            r.meta.update(client_meta(arg))
        elif op == "dropped" and isinstance(arg, dict):
            # rows a writer could not keep (its spill file refused them): counted by cause, per run too
            rows, cause = arg.get("rows"), str(arg.get("cause", "unknown"))[:40]
            if isinstance(rows, int) and 0 <= rows < (1 << 40):
                drops = r.meta.setdefault("drops", {})
                drops[cause] = drops.get(cause, 0) + rows
                self.next_commit.drops[cause] = self.next_commit.drops.get(cause, 0) + rows
                self.counters.drop(cause, rows)
        elif op == "alert":
            self.user_alert(run, arg, now)
        else:
            self.malformed("unknown control op")

    # ------------------------------------------------------------ a vanished run

    def commit_pending_row(self, run: RunState, now: float) -> None:
        """A run that vanished leaves its uncommitted row: commit it, nothing is dropped."""
        r = run.record
        if not r.open_row:
            return
        step, t, data = r.open_row
        r.open_row = None
        steps = np.array([step], np.int64)
        self.add_column(run, "_timestamp", steps, np.array([t]), None)
        self.add_column(run, "_runtime", steps, np.array([max(0.0, t - r.created)]), None)
        for key, value in data.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                big = isinstance(value, int) and not -(1 << 63) <= value < (1 << 63)
                arr = np.array([value], dtype=np.float64 if isinstance(value, float) or big else np.int64)
                self.add_column(run, key, steps, arr, None)
                run.group.add(r.rank, key, steps, arr, now, self.next_commit)
            else:
                self.add_column(run, key, steps, [value], None)
        r.step = max(r.step, step + 1)
        r.rows += 1
