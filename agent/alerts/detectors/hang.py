"""``hang``: a running rank that committed nothing for ``hang_after`` seconds while other ranks of its group
committed since; ``stalled``: no running rank of a group committed anything for that long.

Progress is a committed on-time row (its ``_timestamp`` in ``nc.history``), timed by the agent's monotonic
clock (``Ingest.clock``). ``hang_after`` is the agent's ``hang_after_s`` (``RANKWISE_HANG_AFTER``) when set,
else derived per group from its own pace: ``max(FLOOR_S, FACTOR × median interval between a rank's
commits)`` over the last ``INTERVALS`` intervals of the group (``FLOOR_S`` until ``MIN_INTERVALS`` are known).

One alert per episode: ``token`` is the step the rank (or, stalled, the group) stood at, and the episode
ends when it commits again. The hang alert of a rank on this machine carries its Python stack when py-spy
is installed (agent/alerts/detectors/pyspy.py: a worker thread, the alert raised when the dump returns or
times out); a rank forwarded by a node agent (a root) runs on another machine: no stack, and details say so.

State: per running run its last progress; per group a ring of ``INTERVALS`` intervals and the open episodes.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future
from typing import TYPE_CHECKING

import numpy as np

from agent.alerts.alert import Alert
from agent.alerts.detectors.base import Detector
from agent.alerts.detectors.pyspy import Spy

if TYPE_CHECKING:
    from agent.ingest import Ingest
    from agent.nextcommit import NextCommit
    from agent.runs import RunState

FLOOR_S = 120.0  # a checkpoint save or an evaluation pass may hold every rank this long
FACTOR = 20.0  # × the group's median commit interval
INTERVALS = 256  # commit intervals kept per group
MIN_INTERVALS = 8  # before that many are known the floor alone decides
CHECK_EVERY_S = 0.25  # how often ticks look (a tick is at least every 50 ms)


class HangDetector(Detector):
    name = "hang"
    check_every_s = CHECK_EVERY_S

    def __init__(self, ingest: Ingest, spy: Spy | None = None):
        super().__init__(ingest)
        self.spy = Spy() if spy is None else spy
        self.last: dict[int, tuple[float, int]] = {}  # run id -> (monotonic time of its last progress, step)
        self.intervals: dict[int, deque[float]] = {}  # group id -> recent intervals between a rank's commits
        self.hung: dict[int, int] = {}  # run id -> step of its open hang episode
        self.stalled: dict[int, int] = {}  # group id -> step of its open stall episode
        self.dumping: list[tuple[Future, Alert]] = []  # hang alerts waiting for their stack

    def state_summary(self) -> str:
        return f"runs={len(self.last)} hung={len(self.hung)} stalled={len(self.stalled)} dumping={len(self.dumping)}"

    def hang_after(self, group_id: int) -> float:
        """Seconds without progress that make a hang (see the module's docstring for the rule)."""
        if self.ingest.cfg.hang_after_s > 0:
            return self.ingest.cfg.hang_after_s
        ring = self.intervals.get(group_id)
        if ring is None or len(ring) < MIN_INTERVALS:
            return FLOOR_S
        return max(FLOOR_S, FACTOR * float(np.median(np.fromiter(ring, float, len(ring)))))

    def committed(self, nc: NextCommit) -> None:
        mono = self.ingest.clock()
        for (run_id, key, late, _), (steps, _values) in nc.history.items():
            if key != "_timestamp" or late:
                continue
            run = self.run(run_id)
            if run is None:
                continue
            step = int(max(int(s.max()) for s in steps if len(s)) if any(len(s) for s in steps) else -1)
            before = self.last.get(run_id)
            if before is not None:
                ring = self.intervals.get(run.group.record.id)
                if ring is None:
                    ring = self.intervals[run.group.record.id] = deque(maxlen=INTERVALS)
                ring.append(mono - before[0])
            self.last[run_id] = (mono, max(step, before[1] if before else -1))
            self.hung.pop(run_id, None)  # progress ends an episode
            self.stalled.pop(run.group.record.id, None)

    def check(self, now: float) -> None:
        if self.dumping:
            self._raise_dumped()
        if not self.due():
            return
        mono = self.ingest.clock()
        for group in self.ingest.groups.values():
            running = [r for r in group.ranks.values() if r.running]
            if running:
                self._check_group(group.record.id, running, mono)
        if self.hung:  # a hung rank that ended (crashed, finished) closes its episode
            self.hung = {
                rid: s for rid, s in self.hung.items() if rid in self.ingest.runs and self.ingest.runs[rid].running
            }
        if len(self.last) > 2 * len(self.ingest.runs) + 64:  # forget runs the registry forgot
            self.last = {rid: v for rid, v in self.last.items() if rid in self.ingest.runs}

    def _check_group(self, gid: int, running: list[RunState], mono: float) -> None:
        after = self.hang_after(gid)
        lasts = []
        for r in running:
            seen = self.last.get(r.record.id)
            if seen is None:  # running, never committed under this agent: its clock starts now
                seen = self.last[r.record.id] = (mono, r.record.step - 1)
            lasts.append(seen)
        newest = max(t for t, _ in lasts)
        if mono - newest >= after:
            step = max(s for _, s in lasts)
            if step >= 0 and self.stalled.get(gid) is None:
                self.stalled[gid] = step
                self._stalled(gid, running, step, mono - newest, after)
            return
        for r, (t, step) in zip(running, lasts):
            if mono - t >= after and newest > t and r.record.id not in self.hung:
                self.hung[r.record.id] = step
                self._hang(gid, r, step, mono - t, after)

    def _stalled(self, gid: int, running: list[RunState], step: int, silent: float, after: float) -> None:
        name = running[0].group.record.name
        self.raise_alert(
            Alert(
                kind="stalled",
                group_id=gid,
                time=self.wall(),
                message=f"group {name}: no rank committed anything for {silent:.0f} s (last step {step})",
                step=step,
                level="ERROR",
                details={
                    "silent_s": round(silent, 3),
                    "hang_after_s": after,
                    "ranks": sorted(r.record.rank for r in running),
                },
                token=str(step),
            )
        )

    def _hang(self, gid: int, run: RunState, step: int, silent: float, after: float) -> None:
        r = run.record
        alert = Alert(
            kind="hang",
            group_id=gid,
            time=self.wall(),
            message=f"rank {r.rank} committed nothing for {silent:.0f} s at step {step} while other ranks went on",
            rank=r.rank,
            run_id=r.id,
            step=step if step >= 0 else None,
            level="ERROR",
            details={"silent_s": round(silent, 3), "hang_after_s": after, "pid": r.pid, "node": r.node},
            token=str(step),
        )
        if self.ingest.alerts.known(alert):  # stored by the agent before a restart: no second stack dump
            self.counters["repeated"] += 1
            return
        if not self.ingest.is_local(run):
            self.raise_alert(_with(alert, {"py_spy": f"rank runs on another machine ({r.node}): no stack here"}))
            return
        self.dumping.append((self.spy.start(r.pid), alert))
        self._raise_dumped()

    def _raise_dumped(self) -> None:
        waiting = []
        for future, alert in self.dumping:
            if future.done():
                try:
                    extra = future.result()
                except Exception as exc:  # noqa: BLE001 - the alert goes out without its stack
                    extra = {"py_spy": f"py-spy dump failed: {exc}"}
                self.raise_alert(_with(alert, extra))
            else:
                waiting.append((future, alert))
        self.dumping = waiting

    def idle(self) -> bool:
        return not self.dumping

    def close(self) -> None:
        self.spy.close()


def _with(alert: Alert, extra: dict) -> Alert:
    from dataclasses import replace

    return replace(alert, details={**alert.details, **extra})
