"""``rankwise tail GROUP``: the latest group row of every key, refreshed until the group finishes.

On a terminal the table is redrawn in place; into a pipe or file a new table is
printed whenever the group changed. ``--once`` prints it once (for scripts).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from rankwise._lookup import check_keys, find_group
from rankwise._settle import Settling
from rankwise._table import ago, group_table, safe, table
from rankwise.errors import InvalidArgumentError

CLEAR = "\x1b[H\x1b[2J"


def render(g: Any, keys: list[str] | None = None) -> str:
    """Header (ranks, states, progress of the slowest and fastest rank) and the per-key table of ``rankwise show``."""
    runs = g.runs
    states: dict[str, int] = {}
    for r in runs:
        states[r.state] = states.get(r.state, 0) + 1
    lines = [
        f"group {safe(g.project)}/{safe(g.name)}: {len(runs)} of {g.world_size} ranks, {g.state} "
        f"({', '.join(f'{v} {k}' for k, v in sorted(states.items()))}); updated {ago(g.updated)}"
    ]
    if runs:
        slow = min(runs, key=lambda r: (r.step, r.rank))
        fast = max(runs, key=lambda r: (r.step, -r.rank))
        if slow.step == fast.step:
            lines.append(f"progress: every rank has committed {slow.step} steps")
        else:
            lines.append(
                f"progress: rank {slow.rank} is behind at {slow.step} steps, rank {fast.rank} ahead at {fast.step}"
            )
    headers, rows = group_table(g, keys)
    lines.append("")
    lines.append(table(headers, rows) if rows else "(no group rows yet)")
    return "\n".join(lines)


def changed_since(last: str | None, text: str) -> bool:
    """More than the "updated Ns ago" of the first line changed."""
    return text.split("\n", 1)[1:] != (last or "").split("\n", 1)[1:]


def tail(
    api: Any,
    project: str | None,
    name: str | None,
    keys: list[str] | None = None,
    once: bool = False,
    interval: float = 1.0,
    out: TextIO | None = None,
) -> int:
    """Print until the group is no longer running (or once); Ctrl-C ends it early."""
    if not interval > 0:
        raise InvalidArgumentError(f"--interval {interval} must be a positive number of seconds")
    out = out or sys.stdout
    g = find_group(api, project, name)
    if g.state != "running":  # a running group may log a key it has not logged yet
        check_keys(g, keys)
    project, name = g.project, g.name  # pin the group: "the newest" must not change under a live view
    tty = out.isatty()
    last: str | None = None
    settling = Settling()
    while True:
        text = render(g, keys)
        if last is None or changed_since(last, text) or tty:
            out.write((CLEAR if tty and last is not None else "") + text + "\n" + ("" if tty or once else "\n"))
            out.flush()
            last = text
        if once:
            return 0
        if g.state == "running":
            settling.running()
        elif settling.stopped(g.sealed_through, g.runs):
            return 0
        time.sleep(interval)
        g = api.group(project, name)
