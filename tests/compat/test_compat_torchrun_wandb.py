"""A plain wandb script (nanoGPT style: only the master process imports wandb and logs) run unmodified under
``torchrun --nproc-per-node 2`` with RANKWISE_AS_WANDB=1 in the environment: the workers inherit the
routing, and the group's rows are readable within 5 s of the job's exit, equal to what rank 0 logged."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import rankwise

pytest.importorskip("torch", reason="torch is installed by the test extra on x86_64 / Python 3.11")

STEPS = 20

SCRIPT = """
import json, os
master_process = int(os.environ["RANK"]) == 0
if master_process:
    import wandb
    wandb.init(project="nano", name="gpt2-124M", config={"lr": 6e-4})
for it in range(%(steps)d):
    loss = 4.0 - 0.125 * it
    if master_process:
        wandb.log({"iter": it, "train/loss": loss, "lr": 6e-4 * (it + 1) / %(steps)d})
if master_process:
    with open(os.environ["REPORT"], "w") as f:
        json.dump({"group": wandb.run.group, "module": wandb.__file__, "rows": wandb.run.stats["rows_sent"]}, f)
"""


def test_rank0_only_wandb_script_under_torchrun(rankwise_env, tmp_path):
    """rank 0's 20 rows reach the store with exact values (one run, count 1 of expected 2 in the group
    rows), readable within 5 s of torchrun's exit although the script never calls finish()."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT % {"steps": STEPS}))
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script)]
    env = rankwise_env.env(RANKWISE_AS_WANDB="1", REPORT=str(report))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    exited = time.monotonic()
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads(report.read_text())
    assert info["module"].endswith("rankwise/wandb_compat/__init__.py")

    deadline = exited + 60.0
    while True:
        h = rankwise.Api().group("nano", info["group"]).history("train/loss")
        if len(h["step"]) >= STEPS or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    seen = time.monotonic()
    assert seen - exited < 5.0, f"group rows appeared {seen - exited:.1f} s after the job exited"
    loss = 4.0 - 0.125 * np.arange(STEPS)
    assert np.array_equal(h["step"], np.arange(STEPS)) and np.array_equal(h["mean"], loss)
    assert np.array_equal(h["count"], np.ones(STEPS)) and np.array_equal(h["expected"], np.full(STEPS, 2))
    (run,) = rankwise.Api().group("nano", info["group"]).runs
    assert (run.name, run.rank, run.state, run.rows, run.config) == ("gpt2-124M", 0, "finished", STEPS, {"lr": 6e-4})
    rows = run.history()
    assert [(r["iter"], r["train/loss"], r["lr"]) for r in rows] == [
        (it, 4.0 - 0.125 * it, 6e-4 * (it + 1) / STEPS) for it in range(STEPS)
    ]
