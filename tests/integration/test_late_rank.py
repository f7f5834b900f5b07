"""A rank that joins late (after the others have even finished) is waited for within the join
grace: no group row is sealed without it, and every group row ends up covering all 8 ranks."""

from __future__ import annotations

import numpy as np

import rankwise
from support.processes import start_ranks, wait_all

WORLD, STEPS, LATE = 8, 300, 5

SCRIPT = """
import os, sys, time
from pathlib import Path
rank = int(os.environ["RANK"])
if rank == %(late)d:
    go = Path(os.environ["RW_GO_FILE"])
    while not go.exists():          # start only once the test says so: after the others are done
        time.sleep(0.005)
    time.sleep(2)
import rankwise
run = rankwise.init(project="late")
for s in range(%(steps)d):
    run.log({"x": rank * 1000.0 + s})
run.finish()
print(run.stats["rows_sent"])
"""


def test_late_rank_is_waited_for(rankwise_env, tmp_path):
    """Ranks 0-7 except 5 log 300 steps and finish; only then does rank 5 start (plus 2 s).
    Before it joins the group has no group rows (sealing waits for a rank that has not said
    hello yet, within the join grace); afterwards every step 0..299 has one group row with
    count == expected == 8 and mean/min/max equal to numpy over the 8 ranks."""
    go = tmp_path / "go"
    procs = start_ranks(rankwise_env, SCRIPT % {"late": LATE, "steps": STEPS}, WORLD, "job-late", RW_GO_FILE=go)
    others = [p for rank, p in enumerate(procs) if rank != LATE]
    for code, out, err in wait_all(others, timeout_s=120):
        assert code == 0, err
        assert int(out) == STEPS
    group = rankwise.Api().group("late", "job-late")
    assert [r.rank for r in group.runs] == [r for r in range(WORLD) if r != LATE]
    assert {r.state for r in group.runs} == {"finished"}
    assert len(group.history("x")["step"]) == 0, "a group row was sealed without the late rank"

    go.touch()
    ((code, out, err),) = wait_all([procs[LATE]], timeout_s=120)
    assert code == 0, err
    assert int(out) == STEPS

    h = rankwise.Api().group("late", "job-late").history("x")
    values = np.arange(WORLD)[:, None] * 1000.0 + np.arange(STEPS)[None, :]
    assert np.array_equal(h["step"], np.arange(STEPS))
    assert np.array_equal(h["count"], np.full(STEPS, WORLD))
    assert np.array_equal(h["expected"], np.full(STEPS, WORLD))
    assert np.array_equal(h["min"], values.min(axis=0))
    assert np.array_equal(h["max"], values.max(axis=0))
    assert np.array_equal(h["min_rank"], np.zeros(STEPS))
    assert np.array_equal(h["max_rank"], np.full(STEPS, WORLD - 1))
    np.testing.assert_allclose(h["mean"], values.mean(axis=0), rtol=1e-15)
