"""Mergeable per-step reducers: the same rules at every level of ranks → node partials → root.

A group row at a step summarises one key over the ranks that reported it: count, mean, min,
max, std, the ranks holding the min and max, and how many ranks reported a non-finite value
(NaN or ±Inf) and the lowest such rank. Node agents see only their own ranks and the root
sees only node partials, so the summary must be built from partials that merge exactly, in
any order and any tree shape, into what one process would compute over all the points.
:class:`Partial` is that mergeable state, columnar over steps so one numpy call handles every
step of a key at once.

The reference semantics are numpy's NaN-aware reductions over the FINITE values of the ranks
that reported at a step, values ordered by rank: with ``f = v[np.isfinite(v)]``,
``np.nanmean(f)``, ``np.nanmin``, ``np.nanmax``, ``np.nanstd`` (population, ``ddof=0``) and
``np.nanargmin`` / ``np.nanargmax`` mapped to ranks (ties go to the lowest rank). One rank
that diverges therefore does not hide the others: the row keeps summarising the healthy
ranks and says how many did not (``nan_count``) and which one first (``nan_rank``, the
lowest rank with a NaN/±Inf value; -1 when none). ``count`` stays the ranks that reported.
A step where no value is finite has mean/min/max/std NaN and min_rank/max_rank -1.

- count, nan_count, nan_rank, min, max, min_rank, max_rank are exact for any split and merge
  order: merging adds counts and picks one side's value by a total order (a number before
  "no finite value", then the value, then the lowest rank; the lowest non-negative nan_rank).
- sum and m2 are over the finite values only; their count is ``count - nan_count``.
- mean = sum / finite count; sums merge by addition, so they match numpy to rounding.
- std uses Chan et al.'s parallel update of m2 (sum of squared deviations): adding a second
  partial adds ``delta² · n_a · n_b / n`` with ``delta`` the difference of the two means
  (nothing when either side has no finite value). Finite values whose squares or sums
  overflow give ``m2 = inf`` (numpy's std of such values is inf too).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ._order import as_float64, as_int64, last_wins_order
from ._segments import first_hits, reduce_finite
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
    "nan_count",
    "nan_rank",
)

_INT_FIELDS = frozenset({"step", "count", "min_rank", "max_rank", "nan_count", "nan_rank"})


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Partial:
    """Mergeable per-step aggregates of one key over a set of ranks, columnar over steps.

    Row ``i`` summarises the ranks of this partial that reported at ``step[i]``. Arrays are
    shared, not copied, by every operation that can: treat them as read-only.
    """

    step: np.ndarray  # int64, strictly increasing
    count: np.ndarray  # int64 >= 1: ranks that reported at this step
    sum: np.ndarray  # float64: over the finite values
    m2: np.ndarray  # float64: sum of squared deviations of the finite values from their mean
    min: np.ndarray  # float64: smallest finite value, NaN when there is none
    max: np.ndarray  # float64: largest finite value, NaN when there is none
    min_rank: np.ndarray  # int64: rank holding the min, -1 when no finite value
    max_rank: np.ndarray  # int64: rank holding the max, -1 when no finite value
    nan_count: np.ndarray  # int64: ranks whose value is NaN or ±Inf
    nan_rank: np.ndarray  # int64: the lowest of those ranks, -1 when none

    FIELDS: ClassVar[tuple[str, ...]] = (
        "step",
        "count",
        "sum",
        "m2",
        "min",
        "max",
        "min_rank",
        "max_rank",
        "nan_count",
        "nan_rank",
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
        """Bytes held by the arrays."""
        return sum(getattr(self, name).nbytes for name in Partial.FIELDS)

    @classmethod
    def empty(cls) -> Partial:
        """A partial covering no steps: the identity of :func:`merge`."""
        i, f = np.empty(0, np.int64), np.empty(0, np.float64)
        return cls(i, i, f, f, f, f, i, i, i, i)

    def to_dict(self) -> dict[str, np.ndarray]:
        """The arrays by field name, for the wire and the store."""
        return {name: getattr(self, name) for name in Partial.FIELDS}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Partial:
        """Rebuild a partial from :meth:`to_dict` output (e.g. decoded from the wire).

        Converts dtypes and validates what :func:`merge` relies on: equal lengths, strictly
        increasing steps, counts of at least one, ``0 <= nan_count <= count``. Raises
        :class:`GroupingError` otherwise.
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
        if len(p) and not bool(((p.nan_count >= 0) & (p.nan_count <= p.count)).all()):
            raise GroupingError("partial nan_count must be between 0 and count")
        if len(p) and not bool(((p.nan_rank >= 0) == (p.nan_count > 0)).all()):
            raise GroupingError("partial nan_rank must be a rank (>= 0) exactly where nan_count > 0, else -1")
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
            f"points={int(self.count.sum())}, max_count={int(self.count.max())}, "
            f"non_finite={int(self.nan_count.sum())})"
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
    finite = np.isfinite(value)
    if not bool(finite.all()):
        f = reduce_finite(rank, value, finite, starts, counts)
        return Partial(step[starts], counts, f.sum, f.m2, f.min, f.max, f.min_rank, f.max_rank, f.bad, f.bad_rank)
    # every value finite (the common case): no masks, one pass per statistic
    with np.errstate(invalid="ignore", over="ignore"):
        sums = np.add.reduceat(value, starts)
        dev = value - np.repeat(sums / counts, counts)
        dev *= dev
        m2 = np.add.reduceat(dev, starts)
        del dev
        lo = first_hits(value == np.repeat(np.minimum.reduceat(value, starts), counts), starts, counts)
        hi = first_hits(value == np.repeat(np.maximum.reduceat(value, starts), counts), starts, counts)
    none = np.zeros(starts.shape[0], np.int64)
    return Partial(step[starts], counts, sums, m2, value[lo], value[hi], rank[lo], rank[hi], none, none - 1)


def merge(a: Partial, b: Partial) -> Partial:
    """Union over steps of two partials that cover disjoint rank sets.

    Steps present on one side are copied; steps on both sides are combined. Exact and
    commutative for count, nan_count, nan_rank, min, max and their ranks; sum and m2 are
    commutative bit for bit and associative to rounding. Disjointness of the rank sets is the
    caller's contract (it is what makes counts add up) and is not checked.
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
    # every value finite on both sides (the common case): no side without a finite value, no NaN extremes
    clean = not (bool(a.nan_count.any()) or bool(b.nan_count.any()))
    na, nb = (a.count, b.count) if clean else (a.count - a.nan_count, b.count - b.nan_count)  # finite values
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        total = a.sum + b.sum
        delta = b.sum / nb - a.sum / na
        term = delta * delta * (na * nb / (na + nb))
        if not clean:
            term[(na == 0) | (nb == 0)] = 0.0  # a side without finite values adds nothing
        m2 = a.m2 + b.m2
        m2 += term
        # m2 of finite values is NaN only when both means are non-finite from overflowing
        # sums: the deviations overflowed, as numpy's would (see finalize)
        bad = np.isnan(m2)
        if bool(bad.any()):
            m2[bad] = np.inf
        pick_a_min = (a.min < b.min) | ((a.min == b.min) & (a.min_rank < b.min_rank))
        pick_a_max = (a.max > b.max) | ((a.max == b.max) & (a.max_rank < b.max_rank))
        if not clean:  # NaN: that side has no finite value, the other side's extreme wins
            pick_a_min |= np.isnan(b.min) & ~np.isnan(a.min)
            pick_a_max |= np.isnan(b.max) & ~np.isnan(a.max)
    if clean:
        nan_count, nan_rank = a.nan_count, a.nan_rank  # zeros and -1 (read-only, shared)
    else:
        nan_count = a.nan_count + b.nan_count
        nan_rank = np.where(
            a.nan_rank < 0, b.nan_rank, np.where(b.nan_rank < 0, a.nan_rank, np.minimum(a.nan_rank, b.nan_rank))
        )
    return Partial(
        a.step,
        a.count + b.count,
        total,
        m2,
        np.where(pick_a_min, a.min, b.min),
        np.where(pick_a_max, a.max, b.max),
        np.where(pick_a_min, a.min_rank, b.min_rank),
        np.where(pick_a_max, a.max_rank, b.max_rank),
        nan_count,
        nan_rank,
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
    With ``k = count - nan_count`` finite values: mean = sum / k, std = sqrt(m2 / k)
    (population std, like ``np.nanstd``); both NaN where ``k`` is 0. Where finite values
    overflow the mean is ±inf and numpy's deviations from it are infinite, so std is inf
    (NaN if the overflowing sums cancelled to a NaN mean).
    """
    count = p.count
    try:
        exp = np.broadcast_to(np.asarray(expected, dtype=np.int64), count.shape).copy()
    except ValueError as e:
        raise GroupingError(f"expected must be a scalar or {count.shape[0]} values: {e}") from e
    finite = count - p.nan_count
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mean = p.sum / finite
        std = np.sqrt(p.m2 / finite)
    odd = ~np.isfinite(mean)
    if bool(odd.any()):
        std[odd & (finite > 0)] = np.inf
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
        "nan_count": p.nan_count,
        "nan_rank": p.nan_rank,
    }
