"""The project page's table (docs/ui.md "Project page"): every group of a project with its state, ranks,
steps, duration, start, the summary keys its runs have, chosen summary metrics and its config, so the page
(rankwise/_ui/static/project.js) sorts, filters and picks groups to compare without one call per group.

A group's metric is the mean over its ranks of each rank's summary value of that key, over the ranks whose
value is a finite number (a rank that never logged the key, or whose last value was NaN/±inf, is left
out and counted in ``metrics_missing``): the group rows the charts draw are means over ranks too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from agent.store.base import GroupRecord, RunRecord
from rankwise._ui.data import UIData
from rankwise._ui.params import Params
from rankwise.errors import ApiError

MAX_METRICS = 50


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def summary_keys(runs: list[RunRecord]) -> set[str]:
    """The summary keys with a number (finite or not) in at least one run."""
    return {str(k) for r in runs for k, v in r.summary.items() if _numeric(v)}


def metric(runs: list[RunRecord], key: str) -> tuple[float | None, int]:
    """(mean over the ranks whose summary value of ``key`` is a finite number or None, ranks left out)."""
    values = [float(r.summary[key]) for r in runs if _numeric(r.summary.get(key))]
    finite = [v for v in values if math.isfinite(v)]
    return (math.fsum(finite) / len(finite) if finite else None), len(runs) - len(finite)


Summarize = Callable[[UIData, GroupRecord, list[RunRecord]], dict[str, Any]]


def table(
    data: UIData, p: Params, project: str, summarize: Summarize, config_diff: Callable[[list[dict]], dict]
) -> dict[str, Any]:
    """``/api/projects/{project}/table[?metrics=a,b]``: the groups (newest first) with their metrics.

    ``summarize`` and ``config_diff`` are the group endpoint's (rankwise/_ui/api.py, which routes here):
    passed in, so a row is the groups endpoint's row and this module does not import the router back.
    The config is the one every rank agrees on (``common``) and the keys that differ between ranks
    (``varies``)."""
    raw = p.str("metrics") or ""
    wanted = [m for m in (s.strip() for s in raw.split(",")) if m]
    if len(wanted) > MAX_METRICS:
        raise ApiError(400, f"metrics: {len(wanted)} keys given; give at most {MAX_METRICS}")
    rows, keys = [], set()
    for g in data.groups(project):
        runs = data.runs(g)
        keys |= summary_keys(runs)
        row = summarize(data, g, runs)
        row["metrics"], row["metrics_missing"] = {}, {}
        for m in wanted:
            row["metrics"][m], row["metrics_missing"][m] = metric(runs, m)
        diff = config_diff([r.config for r in runs])
        row["config"] = {"common": diff["common"], "varies": diff["differs"]}
        rows.append(row)
    unknown = [m for m in wanted if m not in keys]
    if unknown:
        raise ApiError(
            400,
            f"metrics: no summary key {unknown[0]!r} in project {project!r}; keys: {', '.join(sorted(keys)) or 'none'}",
        )
    return {"project": project, "summary_keys": sorted(keys), "metrics": wanted, "groups": rows}
