"""Per-rank lines on the time axis stay ranks × steps: every rank commits a step at its own time, and the
series no longer puts every line on the union of all commit times (ranks² × steps: 124 MB of JSON for
64 ranks × 5k steps); each rank's point sits at the nearest of the group's own times."""

from __future__ import annotations

import json

import numpy as np
import pytest

from support.uihelp import auth, served

RANKS, STEPS = 32, 400
T0 = 1.7e9


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A finished group of 32 ranks × 400 steps; rank r commits step s at T0 + s + r ms, logging r·1000 + s."""
    from agent.store.sqlite import SQLiteStore
    from grouping import finalize, reduce_points

    path = tmp_path_factory.mktemp("tr") / "store.sqlite"
    st = SQLiteStore(path)
    runs = []
    for r in range(RANKS):
        info = {
            "name": f"rank-{r}",
            "run_key": f"tr-{r}",
            "rank": r,
            "local_rank": r,
            "node": "n0",
            "pid": 1000 + r,
            "config": {},
        }
        g, run, _ = st.register("tr", "g", RANKS, info, T0)
        runs.append(run)
    s = np.arange(STEPS, dtype=np.int64)
    with st.transaction() as txn:
        for r, run in enumerate(runs):
            txn.add_history(run.id, "_timestamp", s, T0 + s + r * 0.001, False)
            txn.add_history(run.id, "loss", s, r * 1000.0 + s, False)
        points = reduce_points(
            np.tile(s, RANKS),
            np.repeat(np.arange(RANKS, dtype=np.int64), STEPS),
            np.concatenate([r * 1000.0 + s for r in range(RANKS)]),
        )
        txn.add_group_rows(g.id, "loss", finalize(points, RANKS), False)
    with st.transaction() as txn:
        for run in runs:
            run.state, run.exit_code, run.step, run.rows = "finished", 0, STEPS, STEPS
            txn.put_run(run)
        g.sealed_through = STEPS - 1
        txn.put_group(g)
    st.close()
    return path


def test_time_axis_rank_lines_share_the_group_times(store):
    """``series?x=time&ranks=1`` at full resolution: one x per group step (400, not 32 × 400), each of
    the 32 rank lines 400 values long and exactly the rank's values, the whole reply under 200 KB."""
    import urllib.request

    with served(store) as server:
        req = urllib.request.Request(
            server.url + "api/projects/tr/groups/g/series?key=loss&x=time&ranks=1&width=1000", headers=auth(server)
        )
        with urllib.request.urlopen(req, timeout=60) as res:
            body = res.read()
    out = json.loads(body)
    assert out["resolution"] == "full" and out["points"] == STEPS
    assert len(out["x"]) == STEPS
    assert out["x"] == pytest.approx([s + (RANKS - 1) * 0.001 for s in range(STEPS)], abs=1e-6)
    assert out["mean"] == [s + 1000.0 * (RANKS - 1) / 2 for s in range(STEPS)]
    assert [r["rank"] for r in out["ranks"]] == list(range(RANKS))
    for r in out["ranks"]:
        assert r["values"] == [r["rank"] * 1000.0 + s for s in range(STEPS)], r["rank"]
    assert len(body) < 200_000, len(body)


def test_snap_places_points_at_the_nearest_grid_time():
    """``snap``: nearest grid point, the later value on a tie of slots, NaN where nothing landed."""
    from rankwise._ui import series as S

    grid = np.array([0.0, 1.0, 2.0, 3.0])
    got = S.snap(grid, np.array([-5.0, 0.4, 0.6, 0.9, 2.5, 9.0]), np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    assert np.array_equal(got, np.array([2.0, 4.0, 5.0, 6.0]), equal_nan=True)
    assert np.isnan(S.snap(grid, np.array([1.0]), np.array([7.0]))[[0, 2, 3]]).all()
