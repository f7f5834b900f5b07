"""The real MPI launchers from Debian's packages: Open MPI's ``mpirun`` and MPICH's ``mpiexec`` (hydra)
start 4 ranks of an mpi4py program that all-reduces every step and logs from every rank, with no
``group=`` and no ``rank=``: rankwise's launcher detection must give one group per job and each rank
its own run, from the environment those programs really export.

One mpi4py wheel serves both: it carries an Open MPI and an MPICH build and picks by MPI4PY_MPIABI. Under
MPICH the library is found through a libmpi.so.12 link to Debian's libmpich.so.12 (``lchelp``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from lchelp import MPICH, OPENMPI, mpich_lib_dir, reports, require, require_mpi4py, root_env, x_values

import rankwise
from support.probes import raw_steps

WORLD = 4

PROGRAM = """
import json, math, os
import psutil
from mpi4py import MPI
import rankwise

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
steps = int(os.environ["STEPS"])
abort_at = int(os.environ.get("ABORT_AT", "-1"))
attempt = int(os.environ.get("ATTEMPT", "0"))
run = rankwise.init(project="mpi", group=os.environ.get("FIXED_GROUP") or None)   # no rank=, no group=
start, resumed = run.step, run.resumed
proxy = next((p.pid for p in psutil.Process().parents() if p.name() == "hydra_pmi_proxy"), None)


def report(rows_sent):
    with open(os.path.join(os.environ["REPORTS"], f"{attempt}-{rank}.json"), "w") as f:
        json.dump({"mpi_rank": rank, "mpi_size": size, "rank": run.rank, "world": run.world_size,
                   "local_rank": run.settings.local_rank, "launcher": run.settings.launcher,
                   "group": run.group, "namespace": os.environ.get("PMIX_NAMESPACE"), "ppid": os.getppid(), "proxy": proxy,
                   "start": start, "resumed": resumed, "rows_sent": rows_sent}, f)


for s in range(start, steps):
    total = comm.allreduce(rank * 100 + s)            # every rank waits for all others here
    run.log({"x": math.sin(rank * 0.7 + s * 0.1) * (rank + 1), "total": total})
    if s == abort_at:
        assert run.flush(30)                          # acknowledged: stored before the job dies
        report(run.stats["rows_sent"])
        comm.Barrier()
        if rank == size - 1:
            comm.Abort(3)                             # the launcher kills every rank of the job
        comm.Barrier()                                # never returns
run.finish()
report(run.stats["rows_sent"])
"""


def _launch(kind: str, rankwise_env, tmp_path: Path, attempt: int, wrapper: bool = False, **extra):
    """One job of ``WORLD`` ranks under the real launcher ``kind``; the ranks inherit the test's env.
    ``wrapper``: the launcher starts a shell script that runs Python as a child (not ``exec``)."""
    require_mpi4py()
    program = tmp_path / "train.py"
    program.write_text(textwrap.dedent(PROGRAM))
    (tmp_path / "reports").mkdir(exist_ok=True)
    env = dict(REPORTS=str(tmp_path / "reports"), ATTEMPT=attempt, **extra)
    if kind == "openmpi":
        require("openmpi", OPENMPI)
        env.update(root_env(), MPI4PY_MPIABI="openmpi")
        # 4 ranks on 2 cores: --oversubscribe (and no binding); shared memory only, nothing on the network
        cmd = [OPENMPI, "-np", str(WORLD), "--oversubscribe", "--bind-to", "none", "--mca", "btl", "self,vader"]
    else:
        require("mpich", MPICH)
        env.update(MPI4PY_MPIABI="mpich", LD_LIBRARY_PATH=mpich_lib_dir(tmp_path))
        cmd = [MPICH, "-n", str(WORLD)]
    if wrapper:
        script = tmp_path / "run.sh"
        script.write_text(f"#!/bin/sh\nexport TRAIN_WRAPPED=1\n{sys.executable} {program}\nexit $?\n")
        script.chmod(0o755)
        cmd.append(str(script))
    else:
        cmd += [sys.executable, str(program)]
    return subprocess.run(cmd, env=rankwise_env.env(**env), capture_output=True, text=True, timeout=120)


def _check_detection(kind: str, reps: list[dict]) -> str:
    """Every rank's init() derived the same group from the launcher and the MPI rank as its own."""
    assert sorted(r["mpi_rank"] for r in reps) == list(range(WORLD))
    for r in reps:
        assert (r["rank"], r["world"], r["mpi_size"], r["local_rank"]) == (r["mpi_rank"], WORLD, WORLD, r["mpi_rank"])
        assert r["launcher"] == kind
    (group,) = {r["group"] for r in reps}
    if kind == "openmpi":
        (namespace,) = {r["namespace"] for r in reps}
        assert group == f"ompi-{namespace}"
    else:
        (proxy,) = {r["proxy"] for r in reps}  # hydra_pmi_proxy, the ancestor of every rank on the node
        assert group.startswith(f"mpiexec-{proxy}-")
    return group


@pytest.mark.parametrize("kind", ["openmpi", "mpich"])
def test_mpi_job_is_one_group_with_a_run_per_rank(kind, rankwise_env, tmp_path):
    """``mpirun.openmpi -np 4`` / ``mpiexec.mpich -n 4``, 40 all-reduced steps: one group in the project,
    named from the launcher (Open MPI: its PMIX_NAMESPACE; MPICH: the hydra proxy), 4 finished runs with
    ranks 0..3 and world size 4, every rank's x and all-reduced total stored exactly (40 sent, 40 stored),
    and each group row equal to numpy over the 4 ranks' raw values."""
    steps = 40
    out = _launch(kind, rankwise_env, tmp_path, 0, STEPS=steps)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    reps = reports(tmp_path / "reports")
    group = _check_detection(kind, reps)
    assert [r["rows_sent"] for r in reps] == [steps] * WORLD

    api = rankwise.Api()
    assert [g.name for g in api.groups("mpi")] == [group]
    g = api.group("mpi", group)
    assert g.world_size == WORLD
    assert [(r.rank, r.local_rank, r.state, r.rows) for r in g.runs] == [
        (k, k, "finished", steps) for k in range(WORLD)
    ]
    xs = x_values(WORLD, steps)
    totals = np.array([sum(k * 100 + s for k in range(WORLD)) for s in range(steps)])
    for run in g.runs:
        cols = run.history_arrays(["x", "total"])
        assert np.array_equal(cols["x"][0], np.arange(steps))
        assert np.array_equal(cols["x"][1], xs[run.rank])
        assert np.array_equal(cols["total"][1], totals)
    h = g.history("x")
    assert np.array_equal(h["step"], np.arange(steps))
    assert np.array_equal(h["count"], np.full(steps, WORLD))
    assert np.array_equal(h["min"], xs.min(axis=0)) and np.array_equal(h["max"], xs.max(axis=0))
    assert np.array_equal(h["min_rank"], xs.argmin(axis=0)) and np.array_equal(h["max_rank"], xs.argmax(axis=0))
    bound = 1e-13 * np.abs(xs).max()
    np.testing.assert_allclose(h["mean"], xs.mean(axis=0), rtol=0, atol=bound)
    np.testing.assert_allclose(h["std"], xs.std(axis=0), rtol=0, atol=bound)
    assert np.array_equal(g.history("total")["mean"], totals)


@pytest.mark.parametrize("kind", ["openmpi", "mpich"])
def test_ranks_started_through_a_wrapper_script_share_one_group(kind, rankwise_env, tmp_path):
    """``mpiexec -n 4 ./run.sh`` where run.sh runs Python as its child: each rank's parent is its own
    shell, yet the 4 ranks derive one group (MPICH: the hydra proxy found among the ancestors; before,
    the parent's pid split the job into 4 groups of one), 4 runs with ranks 0..3, 10 exact rows each."""
    steps = 10
    out = _launch(kind, rankwise_env, tmp_path, 0, wrapper=True, STEPS=steps)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    reps = reports(tmp_path / "reports")
    assert len({r["ppid"] for r in reps}) == WORLD, "every rank has a shell of its own as parent"
    group = _check_detection(kind, reps)
    g = rankwise.Api().group("mpi", group)
    assert [g.name for g in rankwise.Api().groups("mpi")] == [group]
    assert [(r.rank, r.state, r.rows) for r in g.runs] == [(k, "finished", steps) for k in range(WORLD)]
    xs = x_values(WORLD, steps)
    for run in g.runs:
        assert np.array_equal(run.history_arrays(["x"])["x"][1], xs[run.rank])


@pytest.mark.parametrize("kind", ["openmpi", "mpich"])
def test_relaunched_mpi_job_resumes_with_a_fixed_group(kind, rankwise_env, tmp_path):
    """A relaunched mpirun/mpiexec is a new job to the launcher (a new namespace / proxy), so resuming
    needs the group fixed (RANKWISE_GROUP or group=). The first job stores steps 0..19 on every rank,
    then rank 3 calls MPI_Abort and the launcher kills the job; the relaunch with the same group gives
    every rank its own run back (resumed, starting at 20) and runs to 40: 4 runs, 2 incarnations each,
    finished, steps 0..39 stored exactly once with exact values, group rows over all 4 at every step."""
    group, steps = f"restart-{kind}", 40
    first = _launch(kind, rankwise_env, tmp_path, 0, STEPS=steps, ABORT_AT=19, FIXED_GROUP=group)
    assert first.returncode != 0, "MPI_Abort ends the job with a failure"
    second = _launch(kind, rankwise_env, tmp_path, 1, STEPS=steps, FIXED_GROUP=group)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]

    reps = reports(tmp_path / "reports")
    attempts = {a: [r for r in reps if r["start"] == (0 if a == 0 else 20)] for a in (0, 1)}
    assert [(r["start"], r["resumed"], r["rows_sent"]) for r in reps] == (
        [(0, False, 20)] * WORLD + [(20, True, 20)] * WORLD
    )
    for r in reps:
        assert (r["rank"], r["world"], r["group"], r["launcher"]) == (r["mpi_rank"], WORLD, group, kind)
    if kind == "openmpi":  # two jobs to Open MPI: their derived groups would differ
        assert attempts[0][0]["namespace"] != attempts[1][0]["namespace"]

    g = rankwise.Api().group("mpi", group)
    assert [(r.rank, r.state, r.incarnations, r.step) for r in g.runs] == [
        (k, "finished", 2, steps) for k in range(WORLD)
    ]
    xs = x_values(WORLD, steps)
    for run in g.runs:
        assert np.array_equal(raw_steps(rankwise_env, "mpi", group, run.name, "x"), np.arange(steps))
        assert np.array_equal(run.history_arrays(["x"])["x"][1], xs[run.rank])
    h = g.history("x")
    assert np.array_equal(h["count"], np.full(steps, WORLD))
    assert np.array_equal(h["min"], xs.min(axis=0)) and np.array_equal(h["max"], xs.max(axis=0))
