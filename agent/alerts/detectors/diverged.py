"""``diverged``: a rank whose value of a key leaves the other ranks' distribution while theirs stays finite.

The rule (robust z-score): at a sampled step, for each rank r with a finite value x of a key that at least
``MIN_RANKS`` (4) ranks log, over the *other* ranks' finite values: ``med`` their median, ``mad`` the median
of their absolute deviations, ``scale = max(1.4826 × mad, REL_FLOOR × |med|, ABS_FLOOR)`` (the floors:
ranks that agree exactly, a learning rate, must not make a rounding error infinite), ``z = |x − med| /
scale``. A rank with ``z > Z`` (10) at ``PERSIST`` (5) sampled steps in a row diverged: one alert per
(rank, key). So a rank must stay more than ten spreads and more than half the typical value away from
the others for 5 × ``SAMPLE_EVERY`` = 40 steps; gaussian noise among ranks does not come near that.

Which steps: those divisible by ``SAMPLE_EVERY`` (8), at most the newest ``PICK`` (4) of each chunk, so the
commit path does a few Python operations per chunk, never per point. A sampled step is judged once every rank of the group
gave it (or a later step is complete), or when more than ``MAX_OPEN`` steps wait (with the ranks there).
Commits only collect the sampled values; the keys that got some are judged once every ``JUDGE_EVERY_S``
(1 s) on the ticks, ``KEYS_PER_TICK`` at a time, each in one vectorised pass over its steps and ranks (leave-one-out medians).
Not judged: the rows rankwise writes (``_timestamp`` ...), timing keys (the straggler detector's), system
metrics (``proc.*``, ``host.*``, ``gpu.*``), non-finite values (the ``nan`` detector's).

State: at most ``MAX_KEYS`` keys per group (the first seen; more are counted as ``keys_skipped``), each with
at most ``KEEP_OPEN`` open steps of one value per rank, and a strike count per (rank, key); a table of at
most ``MAX_TABLE`` keys per group.
"""

from __future__ import annotations

import functools
import warnings
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
PICK = 4  # sampled steps taken from one chunk (its newest): a commit of many steps is judged on its end
KEEP_OPEN = 4 * MAX_OPEN  # open steps kept while judging waits for its turn
MAX_TABLE = 4 * MAX_KEYS  # keys remembered per group (followed, or known not to be judged)
JUDGE_EVERY_S = 1.0  # keys with new values are judged this often
KEYS_PER_TICK = 64  # keys judged per tick (vectorised: ~100 µs each), the rest on the next ticks
SYSTEM_PREFIXES = ("proc.", "host.", "gpu.")


class KeyState:
    """One key of one group: ranks that log it, open sampled steps, strikes and alerts per rank."""

    __slots__ = ("ranks", "open", "strikes", "alerted")

    def __init__(self) -> None:
        self.ranks: set[int] = set()
        self.open: dict[int, dict[int, float]] = {}  # step -> rank -> value
        self.strikes: dict[int, int] = {}
        self.alerted: set[int] = set()

    def __repr__(self) -> str:
        return f"<KeyState ranks={len(self.ranks)} open={len(self.open)} strikes={self.strikes} alerted={sorted(self.alerted)}>"


class DivergedDetector(Detector):
    name = "diverged"

    def __init__(self, ingest: Ingest):
        super().__init__(ingest)
        self.keys: dict[int, dict[str, KeyState | None]] = {}  # group id -> key -> state (None: not judged)
        self.followed: dict[int, int] = {}  # group id -> keys followed
        self.dirty: dict[tuple[int, str], int] = {}
        self._next_round = float("-inf")
        self._round = False  # a round of judging under way (over several ticks when many keys wait)  # (group, key) with new values -> ranks joined the group

    def state_summary(self) -> str:
        return f"groups={len(self.keys)} keys={sum(1 for g in self.keys.values() for s in g.values() if s)}"

    def committed(self, nc: NextCommit) -> None:
        """Collect the sampled steps' values; judging waits for the tick (at most ``KEYS_PER_TICK`` keys)."""
        runs = self.ingest.runs
        for (run_id, key, late, is_span), (steps, values) in nc.history.items():
            if late or is_span:
                continue
            run = runs.get(run_id)
            if run is None:
                continue
            gid = run.group.record.id
            keys = self.keys.get(gid)
            if keys is None:
                keys = self.keys[gid] = {}
            state = keys[key] if key in keys else self._state(gid, keys, key)
            if state is None:
                continue
            rank = run.record.rank
            state.ranks.add(rank)
            for s, v in zip(steps, values):
                if type(v) is np.ndarray and v.dtype.kind in "fiu" and len(s):
                    for i in _sampled(s):
                        state.open.setdefault(int(s[i]), {})[rank] = float(v[i])
            if len(state.open) > KEEP_OPEN:  # judging lags (many keys): the oldest steps go unjudged
                for step in sorted(state.open)[: len(state.open) - KEEP_OPEN]:
                    del state.open[step]
                    self.counters["steps_dropped"] += 1
            self.dirty[(gid, key)] = len(run.group.ranks)

    def check(self, now: float) -> None:
        # each judging pays ~15 numpy calls per key whatever its steps: judged once a second, a key's
        # sampled steps of that second share them (a commit path of many small commits stays cheap)
        mono = self.ingest.clock()
        if not self.dirty or (mono < self._next_round and not self._round):
            return
        if not self._round:
            self._next_round = mono + JUDGE_EVERY_S
            self._round = True
        budget = KEYS_PER_TICK
        while self.dirty and budget > 0:
            (gid, key), joined = self.dirty.popitem()
            state = self.keys.get(gid, {}).get(key)
            if state is not None and state.open:
                self._judge(gid, key, state, joined)
            budget -= 1
        self._round = bool(self.dirty)  # keys left for the next ticks of this round

    def _state(self, gid: int, keys: dict[str, KeyState | None], key: str) -> KeyState | None:
        """A key not in the group's table: followed (up to ``MAX_KEYS``), or None: not judged, remembered as
        such while the table has room (``MAX_TABLE``: a row of 100k keys does not make it 100k entries)."""
        if key in SKIP_KEYS or is_timing_key(key) or key.startswith(SYSTEM_PREFIXES):
            state = None
        elif self.followed.get(gid, 0) >= MAX_KEYS:
            self.counters["keys_skipped"] += 1
            state = None
        else:
            state = KeyState()
            self.followed[gid] = self.followed.get(gid, 0) + 1
        if state is not None or len(keys) < MAX_TABLE:
            keys[key] = state
        return state

    def _judge(self, gid: int, key: str, state: KeyState, joined: int) -> None:
        # complete: every rank of the group gave it (the first ranks' values must not make a step complete
        # before the others are heard of); an incomplete step below a complete one is judged with what it
        # has (a rank that skipped it will not send it later); a key only some ranks log waits for MAX_OPEN
        want = max(len(state.ranks), joined, MIN_RANKS)
        ordered = sorted(state.open)
        complete = [s for s in ordered if len(state.open[s]) >= want]
        through = complete[-1] if complete else None
        batches: dict[tuple[int, ...], list[tuple[int, dict[int, float]]]] = {}
        for step in ordered:
            if len(state.open) <= MAX_OPEN and (through is None or step > through):
                break
            got = state.open.pop(step)
            if len(got) >= MIN_RANKS:
                batches.setdefault(tuple(sorted(got)), []).append((step, got))
        for ranks, rows in batches.items():  # one set of ranks (usually: all of them) at a time, vectorised
            self._judge_rows(gid, key, state, ranks, rows)

    def _judge_rows(self, gid: int, key: str, state: KeyState, ranks: tuple, rows: list) -> None:
        self.counters["steps_judged"] += len(rows)
        n = len(ranks)
        x = np.array([[got[r] for r in ranks] for _, got in rows], np.float64)  # steps × ranks
        others = x[:, _leave_one_out(n)]  # steps × ranks × (ranks - 1): every rank's others
        finite = np.isfinite(x)
        if finite.all():  # the usual case: medians by a sort of a few values (np.median is ~10× slower here)
            med = _median_last(others)
            mad = _median_last(np.abs(others - med[..., None]))
            enough = np.ones_like(finite)
        else:  # non-finite values are the nan detector's: out of the others' distribution, never judged
            others = np.where(np.isfinite(others), others, np.nan)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: not judged below
                med = np.nanmedian(others, axis=2)
                mad = np.nanmedian(np.abs(others - med[..., None]), axis=2)
            enough = finite & (np.isfinite(others).sum(axis=2) >= MIN_RANKS - 1)
        scale = np.maximum(np.maximum(1.4826 * mad, REL_FLOOR * np.abs(med)), ABS_FLOOR)
        with np.errstate(invalid="ignore"):
            far = enough & (np.abs(x - med) / scale > Z)
        hit = far.any(axis=0)
        for r in [r for j, r in enumerate(ranks) if r in state.strikes and not hit[j]]:
            del state.strikes[r]  # a rank back among the others
        for j in np.flatnonzero(hit).tolist():
            r = ranks[j]
            for i in range(len(rows)):  # in step order: a run of PERSIST far steps
                if not far[i, j]:
                    state.strikes.pop(r, None)
                    continue
                strikes = state.strikes[r] = state.strikes.get(r, 0) + 1
                if strikes >= PERSIST and r not in state.alerted:
                    state.alerted.add(r)
                    z = abs(x[i, j] - med[i, j]) / scale[i, j]
                    self._alert(gid, key, r, rows[i][0], float(x[i, j]), float(med[i, j]), float(scale[i, j]), z)

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


def _sampled(steps: np.ndarray) -> list[int]:
    """Indices of the newest ``PICK`` steps divisible by ``SAMPLE_EVERY`` (arithmetic when the steps are
    consecutive, as on-time rows usually are: no numpy call for a short chunk)."""
    lo, hi = int(steps[0]), int(steps[-1])
    if hi - lo + 1 == len(steps):
        top = hi - hi % SAMPLE_EVERY
        return [k - lo for k in range(top, max(lo - 1, top - PICK * SAMPLE_EVERY), -SAMPLE_EVERY)][::-1]
    return np.flatnonzero(steps % SAMPLE_EVERY == 0)[-PICK:].tolist()


def _median_last(a: np.ndarray) -> np.ndarray:
    """The median along the last axis of finite ``a``."""
    a = np.sort(a, axis=-1)
    m = a.shape[-1]
    return a[..., m // 2] if m % 2 else (a[..., m // 2 - 1] + a[..., m // 2]) / 2


@functools.cache
def _leave_one_out(n: int) -> np.ndarray:
    """``n × (n - 1)`` indices: row j lists every column but j."""
    return np.array([[k for k in range(n) if k != j] for j in range(n)], np.int64).reshape(n, n - 1)
