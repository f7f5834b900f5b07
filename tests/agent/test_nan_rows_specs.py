"""NaN-aware group rows in the single-node agent (agent/groups.py), in process (tests/support/agentsim.py):
rows sealed live and rows recomputed for late points count a NaN/±inf rank apart and summarise the others,
as numpy's nan-reductions over the raw values (tests/support/grouprows.py)."""

from __future__ import annotations

import math

import numpy as np

from support.agentsim import AgentSim
from support.grouprows import assert_group_rows, numpy_group_rows, points_of, wave


def test_live_rows_count_the_nan_rank_and_summarise_the_others(monkeypatch):
    """Ranks 0..3 of 4 log steps 0..9; rank 2's values are NaN from step 4 and -inf at step 8: the sealed
    rows from step 4 on have count 4, nan_count 1, nan_rank 2 and numpy's nan-reductions over ranks 0, 1, 3
    (mean and std to 1e-12, the rest exact)."""
    sim = AgentSim(monkeypatch)
    ranks = [sim.join(r, 4) for r in range(4)]
    points = {}
    for r in ranks:
        v = wave(r.rank, range(10))
        if r.rank == 2:
            v[4:] = math.nan
            v[8] = -math.inf
        r.log(range(10), x=v)
        r.send()
        points[r.rank] = points_of(range(10), v)
    sim.turn()
    rows = sim.group_rows("x")
    assert_group_rows(rows, numpy_group_rows(points, expected=4))
    assert rows["nan_count"].tolist() == [0] * 4 + [1] * 6 and rows["nan_rank"].tolist() == [-1] * 4 + [2] * 6
    assert rows["count"].tolist() == [4] * 10 and np.isfinite(rows["mean"]).all()


def test_a_late_nan_revises_the_row_and_a_late_fix_revises_it_back(monkeypatch):
    """Ranks 0..2 of 3 log steps 0..9 (all finite, sealed). At t=1 rank 1 updates step 3 late to NaN and
    step 7 to +inf: the recomputed revision of steps [3, 7] has nan_count 1, nan_rank 1, mean/min/max over
    ranks 0 and 2. At t=2 rank 1 updates step 3 to a number again: that row's next revision has nan_count 0
    and nan_rank -1 over all three ranks. Every state equals the NaN-aware reference over the raw points."""
    sim = AgentSim(monkeypatch)
    r0, r1, r2 = (sim.join(r, 3) for r in range(3))
    points = {}
    for r in (r0, r1, r2):
        r.log(range(10), x=wave(r.rank, range(10)))
        r.send()
        points[r.rank] = points_of(range(10), wave(r.rank, range(10)))
    sim.turn()
    assert sim.group_rows("x")["nan_count"].tolist() == [0] * 10
    sim.at(1.0)
    r1.late(3, x=math.nan)
    r1.late(7, x=math.inf)
    r1.send()
    points[1].update({3: math.nan, 7: math.inf})
    sim.turn()
    assert sim.group_chunks("x") == [(list(range(10)), False), ([3, 7], True)]
    rows = sim.group_rows("x")
    assert_group_rows(rows, numpy_group_rows(points, expected=3))
    assert (rows["nan_count"][3], rows["nan_rank"][3], rows["nan_count"][7], rows["nan_rank"][7]) == (1, 1, 1, 1)
    assert rows["mean"][3] == np.mean([points[0][3], points[2][3]])
    sim.at(2.0)
    r1.late(3, x=0.5)
    r1.send()
    points[1][3] = 0.5
    sim.turn()
    rows = sim.group_rows("x")
    assert_group_rows(rows, numpy_group_rows(points, expected=3))
    assert (rows["nan_count"][3], rows["nan_rank"][3]) == (0, -1)
