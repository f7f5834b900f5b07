"""Input coercion and the (step, rank, arrival) ordering that makes "last update wins" cheap.

Reducing points needs them grouped by step, ordered by rank inside a step (numpy's argmin /
argmax tie-break is "first occurrence", and the rank order is the order that counts), with
only the last arrival of each (step, rank) pair kept. A general ``np.lexsort`` does this but
is the slowest option on the ingest path, so this module packs (step, rank, arrival) into one
int64 and picks the sort that fits what actually arrives:

- already ordered and duplicate-free (one chunk holding every rank in step order): no sort;
- a few ascending runs (one chunk per rank, each in step order, the common case): timsort,
  which merges runs in near-linear time;
- anything else: numpy's vectorised quicksort on the packed keys (unstable is fine: the packed
  key includes the arrival index, so all keys are distinct).

Ranges too wide to pack fall back to ``np.lexsort``. All paths give the same indices.
"""

from __future__ import annotations

import numpy as np

from .errors import GroupingError

__all__ = ["as_int64", "as_float64", "last_wins_order"]

_INT64_MAX = int(np.iinfo(np.int64).max)
# Below this many points per ascending run, timsort stops beating the vectorised quicksort.
_MIN_POINTS_PER_RUN = 16


def as_int64(x: object, name: str) -> np.ndarray:
    """``x`` as a 1-D int64 array (no copy when it already is one); rejects non-integer kinds."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise GroupingError(f"{name} must be a 1-D array, got shape {a.shape}")
    if a.dtype != np.int64:
        if a.dtype.kind not in "iub" and a.size:
            raise GroupingError(f"{name} must hold integers, got dtype {a.dtype}")
        a = a.astype(np.int64)
    return a


def as_float64(x: object, name: str) -> np.ndarray:
    """``x`` as a 1-D float64 array (no copy when it already is one); ints and bools convert."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise GroupingError(f"{name} must be a 1-D array, got shape {a.shape}")
    if a.dtype != np.float64:
        if a.dtype.kind not in "fiub" and a.size:
            raise GroupingError(f"{name} must hold numbers, got dtype {a.dtype}")
        a = a.astype(np.float64)
    return a


def last_wins_order(step: np.ndarray, rank: np.ndarray) -> np.ndarray | None:
    """Indices ordering points by (step, rank), keeping only the last arrival of each pair.

    ``step`` and ``rank`` are equal-length int64 arrays in arrival order. Returns ``None`` when
    the points are already strictly ordered by (step, rank), so the caller can skip the gathers.
    """
    n = step.shape[0]
    if n < 2:
        return None
    s_lo, s_hi = int(step.min()), int(step.max())
    r_lo, r_hi = int(rank.min()), int(rank.max())
    r_span = r_hi - r_lo + 1
    key_span = (s_hi - s_lo + 1) * r_span
    if key_span > _INT64_MAX:
        return _lexsort_order(step, rank)

    key = step - s_lo if s_lo else step.copy()
    key *= r_span
    key += rank - r_lo if r_lo else rank
    d = key[1:] - key[:-1]
    descents = int(np.count_nonzero(d < 0))
    if descents == 0:
        if bool((d > 0).all()):
            return None
        keep = np.empty(n, dtype=bool)
        np.not_equal(d, 0, out=keep[:-1])
        keep[-1] = True
        return np.flatnonzero(keep)
    del d

    if key_span <= _INT64_MAX // n:
        # Pack the arrival index below the (step, rank) key: all packed keys are distinct, so
        # sorting values (faster than argsort) yields both the order and the sorted keys.
        packed = key
        packed *= n
        packed += np.arange(n, dtype=np.int64)
        few_runs = (descents + 1) * _MIN_POINTS_PER_RUN <= n
        packed.sort(kind="stable" if few_runs else "quicksort")
        sorted_key = packed // n
        order = packed - sorted_key * n
    else:
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]

    keep = np.empty(n, dtype=bool)
    np.not_equal(sorted_key[1:], sorted_key[:-1], out=keep[:-1])
    keep[-1] = True
    return order if bool(keep.all()) else order[keep]


def _lexsort_order(step: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """The general path for (step, rank) ranges that do not pack into one int64."""
    order = np.lexsort((rank, step))  # stable: arrival order survives inside a (step, rank) pair
    s, r = step[order], rank[order]
    keep = np.empty(order.shape[0], dtype=bool)
    keep[:-1] = (s[1:] != s[:-1]) | (r[1:] != r[:-1])
    keep[-1] = True
    return order if bool(keep.all()) else order[keep]
