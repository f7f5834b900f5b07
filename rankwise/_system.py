"""System samples as the views give them (rankwise/_views.py ``RunView.system``, ``Group.system_history``).

A rank's samples are float64 columns (agent/store/system_chunks.py); as rows they are dicts like
``RunView.history()``'s, with ``_timestamp`` and the keys sampled at that time (a NaN, "not sampled",
is left out of its row).

The group view of a rank metric (``proc.cpu_percent``, ``gpu.util_percent``) is made like any group row
(grouping/reducers.py ``reduce_points``, then ``finalize``): the "step" of a sample is its interval index,
``floor(_timestamp / interval)``. Samples of one agent tick share one time, so every rank of a node lands
in the same bucket; nodes tick on their own clocks, so their samples of one interval land in the same
bucket as long as the interval is longer than their phase difference (the latest sample of a rank in a
bucket wins, as a late update does). ``interval`` defaults to the median spacing of the group's samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from grouping import finalize, reduce_points


def rows_of(columns: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Columns → rows ordered by time, NaN values left out."""
    if not columns:
        return []
    keys = list(columns)
    values = [columns[k].tolist() for k in keys]
    out = []
    for i in range(len(columns["_timestamp"])):
        out.append({k: v[i] for k, v in zip(keys, values, strict=True) if v[i] == v[i]})
    return out


def median_interval(series: list[np.ndarray]) -> float | None:
    """The median spacing of the sample times of the series (each a rank's ``_timestamp``)."""
    gaps = [np.diff(np.unique(t)) for t in series if len(t) > 1]
    gaps = [g for g in gaps if len(g)]
    if not gaps:
        return None
    return float(np.median(np.concatenate(gaps)))


def group_rows(
    per_rank: dict[int, dict[str, np.ndarray]], key: str, expected: int, interval: float | None
) -> dict[str, np.ndarray]:
    """Group rows of a rank metric ``key`` over the ranks' samples (rank → columns): the fields of
    ``Group.history`` plus ``_timestamp`` (the start of each interval) and ``interval`` (the bucket width)."""
    if interval is None:
        interval = median_interval([c["_timestamp"] for c in per_rank.values() if "_timestamp" in c]) or 1.0
    if not interval > 0:
        raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
    steps, ranks, values = [], [], []
    for rank, cols in sorted(per_rank.items()):
        v = cols.get(key)
        if v is None:
            continue
        ok = ~np.isnan(v)
        steps.append(np.floor(cols["_timestamp"][ok] / interval).astype(np.int64))
        ranks.append(np.full(int(ok.sum()), rank, np.int64))
        values.append(v[ok])
    if not steps:
        p = reduce_points(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
    else:
        # each rank's samples are in time order: within a bucket its later sample wins (arrival order)
        p = reduce_points(np.concatenate(steps), np.concatenate(ranks), np.concatenate(values))
    rows = finalize(p, expected)
    rows["_timestamp"] = rows["step"].astype(np.float64) * interval
    rows["interval"] = np.full(len(rows["step"]), interval)
    return rows
