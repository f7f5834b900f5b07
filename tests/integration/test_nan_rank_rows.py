"""8 real rank processes through the real agent, one rank's loss turning NaN at a known step: the group rows
keep summarising the seven healthy ranks (numpy's nan-reductions over them) and count and name the
diverged rank, and what reads them (``Group.history``, ``rankwise show`` text and --json, the UI's series
API) shows NaN as NaN, not as a missing value."""

from __future__ import annotations

import json
from urllib.parse import quote

import numpy as np
import pytest

import rankwise
from rankwise._cli import main
from support.uihelp import get, log_group, own_env, served

WORLD, STEPS = 8, 300
NAN_RANK, NAN_STEP, INF_STEP = 3, 120, 200

SCRIPT = """
import os, numpy as np, rankwise
rank = int(os.environ["RANK"])
loss = np.round(np.random.default_rng(rank).normal(size=%(steps)d), 3)  # rounded: ties across ranks
run = rankwise.init(project="nan")
for s in range(%(steps)d):
    v = float(loss[s])
    if rank == %(nan_rank)d and s >= %(nan_step)d:
        v = float("inf") if s == %(inf_step)d else float("nan")
    run.log({"loss": v, "blowup": float("nan") if s == %(steps)d - 1 else float(rank)})
run.finish()
""" % {"steps": STEPS, "nan_rank": NAN_RANK, "nan_step": NAN_STEP, "inf_step": INF_STEP}


def expected_loss() -> np.ndarray:
    """loss[rank, step] exactly as the rank scripts log it."""
    out = np.array([np.round(np.random.default_rng(r).normal(size=STEPS), 3) for r in range(WORLD)])
    out[NAN_RANK, NAN_STEP:] = np.nan
    out[NAN_RANK, INF_STEP] = np.inf
    return out


@pytest.fixture(scope="module")
def store():
    """One group of 8 ranks x 300 steps logged through the real agent, shared by this module's tests."""
    with own_env() as env:
        log_group(env, SCRIPT, WORLD, "job-nan")
        yield env.store


def test_one_nan_rank_leaves_the_others_rows(store):
    """Group.history("loss"): count 8 at every step; before step 120 numpy over all 8 ranks with nan_count
    0 and nan_rank -1; from step 120 (rank 3 NaN, +inf at 200) np.nanmean/nanmin/nanmax/nanstd and
    nanargmin/nanargmax over the 7 others (mean and std np.isclose rtol 1e-12, the rest exact), nan_count 1,
    nan_rank 3. A key NaN on every rank at its last step has mean/min/max/std NaN and ranks -1 there."""
    table = expected_loss()
    g = rankwise.Api(store).group("nan", "job-nan")
    h = g.history("loss")
    assert h["step"].tolist() == list(range(STEPS))
    assert h["count"].tolist() == [WORLD] * STEPS
    assert h["nan_count"].tolist() == [0] * NAN_STEP + [1] * (STEPS - NAN_STEP)
    assert h["nan_rank"].tolist() == [-1] * NAN_STEP + [NAN_RANK] * (STEPS - NAN_STEP)
    finite = np.where(np.isfinite(table), table, np.nan)
    assert np.isclose(h["mean"], np.nanmean(finite, axis=0), rtol=1e-12, atol=0).all()
    assert np.isclose(h["std"], np.nanstd(finite, axis=0), rtol=1e-12, atol=1e-15).all()
    assert np.array_equal(h["min"], np.nanmin(finite, axis=0))
    assert np.array_equal(h["max"], np.nanmax(finite, axis=0))
    assert np.array_equal(h["min_rank"], np.nanargmin(finite, axis=0))
    assert np.array_equal(h["max_rank"], np.nanargmax(finite, axis=0))
    others = np.delete(table, NAN_RANK, axis=0)[:, NAN_STEP:]  # the 7 healthy ranks after the NaN step
    assert np.isclose(h["mean"][NAN_STEP:], others.mean(axis=0), rtol=1e-12, atol=0).all()
    assert np.array_equal(h["min"][NAN_STEP:], others.min(axis=0))
    assert not np.isnan(h["mean"]).any()
    b = g.history("blowup")
    assert b["nan_count"][-1] == WORLD and b["nan_rank"][-1] == 0 and b["count"][-1] == WORLD
    assert np.isnan([b[f][-1] for f in ("mean", "min", "max", "std")]).all()
    assert (b["min_rank"][-1], b["max_rank"][-1]) == (-1, -1)
    assert b["mean"][-2] == np.mean(np.arange(WORLD)) and b["nan_count"][-2] == 0


def test_show_and_series_tell_nan_from_missing(store, capsys):
    """``rankwise show`` prints the last row of a key whose values are all NaN as NaN with its ranks as '-'
    (none), and the loss row's non-finite count and rank; --json is strict JSON with "NaN" strings and null
    ranks; the UI's series API returns nan_count and nan_rank per point."""
    assert main(["show", "job-nan", "--project", "nan", "--store", str(store)]) == 0
    lines = {
        ln.split()[0]: ln.split() for ln in capsys.readouterr().out.splitlines() if ln.startswith(("loss", "blowup"))
    }
    # key step ranks mean min "min rank" max "max rank" std non-finite "first nf rank" trend
    assert lines["blowup"][1:10] == [
        str(STEPS - 1),
        f"{WORLD}/{WORLD}",
        "NaN",
        "NaN",
        "-",
        "NaN",
        "-",
        "NaN",
        str(WORLD),
    ]
    assert lines["blowup"][10] == "0"
    assert lines["loss"][9:11] == ["1", str(NAN_RANK)]
    assert main(["show", "job-nan", "--project", "nan", "--store", str(store), "--json"]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out, parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(f"non-JSON {c}")))
    keys = {k["key"]: k for k in doc["keys"]}
    assert keys["blowup"]["mean"] == "NaN" and keys["blowup"]["min rank"] is None
    assert keys["blowup"]["non-finite"] == WORLD and keys["blowup"]["first nf rank"] == 0
    assert keys["loss"]["non-finite"] == 1 and keys["loss"]["first nf rank"] == NAN_RANK
    with served(store) as server:
        status, s = get(server, f"/api/projects/nan/groups/job-nan/series?key={quote('loss')}&width=1000")
        assert status == 200 and s["resolution"] == "full"
        assert s["nan_count"] == [0] * NAN_STEP + [1] * (STEPS - NAN_STEP)
        assert s["nan_rank"] == [-1] * NAN_STEP + [NAN_RANK] * (STEPS - NAN_STEP)
        assert None not in s["mean"]
        status, r = get(server, "/api/projects/nan/groups/job-nan/series?key=loss&width=50")
        assert status == 200 and r["resolution"] == "minmax"
        assert len(r["nan_count"]) == len(r["x"]) and max(r["nan_count"]) == 1
        assert set(r["nan_rank"]) == {-1, NAN_RANK}
