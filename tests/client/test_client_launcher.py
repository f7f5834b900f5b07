"""``client.launcher.detect``: rank, world size, local rank and a group id every rank of one job
computes alike, from the environment each launcher exports (injected here as a mapping)."""

from __future__ import annotations

import os

import pytest

from client.errors import InvalidArgumentError
from client.launcher import Launch, detect


def token() -> str:
    return "4242-abc"


def launch(env: dict) -> Launch:
    return detect(env, parent_token=token)


def torchrun(rank: int, world: int = 4, **extra: str) -> dict:
    env = {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank % 2), "LOCAL_WORLD_SIZE": "2"}
    env.update(extra)
    return env


def test_torchrun_with_rdzv_id():
    """torchrun: RANK/WORLD_SIZE/LOCAL_RANK, the group is TORCHELASTIC_RUN_ID, restart count read."""
    got = launch(torchrun(3, TORCHELASTIC_RUN_ID="job-17", TORCHELASTIC_RESTART_COUNT="2", SLURMD_NODENAME="n7"))
    assert got == Launch("torchrun", 3, 4, 1, "job-17", "n7", 2)


def test_torchrun_without_rdzv_id_uses_the_slurm_job_then_the_parent():
    """TORCHELASTIC_RUN_ID=none: the SLURM job (and step) when there is one, else the parent token."""
    assert launch(torchrun(1, TORCHELASTIC_RUN_ID="none", SLURM_JOB_ID="991")).group == "slurm-991"
    assert launch(torchrun(1, TORCHELASTIC_RUN_ID="none", SLURM_JOB_ID="991", SLURM_STEP_ID="3")).group == (
        "slurm-991.3"
    )
    assert launch(torchrun(1, TORCHELASTIC_RUN_ID="none")).group == "torchrun-4242-abc"
    assert launch(torchrun(1)).group == "torchrun-4242-abc"  # RANK/WORLD_SIZE set by hand, no run id


def test_torchrun_wins_over_slurm_when_both_are_present():
    """torchrun started by srun: ranks are torchrun's, not SLURM's one task per node."""
    env = torchrun(5, 8, TORCHELASTIC_RUN_ID="r1", SLURM_JOB_ID="7", SLURM_STEP_ID="0", SLURM_PROCID="1")
    env.update(SLURM_NTASKS="2", SLURM_LOCALID="0")
    got = launch(env)
    assert (got.launcher, got.rank, got.world_size, got.group) == ("torchrun", 5, 8, "r1")


def test_slurm_srun_task():
    """srun: SLURM_PROCID / SLURM_STEP_NUM_TASKS (else SLURM_NTASKS) / SLURM_LOCALID; group job.step."""
    env = {
        "SLURM_JOB_ID": "123",
        "SLURM_STEP_ID": "0",
        "SLURM_PROCID": "5",
        "SLURM_NTASKS": "16",
        "SLURM_STEP_NUM_TASKS": "8",
        "SLURM_LOCALID": "1",
        "SLURMD_NODENAME": "gpu03",
    }
    assert launch(env) == Launch("slurm", 5, 8, 1, "slurm-123.0", "gpu03")
    del env["SLURM_STEP_NUM_TASKS"]
    assert launch(env).world_size == 16


def test_slurm_batch_script_without_srun_is_a_single_process():
    """An sbatch script runs once although SLURM_NTASKS says 4 and SLURM_PROCID=0: without a step id
    (srun) it is not a 4-rank job, or its group would wait for 3 ranks that never come."""
    env = {"SLURM_JOB_ID": "123", "SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_LOCALID": "0"}
    got = launch(env)
    assert (got.launcher, got.rank, got.world_size, got.group) == ("none", 0, 1, None)


def test_open_mpi_namespace_or_jobid():
    """Open MPI: OMPI_COMM_WORLD_*; group from PMIX_NAMESPACE, else the ess jobid, else SLURM/parent."""
    env = {"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "0"}
    assert launch(dict(env, PMIX_NAMESPACE="prterun-host-1234@1")) == Launch(
        "openmpi", 2, 4, 0, "ompi-prterun-host-1234@1", launch(env).node
    )
    assert launch(dict(env, OMPI_MCA_ess_base_jobid="3456")).group == "ompi-3456"
    assert launch(dict(env, OMPI_MCA_orte_ess_jobid="77")).group == "ompi-77"
    assert launch(dict(env, SLURM_JOB_ID="9")).group == "slurm-9"
    assert launch(env).group == "mpirun-4242-abc"


def test_mpich_and_intel_mpi():
    """MPICH / Intel MPI (hydra): PMI_RANK, PMI_SIZE, MPI_LOCALRANKID (0 is a value, not "unset")."""
    env = {"PMI_RANK": "3", "PMI_SIZE": "6", "MPI_LOCALRANKID": "0", "PMI_LOCAL_RANK": "2"}
    got = launch(env)
    assert (got.launcher, got.rank, got.world_size, got.local_rank, got.group) == ("mpich", 3, 6, 0, "mpiexec-4242-abc")
    del env["MPI_LOCALRANKID"]
    assert launch(env).local_rank == 2
    assert launch(dict(env, PMIX_NAMESPACE="ns1")).group == "pmix-ns1"
    assert launch(dict(env, SLURM_JOB_ID="5", SLURM_STEP_ID="2")).group == "slurm-5.2"


def test_no_launcher_means_a_single_process_and_no_group():
    """Without launcher variables: rank 0 of 1 and group None (the caller makes a fresh id)."""
    got = launch({})
    assert (got.launcher, got.rank, got.world_size, got.local_rank, got.group) == ("none", 0, 1, 0, None)
    assert got.restart == 0


@pytest.mark.parametrize(
    "make",
    [
        lambda r: torchrun(r, 4, TORCHELASTIC_RUN_ID="job-1"),
        lambda r: torchrun(r, 4, TORCHELASTIC_RUN_ID="none", SLURM_JOB_ID="55", SLURM_STEP_ID="1"),
        lambda r: torchrun(r, 4, TORCHELASTIC_RUN_ID="none"),
        lambda r: {
            "SLURM_JOB_ID": "8",
            "SLURM_STEP_ID": "0",
            "SLURM_PROCID": str(r),
            "SLURM_NTASKS": "4",
            "SLURM_LOCALID": str(r % 2),
        },
        lambda r: {"OMPI_COMM_WORLD_RANK": str(r), "OMPI_COMM_WORLD_SIZE": "4", "PMIX_NAMESPACE": "ns"},
        lambda r: {"OMPI_COMM_WORLD_RANK": str(r), "OMPI_COMM_WORLD_SIZE": "4"},
        lambda r: {"PMI_RANK": str(r), "PMI_SIZE": "4", "MPI_LOCALRANKID": str(r % 2)},
    ],
    ids=["torchrun", "torchrun-slurm", "torchrun-parent", "slurm", "ompi-ns", "ompi-parent", "mpich"],
)
def test_every_rank_of_a_job_computes_the_same_group(make):
    """All ranks of one job (same launcher environment apart from their rank) agree on the group,
    and each gets its own rank with the common world size."""
    got = [launch(make(r)) for r in range(4)]
    assert len({g.group for g in got}) == 1 and got[0].group is not None
    assert [g.rank for g in got] == [0, 1, 2, 3]
    assert {g.world_size for g in got} == {4}


def test_derived_group_ids_are_valid_names():
    """A launcher id with '/' or control characters, or longer than 128 characters, is cleaned so
    init() does not reject it."""
    got = launch(torchrun(0, TORCHELASTIC_RUN_ID="a/b\\c\td" + "x" * 200))
    assert got.group == ("a_b_c_d" + "x" * 200)[:128]


def test_malformed_launcher_integers_raise_naming_the_variable():
    """RANK=abc and friends raise InvalidArgumentError naming the variable."""
    with pytest.raises(InvalidArgumentError, match="WORLD_SIZE"):
        launch(torchrun(0, WORLD_SIZE="four"))
    with pytest.raises(InvalidArgumentError, match="OMPI_COMM_WORLD_SIZE"):
        launch({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "x"})


def test_the_default_parent_token_is_shared_by_siblings():
    """Without injection the token is the parent's pid plus its start time: stable for one parent."""
    a = detect(torchrun(0, TORCHELASTIC_RUN_ID="none")).group
    b = detect(torchrun(1, TORCHELASTIC_RUN_ID="none")).group
    assert a == b and a.startswith(f"torchrun-{os.getppid()}-")
