"""Reducing long series to what a chart of a given width can show, without losing a spike.

A chart ``width`` pixels wide cannot show more than about two values per pixel
column: the lowest and the highest. So a long series is cut into ``width``
equal x buckets, and each non-empty bucket becomes two rows: the bucket's
extremes in the order they occur. A line through those rows covers exactly the
pixels a line through every point would, so a one-step spike stays visible at
any zoom. The min–max band keeps the lowest ``min`` and the highest ``max`` of
each bucket. When the range holds at most two points per bucket, every point is
sent as it is (full resolution), which is what zooming in reaches.

Pure numpy; no I/O. Every function takes x sorted ascending.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Segments:
    """The non-empty buckets of one series: ``bucket`` ids (ascending) and their [start, stop) index spans."""

    bucket: np.ndarray
    start: np.ndarray
    stop: np.ndarray

    def __len__(self) -> int:
        return len(self.bucket)


def bucket_edges(lo: float, hi: float, width: int) -> np.ndarray:
    """``width`` equal buckets over [lo, hi] (the last one closed)."""
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(float(lo), float(hi), width + 1)


def bucket_of(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bucket of each x in [edges[0], edges[-1]]: floor((x - lo) * n / (hi - lo)), the last one closed."""
    n = len(edges) - 1
    lo, hi = float(edges[0]), float(edges[-1])
    ids = np.floor((np.asarray(x, np.float64) - lo) * (n / (hi - lo))).astype(np.int64)
    return np.clip(ids, 0, n - 1, out=ids)


def segments(x: np.ndarray, edges: np.ndarray) -> Segments:
    """Which points of sorted ``x`` fall in which bucket; only buckets with points are kept."""
    lo = int(np.searchsorted(x, edges[0], "left"))
    hi = int(np.searchsorted(x, edges[-1], "right"))
    if hi <= lo:
        empty = np.empty(0, np.int64)
        return Segments(empty, empty, empty)
    ids = bucket_of(x[lo:hi], edges)
    change = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    start = change + lo
    stop = np.r_[change[1:], hi - lo] + lo
    return Segments(ids[change].astype(np.int64), start.astype(np.int64), stop.astype(np.int64))


def _first_hit(values: np.ndarray, target: np.ndarray, seg: Segments, offset: int) -> np.ndarray:
    """Per segment, the index of the first value equal to the segment's ``target`` (-1 when none: all NaN)."""
    counts = seg.stop - seg.start
    seg_of = np.repeat(np.arange(len(seg)), counts)
    hit = np.flatnonzero(values == target[seg_of])
    out = np.full(len(seg), -1, np.int64)
    if len(hit):
        owner = seg_of[hit]
        first = np.r_[True, owner[1:] != owner[:-1]]
        out[owner[first]] = hit[first] + offset
    return out


def extremes(values: np.ndarray, seg: Segments) -> tuple[np.ndarray, np.ndarray]:
    """Per segment, its lowest and highest value in the order they occur (NaN ignored; NaN when all are)."""
    if len(seg) == 0:
        empty = np.empty(0)
        return empty, empty
    lo, hi = int(seg.start[0]), int(seg.stop[-1])
    v = values[lo:hi]
    at = seg.start - lo
    with np.errstate(invalid="ignore"):
        vmin = np.fmin.reduceat(v, at)
        vmax = np.fmax.reduceat(v, at)
    i_min = _first_hit(v, vmin, seg, lo)
    i_max = _first_hit(v, vmax, seg, lo)
    min_first = i_min <= i_max
    return np.where(min_first, vmin, vmax), np.where(min_first, vmax, vmin)


def interleave(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[a0, b0, a1, b1, ...]: the two rows of every bucket."""
    out = np.empty(2 * len(a), dtype=np.result_type(a, b))
    out[0::2] = a
    out[1::2] = b
    return out


def bucket_min(values: np.ndarray, seg: Segments) -> np.ndarray:
    lo = int(seg.start[0]) if len(seg) else 0
    with np.errstate(invalid="ignore"):
        return np.fmin.reduceat(values[lo : int(seg.stop[-1])], seg.start - lo) if len(seg) else np.empty(0)


def bucket_max(values: np.ndarray, seg: Segments) -> np.ndarray:
    lo = int(seg.start[0]) if len(seg) else 0
    with np.errstate(invalid="ignore"):
        return np.fmax.reduceat(values[lo : int(seg.stop[-1])], seg.start - lo) if len(seg) else np.empty(0)


def place(rows_bucket: np.ndarray, x: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Another series (a rank's) on the rows of buckets ``rows_bucket``: its extremes per bucket, two rows a
    bucket, NaN where it has no point in a bucket that has rows."""
    out = np.full(2 * len(rows_bucket), np.nan)
    seg = segments(x, edges)
    if len(seg) == 0:
        return out
    first, second = extremes(values, seg)
    pos = np.searchsorted(rows_bucket, seg.bucket)
    pos = np.minimum(pos, len(rows_bucket) - 1)
    ok = rows_bucket[pos] == seg.bucket
    out[2 * pos[ok]] = first[ok]
    out[2 * pos[ok] + 1] = second[ok]
    return out


def align(x: np.ndarray, xs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` at positions ``xs`` placed on the sorted grid ``x`` (which contains every ``xs``); NaN elsewhere."""
    out = np.full(len(x), np.nan)
    if len(xs):
        out[np.searchsorted(x, xs)] = values
    return out


def snap(grid: np.ndarray, xs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` at positions ``xs`` on the sorted ``grid``, each at its nearest grid point (the later value
    where two share one); NaN elsewhere. Per-rank lines on the time axis: every rank commits a step at its
    own time, so the union of their times is ranks × steps long and every line on it as long again (ranks² ×
    steps); on the group's own times (when each step was complete) a line has one slot per group point."""
    out = np.full(len(grid), np.nan)
    if len(xs) == 0 or len(grid) == 0:
        return out
    right = np.clip(np.searchsorted(grid, xs), 1, len(grid) - 1) if len(grid) > 1 else np.zeros(len(xs), np.int64)
    if len(grid) > 1:
        left = right - 1
        right = np.where(np.abs(xs - grid[left]) <= np.abs(grid[right] - xs), left, right)
    out[right] = values  # fancy assignment: the last of equal indices wins, xs are sorted
    return out


def sort_by_x(x: np.ndarray, *columns: np.ndarray) -> tuple[np.ndarray, ...]:
    """x and its columns ordered by x (stable); untouched when already sorted, the usual case."""
    if len(x) < 2 or bool(np.all(x[1:] >= x[:-1])):
        return (x, *columns)
    order = np.argsort(x, kind="stable")
    return (x[order], *(c[order] for c in columns))


def in_range(x: np.ndarray, lo: float, hi: float) -> slice:
    return slice(int(np.searchsorted(x, lo, "left")), int(np.searchsorted(x, hi, "right")))


def per_step_max(steps: list[np.ndarray], values: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Over several (steps, values) series: every step that occurs and the largest value at it."""
    if not steps:
        return np.empty(0, np.int64), np.empty(0)
    s = np.concatenate(steps)
    v = np.concatenate(values)
    if len(s) == 0:
        return s, v
    order = np.lexsort((v, s))  # by step, then value: the last of each step is its largest
    s, v = s[order], v[order]
    last = np.r_[s[1:] != s[:-1], True]
    return s[last], v[last]


def step_durations(steps: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From one rank's commit times: (step, seconds per step) for every step after its first, the time since
    the previous committed step divided by the steps in between (a rank that logs every 10th step)."""
    if len(steps) < 2:
        return np.empty(0, np.int64), np.empty(0)
    gaps = np.diff(steps)
    return steps[1:], np.diff(times) / np.maximum(gaps, 1)


def bucket_means(x: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean of the finite values in each bucket (NaN for a bucket with none): heat map cells."""
    n = len(edges) - 1
    out = np.full(n, np.nan)
    seg = segments(x, edges)
    if len(seg) == 0:
        return out
    lo, hi = int(seg.start[0]), int(seg.stop[-1])
    v = values[lo:hi]
    finite = np.isfinite(v)
    at = seg.start - lo
    sums = np.add.reduceat(np.where(finite, v, 0.0), at)
    counts = np.add.reduceat(finite.astype(np.int64), at)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[seg.bucket] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return out


def significant(values: np.ndarray, digits: int) -> np.ndarray:
    """``values`` rounded to ``digits`` significant digits (0: as they are), so that JSON writes each in at most
    that many: per-rank lines of a chart (docs/ui.md) whose readout shows five. Each rounded value is the double
    nearest to a decimal of ``digits`` digits (the power of ten divides or multiplies exactly), which Python's
    shortest repr then prints as that decimal; magnitudes whose power of ten is not an exact double go through
    Python's formatting. Zeros, non-finite values and values that would round past the largest double stay as
    they are."""
    a = np.asarray(values, np.float64)
    if digits <= 0 or not len(a):
        return a
    out = a.copy()
    ok = np.isfinite(a) & (a != 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        k = digits - 1 - np.floor(np.log10(np.abs(np.where(ok, a, 1.0)))).astype(np.int64)
    # log10 may land on the wrong side of a power of ten: one digit more or fewer than asked for
    k[ok & (np.abs(np.where(ok, a, 1.0)) * 10.0 ** np.clip(k, -300, 300) >= 10.0**digits)] -= 1
    # 10**22 is the largest power of ten a double holds exactly; past 12 digits the product a * 10**k (rounded
    # to 16) could round a near-tie the other way: those are formatted one by one (rare: tiny or huge values)
    exact = (np.abs(k) <= 22) & (digits <= 12)
    for i in np.flatnonzero(ok & ~exact):
        out[i] = float(f"{a[i]:.{digits}g}")
    ok &= exact
    up, down = ok & (k >= 0), ok & (k < 0)
    p_up = 10.0 ** k[up]
    out[up] = np.round(a[up] * p_up) / p_up
    p_down = 10.0 ** (-k[down])
    out[down] = np.round(a[down] / p_down) * p_down
    over = ~np.isfinite(out) & np.isfinite(a)  # rounded up past the largest double: kept as it was
    out[over] = a[over]
    return out
