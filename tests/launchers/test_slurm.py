"""SLURM for real: a one-node cluster (munged, slurmctld, slurmd from Debian's slurm-wlm and munge, started
by the module's fixture on loopback) runs ``srun`` job steps whose tasks call ``rankwise.init()`` with no
group and no rank. Each job step is one group, ``slurm-<SLURM_JOB_ID>.<SLURM_STEP_ID>``, with one run per
task; a requeued job (preemption) runs its step 0 again and every task resumes its run."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from lchelp import SRUN, reports, x_values
from slurmcluster import SlurmCluster

import rankwise
from support.probes import raw_steps, wait_for

TASKS = 2

PROGRAM = """
import json, math, os, time
import rankwise

steps = int(os.environ["STEPS"])
hold_at = int(os.environ.get("HOLD_AT", "-1"))
restart = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
run = rankwise.init(project="slurm")                      # no rank=, no group=: from srun
start, resumed = run.step, run.resumed


def report():
    name = f"{restart}-{os.environ['SLURM_STEP_ID']}-{run.rank}.json"
    with open(os.path.join(os.environ["REPORTS"], name), "w") as f:
        json.dump({"procid": int(os.environ["SLURM_PROCID"]), "rank": run.rank, "world": run.world_size,
                   "local_rank": run.settings.local_rank, "launcher": run.settings.launcher, "group": run.group,
                   "job": os.environ["SLURM_JOB_ID"], "step": os.environ["SLURM_STEP_ID"], "restart": restart,
                   "start": start, "resumed": resumed, "rows_sent": run.stats["rows_sent"]}, f)


for s in range(start, steps):
    run.log({"x": math.sin(run.rank * 0.7 + s * 0.1) * (run.rank + 1), "s": s})
    if s == hold_at and restart == 0:
        assert run.flush(30)                             # acknowledged: stored before the preemption
        report()
        time.sleep(300)                                  # until the job is requeued (SIGTERM)
run.finish()
report()
"""


def _program(tmp_path: Path) -> Path:
    path = tmp_path / "train.py"
    path.write_text(textwrap.dedent(PROGRAM))
    (tmp_path / "reports").mkdir(exist_ok=True)
    return path


def _check_step(reps: list[dict], job: str, step: str) -> str:
    """Every task of the step derived ``slurm-<job>.<step>`` and its SLURM_PROCID as rank."""
    assert sorted(r["procid"] for r in reps) == list(range(TASKS))
    for r in reps:
        assert (r["rank"], r["world"], r["local_rank"], r["launcher"]) == (r["procid"], TASKS, r["procid"], "slurm")
        assert (r["job"], r["step"]) == (job, step)
    (group,) = {r["group"] for r in reps}
    assert group == f"slurm-{job}.{step}"
    return group


def test_srun_step_is_one_group_with_a_run_per_task(slurm: SlurmCluster, rankwise_env, tmp_path):
    """``srun -N1 -n2 python train.py`` (30 steps): both tasks land in one group named
    ``slurm-<job>.0``, ranks 0 and 1 from SLURM_PROCID, world size 2, both runs finished with the 30
    values each task sent stored exactly, group rows equal to numpy over the two tasks."""
    steps = 30
    program = _program(tmp_path)
    env = slurm.env(rankwise_env.env(REPORTS=str(tmp_path / "reports"), STEPS=steps))
    out = subprocess.run(
        [SRUN, "-N1", f"-n{TASKS}", sys.executable, str(program)], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:] + slurm.logs()
    reps = reports(tmp_path / "reports")
    group = _check_step(reps, reps[0]["job"], "0")
    assert [(r["start"], r["resumed"], r["rows_sent"]) for r in reps] == [(0, False, steps)] * TASKS

    api = rankwise.Api()
    assert [g.name for g in api.groups("slurm")] == [group]
    g = api.group("slurm", group)
    assert g.world_size == TASKS
    assert [(r.rank, r.state, r.rows, r.node) for r in g.runs] == [
        (k, "finished", steps, "rwnode") for k in range(TASKS)
    ]
    xs = x_values(TASKS, steps)
    for run in g.runs:
        cols = run.history_arrays(["x", "s"])
        assert np.array_equal(cols["x"][0], np.arange(steps))
        assert np.array_equal(cols["x"][1], xs[run.rank])
        assert np.array_equal(cols["s"][1], np.arange(steps))
    h = g.history("x")
    assert np.array_equal(h["count"], np.full(steps, TASKS))
    assert np.array_equal(h["min"], xs.min(axis=0)) and np.array_equal(h["max"], xs.max(axis=0))
    assert np.array_equal(h["min_rank"], xs.argmin(axis=0)) and np.array_equal(h["max_rank"], xs.argmax(axis=0))
    np.testing.assert_allclose(h["mean"], xs.mean(axis=0), rtol=0, atol=1e-13 * np.abs(xs).max())


BATCH = """\
#!/bin/bash
set -e
STEPS=40 HOLD_AT=19 srun -n{tasks} {python} {program}
STEPS=5 srun -n{tasks} {python} {program}
"""


def test_requeued_job_resumes_its_step_and_each_step_is_a_group(slurm: SlurmCluster, rankwise_env, tmp_path):
    """An sbatch job runs two srun steps. In its first run, step 0's tasks store steps 0..19 and are
    preempted (``scontrol requeue``: SIGTERM); the requeued job (same SLURM_JOB_ID,
    SLURM_RESTART_COUNT=1) runs step 0 again and each task resumes its run at step 20 and goes on to 40,
    then step 1 runs 5 steps. Group ``slurm-<job>.0``: 2 runs, 2 incarnations each, finished, steps
    0..39 stored exactly once with exact values, group rows over both tasks at every step; group
    ``slurm-<job>.1``: 2 fresh runs of 5 rows."""
    program = _program(tmp_path)
    script = tmp_path / "job.sh"
    script.write_text(BATCH.format(tasks=TASKS, python=sys.executable, program=program))
    env = slurm.env(rankwise_env.env(REPORTS=str(tmp_path / "reports")))
    submit = subprocess.run(
        ["sbatch", "--parsable", "--requeue", f"-n{TASKS}", "-o", str(tmp_path / "job-%j.out"), str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert submit.returncode == 0, submit.stderr + slurm.logs()
    job = submit.stdout.strip().split(";")[0]
    try:
        held = tmp_path / "reports"
        wait_for(lambda: len(list(held.glob("0-0-*.json"))) == TASKS, timeout_s=60, what="step 0 to store 20 rows")
        slurm.cmd("scontrol", "requeue", job)
        # a requeued job waits ~120 s (its credentials' lifetime) before it may start again: start it now
        wait_for(
            lambda: slurm.job_field(job, "Restarts") == "1" and slurm.job_field(job, "JobState") == "PENDING",
            timeout_s=60,
            what="the job to be requeued",
        )
        # Requeuing revokes the job's credentials as of the requeue's second, and slurmd refuses a credential
        # created at or before that second ("Job credential revoked": the job then FAILS). Timestamps are whole
        # seconds, so the new start must come in a later second than the requeue, which happened before the
        # job was seen PENDING: wait for the next whole second, then start it.
        next_second = math.floor(time.time()) + 1
        wait_for(lambda: time.time() >= next_second, timeout_s=5, what="the second after the requeue")
        slurm.cmd("scontrol", "update", f"JobId={job}", "StartTime=now")
        wait_for(
            lambda: slurm.job_field(job, "JobState") not in ("PENDING", "RUNNING", "COMPLETING"),
            timeout_s=90,
            what="the requeued job to end",
        )
        state = slurm.job_field(job, "JobState")
        log = (tmp_path / f"job-{job}.out").read_text() if (tmp_path / f"job-{job}.out").exists() else ""
        assert state == "COMPLETED", f"{state}\n{log}\n{slurm.logs()}"
    finally:
        subprocess.run(["scancel", job], env=env, capture_output=True, timeout=30)

    reps = reports(tmp_path / "reports")
    first = [r for r in reps if r["restart"] == 0]
    second = [r for r in reps if r["restart"] == 1 and r["step"] == "0"]
    other = [r for r in reps if r["restart"] == 1 and r["step"] == "1"]
    group0 = _check_step(first, job, "0")
    assert _check_step(second, job, "0") == group0
    group1 = _check_step(other, job, "1")
    assert [(r["start"], r["resumed"], r["rows_sent"]) for r in first + second + other] == (
        [(0, False, 20)] * TASKS + [(20, True, 20)] * TASKS + [(0, False, 5)] * TASKS
    )

    api = rankwise.Api()
    assert sorted(g.name for g in api.groups("slurm")) == sorted([group0, group1])
    g = api.group("slurm", group0)
    assert [(r.rank, r.state, r.incarnations, r.step) for r in g.runs] == [(k, "finished", 2, 40) for k in range(TASKS)]
    xs = x_values(TASKS, 40)
    for run in g.runs:
        assert np.array_equal(raw_steps(rankwise_env, "slurm", group0, run.name, "x"), np.arange(40))
        assert np.array_equal(run.history_arrays(["x"])["x"][1], xs[run.rank])
    h = g.history("x")
    assert np.array_equal(h["count"], np.full(40, TASKS))
    assert np.array_equal(h["min"], xs.min(axis=0)) and np.array_equal(h["max"], xs.max(axis=0))
    g1 = api.group("slurm", group1)
    assert [(r.rank, r.state, r.incarnations, r.rows) for r in g1.runs] == [(k, "finished", 1, 5) for k in range(TASKS)]
    assert np.array_equal(g1.history("x")["min"], x_values(TASKS, 5).min(axis=0))
