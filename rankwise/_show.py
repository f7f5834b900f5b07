"""``rankwise runs``, ``rankwise show`` and ``rankwise artifacts``: what the store holds, as tables (or JSON
with ``--json``). ``runs`` lists groups newest first (or one group's runs), ``show`` prints a group's
per-key table over its ranks, ``artifacts`` the artifact versions with their aliases."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from rankwise._lookup import check_keys, check_project, did_you_mean, find_group
from rankwise._table import ago, duration, group_table, say, table

# --json writes strict JSON (RFC 8259 has no NaN or Infinity): a non-finite number is written as the string
# "NaN", "Infinity" or "-Infinity" (what float() and JavaScript's Number() read back), a missing one as null.


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (nested in dicts, lists, tuples) replaced by its string name."""
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def _dumps(obj: Any) -> str:
    return json.dumps(json_safe(obj), indent=1, default=str, allow_nan=False)


def _api(args: argparse.Namespace) -> Any:
    from rankwise._api import Api

    return Api(args.store)


def _group(api: Any, args: argparse.Namespace) -> Any:
    return find_group(api, args.project, args.group)


def cmd_runs(args: argparse.Namespace) -> int:
    api = _api(args)
    if args.group:
        g = _group(api, args)
        runs = g.runs
        if args.json:
            say(_dumps([_run_json(r) for r in runs]))
            return 0
        say(f"{g.project}/{g.name}: {len(runs)} of {g.world_size} ranks, {g.state}")
        rows = [
            [
                r.rank,
                r.name,
                r.node,
                r.state,
                r.exit_code,
                r.step,
                r.rows,
                _coalesced(r),
                duration(r.runtime),
                ago(r.created),
            ]
            for r in runs
        ]
        say(table(["rank", "name", "node", "state", "exit", "steps", "rows", "coalesced", "runtime", "started"], rows))
        return 0
    check_project(api, args.project)
    groups = api.groups(args.project)
    if args.json:
        say(_dumps([_group_json(g) for g in groups]))
        return 0
    if not groups:
        say(f"no groups in {api.path}")
        return 0
    rows = []
    for g in groups[: args.limit]:
        runs = g.runs
        states: dict[str, int] = {}
        for r in runs:
            states[r.state] = states.get(r.state, 0) + 1
        steps = max((r.step for r in runs), default=0)
        rows.append(
            [
                g.project,
                g.name,
                f"{len(runs)}/{g.world_size}",
                " ".join(f"{v} {k}" for k, v in sorted(states.items())),
                steps,
                len({r.node for r in runs}),
                ago(g.created),
                duration(max((r.runtime for r in runs), default=0)),
            ]
        )
    say(table(["project", "group", "ranks", "states", "steps", "nodes", "started", "duration"], rows))
    return 0


def _coalesced(r: Any) -> str:
    """'12000 → 40 spans' when the agent coalesced rows over the run's budget, else '-'."""
    rows, spans = r.coalesced_rows
    return f"{rows} → {spans} spans" if rows else "-"


def _run_json(r: Any) -> dict[str, Any]:
    return {
        "name": r.name,
        "rank": r.rank,
        "node": r.node,
        "state": r.state,
        "exit_code": r.exit_code,
        "exception": r.exception,
        "step": r.step,
        "rows": r.rows,
        "coalesced": dict(zip(("rows", "spans"), r.coalesced_rows)),
        "runtime": r.runtime,
        "summary": r.summary,
        "config": r.config,
    }


def _group_json(g: Any) -> dict[str, Any]:
    return {"project": g.project, "name": g.name, "world_size": g.world_size, "state": g.state, "created": g.created}


def cmd_show(args: argparse.Namespace) -> int:
    api = _api(args)
    g = _group(api, args)
    keys = args.keys.split(",") if args.keys else None
    check_keys(g, keys)
    headers, rows = group_table(g, keys)
    if args.json:
        say(_dumps({"group": _group_json(g), "keys": [dict(zip(headers[:-1], r[:-1])) for r in rows]}))
        return 0
    runs = g.runs
    states: dict[str, int] = {}
    for r in runs:
        states[r.state] = states.get(r.state, 0) + 1
    nodes = sorted({r.node for r in runs})
    say(
        f"group {g.project}/{g.name}: {len(runs)} of {g.world_size} ranks on {len(nodes)} node(s), "
        + ", ".join(f"{v} {k}" for k, v in sorted(states.items()))
        + (f", {g.late_rows} late point(s)" if g.late_rows else "")
    )
    say()
    say(table(headers, rows) if rows else "(no group rows yet)")
    spans = [(r.name, *r.coalesced_rows) for r in runs if r.coalesced_rows[0]]
    if spans:
        say()
        say(
            "coalesced over the row budget (values kept as last/mean/min/max/count per span): "
            + ", ".join(f"{name} {n} rows → {k} spans" for name, n, k in spans)
        )
    say()
    say(f"data: {api.path}")
    return 0


def cmd_artifacts(args: argparse.Namespace) -> int:
    """Artifact versions of a project (all projects without one): name, version, aliases, type, files, size."""
    from rankwise._artifact_store import ArtifactStore
    from rankwise._stores import chosen_store, media_root_of

    store = ArtifactStore(media_root_of(chosen_store(args.store)))
    rows = [m for p, n in store.names(args.project) for m in store.versions(p, n)]
    if args.json:
        say(
            json.dumps(
                [
                    {
                        k: m.get(k)
                        for k in (
                            "project",
                            "name",
                            "version",
                            "aliases",
                            "type",
                            "digest",
                            "created",
                            "description",
                            "metadata",
                            "entries",
                        )
                    }
                    for m in rows
                ],
                indent=1,
                default=str,
            )
        )
        return 0
    if not rows:
        hint = did_you_mean(args.project, [p for p, _ in store.names(None)]) if args.project else ""
        say(f"no artifacts{' in project ' + repr(args.project) if args.project else ''} in {store.root}{hint}")
        return 1
    body = [
        [
            m.get("project"),
            f"{m['name']}:{m['version']}",
            ",".join(m["aliases"]),
            m["type"],
            len(m["entries"]),
            sum(e.get("size", 0) for e in m["entries"].values()),
            ago(m["created"]),
        ]
        for m in rows
    ]
    say(table(["project", "artifact", "aliases", "type", "files", "bytes", "created"], body))
    return 0
