"""Two node agents and a root on loopback as real processes, 4 ranks behind each node agent, rank 5's value
NaN from a known step: the root's group rows (merged from the node agents' partials) keep summarising the
seven healthy ranks and count and name rank 5."""

from __future__ import annotations

import math

import numpy as np

from support.mncluster import delivered, wait_exit

WORLD, STEPS, NAN_RANK, NAN_STEP = 8, 150, 5, 60

SCRIPT = """
import math, os, rankwise
rank = int(os.environ["RANK"])
run = rankwise.init(project="mn")
for s in range(%(steps)d):
    x = math.sin(rank * 0.7 + s * 0.05) * (rank + 1) + s
    run.log({"x": float("nan") if (rank == %(nan_rank)d and s >= %(nan_step)d) else x})
run.finish()
""" % {"steps": STEPS, "nan_rank": NAN_RANK, "nan_step": NAN_STEP}


def test_nan_rank_behind_a_node_agent_at_the_root(cluster):
    """8 ranks on node-a (0..3) and node-b (4..7); rank 5 logs NaN from step 60. At the root: count 8 at
    every step, nan_count 0 / nan_rank -1 before step 60 and 1 / 5 from it, mean/std (rtol 1e-12) and
    min/max and their ranks (exact) equal numpy's nan-reductions over the finite values, so from step 60
    over the seven other ranks."""
    c = cluster
    c.start_root()
    procs = [c.start_rank("node-a" if r < 4 else "node-b", SCRIPT, r, WORLD, "job-nan") for r in range(WORLD)]
    for code, _, err in wait_exit(procs):
        assert code == 0, err
    g = delivered(c, "mn", "job-nan", {r: STEPS for r in range(WORLD)})
    steps = np.arange(STEPS)
    # math.sin as the ranks compute it (numpy's own sin may differ in the last bit)
    table = np.array([[math.sin(r * 0.7 + s * 0.05) * (r + 1) + s for s in range(STEPS)] for r in range(WORLD)])
    table[NAN_RANK, NAN_STEP:] = np.nan
    h = g.history("x")
    assert h["step"].tolist() == steps.tolist() and h["count"].tolist() == [WORLD] * STEPS
    assert h["nan_count"].tolist() == [0] * NAN_STEP + [1] * (STEPS - NAN_STEP)
    assert h["nan_rank"].tolist() == [-1] * NAN_STEP + [NAN_RANK] * (STEPS - NAN_STEP)
    np.testing.assert_allclose(h["mean"], np.nanmean(table, axis=0), rtol=1e-12)
    np.testing.assert_allclose(h["std"], np.nanstd(table, axis=0), rtol=1e-12)
    assert np.array_equal(h["min"], np.nanmin(table, axis=0)) and np.array_equal(h["max"], np.nanmax(table, axis=0))
    assert np.array_equal(h["min_rank"], np.nanargmin(table, axis=0))
    assert np.array_equal(h["max_rank"], np.nanargmax(table, axis=0))
