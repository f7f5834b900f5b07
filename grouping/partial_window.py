"""The root's open window of node partials, held until the root seals a prefix of steps.

A node agent reduces its own ranks' points into :class:`~grouping.reducers.Partial` rows and
sends them up; the root merges the partials of every node with :func:`~grouping.reducers.merge`
into exactly what one agent seeing every rank would compute — provided every (rank, step)
point is counted once. That holds when the partials of a step come from disjoint rank sets
and each source sends each step once. When it cannot be guaranteed, the step is *dirty*: its
partials are ignored and the caller recomputes the row from the stored per-rank values.

What makes a step dirty (the caller reports the last two):

* two chunks of the same source cover the same step (a node agent that restarted and sealed
  a step again, a replay);
* chunks of different sources cover the same step and the sources share a rank (a rank that
  moved to another node, elastic restart);
* :meth:`PartialWindow.mark_dirty` — points a node received for a step it had already
  sealed (late at the node), or steps whose partials were lost (a restarted root or node).

Like :class:`~grouping.window.GroupWindow` this holds data and answers the sealing policy's
questions (deadline, byte budget); *when* to seal is the agent's business. No clocks: times
are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._order import as_int64
from .errors import GroupingError
from .reducers import Partial, merge_all
from .window import latest_expired

__all__ = ["PartialWindow"]

_STEP_MAX = int(np.iinfo(np.int64).max)
_ROW_BYTES = 8 * len(Partial.FIELDS)  # one step of one partial: one 8-byte value per field
_EMPTY = np.empty(0, np.int64)


@dataclass(slots=True)
class _Chunk:
    source: str
    part: Partial
    arrived: float
    lo: int
    hi: int


class PartialWindow:
    """Open partials of one group: per key, chunks ``(source, Partial, arrival time)`` plus the
    set of dirty steps per key."""

    __slots__ = ("_chunks", "_dirty", "_ranks", "_conflicts", "_nbytes")

    def __init__(self) -> None:
        self._chunks: dict[str, list[_Chunk]] = {}
        self._dirty: dict[str, np.ndarray] = {}  # key -> sorted unique steps
        self._ranks: dict[str, set[int]] = {}  # source -> every rank it ever reported for
        self._conflicts: dict[str, set[str]] = {}  # source -> other sources sharing a rank with it
        self._nbytes = 0

    # ------------------------------------------------------------ adding

    def add(self, key: str, source: str, ranks: np.ndarray, part: Partial, now: float) -> np.ndarray:
        """Hold ``part`` (the rows of ``key`` that ``source`` reduced over ``ranks``), arrived at
        ``now``. Returns the steps this made dirty (already held for the same source, or for a
        source sharing one of ``ranks``)."""
        if not isinstance(part, Partial):
            raise GroupingError(f"part must be a Partial, got {type(part).__name__}")
        self._learn_ranks(source, as_int64(ranks, "ranks"))
        if not len(part):
            return _EMPTY
        lo, hi = int(part.step[0]), int(part.step[-1])
        suspects = self._conflicts.get(source, set()) | {source}
        clashes = []
        for c in self._chunks.get(key, ()):
            if c.source in suspects and c.lo <= hi and lo <= c.hi:
                both = np.intersect1d(c.part.step, part.step, assume_unique=True)
                if len(both):
                    clashes.append(both)
        chunk = _Chunk(source, part, float(now), lo, hi)
        self._chunks.setdefault(key, []).append(chunk)
        self._nbytes += part.nbytes
        if not clashes:
            return _EMPTY
        dirty = np.unique(np.concatenate(clashes))
        self.mark_dirty(key, dirty)
        return dirty

    def _learn_ranks(self, source: str, ranks: np.ndarray) -> None:
        known = self._ranks.setdefault(source, set())
        new = set(ranks.tolist()) - known
        if not new:
            return
        known |= new
        for other, theirs in self._ranks.items():
            if other != source and not new.isdisjoint(theirs):
                self._conflicts.setdefault(source, set()).add(other)
                self._conflicts.setdefault(other, set()).add(source)

    def mark_dirty(self, key: str, steps: np.ndarray) -> None:
        """The rows of ``key`` at ``steps`` must be recomputed from per-rank values when sealed;
        partials for them (held or arriving later) are ignored."""
        steps = np.unique(as_int64(steps, "steps"))
        if not len(steps):
            return
        old = self._dirty.get(key)
        merged = steps if old is None else np.union1d(old, steps)
        self._nbytes += merged.nbytes - (0 if old is None else old.nbytes)
        self._dirty[key] = merged

    # ------------------------------------------------------------ sealing

    def take_through(self, bound: int) -> tuple[dict[str, Partial], dict[str, np.ndarray]]:
        """Remove everything at steps ``<= bound``. Returns, per key, the merge of the clean
        partials (dirty steps left out) and the dirty steps to recompute. Keys with nothing at
        or below the bound are omitted from both."""
        bound = int(bound)
        clean: dict[str, Partial] = {}
        dirty: dict[str, np.ndarray] = {}
        for key in list(self._chunks):
            kept: list[_Chunk] = []
            taken: list[Partial] = []
            for c in self._chunks[key]:
                if c.lo > bound:
                    kept.append(c)
                    continue
                self._nbytes -= c.part.nbytes
                if c.hi <= bound:
                    taken.append(c.part)
                    continue
                below = c.part.step <= bound
                taken.append(c.part.take(below))
                c.part = c.part.take(~below)
                c.lo = int(c.part.step[0])
                self._nbytes += c.part.nbytes
                kept.append(c)
            if kept:
                self._chunks[key] = kept
            else:
                del self._chunks[key]
            if taken:
                # chunks of one source never share a step unless dirty, nor do sources sharing a
                # rank: the merge is exact on every clean step (dirty ones are dropped below)
                clean[key] = merge_all(taken)
        for key in list(self._dirty):
            steps = self._dirty[key]
            n = int(np.searchsorted(steps, bound, side="right"))
            if not n:
                continue
            dirty[key] = steps[:n]
            rest = steps[n:]
            self._nbytes -= steps.nbytes - rest.nbytes
            if len(rest):
                self._dirty[key] = rest
            else:
                del self._dirty[key]
        for key, part in list(clean.items()):
            steps = dirty.get(key)
            if steps is not None:
                part = part.take(np.isin(part.step, steps, invert=True))
            if len(part):
                clean[key] = part
            else:
                del clean[key]
        return clean, dirty

    def take_all(self) -> tuple[dict[str, Partial], dict[str, np.ndarray]]:
        return self.take_through(_STEP_MAX)

    def expired_through(self, now: float, timeout_s: float) -> int | None:
        """Largest step among chunks that arrived at or before ``now - timeout_s`` (None if none)."""
        return latest_expired(self._chunks.values(), now - timeout_s)

    def bound_for_budget(self, max_bytes: int) -> int | None:
        """None if :attr:`nbytes` <= ``max_bytes``; else the smallest step bound whose
        ``take_through`` brings the held rows to at most ``max_bytes`` (each held step of a
        chunk costs one 8-byte value per field of a partial row, each dirty step one int64)."""
        if self._nbytes <= max_bytes:
            return None
        parts = [c.part.step for cs in self._chunks.values() for c in cs]
        weights = [np.full(len(s), _ROW_BYTES, np.int64) for s in parts]
        for steps in self._dirty.values():
            parts.append(steps)
            weights.append(np.full(len(steps), steps.itemsize, np.int64))
        steps = np.concatenate(parts)
        cost = np.concatenate(weights)
        order = np.argsort(steps, kind="stable")[::-1]  # largest steps stay first
        kept = np.cumsum(cost[order])
        n_stay = int(np.searchsorted(kept, max(0, int(max_bytes)), side="right"))
        if n_stay >= len(steps):
            return None
        bound = int(steps[order[n_stay]])  # the largest step that must go
        return bound

    # ------------------------------------------------------------ state

    @property
    def nbytes(self) -> int:
        """Bytes of held partial rows and dirty-step arrays."""
        return self._nbytes

    @property
    def empty(self) -> bool:
        return not self._chunks and not self._dirty

    @property
    def n_chunks(self) -> int:
        return sum(len(cs) for cs in self._chunks.values())

    @property
    def min_step(self) -> int | None:
        lows = [c.lo for cs in self._chunks.values() for c in cs] + [int(s[0]) for s in self._dirty.values()]
        return min(lows, default=None)

    @property
    def max_step(self) -> int | None:
        highs = [c.hi for cs in self._chunks.values() for c in cs] + [int(s[-1]) for s in self._dirty.values()]
        return max(highs, default=None)

    def dirty_steps(self, key: str) -> np.ndarray:
        return self._dirty.get(key, _EMPTY)

    @property
    def sources(self) -> list[str]:
        return list(self._ranks)

    def __repr__(self) -> str:
        n_dirty = sum(len(s) for s in self._dirty.values())
        span = "" if self.empty else f", steps={self.min_step}..{self.max_step}"
        return (
            f"PartialWindow(keys={len(self._chunks)}, chunks={self.n_chunks}, sources={len(self._ranks)}, "
            f"dirty={n_dirty}, nbytes={self._nbytes}{span})"
        )
