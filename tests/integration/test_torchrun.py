"""The real launcher: torchrun starts ranks that synchronise with torch.distributed (gloo all-reduce)
and log through rankwise. The group comes from torchrun's run id without any argument, every rank is a
run, and an elastic restart (torchrun --max-restarts) resumes each rank's run and step counter."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import rankwise
from support.probes import raw_steps

torch = pytest.importorskip("torch", reason="torch is installed by the test extra on x86_64 / Python 3.11")

SCRIPT = """
import json, os, sys, time, torch, torch.distributed as dist, rankwise
collectives = os.environ.get("COLLECTIVES") == "1"
if collectives:
    dist.init_process_group("gloo")
rank = int(os.environ["RANK"])
attempt = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
run = rankwise.init(project="torchrun")           # no group, no rank: both come from torchrun
steps = int(os.environ["STEPS"])
fail_at = int(os.environ.get("FAIL_AT", "-1"))
start = run.step
for s in range(start, steps):
    x = torch.tensor([float(rank + s)])
    if collectives:
        dist.all_reduce(x)                       # every rank waits for all others here
    else:
        time.sleep(0.02)                         # a training step's worth of time
    run.log({"loss": torch.tensor(1.0 / (s + 1 + rank)), "sum": x[0]})   # 0-d tensors: .item()
    run.flush()
    if attempt == 0 and rank == 1 and s == fail_at:
        # fail only once the others have stored their step fail_at + 11 (a file each): where they are when
        # torchrun stops them must not depend on how fast the machine is
        parked = [os.path.join(os.environ["REPORTS"], f"parked-{k}") for k in range(4) if k != 1]
        deadline = time.monotonic() + 120
        while not all(os.path.exists(p) for p in parked) and time.monotonic() < deadline:
            time.sleep(0.01)
        sys.exit(1)                              # torchrun stops the others and restarts everyone
    if attempt == 0 and fail_at >= 0 and rank != 1 and s == fail_at + 11:
        open(os.path.join(os.environ["REPORTS"], f"parked-{rank}"), "w").close()
        time.sleep(120)                          # the others wait here until torchrun stops them
# one file per rank and attempt: the workers share torchrun's stdout, where their lines can interleave
with open(os.path.join(os.environ["REPORTS"], f"{rank}-{attempt}.json"), "w") as f:
    json.dump({"rank": rank, "group": run.group, "run_id": os.environ["TORCHELASTIC_RUN_ID"],
               "attempt": attempt, "resumed": run.resumed, "start": start}, f)
run.finish()
if collectives:
    dist.destroy_process_group()
"""


def _torchrun(env, tmp_path, args: list[str], extra: dict) -> subprocess.CompletedProcess:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    (tmp_path / "reports").mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "4", *args, str(script)]
    return subprocess.run(
        cmd, env=env.env(REPORTS=str(tmp_path / "reports"), **extra), capture_output=True, text=True, timeout=300
    )


def _reports(tmp_path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "reports").glob("*.json"))]


def test_torchrun_ranks_form_one_group_from_the_run_id(rankwise_env, tmp_path):
    """torchrun --standalone with 4 workers: every rank's init() derives the same group, torchrun's
    TORCHELASTIC_RUN_ID; the group has 4 finished runs with 60 rows each, the 0-d tensors arrive as
    numbers, and every group row of the all-reduced sum equals numpy over the ranks."""
    out = _torchrun(rankwise_env, tmp_path, [], {"STEPS": 60, "COLLECTIVES": 1})
    assert out.returncode == 0, out.stderr[-3000:]
    reports = _reports(tmp_path)
    assert sorted(r["rank"] for r in reports) == [0, 1, 2, 3]
    assert {r["group"] for r in reports} == {reports[0]["run_id"]}
    g = rankwise.Api().group("torchrun", reports[0]["run_id"])
    assert [(r.rank, r.state, r.rows) for r in g.runs] == [(k, "finished", 60) for k in range(4)]
    loss = np.array([[1.0 / (s + 1 + k) for s in range(60)] for k in range(4)])
    for run in g.runs:
        assert np.array_equal(run.history_arrays(["loss"])["loss"][1], loss[run.rank].astype(np.float32).astype(float))
    h = g.history("loss")
    assert np.array_equal(h["count"], np.full(60, 4))
    assert np.array_equal(h["min_rank"], np.full(60, 3)) and np.array_equal(h["max_rank"], np.full(60, 0))
    sums = g.history("sum")
    assert np.array_equal(sums["mean"], np.array([float(sum(k + s for k in range(4))) for s in range(60)]))


def test_elastic_restart_resumes_every_rank(rankwise_env, tmp_path):
    """Rank 1 exits with 1 after step 29 of the first attempt, once the others wait after their step 40
    (they say so by a file each, so that no machine is too slow for it); torchrun stops them (SIGTERM) and restarts all four (--max-restarts 1). Each rank's second init()
    resumes its run (resumed=True, same group) where its stored steps end — rank 1 at 30, the others at
    41 — and every run ends finished
    with steps 0..59 stored exactly once, 2 incarnations, and a group row of all 4 ranks at every step.
    (No gloo collectives here: on this machine gloo's reconnection after a restart is itself flaky.)"""
    out = _torchrun(rankwise_env, tmp_path, ["--max-restarts", "1"], {"STEPS": 60, "FAIL_AT": 29})
    assert out.returncode == 0, out.stderr[-3000:]
    reports = _reports(tmp_path)
    assert sorted((r["rank"], r["attempt"], r["resumed"]) for r in reports) == [(k, 1, True) for k in range(4)]
    assert {r["rank"]: r["start"] for r in reports} == {0: 41, 1: 30, 2: 41, 3: 41}
    group = reports[0]["group"]
    g = rankwise.Api().group("torchrun", group)
    assert [(r.rank, r.state, r.incarnations, r.step) for r in g.runs] == [(k, "finished", 2, 60) for k in range(4)]
    for k in range(4):
        assert np.array_equal(raw_steps(rankwise_env, "torchrun", group, f"rank-{k}", "loss"), np.arange(60))
    assert np.array_equal(g.history("loss")["count"], np.full(60, 4))
