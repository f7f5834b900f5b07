"""Group windows at a root agent: node partials merged, irregular steps recomputed.

A root receives, for each group, partial group rows from every node agent that
serves some of its ranks (each node sealed them over its own ranks), the
per-rank rows those partials summarise, and, from processes on its own host,
raw points like any agent. It seals a step when

* every node that has running, recently heard ranks in the group, or has
  forwarded points above its watermark (their partial is still to come, e.g.
  its ranks finished but it waits for ranks that may still join it), has sealed
  through it (the node's watermark, reported with its records);
* every running local rank has committed past it (as on a single node);
* ranks that never said hello are not waited for any longer (join grace);

or after the seal timeout, or early when the group's open window exceeds its
byte budget — the single-node rules with "node watermark" in place of "rank
watermark" for forwarded ranks.

The row of a sealed step is the merge of the node partials and the reduced
local points (:func:`grouping.merge`, the same reducers) finalised with the
group's world size: exactly what one agent seeing every rank would compute.
Where the partials cannot be trusted the step is *dirty* and its row is
recomputed from the per-rank values in the store, in the commit that seals it:

* a node agent restarted: whatever it had open is gone, so every step above the
  root's seal for which forwarded points were seen becomes dirty;
* the root itself restarted: the partials it had merged but not sealed are
  gone, so every stored step above the seal is dirty (:meth:`recover_dirty`);
* a node received points for a step it had already sealed (a late mark);
* a node agent of before nan_count/nan_rank sent a partial of a step where a
  value was NaN/±Inf (its sums and extremes include it; agent/record.py makes
  that a late mark too);
* two partials cover one (rank, step) (:class:`grouping.PartialWindow`).

Partials or forwarded points for steps the root already sealed make it
recompute those rows from the store as a new revision, as late data does on a
single node; forwarded points count as late rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agent.groups import GroupState
from agent.store.base import GroupRecord
from grouping import Partial, PartialWindow, finalize

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.nextcommit import NextCommit

LOCAL = ""  # the source name of points from this root's own processes


class RootGroupState(GroupState):
    __slots__ = ("partials", "source_w", "seen", "source_top", "source_heard")

    def __init__(self, record: GroupRecord, now: float):
        super().__init__(record, now)
        self.partials = PartialWindow()
        self.source_w: dict[str, int] = {}  # node agent -> how far it has sealed this group
        self.seen: dict[str, np.ndarray] = {}  # key -> steps above the seal with forwarded points
        self.source_top: dict[str, int] = {}  # node agent -> largest step it forwarded points of
        self.source_heard: dict[str, float] = {}  # node agent -> when it last sent anything for this group

    def __repr__(self) -> str:
        g = self.record
        return (
            f"<RootGroupState {g.project}/{g.name} ranks={len(self.ranks)}/{g.world_size} "
            f"sealed_through={g.sealed_through} window={self.window.nbytes}B partials={self.partials!r} "
            f"sources={self.source_w}>"
        )

    # ------------------------------------------------------------ arrivals

    def add(self, rank: int, key: str, steps: np.ndarray, values: np.ndarray, now: float, nc: NextCommit) -> None:
        run = self.ranks.get(rank)
        if run is None or run.via is None:
            super().add(rank, key, steps, values, now, nc)
            return
        # a forwarded rank: its node's partial covers what is on time; here only late points matter
        g = self.record
        if len(steps):
            self.source_top[run.via] = max(self.source_top.get(run.via, -1), int(steps.max()))
            self.source_heard[run.via] = now
        if len(steps) and steps.min() <= g.sealed_through:
            late = steps <= g.sealed_through
            nc.recompute.setdefault((g.id, key), []).append(steps[late])
            g.late_rows += int(late.sum())
            nc.groups[g.id] = g
            steps = steps[~late]
        if len(steps):
            old = self.seen.get(key)
            self.seen[key] = np.unique(steps) if old is None else np.union1d(old, steps)

    def add_partial(self, source: str, key: str, ranks: np.ndarray, part: Partial, now: float, nc: NextCommit) -> None:
        g = self.record
        self.source_heard[source] = now
        if len(part) and int(part.step[0]) <= g.sealed_through:
            late = part.step <= g.sealed_through
            nc.recompute.setdefault((g.id, key), []).append(part.step[late])
            nc.groups[g.id] = g
            part = part.take(~late)
        self.partials.add(key, source, ranks, part, now)

    def set_watermark(self, source: str, w: int, now: float) -> None:
        self.source_w[source] = w
        self.source_heard[source] = now

    def mark_late(self, key: str, steps: np.ndarray, nc: NextCommit) -> None:
        """A node received points of ``key`` at ``steps`` after sealing them: recompute those rows."""
        g = self.record
        late = steps <= g.sealed_through
        if late.any():
            nc.recompute.setdefault((g.id, key), []).append(steps[late])
            nc.groups[g.id] = g
        self.partials.mark_dirty(key, steps[~late])

    def forget_open(self, source: str) -> None:
        """A node agent serving this group restarted: what it had open is lost with it, so no partial
        can be trusted for steps seen so far and not sealed (they are recomputed), and no partial of
        the old instance is to be waited for."""
        for key, steps in self.seen.items():
            self.partials.mark_dirty(key, steps)
        self.source_top.pop(source, None)

    def recover_dirty(self, key: str, steps: np.ndarray) -> None:
        """After a restart of the root: stored points above the seal are recomputed, not merged."""
        self.partials.mark_dirty(key, steps[steps > self.record.sealed_through])

    def reopen(self, key: str, rank: int, steps: np.ndarray, values: np.ndarray, now: float) -> None:
        # the partials this root had merged but not sealed died with it: these steps are recomputed
        self.recover_dirty(key, steps)

    # ------------------------------------------------------------ sealing

    def waited_watermarks(self, now: float, cfg: AgentConfig) -> list[int]:
        marks = []
        sources = set()
        for run in self.ranks.values():
            if run.running and now - run.last_seen <= cfg.silence_s:
                if run.via is None:
                    marks.append(run.watermark)
                else:
                    sources.add(run.via)
        for source, top in self.source_top.items():
            # points forwarded and not yet sealed by their node: its partial is on its way
            if self.source_w.get(source, -1) < top and now - self.source_heard.get(source, now) <= cfg.silence_s:
                sources.add(source)
        marks.extend(self.source_w.get(s, -1) for s in sources)
        if self.awaits_joiners(now, cfg):
            marks.append(-1)
        return marks

    def seal(
        self, now: float, cfg: AgentConfig, nc: NextCommit, everything: bool = False, budget: int | None = None
    ) -> int:
        # ``budget`` is not applied here: partials are sealed whole (the root merges them per step)
        window, partials = self.window, self.partials
        if window.n_points == 0 and partials.empty:
            return 0
        lows = [s for s in (window.min_step, partials.min_step) if s is not None]
        top = max(s for s in (window.max_step, partials.max_step) if s is not None)
        if everything:
            bound = top
        else:
            marks = self.waited_watermarks(now, cfg)
            bound = min(marks) if marks else top
            for expired in (
                window.expired_through(now, cfg.seal_timeout_s),
                partials.expired_through(now, cfg.seal_timeout_s),
            ):
                if expired is not None:
                    bound = max(bound, expired)
            limit = cfg.window_max_bytes if self.share is None else self.share  # agent-wide budget, shared
            if window.nbytes + partials.nbytes > limit:
                half = limit // 2
                for early in (window.bound_for_budget(half), partials.bound_for_budget(half)):
                    if early is not None:
                        bound = max(bound, early)
        if bound < min(lows):
            return 0
        g = self.record
        local = np.array(sorted(r for r, run in self.ranks.items() if run.via is None), np.int64)
        for key, part in window.take_through(bound).items():
            # local points join the node partials as one more source: overlaps are caught the same way
            partials.add(key, LOCAL, local, part, now)
        clean, dirty = partials.take_through(bound)
        for key, part in clean.items():
            nc.group_rows.append((g.id, key, finalize(part, g.world_size), False))
        for key, steps in dirty.items():
            nc.fresh.setdefault((g.id, key), []).append(steps)
        for key in list(self.seen):
            steps = self.seen[key]
            rest = steps[steps > bound]
            if len(rest):
                self.seen[key] = rest
            else:
                del self.seen[key]
        if bound > g.sealed_through:
            g.sealed_through = int(bound)
        g.updated = now
        nc.groups[g.id] = g
        return len(clean) + len(dirty)

    @property
    def nbytes(self) -> int:
        return self.window.nbytes + self.partials.nbytes + sum(s.nbytes for s in self.seen.values())
