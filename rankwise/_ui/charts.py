"""The chart endpoints: ``series`` (one key of a group, reduced to a chart's width without losing a spike)
and ``stragglers`` (per-rank step time or a per-rank key by step bucket, with the slowest ranks)."""

from __future__ import annotations

from typing import Any

import numpy as np

from grouping.timing import is_timing_key, median, pick_timing, unevenness
from rankwise._ui import series as S
from rankwise._ui.data import UIData
from rankwise._ui.params import Params, numbers, step_range
from rankwise._ui.rank import spans
from rankwise.errors import ApiError, NotFound

DEFAULT_WIDTH = 1000
MAX_WIDTH = 20000
# significant digits of per-rank values (``digits=``): the readout shows five, and 64 ranks' lines at full
# precision (~19 characters a value) were 1.8 MB a chart; at six, 0.74 MB (0.33 MB gzipped). 0: as stored.
RANK_DIGITS = 6
# per-rank values one reduced chart sends at most (two per bucket and line): with many ranks the buckets
# shrink below the chart's pixels (64 ranks: 781 buckets) so that a wide chart stays near 400 KB gzipped
# instead of growing with its width (1,400 px: 755 KB); never below MIN_RANK_BUCKETS buckets.
RANK_VALUES = 100_000
MIN_RANK_BUCKETS = 50


def _mode(ranks: np.ndarray) -> int | None:
    ranks = ranks[ranks >= 0]
    return int(np.bincount(ranks).argmax()) if len(ranks) else None


def series(data: UIData, p: Params, project: str, name: str) -> dict[str, Any]:
    """One key of a group for a chart: mean, min, max over ranks (and each rank's values with ``ranks=1``, or
    rank ``r``'s alone with ``rank=r``, at ``digits`` significant digits) over [start, end], at full resolution
    when that is at most two points per bucket, else two rows (the extremes) per bucket; with per-rank lines
    at most ``RANK_VALUES`` of their values (fewer buckets than ``width`` for many ranks)."""
    key = p.str("key")
    if not key:
        raise ApiError(400, "parameter 'key' is required")
    axis = p.str("x", "step")
    metric = axis[len("metric:") :] if axis and axis.startswith("metric:") else None
    if axis not in ("step", "time", "rel") and not metric:
        raise ApiError(
            400, f"x={axis!r} is not one of step, time, rel, metric:<key> (a step metric, e.g. metric:epoch)"
        )
    width = p.int("width", DEFAULT_WIDTH, 0, MAX_WIDTH)
    only = p.int("rank", -1, 0, 2**31 - 1) if "rank" in p.q else None
    with_ranks = p.bool("ranks") or only is not None
    digits = p.int("digits", RANK_DIGITS, 0, 17)
    start, end = step_range(p)
    g = data.group(project, name)
    gid = g.id
    cache = data.cache
    rows = cache.group_rows(gid, key)
    if len(rows["step"]) == 0:
        known = data.api._reader.group_key_stats(gid)
        raise NotFound(f"group {name!r} has no key {key!r}; keys: {', '.join(sorted(known)[:20]) or 'none'}")
    runs = data.runs(g)
    rank_of = {r.id: (r.rank, r.name) for r in runs}
    per_run = cache.rank_rows(gid, key) if with_ranks else {}
    if only is not None:
        per_run = {rid: sv for rid, sv in per_run.items() if rid in _runs_of_rank(runs, only, name)}
    if width and per_run:
        width = min(width, max(MIN_RANK_BUCKETS, RANK_VALUES // (2 * len(per_run))))

    t0 = None
    if axis == "step":
        x = rows["step"]
        cols = rows
        rank_x = dict(per_run)
    elif metric:
        x, cols, rank_x = _on_metric(data, g, runs, key, metric, rows, per_run)
    else:  # time and rel: the same x (seconds since t0); the page labels one as dates, the other as "1m 30s"
        stamps = cache.rank_rows(gid, "_timestamp")
        firsts = [float(v[0]) for _, v in stamps.values() if len(v)]
        t0 = min(firsts) if firsts else g.created
        t_steps, t_done = cache.step_times(gid)
        x, cols = _on_time(rows, t_steps, t_done - t0)
        rank_x = {}
        for rid, (s, v) in per_run.items():
            ts = stamps.get(rid)
            if ts is None:
                continue
            rx, rv = _on_time({"step": s, "v": v}, ts[0], ts[1] - t0)
            rank_x[rid] = (rx, rv["v"])

    lo_all = float(x[0]) if len(x) else 0.0
    hi_all = float(x[-1]) if len(x) else 0.0
    for rx, _ in rank_x.values():
        if len(rx):
            lo_all, hi_all = min(lo_all, float(rx[0])), max(hi_all, float(rx[-1]))
    lo = lo_all if start is None else start
    hi = hi_all if end is None else end
    span = S.in_range(x, lo, hi)
    n = span.stop - span.start
    window = {
        f: cols[f][span]
        for f in ("mean", "min", "max", "count", "min_rank", "max_rank", "std", "nan_count", "nan_rank")
    }
    out: dict[str, Any] = {
        "key": key,
        "axis": axis,
        "x_key": metric,
        "t0": t0,
        "range": [lo, hi],
        "domain": [lo_all, hi_all],
        "points": int(n),
        "expected": g.world_size,
        "min_rank_mode": _mode(window["min_rank"]),
        "max_rank_mode": _mode(window["max_rank"]),
        "nonfinite": int(sum((~np.isfinite(window[f])).sum() for f in ("mean", "min", "max"))),
    }
    if width == 0 or n <= 2 * width:
        out.update(_full(x[span], window, rank_x, rank_of, lo, hi, axis))
    else:
        out.update(_reduced(x, cols, rank_x, rank_of, lo, hi, width))
    for line in out["ranks"] or ():
        line["values"] = numbers(S.significant(line.pop("array"), digits))
    return out


def _runs_of_rank(runs: list, want: int, name: str) -> set[int]:
    """The ids of the runs of rank ``want`` (``rank=``); 404 naming the group's ranks when it has none."""
    ids = {r.id for r in runs if r.rank == want}
    if not ids:
        have = spans([r.rank for r in runs])
        raise NotFound(f"no rank {want} in group {name} ({f'ranks {have}' if have else 'no ranks yet'})")
    return ids


def _on_metric(
    data: UIData, g: Any, runs: list, key: str, metric: str, rows: dict, per_run: dict
) -> tuple[np.ndarray, dict, dict]:
    """The group's rows and each rank's values of ``key`` against the step metric ``metric`` (docs/ui.md):
    a group row's x is the metric's group mean at the same step (every rank logs the same global step; a
    rank that does not log it does not count in the mean), a rank's x its own value of the metric; rows
    without one take the latest earlier value when ``key`` was defined with ``step_metric=metric``
    (wandb's step_sync, :mod:`rankwise._step_metric`), else are left out. Sorted by x."""
    from rankwise._step_metric import syncs

    m_rows = data.cache.group_rows(g.id, metric)
    if len(m_rows["step"]) == 0:
        raise NotFound(f"group {g.name!r} has no numeric key {metric!r} to use as x axis")
    meta_of = {r.id: r.meta for r in runs}
    x, cols = _reindex(rows, m_rows["step"], m_rows["mean"], any(syncs(m, key, metric) for m in meta_of.values()))
    rank_x = {}
    if per_run:
        m_ranks = data.cache.rank_rows(g.id, metric)
        for rid, (s, v) in per_run.items():
            ms = m_ranks.get(rid)
            if ms is not None:
                rx, rv = _reindex({"step": s, "v": v}, ms[0], ms[1], syncs(meta_of.get(rid, {}), key, metric))
                rank_x[rid] = (rx, rv["v"])
    return x, cols, rank_x


def _reindex(
    cols: dict[str, np.ndarray], m_steps: np.ndarray, m_values: np.ndarray, sync: bool
) -> tuple[np.ndarray, dict]:
    """Columns indexed by step re-indexed by a step metric's value (``_step_metric.x_of``), sorted by it."""
    from rankwise._step_metric import x_of

    ok, x = x_of(cols["step"], m_steps, m_values, sync)
    finite = np.isfinite(x)
    idx = np.flatnonzero(ok)[finite]
    names = list(cols)
    out = S.sort_by_x(x[finite], *(cols[f][idx] for f in names))
    return out[0], dict(zip(names, out[1:]))


def _on_time(cols: dict[str, np.ndarray], t_steps: np.ndarray, t_values: np.ndarray) -> tuple[np.ndarray, dict]:
    """Columns indexed by step re-indexed by time (steps without a time dropped), sorted by time."""
    steps = cols["step"]
    pos = np.minimum(np.searchsorted(t_steps, steps), max(len(t_steps) - 1, 0))
    ok = (t_steps[pos] == steps) if len(t_steps) else np.zeros(len(steps), bool)
    x = t_values[pos[ok]] if len(t_steps) else np.empty(0)
    names = list(cols)
    sorted_cols = S.sort_by_x(x, *(cols[f][ok] for f in names))
    return sorted_cols[0], dict(zip(names, sorted_cols[1:]))


def _full(x: np.ndarray, window: dict, rank_x: dict, rank_of: dict, lo: float, hi: float, axis: str) -> dict[str, Any]:
    """Every point of the group series in range. With ranks on the step axis, on the union of everyone's
    steps (None where a series has no point); on the time axis, each rank's points at the nearest of the
    group's own times (``S.snap``: ranks × points, not ranks² × points as on the union of all commit times)."""
    grid = x
    parts = {}
    for rid, (rx, rv) in rank_x.items():
        sl = S.in_range(rx, lo, hi)
        parts[rid] = (rx[sl], rv[sl])
    shared_time_axis = axis != "step" and len(x) > 0  # time or a step metric: ranks snap to the group's x
    if parts and not shared_time_axis:
        grid = np.unique(np.concatenate([x, *(p[0] for p in parts.values())]))
    out: dict[str, Any] = {
        "resolution": "full",
        "buckets": 0,
        "x": numbers(grid),
        "mean": numbers(S.align(grid, x, window["mean"])),
        "min": numbers(S.align(grid, x, window["min"])),
        "max": numbers(S.align(grid, x, window["max"])),
        "std": numbers(S.align(grid, x, window["std"])),
        "count": numbers(S.align(grid, x, window["count"]), integral=True),
        "min_rank": numbers(S.align(grid, x, window["min_rank"]), integral=True),
        "max_rank": numbers(S.align(grid, x, window["max_rank"]), integral=True),
        # ranks whose value was NaN/±inf at the point, and the lowest of them (-1: none); docs/ui.md
        "nan_count": numbers(S.align(grid, x, window["nan_count"]), integral=True),
        "nan_rank": numbers(S.align(grid, x, window["nan_rank"]), integral=True),
    }
    if axis == "step" and grid.dtype.kind == "i":
        out["x"] = grid.tolist()
    place = S.snap if shared_time_axis else S.align
    out["ranks"] = (
        _ranks_json({rid: place(grid, rx, rv) for rid, (rx, rv) in parts.items()}, rank_of) if rank_x else None
    )
    return out


def _reduced(
    x: np.ndarray, cols: dict, rank_x: dict, rank_of: dict, lo: float, hi: float, width: int
) -> dict[str, Any]:
    """Two rows per non-empty bucket of the group series: see :mod:`rankwise._ui.series`."""
    edges = S.bucket_edges(lo, hi, width)
    seg = S.segments(x, edges)
    first, second = S.extremes(cols["mean"], seg)
    xa, xb = x[seg.start], x[seg.stop - 1]
    lows, highs = S.bucket_min(cols["min"], seg), S.bucket_max(cols["max"], seg)
    counts = S.bucket_min(cols["count"].astype(np.float64), seg)
    # per bucket: the most non-finite ranks at one of its steps, and the lowest non-finite rank in it (-1: none)
    bad = S.bucket_max(cols["nan_count"].astype(np.float64), seg)
    first_bad = S.bucket_min(np.where(cols["nan_rank"] < 0, np.inf, cols["nan_rank"]).astype(np.float64), seg)
    first_bad[~np.isfinite(first_bad)] = -1
    both = lambda a, i=False: numbers(S.interleave(a, a), i)  # noqa: E731 - a bucket's two rows share the band
    out: dict[str, Any] = {
        "resolution": "minmax",
        "buckets": width,
        "x": numbers(S.interleave(xa, xb)),
        "mean": numbers(S.interleave(first, second)),
        "min": both(lows),
        "max": both(highs),
        "std": None,
        "count": both(counts, True),
        "min_rank": None,
        "max_rank": None,
        "nan_count": both(bad, True),
        "nan_rank": both(first_bad, True),
    }
    out["ranks"] = (
        _ranks_json({rid: S.place(seg.bucket, rx, rv, edges) for rid, (rx, rv) in rank_x.items()}, rank_of)
        if rank_x
        else None
    )
    return out


def _ranks_json(values: dict[int, np.ndarray], rank_of: dict[int, tuple[int, str]]) -> list[dict[str, Any]]:
    """One line per run, by rank; ``array`` becomes JSON ``values`` once the digits are known (:func:`series`)."""
    out = [
        {"rank": rank_of.get(rid, (-1, "?"))[0], "name": rank_of.get(rid, (-1, "?"))[1], "array": v}
        for rid, v in values.items()
    ]
    return sorted(out, key=lambda r: (r["rank"], r["name"]))


# ---------------------------------------------------------------- stragglers


def pick_metric(data: UIData, gid: int) -> str:
    """The timing that best separates the ranks: commit-to-commit step time, or a per-rank key whose
    name says it is a duration. In synchronous data parallelism every rank waits for the slowest at
    each all-reduce, so commit times are equal and only a compute/data-time key shows the straggler."""
    scores = {
        name: unevenness(data.cache.rank_rows(gid, name))
        for name in data.api._reader.group_key_stats(gid)
        if is_timing_key(name)
    }
    return pick_timing(unevenness(data.cache.step_durations(gid)), scores)


def stragglers(data: UIData, p: Params, project: str, name: str) -> dict[str, Any]:
    """Per-rank step time (from each rank's ``_timestamp``: seconds between its consecutive commits, per
    step) or another key's per-rank values, as mean per step bucket (a heat map), with the slowest ranks.
    ``key=auto`` (the default) picks the timing that best separates the ranks (:func:`pick_metric`)."""
    key = p.str("key") or "auto"
    width = p.int("width", 200, 1, 5000)
    start, end = step_range(p)
    g = data.group(project, name)
    gid = g.id
    auto = key == "auto"
    if auto:
        key = pick_metric(data, gid)
    per_run = data.cache.step_durations(gid) if key == "_timestamp" else data.cache.rank_rows(gid, key)
    if not per_run and key != "_timestamp":
        raise NotFound(f"group {name!r} has no per-rank numeric key {key!r}")
    runs = data.runs(g)
    nothing = (np.empty(0, np.int64), np.empty(0))
    series_of = {r.id: per_run.get(r.id, nothing) for r in runs}
    firsts = [float(s[0]) for s, _ in series_of.values() if len(s)]
    lasts = [float(s[-1]) for s, _ in series_of.values() if len(s)]
    lo = start if start is not None else min(firsts, default=0.0)
    hi = end if end is not None else max(lasts, default=lo)
    hi = max(hi, lo)
    buckets = max(1, min(width, int(hi - lo) + 1))
    edges = S.bucket_edges(lo, hi, buckets)
    ranks = []
    for r in runs:
        s, v = series_of[r.id]
        sl = S.in_range(s, lo, hi)
        vals = v[sl]
        fin = vals[np.isfinite(vals)]
        ranks.append(
            {
                "rank": r.rank,
                "name": r.name,
                "node": r.node,
                "state": r.state,
                "n": int(len(fin)),
                "mean": float(fin.mean()) if len(fin) else None,
                "median": median(fin),
                "max": float(fin.max()) if len(fin) else None,
                "cells": numbers(S.bucket_means(s, v, edges)),
            }
        )
    means = [r["mean"] for r in ranks if r["mean"] is not None]
    typical = median(np.array(means))
    ordered = sorted((r for r in ranks if r["mean"] is not None), key=lambda r: -r["mean"])
    slowest = [
        {
            "rank": r["rank"],
            "name": r["name"],
            "node": r["node"],
            "mean": r["mean"],
            "ratio": (r["mean"] / typical) if typical else None,
        }
        for r in ordered[:3]
    ]
    return {
        "metric": "step_time" if key == "_timestamp" else key,
        "auto": auto,
        "unit": "s" if key == "_timestamp" else None,
        "range": [lo, hi],
        "edges": numbers(edges),
        "median_of_means": typical,
        "ranks": ranks,
        "slowest": slowest,
    }
