"""The views ``rankwise.Api`` returns (rankwise/_api.py): :class:`Group`, one distributed job, and
:class:`RunView`, one rank's run, both read through the Api's store reader when asked.

Rich values (media, histograms, tables, charts; docs/media.md) are read per key and by step, decoding
only the stored chunks that hold the steps asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.store.base import ROW_KEYS
from rankwise.errors import InvalidArgumentError, NotFound

if TYPE_CHECKING:
    from rankwise._api import Api  # the views read through it; it imports them

#: ``_type`` of the values that get a media panel (docs/media.md).
MEDIA_TYPES = ("histogram", "image", "video", "audio", "table", "object3d", "html", "plotly", "chart")


def media_type(value: Any) -> str | None:
    """The media type of a stored value: its ``_type`` (``"image"``, ``"histogram"``, ...); for a list of
    media its elements' type when they share one, else ``"list"``; None for plain values (numbers, text)."""
    if isinstance(value, dict):
        t = value.get("_type")
        return t if isinstance(t, str) else None
    if isinstance(value, list) and value:
        types = {v.get("_type") if isinstance(v, dict) else None for v in value}
        if None in types:
            return None
        return types.pop() if len(types) == 1 else "list"
    return None


def _valid_histogram(h: dict) -> bool:
    from grouping.errors import GroupingError
    from grouping.histogram import merge_histograms

    try:
        merge_histograms([h])
        return True
    except GroupingError:
        return False


def _steps_arg(steps: Any) -> np.ndarray | None:
    if steps is None:
        return None
    if isinstance(steps, (int, np.integer)):
        return np.array([int(steps)], np.int64)
    return np.asarray(list(steps), np.int64)


class Group:
    """One distributed job: its runs (one per rank) and its group rows per key."""

    def __init__(self, api: Api, record: Any):
        self._api = api
        self._record = record

    def __repr__(self) -> str:
        return f"<Group {self.project}/{self.name} ranks={self.world_size} state={self.state}>"

    project = property(lambda self: self._record.project)
    name = property(lambda self: self._record.name)
    world_size = property(lambda self: self._record.world_size)
    created = property(lambda self: self._record.created)
    updated = property(lambda self: self._record.updated)
    sealed_through = property(lambda self: self._record.sealed_through)
    late_rows = property(lambda self: self._record.late_rows)

    @property
    def runs(self) -> list[RunView]:
        return [RunView(self._api, self, r) for r in self._api._reader.runs(self._record.id)]

    @property
    def alerts(self) -> list[dict[str, Any]]:
        """The group's alerts (docs/alerts.md), newest last: dicts of ``kind``, ``level``, ``rank`` (None for
        the whole group), ``key``, ``step``, ``time`` (epoch seconds), ``message`` and ``details``."""
        return self._api._reader.alerts(self._record.id)

    @property
    def state(self) -> str:
        """running while any rank runs; else crashed, failed or finished (the worst of its ranks)."""
        states = {r.state for r in self._api._reader.runs(self._record.id)}
        for s in ("running", "crashed", "failed", "finished"):
            if s in states:
                return s
        return "empty"

    @property
    def nodes(self) -> list[str]:
        return sorted({r.node for r in self.runs})

    def keys(self) -> list[str]:
        """Keys with group rows (numeric keys logged by any rank)."""
        return self._api._reader.group_keys(self._record.id)

    def history(self, key: str, x_axis: str | None = None) -> dict[str, np.ndarray]:
        """Group rows of ``key``: arrays step, count, expected, mean, min, max, std, min_rank, max_rank,
        nan_count, nan_rank.

        count is the ranks that reported at the step; mean/min/max/std and min_rank/max_rank are over their
        finite values (numpy's nan-reductions; NaN and -1 when none is finite); nan_count the ranks whose value
        was NaN or ±inf and nan_rank the lowest of them (-1 when none). Rows stored before nan_count existed
        read as nan_count 0, nan_rank -1.

        ``x_axis``: a step metric (``define_metric(key, step_metric=x_axis)``): only the rows that have its
        value, with an array ``x`` of it: the group mean of ``x_axis`` at the same step (the ranks log the
        same global step), or the latest earlier one when ``key`` was defined with it (wandb's step_sync;
        :mod:`rankwise._step_metric`)."""
        rows = self._api._reader.group_history(self._record.id, key)
        if x_axis is None or x_axis == "_step":
            return rows
        from rankwise._step_metric import syncs, x_of

        m = self._api._reader.group_history(self._record.id, x_axis)
        if len(m["step"]) == 0:
            raise NotFound(f"history(x_axis={x_axis!r}): group {self.name!r} has no numeric key {x_axis!r}")
        sync = any(syncs(r.meta, key, x_axis) for r in self._api._reader.runs(self._record.id))
        ok, x = x_of(rows["step"], m["step"], m["mean"], sync)
        out = {f: v[ok] for f, v in rows.items()}
        out["x"] = x
        return out

    # ------------------------------------------------------------ rich values

    def media_keys(self) -> list[dict[str, Any]]:
        """Keys with media values (``MEDIA_TYPES``, or lists of them): ``[{key, type, runs, first, last}]`` by
        key: ``type`` of the value at the last step (:func:`media_type`), how many runs logged the key, its
        first and last step."""
        out = []
        for key, e in sorted(self._api._reader.group_media_keys(self._record.id).items()):
            t = media_type(e["sample"])
            if t is not None:
                out.append({"key": key, "type": t, "runs": e["runs"], "first": e["first"], "last": e["last"]})
        return out

    def media_steps(self, key: str) -> dict[int, np.ndarray]:
        """Rank → the steps at which that rank has a value of ``key`` (no value is decoded)."""
        rank_of = {r.id: r.rank for r in self._api._reader.runs(self._record.id)}
        out: dict[int, np.ndarray] = {}
        for rid, steps in self._api._reader.group_value_steps(self._record.id, key).items():
            rank = rank_of.get(rid)
            if rank is not None:
                out[rank] = steps if rank not in out else np.union1d(out[rank], steps)
        return dict(sorted(out.items()))

    def media(
        self, key: str, step: int | None = None, start: int | None = None, end: int | None = None, steps: Any = None
    ) -> dict[int, list[tuple[int, Any]]]:
        """Per rank, the values of ``key`` as ``[(step, value)]`` by step: media references, histograms,
        tables, charts as stored (docs/media.md). Images and other media are not merged across ranks:
        every rank's own value is kept. ``step`` (one step), ``steps`` (several) and ``start``/``end``
        (inclusive) limit what is read; ranks without a value there are left out."""
        want = _steps_arg(step) if step is not None else _steps_arg(steps)
        values = self._api._reader.group_values(self._record.id, key, want, start, end)
        rank_of = {r.id: r.rank for r in self._api._reader.runs(self._record.id)}
        out: dict[int, list[tuple[int, Any]]] = {}
        for rid, (st, vals) in values.items():
            rank = rank_of.get(rid)
            if rank is not None:
                out.setdefault(rank, []).extend(zip(st.tolist(), vals))
        return {r: sorted(v, key=lambda sv: sv[0]) for r, v in sorted(out.items())}

    def histograms(
        self, key: str, rank: int | None = None, start: int | None = None, end: int | None = None, steps: Any = None
    ) -> list[tuple[int, dict]]:
        """The group's histogram of ``key`` at each step: ``[(step, {"_type": "histogram", "bins", "values",
        "ranks"})]``, the ranks' histograms of that step merged by
        :func:`grouping.histogram.merge_histograms` (bins summed where every rank used the same edges,
        re-binned otherwise; docs/media.md), ``ranks`` the ranks merged. With ``rank=`` that rank's own
        histograms. Values that are not histograms (e.g. an ``error`` value) are left out."""
        from grouping.errors import GroupingError
        from grouping.histogram import merge_histograms

        per_rank = self.media(key, start=start, end=end, steps=steps)
        if rank is not None:
            per_rank = {rank: per_rank.get(rank, [])}
        by_step: dict[int, list[tuple[int, dict]]] = {}
        for r, values in per_rank.items():
            for st, v in values:
                if isinstance(v, dict) and v.get("_type") == "histogram" and "bins" in v and "values" in v:
                    by_step.setdefault(st, []).append((r, v))
        out = []
        for st in sorted(by_step):
            hs = by_step[st]
            try:
                merged = merge_histograms([h for _, h in hs])
            except GroupingError:  # a malformed one among them: merge the others
                hs = [(r, h) for r, h in hs if _valid_histogram(h)]
                if not hs:
                    continue
                merged = merge_histograms([h for _, h in hs])
            merged["ranks"] = [r for r, _ in hs]
            out.append((st, merged))
        return out

    # ------------------------------------------------------------ system metrics (docs/system.md)

    def system(self) -> dict[str, dict[str, np.ndarray]]:
        """Host samples (``host.*``, ``gpu.<i>.*``) of the nodes that ran the group's ranks, while they did:
        node → float64 columns with ``_timestamp``, NaN where a sample had no value."""
        return self._api._reader.group_system(self._record.id)

    def system_history(self, key: str, interval: float | None = None) -> dict[str, np.ndarray]:
        """Group rows of a rank system metric (``proc.cpu_percent``, ``gpu.util_percent``): the fields of
        :meth:`history` per sampling interval (``step`` = interval index, ``_timestamp`` its start time),
        reduced over the ranks like any key (rankwise/_system.py; ``interval`` defaults to the median
        spacing of the samples)."""
        from rankwise._system import group_rows

        reader = self._api._reader
        per_rank = {r.rank: reader.run_system(r.id) for r in reader.runs(self._record.id)}
        try:
            return group_rows(per_rank, key, self.world_size, interval)
        except ValueError as exc:
            raise InvalidArgumentError(f"system_history(interval=...): {exc}") from None

    def run(self, rank: int | None = None, name: str | None = None) -> RunView:
        for r in self.runs:
            if (rank is not None and r.rank == rank) or (name is not None and r.name == name):
                return r
        raise NotFound(f"group {self.name!r} has no run with rank={rank!r} name={name!r}")


class RunView:
    """One rank's run as stored: identity, state, summary, config, history."""

    def __init__(self, api: Api, group: Group, record: Any):
        self._api = api
        self._group = group
        self._record = record

    @property
    def group(self) -> Group:
        return self._group

    def __repr__(self) -> str:
        return f"<RunView {self.group.name}/{self.name} rank={self.rank} {self.state} step={self.step}>"

    name = property(lambda self: self._record.name)
    rank = property(lambda self: self._record.rank)
    local_rank = property(lambda self: self._record.local_rank)
    node = property(lambda self: self._record.node)
    pid = property(lambda self: self._record.pid)
    state = property(lambda self: self._record.state)
    exit_code = property(lambda self: self._record.exit_code)
    summary = property(lambda self: dict(self._record.summary))
    config = property(lambda self: dict(self._record.config))
    meta = property(lambda self: dict(self._record.meta))
    step = property(lambda self: self._record.step)
    rows = property(lambda self: self._record.rows)
    late_updates = property(lambda self: self._record.late)
    incarnations = property(lambda self: self._record.incarnations)
    created = property(lambda self: self._record.created)
    finished_at = property(lambda self: self._record.finished)
    runtime = property(lambda self: self._record.runtime)
    id = property(lambda self: self._record.run_key)

    @property
    def exception(self) -> dict[str, str] | None:
        """Why a failed run failed, as its process saw it: ``{"type", "message", "traceback"}`` (and
        ``"thread"`` when the exception ended a thread), None when it finished, crashed without a word
        (killed) or its process raised nothing (``sys.exit(1)``)."""
        found = self._record.meta.get("exception")
        return dict(found) if isinstance(found, dict) else None

    @property
    def alerts(self) -> list[dict[str, Any]]:
        """This rank's alerts (``Group.alerts`` with its rank), newest last."""
        return [a for a in self._group.alerts if a["rank"] == self.rank]

    def keys(self) -> list[str]:
        return self._api._reader.run_keys(self._record.id)

    def media(self, key: str, start: int | None = None, end: int | None = None) -> list[tuple[int, Any]]:
        """The rich values of ``key`` over steps, ``[(step, value)]``: media references (``path`` relative
        to ``Api.media_root``; open with ``Api.open_media(value)``), histograms, tables, charts, plotly
        figures, lists of media, as stored (docs/media.md). Plain numbers and text are left out. Reads only
        this key's chunks (within ``start``/``end`` when given)."""
        steps, values = self._api._reader.run_values(self._record.id, key, None, start, end)
        return [(s, v) for s, v in zip(steps.tolist(), values) if media_type(v) is not None]

    def history_arrays(self, keys: list[str] | None = None) -> dict[str, tuple[np.ndarray, Any]]:
        """Per key: (steps, values), values a numpy array for numbers, else a list. Includes _timestamp/_runtime."""
        want = None if keys is None else list(keys) + list(ROW_KEYS)
        return self._api._reader.run_history(self._record.id, want)

    @property
    def coalesced_rows(self) -> tuple[int, int]:
        """(logged rows that were coalesced, spans they became): (0, 0) when the run stayed in budget."""
        tally = self._record.meta.get("coalesced") or {}
        return int(tally.get("rows", 0)), int(tally.get("spans", 0))

    def coalesced(self, key: str | None = None) -> dict[str, Any]:
        """Rows the agent coalesced over the run's row budget: per key (or for ``key``) arrays ``step``
        (the last step of each span, where ``history()`` has the span's row), ``first_step``, ``count``
        (values the span stands for), ``last``, ``mean``, ``min`` and ``max``. In ``history()`` such rows
        carry ``_first_step`` and ``_rows``; their key values are the span's last values."""
        spans = self._api._reader.run_spans(self._record.id, None if key is None else [key])
        return spans.get(key, {}) if key is not None else spans

    def step_metric(self, key: str) -> str | None:
        """The step metric ``key`` was defined with (``define_metric(key, step_metric=M)``; globs match),
        None when it has none (its x axis is ``_step``)."""
        from rankwise._step_metric import step_metric_of

        return step_metric_of(self._record.meta, key)

    def step_metrics(self) -> dict[str, list[str]]:
        """Every step metric the run defined → the keys (or globs) defined with it."""
        from rankwise._step_metric import step_metrics

        return step_metrics([self._record.meta])

    def history(self, keys: list[str] | None = None, pandas: bool = False, x_axis: str | None = None) -> Any:
        """Full-resolution rows (dicts with _step, _timestamp, _runtime and the keys), ordered by step.

        ``x_axis``: a step metric (e.g. ``"train/global_step"``): only rows that have its value, or take the
        latest earlier one as wandb's ``step_sync`` does for keys defined with ``step_metric=x_axis``
        (:mod:`rankwise._step_metric`), each with that value. With ``pandas=True`` a DataFrame (pandas must
        be installed)."""
        if x_axis is not None and x_axis not in ("_step", *ROW_KEYS):
            from rankwise._step_metric import pair_rows

            scan = self.scan_history(None if keys is None else [*keys, x_axis])
            rows = list(pair_rows(scan, x_axis, self._record.meta, keys))
        else:
            rows = list(self.scan_history(keys))
        if pandas:
            try:
                import pandas as pd
            except ImportError as exc:
                raise InvalidArgumentError("history(pandas=True) needs pandas: pip install pandas") from exc
            return pd.DataFrame(rows)
        return rows

    def system_arrays(self) -> dict[str, np.ndarray]:
        """This rank's system samples as float64 columns (``_timestamp``, ``proc.*``, ``gpu.*``), by time."""
        return self._api._reader.run_system(self._record.id)

    def system(self, pandas: bool = False) -> Any:
        """This rank's system samples (docs/system.md) as rows like :meth:`history`'s: dicts with
        ``_timestamp`` and the keys sampled then, ordered by time; ``pandas=True``: a DataFrame."""
        from rankwise._system import rows_of

        columns = self.system_arrays()
        if pandas:
            try:
                import pandas as pd
            except ImportError as exc:
                raise InvalidArgumentError("system(pandas=True) needs pandas: pip install pandas") from exc
            return pd.DataFrame(columns)
        return rows_of(columns)

    def scan_history(self, keys: list[str] | None = None) -> Iterator[dict[str, Any]]:
        columns = self.history_arrays(keys)
        ts = columns.pop("_timestamp", (np.empty(0, np.int64), np.empty(0)))
        rt = columns.pop("_runtime", (np.empty(0, np.int64), np.empty(0)))
        rows: dict[int, dict[str, Any]] = {}
        for step, t in zip(ts[0].tolist(), np.asarray(ts[1]).tolist()):
            rows[step] = {"_step": step, "_timestamp": t}
        for step, r in zip(rt[0].tolist(), np.asarray(rt[1]).tolist()):
            rows.setdefault(step, {"_step": step})["_runtime"] = r
        for key, (steps, values) in columns.items():
            vals = values.tolist() if isinstance(values, np.ndarray) else values
            for step, v in zip(steps.tolist(), vals):
                row = rows.get(step)
                if row is None:
                    row = rows[step] = {"_step": step}
                row[key] = v
        if keys is not None:
            wanted = set(keys)
            for step in sorted(rows):
                row = rows[step]
                if wanted & row.keys():
                    yield row
            return
        for step in sorted(rows):
            yield rows[step]
