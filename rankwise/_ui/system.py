"""The system endpoint: ``/api/projects/P/groups/G/system[?width=400]`` (documented in docs/ui.md), the
system metrics the agent sampled for a group (agent-side sampling: issue 13; read through
``Reader.run_system`` and ``Reader.group_system``) reduced for the page's "System" section.

Per-rank keys (``proc.*``, ``gpu.*``): each rank's samples are averaged per time bucket (``width`` equal
buckets over the group's sample times), then mean, min and max are taken over the ranks with a sample in
the bucket: the band and mean of the other charts, with wall time as x. Node keys (``host.*``): one line per
node, its samples averaged per bucket. A store without system data (or a reader without those methods)
gives empty lists, and the page hides the section.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rankwise._ui import series as S
from rankwise._ui.data import UIData
from rankwise._ui.params import Params, numbers

TIME = "_timestamp"
DEFAULT_WIDTH, MAX_WIDTH = 400, 5000


def _bucket_means(t: np.ndarray, v: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean of the finite values per bucket (NaN where a bucket has none)."""
    n = len(edges) - 1
    ok = np.isfinite(v) & np.isfinite(t)
    b = S.bucket_of(t[ok], edges)
    sums = np.bincount(b, weights=v[ok], minlength=n)
    counts = np.bincount(b, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _numeric(cols: dict[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for k, v in cols.items():
        a = np.asarray(v)
        if a.dtype.kind in "iufb":
            out[k] = a.astype(np.float64, copy=False)
    return out


def _read(
    data: UIData, g: Any, runs: list
) -> tuple[dict[int, dict[str, np.ndarray]], dict[str, dict[str, np.ndarray]]]:
    reader = data.api._reader
    per_rank: dict[int, dict[str, np.ndarray]] = {}
    run_system = getattr(reader, "run_system", None)
    if run_system is not None:
        for r in runs:
            cols = _numeric(run_system(r.id) or {})
            if len(cols.get(TIME, ())):
                per_rank[r.rank] = cols
    nodes: dict[str, dict[str, np.ndarray]] = {}
    group_system = getattr(reader, "group_system", None)
    if group_system is not None:
        for node, cols in sorted((group_system(g.id) or {}).items()):
            cols = _numeric(cols)
            if len(cols.get(TIME, ())):
                nodes[str(node)] = cols
    return per_rank, nodes


def reduce_system(
    per_rank: dict[int, dict[str, np.ndarray]], nodes: dict[str, dict[str, np.ndarray]], width: int
) -> dict[str, Any]:
    """The response of :func:`system` from the columns read (pure numpy: tested without a store)."""
    times = [c[TIME] for c in (*per_rank.values(), *nodes.values())]
    if not times:
        return {"t0": None, "ranks": [], "nodes": []}
    lo = float(min(np.nanmin(t) for t in times))
    hi = float(max(np.nanmax(t) for t in times))
    edges = S.bucket_edges(lo, hi, width)
    centres = (edges[:-1] + edges[1:]) / 2
    rank_keys = sorted({k for c in per_rank.values() for k in c if k != TIME})
    ranks_out = []
    for key in rank_keys:
        rows = np.array([_bucket_means(c[TIME], c[key], edges) for c in per_rank.values() if key in c])
        count = np.isfinite(rows).sum(axis=0)
        keep = count > 0
        with np.errstate(invalid="ignore"):
            clean = np.where(np.isfinite(rows), rows, 0.0)
            mean = clean.sum(axis=0) / np.maximum(count, 1)
            lo_v = np.where(np.isfinite(rows), rows, np.inf).min(axis=0)
            hi_v = np.where(np.isfinite(rows), rows, -np.inf).max(axis=0)
        ranks_out.append(
            {
                "key": key,
                "t": numbers(centres[keep]),
                "mean": numbers(mean[keep]),
                "min": numbers(lo_v[keep]),
                "max": numbers(hi_v[keep]),
                "count": count[keep].tolist(),
                "ranks": sorted(r for r, c in per_rank.items() if key in c),
            }
        )
    nodes_out = []
    for node, cols in nodes.items():
        keys = []
        for key in sorted(k for k in cols if k != TIME):
            means = _bucket_means(cols[TIME], cols[key], edges)
            keep = np.isfinite(means)
            keys.append({"key": key, "t": numbers(centres[keep]), "values": numbers(means[keep])})
        nodes_out.append({"node": node, "keys": keys})
    return {"t0": lo, "ranks": ranks_out, "nodes": nodes_out}


def system(data: UIData, p: Params, project: str, name: str) -> dict[str, Any]:
    """``{"t0", "ranks": [{key, t, mean, min, max, count, ranks}], "nodes": [{node, keys: [{key, t, values}]}]}``;
    ``t`` in seconds since the epoch (bucket centres)."""
    width = p.int("width", DEFAULT_WIDTH, 1, MAX_WIDTH)
    g = data.group(project, name)
    per_rank, nodes = _read(data, g, data.runs(g))
    return reduce_system(per_rank, nodes, width)
