"""The JSON API under ``/api`` (documented in docs/ui.md): routing, and the project and group endpoints
(the chart endpoints are in :mod:`rankwise._ui.charts`). Pure functions of the store, no sockets.

Every handler takes the :class:`UIData`, the query's parameters and the path's
names, and returns something ``json.dumps`` can write; it raises
:class:`ApiError` for an HTTP error (404 unknown project, group or key; 400 a
bad parameter).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

from agent.errors import StoreError
from agent.store.base import GroupRecord, RunRecord
from rankwise._ui.alerts import alerts
from rankwise._ui.charts import series, stragglers
from rankwise._ui.data import UIData
from rankwise._ui.media import histograms, media, with_urls
from rankwise._ui.params import Params, clean
from rankwise._ui.project import table
from rankwise._ui.rank import rank
from rankwise._ui.system import system
from rankwise.errors import ApiError, NotFound, StoreMissing

# ---------------------------------------------------------------- groups


def group_summary(data: UIData, g: GroupRecord, runs: list[RunRecord]) -> dict[str, Any]:
    states = Counter(r.state for r in runs)
    return {
        "project": g.project,
        "name": g.name,
        "state": data.state(g),
        "world_size": g.world_size,
        "ranks": len(runs),
        "nodes": sorted({r.node for r in runs}),
        "steps": max((r.step for r in runs), default=0),
        "created": g.created,
        "updated": max([g.updated, *(r.updated for r in runs)]),
        "duration": max((r.runtime for r in runs), default=0.0),
        "states": dict(sorted(states.items())),
        "late_rows": g.late_rows,
        "sealed_through": g.sealed_through,
    }


def signature(g: GroupRecord, runs: list[RunRecord]) -> tuple:
    """Changes whenever the agent commits anything for the group (a row, a seal, a state)."""
    return (g.updated, g.sealed_through, g.late_rows, tuple((r.id, r.updated, r.state, r.step) for r in runs))


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_diff(configs: list[dict]) -> dict[str, Any]:
    """Config keys (nested ones dotted) equal in every run, and the keys that differ or are missing in some."""
    flat = [_flat(c) for c in configs]
    keys = sorted({k for f in flat for k in f})
    common, differs = {}, []
    for k in keys:
        values = [f.get(k, _MISSING) for f in flat]
        if all(v is not _MISSING and v == values[0] for v in values):
            common[k] = clean(values[0])
        else:
            differs.append(k)
    return {"common": common, "differs": differs}


_MISSING = object()


def nonfinite_summary(summary: dict) -> dict[str, str]:
    """The summary keys whose value is NaN or ±inf, spelled "NaN", "inf", "-inf": JSON (and so the summary the
    API sends) writes them as null, and the runs table must tell a NaN loss from a key never logged."""
    out = {}
    for k, v in summary.items():
        if isinstance(v, float) and not math.isfinite(v):
            out[str(k)] = "NaN" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return out


def run_json(r: RunRecord) -> dict[str, Any]:
    return {
        "rank": r.rank,
        "name": r.name,
        "node": r.node,
        "local_rank": r.local_rank,
        "pid": r.pid,
        "state": r.state,
        "exit_code": r.exit_code,
        "step": r.step,
        "rows": r.rows,
        "late_updates": r.late,
        "incarnations": r.incarnations,
        "runtime": r.runtime,
        "created": r.created,
        "finished": r.finished,
        "summary": with_urls(r.summary),
        "summary_nonfinite": nonfinite_summary(r.summary),
        "config": clean(_flat(r.config)),
    }


def projects(data: UIData, p: Params) -> list[dict[str, Any]]:
    groups = data.api._reader.groups()
    out: dict[str, dict[str, Any]] = {}
    for g in groups:  # newest first
        entry = out.setdefault(g.project, {"name": g.project, "groups": 0, "latest": g.created})
        entry["groups"] += 1
    return sorted(out.values(), key=lambda e: e["name"])


def groups(data: UIData, p: Params, project: str) -> list[dict[str, Any]]:
    return [group_summary(data, g, data.runs(g)) for g in data.groups(project)]


def group(data: UIData, p: Params, project: str, name: str) -> dict[str, Any]:
    g = data.group(project, name)
    runs = data.runs(g)
    out = group_summary(data, g, runs)
    stats = data.api._reader.group_key_stats(g.id)
    out["keys"] = [{"key": k, "points": n, "first": lo, "last": hi} for k, (n, lo, hi) in sorted(stats.items())]
    out["media"] = data.media_keys(g, runs)
    from rankwise._step_metric import step_metrics

    out["step_metrics"] = [{"key": m, "for": names} for m, names in step_metrics(r.meta for r in runs).items()]
    # per key, the step metric its define_metric names (when that metric is logged): the page's default x for it
    from rankwise._step_metric import step_metric_of

    for k in out["keys"]:
        m = next(filter(None, (step_metric_of(r.meta, k["key"]) for r in runs)), None)
        k["step_metric"] = m if m in stats and m != k["key"] else None
    out["runs"] = [run_json(r) for r in runs]
    out["config"] = config_diff([r.config for r in runs])
    return out


def project_table(data: UIData, p: Params, project: str) -> dict[str, Any]:
    """The project page's table (rankwise/_ui/project.py) with this module's group rows and config rule."""
    return table(data, p, project, group_summary, config_diff)


# ---------------------------------------------------------------- routing


def index(data: UIData, p: Params) -> dict[str, Any]:
    return {
        "store": data.label,
        "endpoints": [
            "/api/projects",
            "/api/projects/{project}/groups",
            "/api/projects/{project}/groups/{group}",
            "/api/projects/{project}/groups/{group}/series?key=K[&x=step|time|rel|metric:M][&start=][&end=][&width=1000][&ranks=0|1]",
            "/api/projects/{project}/groups/{group}/stragglers[?key=_timestamp][&start=][&end=][&width=200]",
            "/api/projects/{project}/groups/{group}/media?key=K[&step=][&rank=][&steps=1|0]",
            "/api/projects/{project}/groups/{group}/histograms?key=K[&rank=merged|R][&start=][&end=][&width=200]",
            "/api/projects/{project}/groups/{group}/alerts[?x=step|time|rel|metric:M]",
            "/api/projects/{project}/groups/{group}/system[?width=400]",
            "/api/projects/{project}/groups/{group}/ranks/{rank}[?width=400]",
            "/media/{ab}/{sha256}.{ext} (the media files)",
            "/api/projects/{project}/groups/{group}/events (text/event-stream)",
            "/api/projects/{project}/table[?metrics=a,b] (the project page's groups with summary metrics)",
        ],
        "docs": "docs/ui.md",
    }


# (path pattern, handler, known query parameters); "*" matches one path segment (a name)
ROUTES: list[tuple[tuple[str, ...], Callable[..., Any], tuple[str, ...]]] = [
    (("api",), index, ()),
    (("api", "projects"), projects, ()),
    (("api", "projects", "*", "groups"), groups, ()),
    (("api", "projects", "*", "groups", "*"), group, ()),
    (
        ("api", "projects", "*", "groups", "*", "series"),
        series,
        ("key", "x", "start", "end", "width", "ranks", "rank", "digits"),
    ),
    (("api", "projects", "*", "groups", "*", "stragglers"), stragglers, ("key", "start", "end", "width")),
    (("api", "projects", "*", "groups", "*", "media"), media, ("key", "step", "rank", "steps")),
    (("api", "projects", "*", "groups", "*", "histograms"), histograms, ("key", "rank", "start", "end", "width")),
    (("api", "projects", "*", "groups", "*", "alerts"), alerts, ("x",)),
    (("api", "projects", "*", "groups", "*", "system"), system, ("width",)),
    (("api", "projects", "*", "groups", "*", "ranks", "*"), partial(rank, run_json=run_json), ("width",)),
    (("api", "projects", "*", "table"), project_table, ("metrics",)),
]


def match(segments: list[str]) -> tuple[Callable[..., Any], tuple[str, ...], list[str]] | None:
    for pattern, handler, known in ROUTES:
        if len(pattern) == len(segments) and all(p == "*" or p == s for p, s in zip(pattern, segments)):
            return handler, known, [s for p, s in zip(pattern, segments) if p == "*"]
    return None


def call(data: UIData, segments: list[str], query: dict[str, list[str]]) -> tuple[int, Any]:
    """(HTTP status, JSON body) for an ``/api`` path split into decoded segments."""
    found = match(segments)
    if found is None:
        return 404, {"error": f"no such endpoint /{'/'.join(segments)}; see /api", "status": 404}
    handler, known, names = found
    try:
        return 200, handler(data, Params(query, known), *names)
    except ApiError as exc:
        return exc.status, {"error": exc.message, "status": exc.status}
    except StoreMissing as exc:
        return 503, {"error": str(exc), "status": 503}
    except StoreError as exc:  # e.g. the agent has created the file but not yet its tables
        return 503, {"error": str(exc), "status": 503}
    except NotFound as exc:
        return 404, {"error": str(exc), "status": 404}
