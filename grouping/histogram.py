"""Merging the histograms that the ranks of a group logged for one key at one step.

Input histograms are ``{"bins": edges, "values": counts}`` dicts (the wire/stored form of
``rankwise.Histogram``; a ``_type`` key is ignored) or ``(values, edges)`` pairs as
``np.histogram`` returns them. ``edges`` has one more element than ``values``, is finite and
strictly increasing; ``values`` are finite and ≥ 0.

Rules of :func:`merge_histograms`:

1. **Matching edges.** When every input has exactly the same edges (equal as float64, element
   by element), the result has those edges and the element-wise sum of the values. Integer
   counts sum exactly (int64 arithmetic); the merge is then associative and commutative.

2. **Differing edges.** The result's edges span all inputs: ``num_bins`` (default: the largest
   bin count among the inputs) equal-width bins from the smallest first edge to the largest last
   edge (``np.linspace``). Each input bin's mass is spread **uniformly over its interval** and
   each result bin receives the mass of the part of every input bin that it overlaps: a
   source bin [a, b) holding m gives a result bin [c, d) the amount
   ``m · |[a, b) ∩ [c, d)| / (b − a)``. (Computed exactly as differences of each input's
   piecewise-linear cumulative mass at the result edges.) Total mass is preserved.

   When every input holds integer counts, the spread masses (summed over inputs) are rounded
   to integers by the largest-remainder method: each bin gets the floor of its mass, and the
   remaining units go to the bins with the largest fractional parts (lower bin first on ties).
   The result's total is then exactly the sum of the inputs' totals and every bin is within 1
   of its exact spread mass. Float inputs (e.g. densities) give float results, total preserved
   to rounding.

   Re-binning loses resolution and is not associative: merge all ranks of a step in one call
   (a node agent that pre-merges must forward its ranks' inputs, or rely on matching edges).

``rankwise.Histogram`` from a sequence uses ``np.histogram``'s data-dependent range, so ranks'
edges usually differ; with ``np_histogram=np.histogram(x, bins=fixed_edges)`` they match and
the merge is exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import GroupingError

__all__ = ["MAX_BINS", "merge_histograms", "rebin"]

MAX_BINS = 512


def _parse(h: Any, i: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(h, Mapping):
        if "bins" not in h or "values" not in h:
            raise GroupingError(f"histogram {i}: needs 'bins' (edges) and 'values' (counts)")
        edges, values = h["bins"], h["values"]
    else:
        try:
            values, edges = h
        except (TypeError, ValueError):
            raise GroupingError(f"histogram {i}: expected a dict with bins/values or a (values, edges) pair") from None
    try:
        e = np.asarray(edges, dtype=np.float64)
        v = np.asarray(values)
    except (TypeError, ValueError):
        raise GroupingError(f"histogram {i}: bins and values must be numbers") from None
    if e.ndim != 1 or v.ndim != 1 or len(e) != len(v) + 1 or len(v) == 0:
        raise GroupingError(
            f"histogram {i}: {len(np.atleast_1d(e))} edges for {len(np.atleast_1d(v))} values; "
            "need n+1 edges for n ≥ 1 values"
        )
    if v.dtype.kind not in "biuf":
        raise GroupingError(f"histogram {i}: values must be numbers, got dtype {v.dtype}")
    if not np.isfinite(e).all() or not (np.diff(e) > 0).all():
        raise GroupingError(f"histogram {i}: edges must be finite and strictly increasing")
    if v.dtype.kind == "f" and not np.isfinite(v).all():
        raise GroupingError(f"histogram {i}: values must be finite")
    if (v < 0).any():
        raise GroupingError(f"histogram {i}: values must be ≥ 0")
    if v.dtype.kind in "bu" or (v.dtype.kind == "i"):
        v = v.astype(np.int64)
    return e, v


def _largest_remainder(mass: np.ndarray, total: int) -> np.ndarray:
    floor = np.floor(mass)
    out = floor.astype(np.int64)
    short = total - int(out.sum())
    if short > 0:
        frac = mass - floor
        order = np.lexsort((np.arange(len(mass)), -frac))  # largest fraction first, lower bin on ties
        out[order[:short]] += 1
    elif short < 0:  # float rounding pushed a floor over; take units back from the smallest fractions
        frac = mass - floor
        order = np.lexsort((-np.arange(len(mass)), frac))
        for j in order:
            if short == 0:
                break
            if out[j] > 0:
                out[j] -= 1
                short += 1
    return out


def rebin(edges: np.ndarray, values: np.ndarray, new_edges: np.ndarray) -> np.ndarray:
    """The mass of one histogram on ``new_edges`` (which must cover its range), spread uniformly
    within each source bin; float64, not rounded."""
    cum = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    at = np.interp(new_edges, edges, cum, left=0.0, right=float(cum[-1]))
    return np.diff(at)


def merge_histograms(histograms: Sequence[Any], num_bins: int | None = None) -> dict:
    """Merge histograms of one key at one step into ``{"_type": "histogram", "bins", "values"}``
    (rules in the module docstring). ``num_bins`` applies only when edges differ."""
    if len(histograms) == 0:
        raise GroupingError("merge_histograms needs at least one histogram")
    parsed = [_parse(h, i) for i, h in enumerate(histograms)]
    integer = all(v.dtype.kind == "i" for _, v in parsed)
    e0 = parsed[0][0]
    if all(len(e) == len(e0) and np.array_equal(e, e0) for e, _ in parsed):
        total = np.sum([v for _, v in parsed], axis=0, dtype=np.int64 if integer else np.float64)
        return {"_type": "histogram", "bins": e0.tolist(), "values": total.tolist()}
    if num_bins is None:
        num_bins = max(len(v) for _, v in parsed)
    if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) or not 1 <= num_bins <= MAX_BINS:
        raise GroupingError(f"num_bins must be an int from 1 to {MAX_BINS}, got {num_bins!r}")
    lo = min(float(e[0]) for e, _ in parsed)
    hi = max(float(e[-1]) for e, _ in parsed)
    edges = np.linspace(lo, hi, int(num_bins) + 1)
    edges[0], edges[-1] = lo, hi  # exact ends, so every source's mass is inside
    mass = np.zeros(int(num_bins), dtype=np.float64)
    for e, v in parsed:
        mass += rebin(e, v, edges)
    if integer:
        total = int(sum(int(v.sum()) for _, v in parsed))
        values: list = _largest_remainder(np.maximum(mass, 0.0), total).tolist()
    else:
        values = mass.tolist()
    return {"_type": "histogram", "bins": edges.tolist(), "values": values}
