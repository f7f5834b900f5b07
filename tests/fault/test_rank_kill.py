"""SIGKILL of one rank in the middle of logging: its run becomes crashed, what the agent
acknowledged is stored, and the group keeps sealing rows for the ranks that remain."""

from __future__ import annotations

import numpy as np

import rankwise
from support.probes import kill9, raw_steps, read_line, wait_for
from support.processes import start_ranks, wait_all

WORLD, VICTIM, STEPS, ACKED = 4, 2, 600, 100

SCRIPT = """
import os, sys, time
from pathlib import Path
import rankwise
rank = int(os.environ["RANK"])
run = rankwise.init(project="kill")
def log_until(stop):
    while run.step < stop:
        run.log({"x": rank * 1000.0 + run.step})
if rank == %(victim)d:
    log_until(%(acked)d)
    assert run.flush(30)
    print("acked", run.step, flush=True)      # the agent has stored these: a lower bound after the kill
    while run.step < %(steps)d - 10:          # keep streaming until SIGKILL
        run.log({"x": rank * 1000.0 + run.step})
        time.sleep(0.002)
    time.sleep(600)
def wait(name):
    path = Path(os.environ["RW_DIR"]) / name
    while not path.exists():
        time.sleep(0.005)
log_until(200)
wait("killed")
log_until(400)
assert run.flush(30)
print("mid", flush=True)
wait("go")
log_until(%(steps)d)
run.finish()
print("done", run.stats["rows_sent"], flush=True)
"""


def test_killed_rank_crashes_and_the_group_seals_without_it(rankwise_env, tmp_path):
    """4 ranks log x = rank*1000 + step. Rank 2 has 100 rows acknowledged, streams on, and is
    SIGKILLed. The others go on: rows for steps up to 399 are sealed while they still run (with
    seal timeout and silence at 10 minutes, only noticing the crash can allow that), they finish
    600 steps, and finally rank 2 is crashed with a prefix 0..n-1 of its steps stored once
    (n >= 100 acknowledged), the others finished with 600 each, and every step 0..599 has one
    group row whose count is 4 where rank 2 reported and 3 after, with exact min/max/mean."""
    env = {"RW_DIR": tmp_path, "RANKWISE_SEAL_TIMEOUT": 600, "RANKWISE_SILENCE": 600}
    script = SCRIPT % {"victim": VICTIM, "acked": ACKED, "steps": STEPS}
    procs = start_ranks(rankwise_env, script, WORLD, "job-kill", **env)
    victim = procs[VICTIM]
    others = [p for r, p in enumerate(procs) if r != VICTIM]
    try:
        assert read_line(victim, what="acked") == f"acked {ACKED}"
        kill9(victim)
        assert victim.wait(timeout=30) == -9
        (tmp_path / "killed").touch()
        for p in others:
            assert read_line(p, what="mid") == "mid"
        # sealed past the victim's last step while the other ranks are alive and waiting
        wait_for(
            lambda: _sealed_through(rankwise.Api().group("kill", "job-kill"), 399),
            timeout_s=60,
            what="group rows through step 399 without the killed rank",
        )
        assert all(p.poll() is None for p in others)
        (tmp_path / "go").touch()
        for code, out, err in wait_all(others, timeout_s=120):
            assert code == 0, err
            assert out.split()[-2:] == ["done", str(STEPS)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()

    def settled():
        g = rankwise.Api().group("kill", "job-kill")
        h = g.history("x")
        return h if len(h["step"]) == STEPS and g.state == "crashed" else None

    h = wait_for(settled, timeout_s=60, what="every group row and the crashed state")
    group = rankwise.Api().group("kill", "job-kill")
    runs = group.runs
    assert [(r.rank, r.state) for r in runs] == [(0, "finished"), (1, "finished"), (2, "crashed"), (3, "finished")]
    victim_steps = raw_steps(rankwise_env, "kill", "job-kill", "rank-2", "x")
    n = len(victim_steps)
    assert n >= ACKED
    assert np.array_equal(victim_steps, np.arange(n))
    assert runs[VICTIM].rows == n
    assert np.array_equal(runs[VICTIM].history_arrays(["x"])["x"][1], VICTIM * 1000.0 + np.arange(n))
    for r in runs:
        if r.rank != VICTIM:
            assert r.rows == STEPS
            assert np.array_equal(raw_steps(rankwise_env, "kill", "job-kill", r.name, "x"), np.arange(STEPS))

    steps = np.arange(STEPS)
    count = np.where(steps < n, 4, 3)
    assert np.array_equal(h["step"], steps)
    assert np.array_equal(h["count"], count)
    assert np.array_equal(h["expected"], np.full(STEPS, WORLD))
    present = np.arange(WORLD)[:, None] * 1000.0 + steps[None, :]  # values by rank and step; NaN: not reported
    present[VICTIM, n:] = np.nan
    assert np.array_equal(h["min"], np.nanmin(present, axis=0))
    assert np.array_equal(h["max"], np.nanmax(present, axis=0))
    assert np.array_equal(h["min_rank"], np.zeros(STEPS))
    assert np.array_equal(h["max_rank"], np.full(STEPS, 3))
    np.testing.assert_allclose(h["mean"], np.nanmean(present, axis=0), rtol=1e-15)


def _sealed_through(group, step: int) -> bool:
    h = group.history("x")
    return len(h["step"]) > 0 and int(h["step"].max()) >= step
