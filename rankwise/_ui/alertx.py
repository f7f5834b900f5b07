"""Where an alert's marker goes on a chart's x axis (``/api/.../alerts?x=A``, docs/ui.md): alerts carry the
step they are about, and a chart on another axis needs that step's x there, the same x the series endpoint
(:mod:`rankwise._ui.charts`) gives the step's group row:

- ``step``: the step;
- ``time`` and ``rel``: seconds since the group's t0 (the earliest first ``_timestamp`` of its ranks) of the
  moment the step was complete on every rank (the latest rank's ``_timestamp`` at that step);
- ``metric:M``: the group mean of ``M`` at that step or, for a key defined with ``step_metric=M``
  (wandb's step_sync, :mod:`rankwise._step_metric`), at the latest earlier step that has one.

A step without an x on the axis (no ``_timestamp`` there, no value of ``M`` yet) gives ``None``: no marker.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rankwise.errors import ApiError

AXES = "step, time, rel, metric:<key>"


def check_axis(axis: str) -> None:
    if axis not in ("step", "time", "rel") and not axis.startswith("metric:"):
        raise ApiError(400, f"x={axis!r} is not one of {AXES} (the chart's x axis, as for series)")


def with_x(data: Any, g: Any, alerts: list[dict[str, Any]], axis: str) -> list[dict[str, Any]]:
    """``alerts`` each with ``"x"``: the x of its step on ``axis`` (None when it has no step or no x there)."""
    check_axis(axis)
    steps = [a.get("step") for a in alerts]
    known = [i for i, s in enumerate(steps) if isinstance(s, int)]
    xs: list[float | None] = [None] * len(alerts)
    if axis == "step":
        for i in known:
            xs[i] = steps[i]
    elif axis in ("time", "rel"):
        stamps = data.cache.rank_rows(g.id, "_timestamp")
        firsts = [float(v[0]) for _, v in stamps.values() if len(v)]
        t0 = min(firsts) if firsts else g.created
        t_steps, t_done = data.cache.step_times(g.id)
        for i in known:
            at = np.searchsorted(t_steps, steps[i])
            if at < len(t_steps) and t_steps[at] == steps[i]:
                xs[i] = float(t_done[at] - t0)
    else:
        xs = _on_metric(data, g, alerts, known, axis[len("metric:") :])
    return [{**a, "x": x} for a, x in zip(alerts, xs)]


def _on_metric(data: Any, g: Any, alerts: list[dict[str, Any]], known: list[int], metric: str) -> list[float | None]:
    from rankwise._step_metric import syncs, x_of

    xs: list[float | None] = [None] * len(alerts)
    rows = data.cache.group_rows(g.id, metric)
    if len(rows["step"]) == 0:
        return xs
    metas = [r.meta for r in data.runs(g)]
    for i in known:
        key = alerts[i].get("key")
        sync = bool(key) and any(syncs(m, key, metric) for m in metas)
        ok, x = x_of(np.array([alerts[i]["step"]]), rows["step"], rows["mean"], sync)
        if ok[0] and np.isfinite(x[0]):
            xs[i] = float(x[0])
    return xs
