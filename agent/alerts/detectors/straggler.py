"""``straggler``: a rank whose step time is at least ``FACTOR`` (1.5) × the group's median over a window of
at least ``MIN_STEPS`` (50) steps and ``WINDOW_S`` (10 s); one alert per rank per episode.

A rank's step time is read two ways, and the one that separates the ranks most is used (grouping/timing.py
``pick_timing``, the web UI's straggler panel's rule): the interval between its commits (its ``_timestamp``
history: Δt / Δstep between consecutive stored rows, so coalesced spans and skipped steps count per step),
or a key it logs whose name says it is a duration (``time/compute``, ``step_ms``: ``is_timing_key``).

The rule, per group, checked every ``CHECK_EVERY_S`` over its running ranks: each rank's window is its rows of
the last ``WINDOW_S`` seconds of the group's newest row time, widened to its last ``MIN_STEPS`` rows if it has
fewer; a rank counts once it has ``MIN_STEPS`` rows spanning ``WINDOW_S``; at least ``MIN_RANKS`` ranks must
count. A rank's step time is the *median* over its window (one slow step, a GC pause of a second or a frozen
rank's one long gap move a median of 50 rows by at most one row); the group's is the median over ranks. Ratio
≥ ``FACTOR`` opens an episode (an alert, ``token`` its first step), ratio < ``CLEAR`` closes it. The message
adds the rank's CPU saturation (``proc.cpu_percent``) and GPU clock throttling (``gpu.*throttle*``) when the
system sampler logs them for it.

State: per run ``RING`` recent step times (and of at most ``MAX_TIMING_KEYS`` timing keys per group), the
last value of at most ``MAX_SIGNALS`` system keys, and open episodes. A rank past ``RING`` / ``WINDOW_S``
(about 200) steps per second is judged over its last ``RING`` steps: under ten seconds, still ≥ 50 steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from agent.alerts.alert import Alert
from agent.alerts.detectors.base import SKIP_KEYS, Detector
from grouping.timing import STEP_TIME, is_timing_key, median, pick_timing, unevenness_of

if TYPE_CHECKING:
    from agent.ingest import Ingest
    from agent.nextcommit import NextCommit

FACTOR = 1.5
CLEAR = 1.25  # an episode ends below this ratio (no alert storm around the threshold)
MIN_STEPS = 50
WINDOW_S = 10.0
MIN_RANKS = 3
RING = 2048  # step times kept per run and series
MAX_TIMING_KEYS = 8  # timing keys followed per group (the first seen)
MAX_SIGNALS = 8  # system keys followed per run for the message
CHECK_EVERY_S = 1.0
CPU_SATURATED = 90.0  # proc.cpu_percent (of one core) from which the message says so


class Series:
    """The recent (time, value) samples of one run's timing, at most ``RING``."""

    __slots__ = ("t", "v", "last", "first")

    def __init__(self) -> None:
        self.t = np.empty(0)
        self.v = np.empty(0)
        self.first: float | None = None  # time of the first sample ever (the ring may have dropped it)
        self.last: tuple[float, float] | None = None  # (step, time) of the newest row: the next interval's start

    def __repr__(self) -> str:
        return f"<Series {len(self.v)} samples first={self.first} last={self.last}>"

    def add(self, t: np.ndarray, v: np.ndarray) -> None:
        if self.first is None and len(t):
            self.first = float(t[0])
        self.t = np.concatenate((self.t, t))[-RING:]
        self.v = np.concatenate((self.v, v))[-RING:]


class StragglerDetector(Detector):
    name = "straggler"
    check_every_s = CHECK_EVERY_S

    def __init__(self, ingest: Ingest):
        super().__init__(ingest)
        self.steps: dict[int, Series] = {}  # run id -> its step times
        self.keys: dict[int, dict[str, Series]] = {}  # run id -> timing key -> values (t: the row's step)
        self.timing_keys: dict[int, set[str]] = {}  # group id -> timing keys followed
        self.signals: dict[int, dict[str, float]] = {}  # run id -> last proc.cpu_percent / gpu throttle values
        self.episodes: dict[int, int] = {}  # run id -> step its open episode began at

    def state_summary(self) -> str:
        return (
            f"runs={len(self.steps)} timing_keys={sum(map(len, self.timing_keys.values()))} open={len(self.episodes)}"
        )

    def committed(self, nc: NextCommit) -> None:
        for (run_id, key, late, is_span), (steps, values) in nc.history.items():
            if late or is_span:
                continue
            if key == STEP_TIME:
                self._step_times(run_id, steps, values)
            elif key not in SKIP_KEYS and is_timing_key(key):
                self._timing_key(run_id, key, steps, values)
            elif _is_signal(key):
                self._signal(run_id, key, values)
        for (_, run_id, _), chunks in nc.system.items():  # the sampler's stream (agent/system/)
            if run_id is not None:
                for columns in chunks:
                    for key, column in columns.items():
                        if _is_signal(key):
                            self._signal(run_id, key, [column])

    def _step_times(self, run_id: int, steps: list, values: list) -> None:
        s = np.concatenate(steps).astype(np.float64) if len(steps) > 1 else steps[0].astype(np.float64)
        t = np.concatenate(values) if len(values) > 1 else np.asarray(values[0], np.float64)
        if not len(s):
            return
        series = self.steps.get(run_id)
        if series is None:
            series = self.steps[run_id] = Series()
        if series.last is not None:  # the interval from the previous commit's last row
            s, t = np.concatenate(((series.last[0],), s)), np.concatenate(((series.last[1],), t))
        series.last = (float(s[-1]), float(t[-1]))
        ds, dt = np.diff(s), np.diff(t)
        ok = ds > 0
        if ok.any():
            series.add(t[1:][ok], dt[ok] / ds[ok])

    def _timing_key(self, run_id: int, key: str, steps: list, values: list) -> None:
        run = self.run(run_id)
        if run is None:
            return
        followed = self.timing_keys.setdefault(run.group.record.id, set())
        if key not in followed:
            if len(followed) >= MAX_TIMING_KEYS:
                return
            followed.add(key)
        v = [np.asarray(x) for x in values]
        if not all(x.dtype.kind in "fiu" for x in v):
            return
        per = self.keys.setdefault(run_id, {})
        series = per.get(key) or per.setdefault(key, Series())
        series.add(np.concatenate(steps).astype(np.float64), np.concatenate(v).astype(np.float64))

    def _signal(self, run_id: int, key: str, values: list) -> None:
        last = values[-1]
        if isinstance(last, np.ndarray) and len(last) and last.dtype.kind in "fiub":
            mine = self.signals.setdefault(run_id, {})
            if key in mine or len(mine) < MAX_SIGNALS:
                mine[key] = float(last[-1])

    # ------------------------------------------------------------ the rule

    def check(self, now: float) -> None:
        if not self.due():
            return
        for group in self.ingest.groups.values():
            # running ranks only: one that finished (or crashed) is no straggler of the ranks still at work
            runs = [r for r in group.ranks.values() if r.running and r.record.id in self.steps]
            if len(runs) >= MIN_RANKS:
                self._check_group(group.record.id, runs)
        if len(self.steps) > 2 * len(self.ingest.runs) + 64:  # forget runs the registry forgot
            for table in (self.steps, self.keys, self.signals):
                for rid in [rid for rid in table if rid not in self.ingest.runs]:
                    del table[rid]

    def _check_group(self, gid: int, runs: list) -> None:
        series = [self.steps[r.record.id] for r in runs]
        newest = max(float(s.t[-1]) for s in series if len(s.t)) if any(len(s.t) for s in series) else None
        if newest is None:
            return
        counted: dict[int, tuple[Any, int]] = {}  # run id -> (run, rows in its window)
        stats: dict[str, dict[int, float]] = {STEP_TIME: {}}
        for r, s in zip(runs, series):
            n = len(s.t)
            if n < MIN_STEPS or s.first is None or newest - s.first < WINDOW_S:
                continue
            k = max(MIN_STEPS, n - int(np.searchsorted(s.t, newest - WINDOW_S, side="right")))
            counted[r.record.id] = (r, k)
            stats[STEP_TIME][r.record.id] = median(s.v[-k:])
            for key, ks in self.keys.get(r.record.id, {}).items():
                if len(ks.v) >= MIN_STEPS:
                    stats.setdefault(key, {})[r.record.id] = median(ks.v[-min(k, len(ks.v)) :])
        if len(counted) < MIN_RANKS:
            return
        scores = {key: unevenness_of(v.values()) for key, v in stats.items() if len(v) >= MIN_RANKS}
        picked = pick_timing(scores.pop(STEP_TIME, 0.0), scores)
        values = stats[picked]
        typical = median(np.array(list(values.values())))
        if not typical or typical <= 0:
            return
        self.counters["groups_checked"] += 1
        for rid, value in values.items():
            ratio = value / typical
            if rid in self.episodes:
                if ratio < CLEAR:
                    del self.episodes[rid]
                continue
            if ratio >= FACTOR:
                run, k = counted[rid]
                self.episodes[rid] = run.record.step - 1
                self._alert(gid, run, picked, value, typical, ratio, k)

    def _alert(self, gid: int, run: Any, picked: str, value: float, typical: float, ratio: float, k: int) -> None:
        r = run.record
        step = r.step - 1
        what = "step time" if picked == STEP_TIME else picked
        cooccur = self._cooccurring(r.id)
        message = f"rank {r.rank} is a straggler: {what} {ratio:.1f}× the group median ({value:.4g} vs {typical:.4g})"
        message += f" over its last {k} steps, at step {step}"
        if cooccur:
            message += "; " + ", ".join(cooccur)
        self.raise_alert(
            Alert(
                kind="straggler",
                group_id=gid,
                time=self.wall(),
                message=message,
                rank=r.rank,
                run_id=r.id,
                key=None if picked == STEP_TIME else picked,
                step=step,
                level="WARN",
                details={
                    "factor": round(ratio, 3),
                    "timing": picked,
                    "value": value,
                    "group_median": typical,
                    "window_steps": k,
                    "signals": cooccur,
                },
                token=str(step),
            )
        )

    def _cooccurring(self, run_id: int) -> list[str]:
        said = []
        for key, value in sorted(self.signals.get(run_id, {}).items()):
            if key == "proc.cpu_percent" and value >= CPU_SATURATED:
                said.append(f"CPU saturated ({value:.0f}% of a core)")
            elif key != "proc.cpu_percent" and value:
                said.append(f"GPU clock throttled ({key}={value:g})")
        return said


def _is_signal(key: str) -> bool:
    """A key whose last value the message reports: the rank's CPU, its GPU's clock throttling."""
    return key == "proc.cpu_percent" or (key.startswith("gpu.") and "throttle" in key)
