"""Group windows and when to seal them.

Each group (one distributed job) keeps its open points in a
:class:`grouping.GroupWindow`. A step is *sealed* — reduced over ranks into a
group row and written — once every rank we still wait for has committed past
it. We wait for a rank that is running and has been heard from recently, and,
for a while after the group appeared, for ranks that have not said hello yet,
unless the job is over (every rank that said hello is done and its launcher
process has exited, as when only rank 0 logs): then everything is sealed at once.
Finished, failed and crashed ranks are not waited for. Independently, a step is
sealed after ``seal_timeout_s``, and the oldest steps are sealed early when the
window exceeds its share of the agent's byte budget (``window_max_bytes``, shared
by the groups holding points; the agent reads no frame while the total is over it):
memory stays bounded and nothing is dropped. A seal reduces at most about
``SEAL_SLICE_BYTES`` of points per tick (a slice of keys), so its transient memory
is bounded too; the ACK of a rank that is done waits for the last slice.

A seal of very many keys (a wide row) is cut into calls of at most ``budget``
keys, one per tick: the group's ``sealed_through`` moves when the last key is
sealed, and points that arrive meanwhile for a key already sealed in that pass
count as late (recomputed), so a group row is never written from part of its
points.

Points that arrive for a step already sealed are not lost: the per-rank rows go
to the store as usual, and the group row of that step is recomputed from the
stored per-rank values in the same transaction (a new revision, counted as late):
:func:`recompute_rows`, called by the store sink's commit (agent/sinks/store.py).

A node agent that forwards to a root seals the same way but only over its own
ranks, and what it seals becomes partials sent upstream instead of rows
(:class:`NodeGroupState`); the root merges them (agent/rootgroups.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.runs import launcher_gone
from agent.store.base import GroupRecord
from grouping import GroupWindow, finalize, numeric_entries, reduce_points

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.nextcommit import NextCommit
    from agent.runs import RunState
    from agent.status import Counters
    from agent.store.base import Txn


# held points reduced per seal call (a slice of keys); the rest goes on at the next tick
SEAL_SLICE_BYTES = 4 << 20


def budget_bound(window: GroupWindow, max_bytes: int) -> int | None:
    """A step bound whose seal brings ``window`` within ``max_bytes`` (None: it is within already).

    ``GroupWindow.bound_for_budget`` finds the exact bound from every held step (a copy of all of them, and
    one more to partition it: twice the window's step bytes, the agent's largest transient once the window is
    full). This works from the chunks' (highest step, bytes) instead: a chunk whose highest step is above the
    bound is counted whole, so the seal leaves at most ``max_bytes`` and may take a few more points than the
    exact bound would."""
    if window.nbytes <= max_bytes:
        return None
    chunk_lists = getattr(window, "_chunks", None)
    if chunk_lists is None:  # another window class: its own (exact) answer
        return window.bound_for_budget(max_bytes)
    his = np.fromiter((c.hi for cs in chunk_lists.values() for c in cs), np.int64)
    sizes = np.fromiter((c.nbytes for cs in chunk_lists.values() for c in cs), np.int64)
    order = np.argsort(his, kind="stable")
    his, sizes = his[order], sizes[order]
    # bytes that may stay if the bound is his[i]: chunks whose highest step is above it
    above = np.concatenate([np.cumsum(sizes[::-1])[::-1][1:], [0]])
    fits = np.flatnonzero(above <= max_bytes)
    return int(his[fits[0]])


class GroupState:
    __slots__ = ("record", "window", "ranks", "seen_at", "sealing", "_sealed_keys", "_over", "_over_checked", "share")

    def __init__(self, record: GroupRecord, now: float):
        self.record = record
        self.window = GroupWindow()
        self.ranks: dict[int, RunState] = {}
        self.seen_at = now
        # a seal of very many keys runs over several ticks (at most ``budget`` keys each): the step it
        # seals through, and the keys already sealed in it (their points at or below it are late now)
        self.sealing: int | None = None
        self._sealed_keys: set[str] = set()
        self._over = False  # job_over(): every rank done and every launcher gone
        self._over_checked = float("-inf")
        # this group's part of the agent-wide window budget (cfg.window_max_bytes), set by the agent's tick
        self.share: int | None = None

    def __repr__(self) -> str:
        g = self.record
        return (
            f"<GroupState {g.project}/{g.name} ranks={len(self.ranks)}/{g.world_size} "
            f"sealed_through={g.sealed_through} window={self.window.nbytes}B{' job_over' if self._over else ''}>"
        )

    def add(self, rank: int, key: str, steps: np.ndarray, values: np.ndarray, now: float, nc: NextCommit) -> None:
        """Numeric points of one key from one rank: open steps into the window, sealed ones to recompute."""
        values = values.astype(np.float64, copy=False)
        sealed = self.record.sealed_through
        if self.sealing is not None and key in self._sealed_keys:
            sealed = max(sealed, self.sealing)
        if len(steps) and steps.min() <= sealed:
            late = steps <= sealed
            nc.recompute.setdefault((self.record.id, key), []).append(steps[late])
            self.record.late_rows += int(late.sum())
            nc.groups[self.record.id] = self.record
            steps, values = steps[~late], values[~late]
        if len(steps):
            self.window.add(key, rank, steps, values, now)

    def add_column(self, rank: int, key: str, steps: np.ndarray, values: Any, now: float, nc: NextCommit) -> None:
        """Any column of a batch: a numeric array whole, a list of values (encoding "mp") by its numbers.

        A client sends a key's column as a list as soon as one of its values in the batch is not a
        number (one string among 20 floats): its numbers must still make group rows, or the rows of
        a step would depend on how the client cut its batches (issue 9, finding 7)."""
        if isinstance(values, np.ndarray):
            self.add(rank, key, steps, values, now, nc)
            return
        where, numbers = numeric_entries(values)
        if len(where):
            self.add(rank, key, steps[where], numbers, now, nc)

    @property
    def nbytes(self) -> int:
        """Bytes of open points held (the agent-wide window budget counts these)."""
        return self.window.nbytes

    def reopen(self, key: str, rank: int, steps: np.ndarray, values: np.ndarray, now: float) -> None:
        """Stored points above the seal, after a restart: back into the open window."""
        self.window.add(key, rank, steps, values, now)

    def waited_watermarks(self, now: float, cfg: AgentConfig) -> list[int]:
        """Watermarks of the ranks sealing waits for; -1 stands for ranks that have not said hello yet.

        Visits the ranks that said hello, not ``range(world_size)``: a world size is only a claim of
        the peers and must not set the cost of every tick."""
        marks = [run.watermark for run in self.ranks.values() if run.running and now - run.last_seen <= cfg.silence_s]
        if self.awaits_joiners(now, cfg):
            marks.append(-1)
        return marks

    def awaits_joiners(self, now: float, cfg: AgentConfig) -> bool:
        """Ranks of the group have not said hello yet, the join grace is not over, and the job may still
        start them (:meth:`job_over`)."""
        if len(self.ranks) >= self.record.world_size or now - self.seen_at >= cfg.join_grace_s:
            return False
        return not self.job_over(now, cfg)

    def job_over(self, now: float, cfg: AgentConfig) -> bool:
        """No rank can join any more: every rank that said hello is done (finished, failed, crashed) and
        the launcher process of each (its parent: torchrun's agent, mpirun, slurmstepd) has exited.

        A job where only rank 0 logs (HF Trainer, Lightning's ``rank_zero_only``, nanoGPT's
        ``master_process``) is then sealed at once instead of after the join grace. While a launcher
        lives it may still start a rank (a slow one, an elastic restart), so the grace holds; ranks
        whose launcher is unknown here (forwarded by a node agent, taken back after a restart) keep it
        too. A rank that joins after all (another launcher) is not lost: its points are late data and
        the group rows are recomputed. Checked at most every ``liveness_interval_s``; once over, over
        until a rank runs again."""
        if self._over:
            if not any(run.running for run in self.ranks.values()):
                return True
            self._over = False
        if now < self._over_checked + cfg.liveness_interval_s:
            return False
        self._over_checked = now
        if not self.ranks or any(run.running or run.launcher is None for run in self.ranks.values()):
            return False
        self._over = all(launcher_gone(run.launcher) for run in self.ranks.values())  # type: ignore[arg-type]
        return self._over

    def seal_bound(self, now: float, cfg: AgentConfig, everything: bool) -> int | None:
        """The step through which the window may seal now: the lowest watermark waited for, raised by the
        seal timeout and the byte budget (all of it when ``everything``); None with nothing held."""
        window = self.window
        if everything:
            return window.max_step
        marks = self.waited_watermarks(now, cfg)
        bound = min(marks) if marks else window.max_step
        budget = cfg.window_max_bytes if self.share is None else self.share
        for forced in (window.expired_through(now, cfg.seal_timeout_s), budget_bound(window, budget)):
            if forced is not None:
                bound = forced if bound is None else max(bound, forced)
        return bound

    def seal(
        self, now: float, cfg: AgentConfig, nc: NextCommit, everything: bool = False, budget: int | None = None
    ) -> int:
        """Seal what may be sealed, group rows of at most ``budget`` keys (None: no limit); returns the
        number of keys for which group rows were produced. A seal that hits the budget goes on at the
        next call through the same step; the group's ``sealed_through`` moves when it is complete."""
        window = self.window
        g = self.record
        if self.sealing is not None and window.n_points == 0:  # nothing left to seal: the pass is complete
            g.sealed_through = max(g.sealed_through, self.sealing)
            self.sealing = None
            self._sealed_keys.clear()
            return 0
        if self.sealing is not None and not everything:
            bound: int | None = self.sealing
        else:
            if window.n_points == 0:
                return 0
            bound = self.seal_bound(now, cfg, everything)
            if bound is None or window.min_step is None or bound < window.min_step:
                return 0
        if budget is not None and not everything and window.nbytes > SEAL_SLICE_BYTES:
            # a slice reduces about SEAL_SLICE_BYTES of held points: its transient memory (sorting, reducing,
            # group rows, their encoding) stays bounded however large the window grew
            budget = max(1, min(budget, SEAL_SLICE_BYTES * len(window.keys) // window.nbytes))
        parts, complete = window.take_keys_through(bound, None if everything else budget)
        for key, partial in parts.items():
            nc.group_rows.append((g.id, key, finalize(partial, g.world_size), False))
        if complete:
            self.sealing = None
            self._sealed_keys.clear()
            if bound > g.sealed_through:
                g.sealed_through = int(bound)
        else:
            self.sealing = int(bound)
            self._sealed_keys.update(parts)
        g.updated = now
        nc.groups[g.id] = g
        return len(parts)


# what a numeric column holds: bools too (the client sends a bool column as "b1", numbers mixed
# with bools as "f8"/"i8"), so a number in a list column counts exactly as it would in an array
class NodeGroupState(GroupState):
    """A group as a forwarding node agent sees it: only its own ranks.

    It seals by the watermarks of its running ranks (and the timeout and byte budget) into
    :class:`grouping.Partial` rows for the root, and reports how far it has sealed
    (``record.sealed_through``, the node's *watermark* of the group): a promise that no
    partial for a step at or below it will follow. Points that arrive for such a step are
    late at the node; the root is told (a late mark) and recomputes that step from per-rank
    values. The watermark advances even when the window is empty (ranks that log only
    non-numeric values must not hold the root back).

    Ranks of the group that have not said hello are waited for during the join grace, as on a
    single node, until the root reports that every rank of the group has joined somewhere
    (``complete``): a node cannot know which ranks will be its own."""

    __slots__ = ("complete",)

    def __init__(self, record: GroupRecord, now: float):
        super().__init__(record, now)
        self.complete = False

    def awaits_joiners(self, now: float, cfg: AgentConfig) -> bool:
        return not self.complete and super().awaits_joiners(now, cfg)

    def seal(
        self, now: float, cfg: AgentConfig, nc: NextCommit, everything: bool = False, budget: int | None = None
    ) -> int:
        # ``budget`` is not applied here: partials are sealed whole (the root merges them per step)
        window = self.window
        g = self.record
        bound = self.seal_bound(now, cfg, everything)
        if bound is None or bound <= g.sealed_through:
            return 0
        parts = window.take_through(bound) if window.n_points else {}
        ranks = np.array(sorted(self.ranks), np.int64)  # every rank this node has served in the group
        for key, partial in parts.items():
            nc.partials.append((g.id, key, ranks, partial))
        g.sealed_through = int(bound)
        g.updated = now
        nc.groups[g.id] = g
        return len(parts)


def seal_groups(groups: Iterable[GroupState], now: float, cfg: AgentConfig, nc: NextCommit, budget: int | None) -> None:
    """Seal what may be sealed in every group, group rows of at most ``budget`` keys in all (None: at shutdown,
    everything of the groups whose every rank is done; running groups stay open for the next agent)."""
    groups = list(groups)
    if budget is None:
        for group in groups:
            if not any(r.running for r in group.ranks.values()):
                group.seal(now, cfg, nc, everything=True)
        return
    # the window budget is the agent's, not each group's: the groups holding points share it
    holding = sum(1 for g in groups if g.window.nbytes)
    share = cfg.window_max_bytes // max(1, holding)
    for group in groups:
        group.share = share
        budget -= group.seal(now, cfg, nc, budget=max(1, budget))


def recompute_rows(txn: Txn, nc: NextCommit, groups: dict[int, GroupState], counters: Counters) -> None:
    """The group rows of steps sealed from points that were not all there: late points (a new revision) and,
    at a root, steps whose partials could not be trusted (agent/rootgroups.py). Reduced from the per-rank
    values the store holds, this commit's own included: hence within the commit's transaction ``txn``."""
    for revision, todo in ((True, nc.recompute), (False, nc.fresh)):
        for (gid, key), parts in todo.items():
            steps = np.unique(np.concatenate(parts))
            s, ranks, values = txn.rank_values(gid, key, steps)
            rows = finalize(reduce_points(s, ranks, values), groups[gid].record.world_size)
            txn.add_group_rows(gid, key, rows, revision)
            counters.add("group_revisions" if revision else "group_rows_recomputed", len(steps))
