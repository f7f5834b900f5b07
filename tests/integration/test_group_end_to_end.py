"""8 real rank processes log through a real agent into the SQLite store; every point and every
group aggregate is checked against numpy over the raw values."""

from __future__ import annotations

import numpy as np

import rankwise
from support.processes import run_ranks

WORLD, STEPS = 8, 2000
KEYS = ("a", "b", "c", "d")

SCRIPT = """
import os, numpy as np, rankwise
rank = int(os.environ["RANK"])
vals = np.random.default_rng(rank).normal(size=(%(steps)d, 4))
vals[:, 3] = np.round(vals[:, 3], 1)   # ties across ranks: argmin/argmax must pick the lowest rank
run = rankwise.init(project="it")
for s in range(%(steps)d):
    run.log({"a": float(vals[s, 0]), "b": float(vals[s, 1]), "c": float(vals[s, 2]), "d": float(vals[s, 3])})
run.finish()
print(run.stats["rows_sent"])
"""


def expected_values() -> np.ndarray:
    """values[rank, step, key] exactly as the rank scripts generate them."""
    out = np.empty((WORLD, STEPS, 4))
    for rank in range(WORLD):
        vals = np.random.default_rng(rank).normal(size=(STEPS, 4))
        vals[:, 3] = np.round(vals[:, 3], 1)
        out[rank] = vals
    return out


def test_eight_ranks_every_point_and_every_group_row(rankwise_env):
    """8 ranks x 2000 steps x 4 keys: per-rank history equals what was logged, and every group
    row equals numpy's count/mean/min/max/std/argmin/argmax over the ranks (mean and std to
    within the rounding error of a sum in another order: 1e-13 times the largest magnitude)."""
    results = run_ranks(rankwise_env, SCRIPT % {"steps": STEPS}, WORLD, group="job-e2e")
    assert [int(out.strip()) for _, out, _ in results] == [STEPS] * WORLD
    values = expected_values()
    api = rankwise.Api()
    group = api.group("it", "job-e2e")
    assert group.world_size == WORLD
    runs = group.runs
    assert [r.rank for r in runs] == list(range(WORLD))
    assert {r.state for r in runs} == {"finished"}
    for run in runs:
        cols = run.history_arrays()
        for k, key in enumerate(KEYS):
            steps, vals = cols[key]
            assert np.array_equal(steps, np.arange(STEPS))
            assert np.array_equal(vals, values[run.rank, :, k])
        assert np.array_equal(cols["_timestamp"][0], np.arange(STEPS))
        assert np.all(np.diff(cols["_timestamp"][1]) >= 0)
        assert run.summary["a"] == values[run.rank, -1, 0]
    assert group.keys() == list(KEYS)
    for k, key in enumerate(KEYS):
        h = group.history(key)
        per_step = values[:, :, k]  # ranks x steps, rank order
        assert np.array_equal(h["step"], np.arange(STEPS))
        assert np.array_equal(h["count"], np.full(STEPS, WORLD))
        assert np.array_equal(h["expected"], np.full(STEPS, WORLD))
        assert np.array_equal(h["min"], per_step.min(axis=0))
        assert np.array_equal(h["max"], per_step.max(axis=0))
        assert np.array_equal(h["min_rank"], per_step.argmin(axis=0))
        assert np.array_equal(h["max_rank"], per_step.argmax(axis=0))
        bound = 1e-13 * np.abs(per_step).max()
        np.testing.assert_allclose(h["mean"], per_step.mean(axis=0), rtol=0, atol=bound)
        np.testing.assert_allclose(h["std"], per_step.std(axis=0), rtol=0, atol=bound)
