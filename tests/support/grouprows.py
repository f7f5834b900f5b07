"""Group rows as numpy computes them over the raw values of the ranks (nan-reductions over the finite
values, grouping/reducers.py), which the agent's group rows (agent/groups.py) are checked against; and
reproducible values to log."""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.store.base import GROUP_FIELDS


def nan_aware_row(ranks: Any, values: Any) -> tuple:
    """One step's row over ``values`` of ``ranks`` (ascending), the reference of grouping/reducers.py:
    ``(count, mean, min, max, std, min_rank, max_rank, nan_count, nan_rank)`` where mean/min/max/std are
    numpy's nan-reductions over the finite values (±Inf counts as non-finite like NaN), min_rank/max_rank
    ``np.nanargmin``/``np.nanargmax`` mapped to ranks (-1 when no value is finite), nan_count the number of
    NaN/±Inf values and nan_rank the lowest rank holding one (-1 when none)."""
    ranks = np.asarray(ranks, np.int64)
    v = np.asarray(values, np.float64)
    bad = ~np.isfinite(v)
    f = np.where(bad, np.nan, v)
    nan_rank = int(ranks[bad][0]) if bad.any() else -1
    if bad.all():
        return len(v), np.nan, np.nan, np.nan, np.nan, -1, -1, int(bad.sum()), nan_rank
    with np.errstate(all="ignore"):
        return (
            len(v),
            np.nanmean(f),
            np.nanmin(f),
            np.nanmax(f),
            np.nanstd(f),
            int(ranks[np.nanargmin(f)]),
            int(ranks[np.nanargmax(f)]),
            int(bad.sum()),
            nan_rank,
        )


def numpy_group_rows(points: dict[int, dict[int, float]], expected: int) -> dict[str, np.ndarray]:
    """The group rows numpy gives over raw values ``{rank: {step: value}}``: per step, over the ranks with a
    value there, :func:`nan_aware_row` (count of every rank that reported; mean, min, max, population std and
    the lowest ranks holding the min and max over the finite values; nan_count, nan_rank)."""
    steps = sorted({s for per_rank in points.values() for s in per_rank})
    out: dict[str, list] = {f: [] for f in GROUP_FIELDS}
    for s in steps:
        ranks = np.array(sorted(r for r, per_rank in points.items() if s in per_rank))
        v = np.array([points[r][s] for r in ranks], np.float64)
        count, mean, lo, hi, std, lo_rank, hi_rank, nan_count, nan_rank = nan_aware_row(ranks, v)
        row = (s, count, expected, mean, lo, hi, std, lo_rank, hi_rank, nan_count, nan_rank)
        for f, x in zip(GROUP_FIELDS, row, strict=True):
            out[f].append(x)
    return {f: np.array(x) for f, x in out.items()}


def assert_group_rows(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    """Stored group rows equal numpy's: steps, counts, expected, min, max and their ranks, nan_count and nan_rank
    exactly, mean and std to 1e-12."""
    assert got["step"].tolist() == want["step"].tolist(), (got["step"], want["step"])
    for f in ("count", "expected", "min", "max", "min_rank", "max_rank", "nan_count", "nan_rank"):
        assert np.array_equal(got[f], want[f], equal_nan=True), (f, got[f], want[f])
    for f in ("mean", "std"):
        np.testing.assert_allclose(got[f], want[f], rtol=1e-12, atol=1e-12, equal_nan=True, err_msg=f)


def wave(rank: int, steps: Any) -> np.ndarray:
    """Reproducible values of a rank at ``steps``: distinct across ranks and steps (no ties to break)."""
    steps = np.asarray(steps, np.float64)
    return np.round(100.0 * np.sin(0.7 * steps + 1.3 * rank) + rank, 3)


def points_of(steps: Any, values: Any) -> dict[int, float]:
    """``{step: value}`` of parallel arrays (one rank's raw values, for :func:`numpy_group_rows`)."""
    return dict(zip(np.asarray(steps).tolist(), np.asarray(values, np.float64).tolist()))


def assert_dense_group(g: Any, values: dict[str, np.ndarray], group_keys: tuple[str, ...] | None = None) -> None:
    """A finished group (``rankwise.Api`` view ``g``) whose ranks each logged every step of ``values`` (per key,
    an array of ranks × steps) read back exactly: every run finished with all its rows and steps, each rank's
    history of each key equal to its row of ``values``, and the group rows of ``group_keys`` (all keys when None)
    equal to numpy's over the ranks: steps, counts, min and max exactly, mean to 1e-12, std to 1e-9."""
    world, steps = next(iter(values.values())).shape
    runs = sorted(g.runs, key=lambda r: r.rank)
    assert [(r.rank, r.state, r.rows, r.step) for r in runs] == [(r, "finished", steps, steps) for r in range(world)]
    for r in runs:
        hist = r.history_arrays(list(values))
        for key, want in values.items():
            got_steps, got = hist[key]
            assert np.array_equal(got_steps, np.arange(steps)), (r.rank, key)
            assert np.array_equal(got, want[r.rank]), (r.rank, key)
    for key in values if group_keys is None else group_keys:
        want, h = values[key], g.history(key)
        assert np.array_equal(h["step"], np.arange(steps))
        assert np.array_equal(h["count"], np.full(steps, world))
        assert np.array_equal(h["min"], want.min(axis=0))
        assert np.array_equal(h["max"], want.max(axis=0))
        np.testing.assert_allclose(h["mean"], want.mean(axis=0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(h["std"], want.std(axis=0), rtol=1e-9, atol=1e-12)
