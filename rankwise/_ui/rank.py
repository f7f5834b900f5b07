"""The rank endpoint: ``/api/projects/P/groups/G/ranks/R[?width=400]`` (documented in docs/ui.md, "Rank
page"), everything the rank page (rankwise/_ui/static/rank.js) shows about one rank's run besides its
charts: the run's record as the group page's runs table has it, why it failed (``RunView.exception`` in
rankwise/_views.py: the exception its process raised, kept in the run's meta), its alerts (rankwise/_ui/alerts.py
filtered by rank), the numeric keys it logged (each a chart drawn from the series endpoint,
rankwise/_ui/charts.py, against the group's band), the media keys it logged, and its own system samples
(``Reader.run_system``) reduced per time bucket like the group's System section (rankwise/_ui/system.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rankwise._ui.alerts import stored_alerts
from rankwise._ui.data import UIData
from rankwise._ui.params import Params, clean
from rankwise._ui.system import DEFAULT_WIDTH, MAX_WIDTH, TIME, reduce_system
from rankwise.errors import ApiError, NotFound


def spans(ranks: list[int]) -> str:
    """Ranks as the message of a miss names them: ``[0, 1, 2, 3, 7]`` → ``"0–3, 7"``."""
    runs: list[list[int]] = []  # [first, last] of each run of consecutive ranks
    for r in sorted(set(ranks)):
        if runs and r == runs[-1][1] + 1:
            runs[-1][1] = r
        else:
            runs.append([r, r])
    return ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in runs)


def parse_rank(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, f"rank {text!r} is not a rank number: use /ranks/<integer>, e.g. /ranks/0") from None


def own_system(data: UIData, run_id: int, width: int) -> dict[str, Any]:
    """This rank's system samples (``proc.*``, ``gpu.*``) averaged per time bucket: ``{"t0", "keys": [{key, t,
    values}]}`` (``t`` epoch seconds); empty for a store without system data."""
    read = getattr(data.api._reader, "run_system", None)
    cols = {}
    for k, v in ((read(run_id) or {}) if read is not None else {}).items():
        a = np.asarray(v)
        if a.dtype.kind in "iufb":
            cols[k] = a.astype(np.float64, copy=False)
    if not len(cols.get(TIME, ())):
        return {"t0": None, "keys": []}
    reduced = reduce_system({0: cols}, {}, width)  # one rank: its bucket means are mean, min and max alike
    return {
        "t0": reduced["t0"],
        "keys": [{"key": k["key"], "t": k["t"], "values": k["mean"]} for k in reduced["ranks"]],
    }


def rank(
    data: UIData, p: Params, project: str, name: str, r: str, *, run_json: Callable[[Any], dict[str, Any]]
) -> dict[str, Any]:
    """The fields of ``run_json`` (the runs table's row: rank, name, node, pid, state, exit_code, step, runtime,
    summary, config, ...) and ``project``, ``group``, ``group_state``, ``world_size``, ``ranks`` (every rank of
    the group), ``exception`` (``{type, message, traceback[, thread]}`` or None), ``alerts`` (this rank's,
    oldest first), ``keys`` (numeric keys it logged: each has group rows), ``media`` (``[{key, type}]`` of
    the media keys it logged) and ``system``. 404 naming the group's ranks when it has no rank ``r``."""
    want = parse_rank(r)
    width = p.int("width", DEFAULT_WIDTH, 1, MAX_WIDTH)
    g = data.group(project, name)
    runs = data.runs(g)
    found = [run for run in runs if run.rank == want]
    if not found:
        have = spans([run.rank for run in runs])
        raise NotFound(f"no rank {want} in group {name} ({f'ranks {have}' if have else 'no ranks yet'})")
    run = found[-1]  # a rank restarted under the same group keeps one record; the newest if ever two
    reader = data.api._reader
    own = set(reader.run_keys(run.id))
    exception = run.meta.get("exception")
    media = []
    for m in data.media_keys(g, runs):
        if m["key"] in own and len(data.value_steps(g, runs, m["key"]).get(run.id, ())):
            media.append({"key": m["key"], "type": m["type"]})
    return {
        **run_json(run),
        "project": g.project,
        "group": g.name,
        "group_state": data.state(g),
        "world_size": g.world_size,
        "ranks": sorted({x.rank for x in runs}),
        "exception": clean(dict(exception)) if isinstance(exception, dict) else None,
        "alerts": [a for a in stored_alerts(data, g.id) if a.get("rank") == want],
        "keys": sorted(own & set(reader.group_key_stats(g.id))),
        "media": media,
        "system": own_system(data, run.id, width),
    }
