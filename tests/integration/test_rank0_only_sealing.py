"""A job where only rank 0 logs (HF Trainer, Lightning's rank_zero_only, nanoGPT's master_process)
is sealed as soon as it is over, not after the join grace: the agent sees that every rank that said
hello is done and that their launcher (torchrun's agent process) has exited, so no rank can join."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import rankwise
from agent.config import AgentConfig

pytest.importorskip("torch", reason="torch is installed by the test extra on x86_64 / Python 3.11")

STEPS = 25

SCRIPT = """
import json, os, sys
rank = int(os.environ["RANK"])
if rank != 0:
    sys.exit(0)                          # the other ranks train without logging and never import rankwise
import rankwise
run = rankwise.init(project="r0")
for s in range(%(steps)d):
    run.log({"loss": 1.0 / (s + 1), "lr": 0.5 * s})
run.finish()
with open(os.environ["REPORT"], "w") as f:
    json.dump({"group": run.group, "world_size": int(os.environ["WORLD_SIZE"]), "sent": run.stats["rows_sent"]}, f)
"""


def _group_rows_at(project: str, group: str, key: str, n: int, deadline_s: float) -> tuple[dict, float]:
    """Poll the store until ``key`` has ``n`` group rows; (history, monotonic time they were seen)."""
    deadline = time.monotonic() + deadline_s
    while True:
        h = rankwise.Api().group(project, group).history(key)
        if len(h["step"]) >= n or time.monotonic() > deadline:
            return h, time.monotonic()
        time.sleep(0.05)


def test_rank0_only_group_is_sealed_when_the_job_exits(rankwise_env, tmp_path):
    """torchrun --nproc-per-node 2 where rank 1 never calls init(): once torchrun has exited, the group
    rows of all 25 steps are readable within 5 s (the join grace is 30 s by default), with count 1 of
    expected 2 and the values rank 0 logged, exactly."""
    assert AgentConfig.join_grace_s >= 30.0  # the default; the bound below means something only against it
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT % {"steps": STEPS}))
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script)]
    out = subprocess.run(cmd, env=rankwise_env.env(REPORT=str(report)), capture_output=True, text=True, timeout=300)
    exited = time.monotonic()
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads(report.read_text())
    assert info["world_size"] == 2 and info["sent"] == STEPS

    h, seen = _group_rows_at("r0", info["group"], "loss", STEPS, deadline_s=60.0)
    assert seen - exited < 5.0, f"group rows appeared {seen - exited:.1f} s after the job exited"
    assert np.array_equal(h["step"], np.arange(STEPS))
    assert np.array_equal(h["count"], np.ones(STEPS)) and np.array_equal(h["expected"], np.full(STEPS, 2))
    loss = np.array([1.0 / (s + 1) for s in range(STEPS)])
    for col in ("mean", "min", "max"):
        assert np.array_equal(h[col], loss)
    assert np.array_equal(h["std"], np.zeros(STEPS)) and np.array_equal(h["min_rank"], np.zeros(STEPS))
    lr = rankwise.Api().group("r0", info["group"]).history("lr")
    assert np.array_equal(lr["mean"], 0.5 * np.arange(STEPS))
    g = rankwise.Api().group("r0", info["group"])
    assert [(r.rank, r.state, r.rows) for r in g.runs] == [(0, "finished", STEPS)]
