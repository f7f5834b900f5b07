"""Group rows as numpy computes them over the raw values of the ranks, which the agent's group rows
(agent/groups.py, grouping/reducers.py) are checked against; and reproducible values to log."""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.store.base import GROUP_FIELDS


def numpy_group_rows(points: dict[int, dict[int, float]], expected: int) -> dict[str, np.ndarray]:
    """The group rows numpy gives over raw values ``{rank: {step: value}}``: per step, over the ranks with a
    value there, count, mean, min, max, population std, and the lowest rank holding the min and the max."""
    steps = sorted({s for per_rank in points.values() for s in per_rank})
    out: dict[str, list] = {f: [] for f in GROUP_FIELDS}
    for s in steps:
        ranks = np.array(sorted(r for r, per_rank in points.items() if s in per_rank))
        v = np.array([points[r][s] for r in ranks], np.float64)
        for f, x in zip(
            GROUP_FIELDS,
            (s, len(v), expected, v.mean(), v.min(), v.max(), v.std(), ranks[v.argmin()], ranks[v.argmax()]),
        ):
            out[f].append(x)
    return {f: np.array(x) for f, x in out.items()}


def assert_group_rows(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    """Stored group rows equal numpy's: steps, counts, expected, min, max and their ranks exactly, mean and
    std to 1e-12."""
    assert got["step"].tolist() == want["step"].tolist(), (got["step"], want["step"])
    for f in ("count", "expected", "min", "max", "min_rank", "max_rank"):
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
