"""Open points of one group, held until the agent seals a prefix of steps.

A group row at a step can only be written once enough ranks have reported it, so the agent
holds each group's recent points here. *When* to seal is policy that needs live state
(watermarks of live ranks, timeouts, a byte budget) and lives in the agent; this module only
answers the questions that policy asks (what arrived before a deadline, how far to seal to fit
a budget) and hands back what is sealed, reduced.

Points are stored as they arrive: per key, a list of chunks ``(rank, steps, values, arrival
time)``. Adding a chunk is O(its length) with no reshuffling, and list order is arrival order,
so "last update wins" survives across chunks when sealed points are reduced. Sealing always
takes a prefix of steps (every point with ``step <= bound``) so a sealed row is never missing
points that were already held.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._order import as_float64, as_int64
from .errors import GroupingError
from .reducers import Partial, reduce_points

__all__ = ["GroupWindow"]

_STEP_MAX = int(np.iinfo(np.int64).max)
# Every held point costs one int64 step and one float64 value.
_POINT_BYTES = np.dtype(np.int64).itemsize + np.dtype(np.float64).itemsize


@dataclass(slots=True)
class _Chunk:
    """Points of one key from one rank that arrived together. Arrays are owned copies."""

    rank: int
    steps: np.ndarray  # int64
    values: np.ndarray  # float64
    arrived: float
    lo: int  # min(steps)
    hi: int  # max(steps)

    @property
    def nbytes(self) -> int:
        return self.steps.nbytes + self.values.nbytes


def latest_expired(chunk_lists: Iterable[Iterable[Any]], cutoff: float) -> int | None:
    """Largest ``hi`` step among chunks (anything with ``arrived`` and ``hi``) that arrived at or before
    ``cutoff``; None if none did. Shared by both windows' seal timeouts."""
    found: int | None = None
    for chunks in chunk_lists:
        for c in chunks:
            if c.arrived <= cutoff and (found is None or c.hi > found):
                found = c.hi
    return found


class GroupWindow:
    """Open (not yet sealed) points of one group: per key, chunks of (step, rank, value) plus
    the time each chunk arrived. The agent decides *when* to seal (watermarks of live ranks,
    timeouts, byte budget); this class holds the points and reduces what is sealed.

    Time is whatever clock the caller uses, passed in as a float: the window never reads one.
    """

    __slots__ = ("_chunks", "_nbytes")

    def __init__(self) -> None:
        self._chunks: dict[str, list[_Chunk]] = {}
        self._nbytes = 0

    def add(self, key: str, rank: int, steps: np.ndarray, values: np.ndarray, now: float) -> None:
        """Hold one chunk: ``values[i]`` of ``key`` from ``rank`` at ``steps[i]``, arrived at
        ``now``. Steps may come in any order and may repeat (a later point replaces an earlier
        one of the same step and rank when sealed). The arrays are copied."""
        s = _owned(as_int64(steps, "steps"), steps)
        v = _owned(as_float64(values, "values"), values)
        if s.shape != v.shape:
            raise GroupingError(f"steps and values must have equal lengths, got {s.shape[0]} and {v.shape[0]}")
        if not s.shape[0]:
            return
        chunk = _Chunk(int(rank), s, v, float(now), int(s.min()), int(s.max()))
        self._chunks.setdefault(key, []).append(chunk)
        self._nbytes += chunk.nbytes

    def take_through(self, bound: int) -> dict[str, Partial]:
        """Remove every point with ``step <= bound`` and return, per key, the
        :func:`reduce_points` of them. Keys with no such points are omitted; partially taken
        chunks keep their remaining points and arrival time."""
        return self.take_keys_through(bound)[0]

    def take_keys_through(self, bound: int, max_keys: int | None = None) -> tuple[dict[str, Partial], bool]:
        """:meth:`take_through` for at most ``max_keys`` keys (None: all): ``(sealed, complete)``,
        complete when no point with ``step <= bound`` is left. Lets the caller seal a window of
        very many keys over several calls, each of bounded cost."""
        bound = int(bound)
        sealed: dict[str, Partial] = {}
        for key in list(self._chunks):
            if max_keys is not None and len(sealed) >= max_keys:
                if any(c.lo <= bound for c in self._chunks[key]):
                    return sealed, False
                continue
            kept: list[_Chunk] = []
            ranks: list[int] = []
            steps: list[np.ndarray] = []
            values: list[np.ndarray] = []
            for c in self._chunks[key]:
                if c.lo > bound:
                    kept.append(c)
                    continue
                self._nbytes -= c.nbytes
                if c.hi <= bound:
                    s, v = c.steps, c.values
                else:
                    mask = c.steps <= bound
                    s, v = c.steps[mask], c.values[mask]
                    np.logical_not(mask, out=mask)
                    c.steps, c.values = c.steps[mask], c.values[mask]
                    c.lo, c.hi = int(c.steps.min()), int(c.steps.max())
                    self._nbytes += c.nbytes
                    kept.append(c)
                ranks.append(c.rank)
                steps.append(s)
                values.append(v)
            if not steps:
                continue
            if kept:
                self._chunks[key] = kept
            else:
                del self._chunks[key]
            sealed[key] = self._reduce(ranks, steps, values)
        return sealed, True

    def take_all(self) -> dict[str, Partial]:
        """Remove and reduce every held point (e.g. when the group finishes)."""
        return self.take_through(_STEP_MAX)

    def expired_through(self, now: float, timeout_s: float) -> int | None:
        """Largest step among chunks that arrived at or before ``now - timeout_s`` (None if
        none). Sealing through it seals every timed-out point and keeps the sealed set a
        prefix of steps."""
        return latest_expired(self._chunks.values(), now - timeout_s)

    def bound_for_budget(self, max_bytes: int) -> int | None:
        """None if :attr:`nbytes` <= ``max_bytes``; else the smallest step bound such that
        ``take_through(bound)`` brings :attr:`nbytes` to at most ``max_bytes`` (the largest
        held step when only an empty window fits, e.g. a budget below zero)."""
        if self._nbytes <= max_bytes:
            return None
        # Every held point costs _POINT_BYTES, so the budget is a number of points that may
        # stay: those with the largest steps.
        may_stay = max(0, int(max_bytes)) // _POINT_BYTES
        all_steps = np.concatenate([c.steps for cs in self._chunks.values() for c in cs])
        k = all_steps.shape[0] - may_stay - 1  # index of the largest step that must go
        return int(np.partition(all_steps, k)[k])

    @property
    def nbytes(self) -> int:
        """Bytes of held arrays."""
        return self._nbytes

    @property
    def n_points(self) -> int:
        """Points held (a repeated (step, rank) counts every time until sealed)."""
        return self._nbytes // _POINT_BYTES

    @property
    def min_step(self) -> int | None:
        """Smallest held step, None when empty."""
        return min((c.lo for cs in self._chunks.values() for c in cs), default=None)

    @property
    def max_step(self) -> int | None:
        """Largest held step, None when empty."""
        return max((c.hi for cs in self._chunks.values() for c in cs), default=None)

    @property
    def keys(self) -> list[str]:
        """Keys with held points, in first-arrival order."""
        return list(self._chunks)

    def __repr__(self) -> str:
        n_chunks = sum(len(cs) for cs in self._chunks.values())
        span = "" if not n_chunks else f", steps={self.min_step}..{self.max_step}"
        return (
            f"GroupWindow(keys={len(self._chunks)}, chunks={n_chunks}, "
            f"points={self.n_points}, nbytes={self._nbytes}{span})"
        )

    @staticmethod
    def _reduce(ranks: list[int], steps: list[np.ndarray], values: list[np.ndarray]) -> Partial:
        """Reduce one key's taken pieces, concatenated in arrival order."""
        if len(steps) == 1:
            s, v = steps[0], values[0]
            r = np.full(s.shape[0], ranks[0], dtype=np.int64)
        else:
            s, v = np.concatenate(steps), np.concatenate(values)
            r = np.repeat(np.array(ranks, dtype=np.int64), [x.shape[0] for x in steps])
        return reduce_points(s, r, v)


def _owned(converted: np.ndarray, given: object) -> np.ndarray:
    """``converted`` as an array nobody else holds: copy it unless conversion already did."""
    if converted is given or converted.base is not None:
        return converted.copy()
    return converted
