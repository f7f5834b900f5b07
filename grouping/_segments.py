"""Per-step (segment) reductions of points ordered by (step, rank), for :mod:`grouping.reducers`.

Points of one step form a segment (``starts`` / ``counts``); inside it values are in rank
order, so the first position with some property is the lowest rank with it. The all-finite
case (the common one) needs no masks and stays in :func:`grouping.reducers._reduce_ordered`;
:func:`reduce_finite` is the general case: statistics over the finite values of each segment,
plus how many values are NaN or ±Inf and the first of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FiniteReduction", "first_hits", "reduce_finite"]


def first_hits(hit: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per segment, the first position where ``hit`` is true; every segment must have one."""
    positions = np.flatnonzero(hit)
    if positions.shape[0] == starts.shape[0]:
        return positions  # every segment has at least one hit, so here exactly one
    segment = np.repeat(np.arange(starts.shape[0]), counts)[positions]
    first = np.empty(positions.shape[0], dtype=bool)
    first[0] = True
    np.not_equal(segment[1:], segment[:-1], out=first[1:])
    return positions[first]


def _first_hits_sparse(hit: np.ndarray, segment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(segments, positions): for each segment with a hit, its first hit's position."""
    positions = np.flatnonzero(hit)
    if not positions.shape[0]:
        return positions, positions
    seg = segment[positions]
    first = np.empty(positions.shape[0], dtype=bool)
    first[0] = True
    np.not_equal(seg[1:], seg[:-1], out=first[1:])
    return seg[first], positions[first]


@dataclass(frozen=True, slots=True)
class FiniteReduction:
    """Per segment: sum, m2, min, max (and their ranks) over the finite values; ``bad`` how many
    values are not finite and ``bad_rank`` the first of their ranks (-1 when none)."""

    sum: np.ndarray
    m2: np.ndarray
    min: np.ndarray
    max: np.ndarray
    min_rank: np.ndarray
    max_rank: np.ndarray
    bad: np.ndarray
    bad_rank: np.ndarray


def reduce_finite(
    rank: np.ndarray, value: np.ndarray, finite: np.ndarray, starts: np.ndarray, counts: np.ndarray
) -> FiniteReduction:
    """Statistics over the finite values of each segment; a segment without any has sum -0.0,
    m2 0, min/max NaN and min/max rank -1 (so it is the identity of the merge)."""
    n_seg = starts.shape[0]
    segment = np.repeat(np.arange(n_seg), counts)
    good = np.add.reduceat(finite.astype(np.int64), starts)
    # -0.0 is the additive identity (x + -0.0 == x, signed zeros included): a non-finite
    # value adds nothing, and a step of only -0.0 and NaN sums to -0.0 as its finite values do
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        sums = np.add.reduceat(np.where(finite, value, -0.0), starts)
        dev = np.where(finite, value - np.repeat(sums / good, counts), 0.0)
        dev *= dev
        m2 = np.add.reduceat(dev, starts)
    del dev
    out = {}
    for name, fill, reducer in (("min", np.inf, np.minimum), ("max", -np.inf, np.maximum)):
        masked = np.where(finite, value, fill)
        extreme = np.repeat(reducer.reduceat(masked, starts), counts)
        segs, pos = _first_hits_sparse(finite & (value == extreme), segment)
        val = np.full(n_seg, np.nan)
        val[segs] = value[pos]
        who = np.full(n_seg, -1, np.int64)
        who[segs] = rank[pos]
        out[name], out[name + "_rank"] = val, who
    segs, pos = _first_hits_sparse(~finite, segment)
    bad_rank = np.full(n_seg, -1, np.int64)
    bad_rank[segs] = rank[pos]
    return FiniteReduction(sums, m2, bad=counts - good, bad_rank=bad_rank, **out)
