"""``nan``: the first step at which a rank logged NaN or ±Inf for a key; one alert per (rank, key).

Read from what each commit wrote (``nc.history``): one vectorised ``np.isfinite`` per float chunk (short
chunks, a commit of many keys, concatenated into one: Python per chunk costs more than numpy), nothing
for integer or boolean chunks, a scan of the numbers of list chunks (mixed columns: rare). Coalesced spans
(dict chunks: agent/ratelimit.py) count when their min, max or last is non-finite; their alert names the
stored row's step and the span's first step in ``details``. Within one commit the lowest step wins, late
rows included; an alert raised is never revised (a later late row below it stays unsaid).

State: the keys already alerted, per run, at most ``MAX_KEYS_PER_RUN`` (then counted as ``suppressed``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.alerts.alert import Alert
from agent.alerts.detectors.base import SKIP_KEYS, Detector

if TYPE_CHECKING:
    from agent.ingest import Ingest
    from agent.nextcommit import NextCommit

MAX_KEYS_PER_RUN = 1000  # a row of 100k keys all NaN at once: 1000 alerts, then a count
SMALL = 256  # float chunks shorter than this are concatenated and checked in one np.isfinite per commit


class NanDetector(Detector):
    name = "nan"

    def __init__(self, ingest: Ingest):
        super().__init__(ingest)
        self.alerted: dict[int, set[str]] = {}  # run id -> keys alerted

    def state_summary(self) -> str:
        return f"runs={len(self.alerted)} keys={sum(map(len, self.alerted.values()))}"

    def committed(self, nc: NextCommit) -> None:
        first: dict[tuple[int, str], tuple[int, Any, dict]] = {}
        small: list[np.ndarray] = []  # float chunks under SMALL points: checked together, in one pass
        suspects: list[tuple] = []  # (slot, steps, values) of the small ones, looked at one by one if needed
        for slot, (steps, values) in nc.history.items():
            if slot[1] in SKIP_KEYS:
                continue
            for s, v in zip(steps, values):
                if type(v) is np.ndarray and v.dtype.kind == "f" and len(v) < SMALL:
                    small.append(v)
                    suspects.append((slot, s, v))
                    continue
                hit = _first_bad_span(s, v) if slot[3] else _first_bad(s, v)
                if hit is not None:
                    _keep(first, slot, hit)
        if small and not np.isfinite(np.concatenate(small)).all():
            for slot, s, v in suspects:
                hit = _first_bad(s, v)
                if hit is not None:
                    _keep(first, slot, hit)
        self.counters["chunks"] += len(nc.history)
        for (run_id, key), (step, value, extra) in first.items():
            self._found(run_id, key, step, value, extra)

    def _found(self, run_id: int, key: str, step: int, value: Any, extra: dict) -> None:
        keys = self.alerted.setdefault(run_id, set())
        if key in keys:
            return
        run = self.run(run_id)
        if run is None:
            return
        if len(keys) >= MAX_KEYS_PER_RUN:
            self.counters["suppressed"] += 1
            return
        keys.add(key)
        rank, gid = run.record.rank, run.group.record.id
        shown = _show(value)
        self.raise_alert(
            Alert(
                kind="nan",
                group_id=gid,
                time=self.wall(),
                message=f"rank {rank} logged {key} = {shown} at step {step} (its first non-finite {key})",
                rank=rank,
                run_id=run_id,
                key=key,
                step=int(step),
                level="ERROR",
                details={"value": shown, "run": run.record.name, **extra},
            )
        )


def _keep(first: dict, slot: tuple, hit: tuple) -> None:
    seen = first.get((slot[0], slot[1]))
    if seen is None or hit[0] < seen[0]:
        first[(slot[0], slot[1])] = hit


def _first_bad(steps: np.ndarray, values: Any) -> tuple[int, Any, dict] | None:
    """(lowest step, value, {}) of the non-finite values of one chunk, or None."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind != "f":
            return None
        ok = np.isfinite(values)
        if ok.all():
            return None
        bad = np.flatnonzero(~ok)
        i = bad[np.argmin(steps[bad])]
        return int(steps[i]), float(values[i]), {}
    best = None
    for s, x in zip(steps.tolist(), values):
        if type(x) is float and not math.isfinite(x) and (best is None or s < best[0]):
            best = (s, x, {})
    return best


def _first_bad_span(steps: np.ndarray, span: Any) -> tuple[int, Any, dict] | None:
    """A chunk of coalesced spans: the lowest stored row whose min, max or last is non-finite."""
    if not isinstance(span, dict):
        return _first_bad(steps, span)
    ok = np.isfinite(span["min"]) & np.isfinite(span["max"]) & np.isfinite(span["last"])
    if ok.all():
        return None
    bad = np.flatnonzero(~ok)
    i = bad[np.argmin(steps[bad])]
    value = next(float(span[f][i]) for f in ("last", "min", "max") if not math.isfinite(span[f][i]))
    return int(steps[i]), value, {"span_first_step": int(span["first_step"][i]), "span_rows": int(span["count"][i])}


def _show(value: Any) -> str:
    return "NaN" if value != value else ("+Inf" if value > 0 else "-Inf")
