"""``diverged``: a rank whose value of a key leaves the other ranks' distribution while theirs stays finite.

The rule (robust z-score): at a sampled step, for each rank r with a finite value x of a key that at least
``MIN_RANKS`` (4) ranks log, over the *other* ranks' finite values: ``med`` their median, ``mad`` the median
of their absolute deviations, ``scale = max(1.4826 × mad, REL_FLOOR × |med|, ABS_FLOOR)`` (the floors:
ranks that agree exactly, a learning rate, must not make a rounding error infinite), ``z = |x − med| /
scale``. A rank with ``z > Z`` (10) at ``PERSIST`` (5) sampled steps in a row diverged: one alert per
(rank, key). So a rank must stay more than ten spreads and more than half the typical value away from
the others for 5 × ``SAMPLE_EVERY`` = 40 steps; gaussian noise among ranks does not come near that.

Which steps: those divisible by ``SAMPLE_EVERY`` (8), picked with one vectorised test per chunk, so the
commit path does per-point work only in numpy. A sampled step is judged once every rank of the group
gave it (or a later step is complete), or when more than ``MAX_OPEN`` steps wait (with the ranks there).
Not judged: the rows rankwise writes (``_timestamp`` ...), timing keys (the straggler detector's), system
metrics (``proc.*``, ``host.*``, ``gpu.*``), non-finite values (the ``nan`` detector's).

State: at most ``MAX_KEYS`` keys per group (the first seen; more are counted as ``keys_skipped``), each with
at most ``MAX_OPEN`` open steps of one value per rank, and a strike count per (rank, key).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agent.alerts.alert import Alert
from agent.alerts.detectors.base import SKIP_KEYS, Detector
from grouping.timing import is_timing_key

if TYPE_CHECKING:
    from agent.ingest import Ingest
    from agent.nextcommit import NextCommit

MIN_RANKS = 4
Z = 10.0
PERSIST = 5
REL_FLOOR = 0.05
ABS_FLOOR = 1e-12
SAMPLE_EVERY = 8
MAX_OPEN = 16
MAX_KEYS = 256
SYSTEM_PREFIXES = ("proc.", "host.", "gpu.")


class KeyState:
    """One key of one group: ranks that log it, open sampled steps, strikes and alerts per rank."""

    __slots__ = ("ranks", "open", "strikes", "alerted")

    def __init__(self) -> None:
        self.ranks: set[int] = set()
        self.open: dict[int, dict[int, float]] = {}  # step -> rank -> value
        self.strikes: dict[int, int] = {}
        self.alerted: set[int] = set()


class DivergedDetector(Detector):
    name = "diverged"

    def __init__(self, ingest: Ingest):
        super().__init__(ingest)
        self.keys: dict[int, dict[str, KeyState | None]] = {}  # group id -> key -> state (None: not judged)

    def state_summary(self) -> str:
        return f"groups={len(self.keys)} keys={sum(1 for g in self.keys.values() for s in g.values() if s)}"

    def committed(self, nc: NextCommit) -> None:
        for (run_id, key, late, is_span), (steps, values) in nc.history.items():
            if late or is_span or key in SKIP_KEYS:
                continue
            run = self.run(run_id)
            if run is None:
                continue
            gid = run.group.record.id
            state = self._state(gid, key)
            if state is None:
                continue
            rank = run.record.rank
            state.ranks.add(rank)
            for s, v in zip(steps, values):
                if not isinstance(v, np.ndarray) or v.dtype.kind not in "fiu":
                    continue
                picked = np.flatnonzero(s % SAMPLE_EVERY == 0)
                for i in picked.tolist():
                    state.open.setdefault(int(s[i]), {})[rank] = float(v[i])
            if state.open:
                self._judge(gid, key, state, len(run.group.ranks))

    def _state(self, gid: int, key: str) -> KeyState | None:
        keys = self.keys.setdefault(gid, {})
        if key in keys:
            return keys[key]
        if is_timing_key(key) or key.startswith(SYSTEM_PREFIXES):
            keys[key] = None
            return None
        if sum(1 for s in keys.values() if s is not None) >= MAX_KEYS:
            self.counters["keys_skipped"] += 1
            keys[key] = None
            return None
        state = keys[key] = KeyState()
        return state

    def _judge(self, gid: int, key: str, state: KeyState, joined: int) -> None:
        # complete: every rank of the group gave it (the first ranks' values must not make a step complete
        # before the others are heard of); an incomplete step below a complete one is judged with what it
        # has (a rank that skipped it will not send it later); a key only some ranks log waits for MAX_OPEN
        want = max(len(state.ranks), joined, MIN_RANKS)
        ordered = sorted(state.open)
        complete = [s for s in ordered if len(state.open[s]) >= want]
        through = complete[-1] if complete else None
        for step in ordered:
            if len(state.open) <= MAX_OPEN and (through is None or step > through):
                break
            got = state.open.pop(step)
            if len(got) >= MIN_RANKS:
                self._judge_step(gid, key, state, step, got)

    def _judge_step(self, gid: int, key: str, state: KeyState, step: int, got: dict[int, float]) -> None:
        self.counters["steps_judged"] += 1
        ranks = np.fromiter(got.keys(), np.int64, len(got))
        x = np.fromiter(got.values(), np.float64, len(got))
        finite = np.isfinite(x)
        if finite.sum() < MIN_RANKS:
            return
        ranks, x = ranks[finite], x[finite]
        for i in range(len(x)):
            r = int(ranks[i])
            others = np.delete(x, i)
            med = float(np.median(others))
            mad = float(np.median(np.abs(others - med)))
            scale = max(1.4826 * mad, REL_FLOOR * abs(med), ABS_FLOOR)
            z = abs(x[i] - med) / scale
            if z <= Z:
                state.strikes.pop(r, None)
                continue
            strikes = state.strikes[r] = state.strikes.get(r, 0) + 1
            if strikes >= PERSIST and r not in state.alerted:
                state.alerted.add(r)
                self._alert(gid, key, r, step, float(x[i]), med, scale, z)

    def _alert(
        self, gid: int, key: str, rank: int, step: int, value: float, med: float, scale: float, z: float
    ) -> None:
        run_id = next((r.record.id for r in self._group_ranks(gid) if r.record.rank == rank), None)
        self.raise_alert(
            Alert(
                kind="diverged",
                group_id=gid,
                time=self.wall(),
                message=(
                    f"rank {rank} diverged on {key}: {value:.6g} at step {step} while the other ranks' median is "
                    f"{med:.6g} (robust z {z:.0f}, {PERSIST} sampled steps in a row)"
                ),
                rank=rank,
                run_id=run_id,
                key=key,
                step=step,
                level="WARN",
                details={"value": value, "median_others": med, "scale": scale, "z": round(z, 2)},
            )
        )

    def _group_ranks(self, gid: int) -> list:
        group = self.ingest.groups.get(gid)
        return list(group.ranks.values()) if group is not None else []
