"""Bounded client memory: past RANKWISE_MAX_UNACKED_BYTES a writer spills batches to a local file and
sends them once the agent keeps up; when the disk refuses the spill, rows are dropped and counted by
cause (never silently), and the sequence of batches keeps no gap."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import numpy as np

import rankwise
from support.probes import raw_steps, read_line, start_script, status_json
from support.processes import agent_pid, communicate

SCRIPT = """
import json, rankwise
run = rankwise.init(project="spill", group="%(group)s")
for s in range(200):
    run.log({"x": s, "pad": "p" * 100})
assert run.flush(30)
print("ready", flush=True)
input()                         # the test stops the agent, then says go
for s in range(200, 20200):
    run.log({"x": s, "pad": "p" * 100})
run.flush(0.5)                  # let the I/O thread assemble everything while the agent is stopped
print(json.dumps(run.stats), flush=True)
input()                         # the test continues the agent
run.finish()
print(json.dumps(run.stats), flush=True)
"""


def _run(env, group: str, extra: dict) -> tuple[dict, dict]:
    env_vars = {"RANKWISE_MAX_UNACKED_BYTES": "65536", "RANKWISE_BATCH_MAX_ROWS": "256", **extra}
    proc = start_script(env, SCRIPT % {"group": group}, env_vars, stdin=subprocess.PIPE)
    agent = None
    try:
        assert read_line(proc, what="ready") == "ready"
        agent = agent_pid(env)
        os.kill(agent, signal.SIGSTOP)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        during = json.loads(read_line(proc, what="stats while stopped"))
        os.kill(agent, signal.SIGCONT)
        agent = None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = communicate(proc, 120)
    finally:
        if agent is not None:
            os.kill(agent, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    return during, json.loads(out.splitlines()[-1])


def test_batches_beyond_the_memory_bound_spill_and_all_arrive(rankwise_env):
    """With a 64 KiB bound and the agent stopped, 20,000 rows (~2.5 MB of batches) do not all fit in
    memory: batches spill to a file; once the agent runs again every row is stored exactly once,
    nothing is dropped and the spill file is gone."""
    during, final = _run(rankwise_env, "g-spill", {})
    assert during["spilled_batches"] > 0
    assert final["dropped_rows"] == 0 and final["unacked_rows"] == 0
    run = rankwise.Api().group("spill", "g-spill").run(rank=0)
    assert (run.state, run.rows) == ("finished", 20200)
    assert np.array_equal(raw_steps(rankwise_env, "spill", "g-spill", "rank-0", "x"), np.arange(20200))
    assert list(Path(rankwise_env.data, "spill").glob("*.spill")) == []


def test_a_refused_spill_drops_rows_counted_by_cause(rankwise_env):
    """When the spill directory cannot be created (a file stands in its place: as good as a full
    disk), batches beyond the bound are dropped: the run's stats, the agent's drop counters and the
    run record count them under spill_failed; stored + dropped == logged; finish() still completes
    (dropped batches leave no gap in the sequence)."""
    Path(rankwise_env.data, "spill").write_text("not a directory")
    during, final = _run(rankwise_env, "g-full", {})
    dropped = final["dropped_rows"]
    assert dropped > 0 and final["unacked_rows"] == 0
    run = rankwise.Api().group("spill", "g-full").run(rank=0)
    assert run.state == "finished"
    assert run.rows + dropped == 20200
    assert run.meta["drops"] == {"spill_failed": dropped}
    assert len(raw_steps(rankwise_env, "spill", "g-full", "rank-0", "x")) == 20200 - dropped
    assert status_json(rankwise_env)["drops"] == {"spill_failed": dropped}
