"""``rankwise alerts [GROUP]``: a group's alerts (docs/alerts.md), oldest first, as a table or JSON.

Text: one row per alert, time (local), level, kind, rank, key, step and message. ``--json``: the list
``Group.alerts`` returns (rankwise/_views.py), with ``project`` and ``group`` on each. ``--kind`` keeps the
kinds named (comma-separated). ``--follow`` prints one line per alert (one JSON object with ``--json``) and
then new alerts as they are stored, until the group has stopped running (as ``rankwise tail``,
rankwise/_settle.py). A group that does not exist exits 1 naming the closest
names there are.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import time
from typing import Any, TextIO

from agent.alerts.alert import KINDS
from rankwise._lookup import STORE_HELP
from rankwise._settle import Settling
from rankwise._table import safe, say, table
from rankwise.errors import InvalidArgumentError, NotFound

HEADERS = ["time", "level", "kind", "rank", "key", "step", "message"]


def add_parser(sub: Any) -> None:
    """The ``alerts`` subcommand's arguments (rankwise/_cli.py)."""
    sp = sub.add_parser("alerts", help="a group's alerts: NaN, hung, slow and crashed ranks, user alerts")
    sp.add_argument("group", nargs="?", help="a group name (default: newest)")
    sp.add_argument("--store", help=STORE_HELP)
    sp.add_argument("--project", "-p", help="project of the group (needed when a group name is ambiguous)")
    sp.add_argument("--json", action="store_true", help="machine-readable output (a JSON list)")
    sp.add_argument("--kind", help=f"comma-separated kinds to show, of: {', '.join(KINDS)}")
    sp.add_argument("--follow", "-f", action="store_true", help="print new alerts until the group stops running")
    sp.add_argument("--interval", type=float, default=1.0, help="seconds between polls with --follow (default 1)")


def kinds_arg(raw: str | None) -> set[str] | None:
    if raw is None:
        return None
    kinds = {k.strip() for k in raw.split(",") if k.strip()}
    bad = sorted(kinds - set(KINDS))
    if bad or not kinds:
        raise InvalidArgumentError(f"--kind {raw!r}: choose among {', '.join(KINDS)}")
    return kinds


def find_group(api: Any, project: str | None, name: str | None) -> Any:
    """``api.group``, or NotFound naming the closest group names of the store (of ``project`` if given)."""
    try:
        return api.group(project, name)
    except NotFound:
        if name is None:
            raise
    names = sorted({g.name for g in api.groups(project)})
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    where = f" in project {project!r}" if project else ""
    raise NotFound(f"no group named {name!r}{where}{hint}")


def row(alert: dict) -> list[Any]:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(alert["time"]))
    rank = "-" if alert["rank"] is None else str(alert["rank"])
    step = "-" if alert["step"] is None else str(alert["step"])
    cells = [when, alert["level"], alert["kind"], rank, alert["key"] or "-", step, alert["message"]]
    return [safe(str(c)) for c in cells]  # keys and messages come from training scripts: escaped


def render(alerts: list[dict], as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(json.dumps(alerts, indent=1, default=str) + "\n")
    else:
        out.write(table(HEADERS, [row(a) for a in alerts], right=[False] * len(HEADERS)) + "\n")


def render_lines(alerts: list[dict], as_json: bool, out: TextIO) -> None:
    """``--follow``: one line per alert (a JSON object with ``--json``), as they come."""
    for a in alerts:
        out.write((json.dumps(a, default=str) if as_json else "  ".join(row(a))) + "\n")
    out.flush()


def cmd_alerts(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from rankwise._api import Api

    out = out or sys.stdout
    kinds = kinds_arg(args.kind)
    if not args.interval > 0:
        raise InvalidArgumentError(f"--interval {args.interval} must be a positive number of seconds")
    api = Api(args.store)
    g = find_group(api, args.project, args.group)
    project, name = g.project, g.name  # pin it: "the newest" must not change under --follow

    def wanted() -> list[dict]:
        return [dict(a, project=project, group=name) for a in g.alerts if kinds is None or a["kind"] in kinds]

    shown = wanted()
    if not args.follow:
        if not shown and not args.json:
            say(f"no alerts for group {project}/{name}", file=out)
        else:
            render(shown, args.json, out)
        return 0
    render_lines(shown, args.json, out)
    settling = Settling()
    while True:
        time.sleep(args.interval)
        g = api.group(project, name)
        now = wanted()
        if len(now) > len(shown):
            render_lines(now[len(shown) :], args.json, out)
            shown = now
        if g.state == "running":
            settling.running()
        elif settling.stopped(g.sealed_through, g.runs):
            return 0
