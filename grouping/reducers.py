"""Mergeable per-step reducers: the same rules at every level of ranks → node partials → root.

A group row at a step summarises one key over the ranks that reported it: count, mean, min,
max, std and the ranks holding the min and max. Node agents see only their own ranks and the
root sees only node partials, so the summary must be built from partials that merge exactly,
in any order and any tree shape, into what one process would compute over all the points.
:class:`Partial` is that mergeable state, columnar over steps so one numpy call handles every
step of a key at once.

The reference semantics are numpy's over the ranks that reported at a step, values ordered by
rank: ``np.mean``, ``np.min``, ``np.max``, ``np.std`` (population, ``ddof=0``) and
``np.argmin`` / ``np.argmax`` mapped to ranks, including numpy's NaN and ±Inf behaviour (NaN
propagates and is the "first" extreme; ties go to the lowest rank).

- count, min, max, min_rank, max_rank are exact for any split and merge order: merging only
  picks one side's value by a total order (NaN first, then value, then lowest rank).
- mean = sum / count; sums merge by addition, so they match numpy to rounding.
- std uses Chan et al.'s parallel update of m2 (sum of squared deviations): adding a second
  partial adds ``delta² · n_a · n_b / n`` with ``delta`` the difference of the two means.
  ``m2`` is NaN exactly when some value was NaN or ±Inf (as numpy's std is); finite values
  whose squares or sums overflow give ``m2 = inf``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ._order import as_float64, as_int64, last_wins_order
from .errors import GroupingError

__all__ = ["Partial", "reduce_points", "merge", "merge_all", "finalize", "FINAL_FIELDS"]

#: Keys of :func:`finalize`'s result, in order.
FINAL_FIELDS: tuple[str, ...] = (
    "step",
    "count",
    "expected",
    "mean",
    "min",
    "max",
    "std",
    "min_rank",
    "max_rank",
)

_INT_FIELDS = frozenset({"step", "count", "min_rank", "max_rank"})


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Partial:
    """Mergeable per-step aggregates of one key over a set of ranks, columnar over steps.

    Row ``i`` summarises the ranks of this partial that reported at ``step[i]``. Arrays are
    shared, not copied, by every operation that can: treat them as read-only.
    """

    step: np.ndarray  # int64, strictly increasing
    count: np.ndarray  # int64 >= 1: ranks that reported at this step
    sum: np.ndarray  # float64
    m2: np.ndarray  # float64: sum of squared deviations from this partial's mean
    min: np.ndarray  # float64
    max: np.ndarray  # float64
    min_rank: np.ndarray  # int64: rank holding the min
    max_rank: np.ndarray  # int64: rank holding the max

    FIELDS: ClassVar[tuple[str, ...]] = (
        "step",
        "count",
        "sum",
        "m2",
        "min",
        "max",
        "min_rank",
        "max_rank",
    )

    def __post_init__(self) -> None:
        n = self.step.shape[0]
        for name in Partial.FIELDS:
            if getattr(self, name).shape != (n,):
                raise GroupingError(f"Partial.{name} has shape {getattr(self, name).shape}, expected ({n},)")

    def __len__(self) -> int:
        return int(self.step.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes held by the eight arrays."""
        return sum(getattr(self, name).nbytes for name in Partial.FIELDS)

    @classmethod
    def empty(cls) -> Partial:
        """A partial covering no steps: the identity of :func:`merge`."""
        i, f = np.empty(0, np.int64), np.empty(0, np.float64)
        return cls(i, i, f, f, f, f, i, i)

    def to_dict(self) -> dict[str, np.ndarray]:
        """The eight arrays by field name, for the wire and the store."""
        return {name: getattr(self, name) for name in Partial.FIELDS}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Partial:
        """Rebuild a partial from :meth:`to_dict` output (e.g. decoded from the wire).

        Converts dtypes and validates what :func:`merge` relies on: equal lengths, strictly
        increasing steps, counts of at least one. Raises :class:`GroupingError` otherwise.
        """
        missing = [name for name in Partial.FIELDS if name not in d]
        if missing:
            raise GroupingError(f"partial is missing fields {missing}")
        arrays = [
            as_int64(d[name], name) if name in _INT_FIELDS else as_float64(d[name], name) for name in Partial.FIELDS
        ]
        p = cls(*arrays)
        if len(p) > 1 and not bool((p.step[1:] > p.step[:-1]).all()):
            raise GroupingError("partial steps must be strictly increasing")
        if len(p) and int(p.count.min()) < 1:
            raise GroupingError("partial counts must be >= 1")
        return p

    def take(self, index: np.ndarray) -> Partial:
        """The rows selected by an integer index array or a boolean mask (steps stay ordered
        if the index is increasing)."""
        return Partial(*(getattr(self, name)[index] for name in Partial.FIELDS))

    def __repr__(self) -> str:
        if not len(self):
            return "Partial(empty)"
        return (
            f"Partial(steps={len(self)} [{int(self.step[0])}..{int(self.step[-1])}], "
            f"points={int(self.count.sum())}, max_count={int(self.count.max())})"
        )


def reduce_points(step: np.ndarray, rank: np.ndarray, value: np.ndarray) -> Partial:
    """Points in arrival order → per-step partials.

    If the same (step, rank) occurs more than once, the LAST occurrence in arrival (array)
    order wins (a late update replaces the earlier value). ``step`` and ``rank`` are integer
    arrays, ``value`` any numeric array (ints and bools convert to float64).
    """
    step = as_int64(step, "step")
    rank = as_int64(rank, "rank")
    value = as_float64(value, "value")
    n = step.shape[0]
    if rank.shape[0] != n or value.shape[0] != n:
        raise GroupingError(f"step, rank and value must have equal lengths, got {n}, {rank.shape[0]}, {value.shape[0]}")
    if n == 0:
        return Partial.empty()
    order = last_wins_order(step, rank)
    if order is not None:
        step, rank, value = step[order], rank[order], value[order]
    return _reduce_ordered(step, rank, value)


def _reduce_ordered(step: np.ndarray, rank: np.ndarray, value: np.ndarray) -> Partial:
    """Reduce points ordered by (step, rank) with no repeated pair: one segment per step."""
    n = step.shape[0]
    starts = np.flatnonzero(step[1:] != step[:-1])
    starts += 1
    starts = np.concatenate((np.zeros(1, np.int64), starts))
    counts = np.diff(starts, append=n)
    with np.errstate(invalid="ignore", over="ignore"):
        sums = np.add.reduceat(value, starts)
        dev = value - np.repeat(sums / counts, counts)
        dev *= dev
        m2 = np.add.reduceat(dev, starts)
        del dev
        lo = _first_extreme(value, np.minimum.reduceat(value, starts), starts, counts)
        hi = _first_extreme(value, np.maximum.reduceat(value, starts), starts, counts)
    return Partial(step[starts], counts, sums, m2, value[lo], value[hi], rank[lo], rank[hi])


def _first_extreme(value: np.ndarray, extreme: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per segment, the first position holding the segment's extreme: numpy's argmin/argmax
    rule (the first NaN if there is one, else the first occurrence of the extreme)."""
    hit = value == np.repeat(extreme, counts)
    if bool(np.isnan(extreme).any()):
        hit |= np.isnan(value)  # only NaN segments contain NaN values
    positions = np.flatnonzero(hit)
    if positions.shape[0] == starts.shape[0]:
        return positions  # every segment has at least one hit, so here exactly one: no ties
    segment = np.repeat(np.arange(starts.shape[0]), counts)[positions]
    first = np.empty(positions.shape[0], dtype=bool)
    first[0] = True
    np.not_equal(segment[1:], segment[:-1], out=first[1:])
    return positions[first]


def merge(a: Partial, b: Partial) -> Partial:
    """Union over steps of two partials that cover disjoint rank sets.

    Steps present on one side are copied; steps on both sides are combined. Exact and
    commutative for count, min, max and their ranks; sum and m2 are commutative bit for bit
    and associative to rounding. Disjointness of the rank sets is the caller's contract (it
    is what makes counts add up) and is not checked.
    """
    if not len(a):
        return b
    if not len(b):
        return a
    if a.step.shape == b.step.shape and np.array_equal(a.step, b.step):
        return _combine(a, b)

    steps = np.concatenate((a.step, b.step))
    steps.sort(kind="stable")  # two ascending runs: a linear merge
    fresh = np.empty(steps.shape[0], dtype=bool)
    fresh[0] = True
    np.not_equal(steps[1:], steps[:-1], out=fresh[1:])
    steps = steps[fresh]
    ia = np.searchsorted(steps, a.step)
    ib = np.searchsorted(steps, b.step)

    out = {}
    for name in Partial.FIELDS:
        col = np.empty(steps.shape[0], dtype=getattr(a, name).dtype)
        col[ia] = getattr(a, name)
        col[ib] = getattr(b, name)
        out[name] = col
    if ia.shape[0] + ib.shape[0] > steps.shape[0]:  # some steps on both sides
        row_in_a = np.full(steps.shape[0], -1, dtype=np.int64)
        row_in_a[ia] = np.arange(ia.shape[0])
        jb = np.flatnonzero(row_in_a[ib] >= 0)
        where = ib[jb]
        both = _combine(a.take(row_in_a[where]), b.take(jb))
        for name in Partial.FIELDS:
            out[name][where] = getattr(both, name)
    return Partial(**out)


def _combine(a: Partial, b: Partial) -> Partial:
    """Row-wise merge of two partials over the same steps."""
    na, nb = a.count, b.count
    n = na + nb
    with np.errstate(invalid="ignore", over="ignore"):
        total = a.sum + b.sum
        delta = b.sum / nb - a.sum / na
        m2 = a.m2 + b.m2 + delta * delta * (na * nb / n)
        # delta is NaN only when both means are non-finite from overflowing sums of finite
        # values; keep "m2 is NaN <=> a NaN/Inf value was seen" (see finalize).
        bad = np.isnan(m2)
        if bool(bad.any()):
            m2[bad & ~np.isnan(a.m2) & ~np.isnan(b.m2)] = np.inf
        amin_nan, bmin_nan = np.isnan(a.min), np.isnan(b.min)
        pick_a_min = (
            (a.min < b.min)
            | (amin_nan & ~bmin_nan)
            | (((a.min == b.min) | (amin_nan & bmin_nan)) & (a.min_rank < b.min_rank))
        )
        amax_nan, bmax_nan = np.isnan(a.max), np.isnan(b.max)
        pick_a_max = (
            (a.max > b.max)
            | (amax_nan & ~bmax_nan)
            | (((a.max == b.max) | (amax_nan & bmax_nan)) & (a.max_rank < b.max_rank))
        )
    return Partial(
        a.step,
        n,
        total,
        m2,
        np.where(pick_a_min, a.min, b.min),
        np.where(pick_a_max, a.max, b.max),
        np.where(pick_a_min, a.min_rank, b.min_rank),
        np.where(pick_a_max, a.max_rank, b.max_rank),
    )


def merge_all(parts: Iterable[Partial]) -> Partial:
    """Merge partials over disjoint rank sets, pairwise in a balanced tree (log depth, so k
    partials cost O(total · log k) rather than O(total · k))."""
    level = [p for p in parts if len(p)]
    if not level:
        return Partial.empty()
    while len(level) > 1:
        nxt = [merge(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def finalize(p: Partial, expected: int | np.ndarray) -> dict[str, np.ndarray]:
    """The group row per step: keys exactly :data:`FINAL_FIELDS`.

    ``expected`` is the number of ranks the row should cover (scalar or per step).
    mean = sum / count, std = sqrt(m2 / count) (population std, like ``np.std``). Where the
    mean is not finite, numpy's deviations from it are NaN (a NaN/Inf value, or a NaN mean)
    or infinite (finite values whose sum overflowed), and std follows suit.
    """
    count = p.count
    try:
        exp = np.broadcast_to(np.asarray(expected, dtype=np.int64), count.shape).copy()
    except ValueError as e:
        raise GroupingError(f"expected must be a scalar or {count.shape[0]} values: {e}") from e
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mean = p.sum / count
        std = np.sqrt(p.m2 / count)
    odd = ~np.isfinite(mean)
    if bool(odd.any()):
        std[odd & ~np.isnan(p.m2)] = np.inf
        std[np.isnan(mean)] = np.nan
    return {
        "step": p.step,
        "count": count,
        "expected": exp,
        "mean": mean,
        "min": p.min,
        "max": p.max,
        "std": std,
        "min_rank": p.min_rank,
        "max_rank": p.max_rank,
    }
