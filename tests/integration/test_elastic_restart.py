"""torchrun's elastic restart: a rank dies, torchrun starts it again with the same run id and rank
and TORCHELASTIC_RESTART_COUNT=1; the new process resumes the same run where the stored steps end."""

from __future__ import annotations

import json

import numpy as np
import pytest

import rankwise
from support.probes import pid_gone, raw_steps, read_line, start_script, wait_for
from support.processes import communicate, torchrun_env

FIRST = """
import os, signal, sys, rankwise
run = rankwise.init(project="elastic")
for s in range(100):
    run.log({"loss": 1.0 / (s + 1), "s": s})
assert run.flush(30)                       # acknowledged: stored before the process dies
print(run.stats["rows_sent"], flush=True)
if sys.argv[-1] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
sys.exit(1)
"""

SECOND = """
import json, rankwise
run = rankwise.init(project="elastic")
first_step = run.step
resumed = run.resumed
for s in range(first_step, first_step + 50):
    run.log({"loss": 1.0 / (s + 1), "s": s})
run.finish()
print(json.dumps({"resumed": resumed, "step": first_step, "sent": run.stats["rows_sent"]}))
"""


@pytest.mark.parametrize("death", ["kill", "exit1"])
def test_restarted_rank_resumes_its_run(rankwise_env, death):
    """Rank 1 of 2 logs 100 steps and dies (SIGKILL, or exit status 1); a new process with the same
    TORCHELASTIC_RUN_ID and RANK and TORCHELASTIC_RESTART_COUNT=1 calls init(): run.resumed is
    True, run.step is 100, its 50 steps follow, and the group still has ONE run for rank 1 with
    2 incarnations, finished, whose history holds steps 0..149 exactly once."""
    group = f"job-{death}"
    env = torchrun_env(1, 2, group)
    first = start_script(rankwise_env, FIRST.replace("sys.argv[-1]", repr(death)), env)
    assert read_line(first, what="acked rows") == "100"
    first.wait(timeout=60)
    assert first.returncode == (-9 if death == "kill" else 1)
    if death == "kill":
        wait_for(lambda: pid_gone(first.pid), what="the first incarnation to be gone")

    second = start_script(rankwise_env, SECOND, dict(env, TORCHELASTIC_RESTART_COUNT=1))
    out, err = communicate(second, 60)
    assert second.returncode == 0, err

    assert json.loads(out.splitlines()[-1]) == {"resumed": True, "step": 100, "sent": 50}

    g = rankwise.Api().group("elastic", group)
    assert g.world_size == 2
    (run,) = g.runs
    assert (run.rank, run.name, run.incarnations, run.state, run.exit_code) == (1, "rank-1", 2, "finished", 0)
    assert (run.rows, run.step) == (150, 150)
    for key in ("loss", "s", "_timestamp"):
        assert np.array_equal(raw_steps(rankwise_env, "elastic", group, "rank-1", key), np.arange(150)), key
    cols = run.history_arrays(["loss", "s"])
    assert np.array_equal(cols["s"][1], np.arange(150))
    assert np.array_equal(cols["loss"][1], 1.0 / (np.arange(150) + 1))
    runtime = cols["_runtime"][1]
    assert np.all(np.diff(runtime) >= 0), "runtime continues across the restart"
    assert run.summary == {"loss": 1.0 / 150, "s": 149}
