"""Who am I in the job? Rank, world size, local rank and a group id from the launcher's environment.

Every rank of a job must arrive at the same group id without talking to the
others, so the id is derived from what the launcher exports to all ranks:

==========================  ==========================================  ==============================
launcher                    rank / world / local rank                   group
==========================  ==========================================  ==============================
torchrun (elastic)          RANK, WORLD_SIZE, LOCAL_RANK                TORCHELASTIC_RUN_ID
SLURM (srun)                SLURM_PROCID, SLURM_STEP_NUM_TASKS          SLURM_JOB_ID.SLURM_STEP_ID
                            (else SLURM_NTASKS), SLURM_LOCALID
Open MPI (mpirun, prterun)  OMPI_COMM_WORLD_RANK/_SIZE/_LOCAL_RANK      PMIX_NAMESPACE or OMPI jobid
MPICH / Intel MPI (hydra)   PMI_RANK, PMI_SIZE, MPI_LOCALRANKID         PMIX_NAMESPACE, else proxy pid
==========================  ==========================================  ==============================

Hydra (MPICH's ``mpiexec``) exports no job id: the ranks of a node share its
``hydra_pmi_proxy`` process, found among the rank's ancestors (not only its parent:
``mpiexec -n 4 ./run.sh`` gives every rank a shell of its own as parent). Ranks on
other nodes have another proxy: pass ``group=`` for multi-node MPICH jobs.

torchrun without ``--rdzv-id`` exports ``TORCHELASTIC_RUN_ID=none``; then a SLURM
job id is used when there is one, else the torchrun agent's pid and start
time, which all ranks on the node share (ranks on other nodes cannot agree
on that: pass ``group=`` or ``--rdzv-id`` for multi-node jobs).

A SLURM batch script (``sbatch`` without ``srun``) runs once although its
environment says ``SLURM_PROCID=0`` and ``SLURM_NTASKS=<allocation>``: only a
task started by ``srun`` (which exports ``SLURM_STEP_ID``) counts as a SLURM rank,
otherwise a group would wait for ranks that never start.

Derived group ids are made valid names: ``/``, ``\\`` and control characters become
``_`` and at most 128 characters are kept.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from client.errors import InvalidArgumentError


@dataclass(frozen=True)
class Launch:
    """What the environment says about this process's place in a job."""

    launcher: str  # "torchrun", "slurm", "openmpi", "mpich", or "none"
    rank: int
    world_size: int
    local_rank: int
    group: str | None  # None: no launcher, the caller picks a fresh id
    node: str
    restart: int = 0  # torchrun's TORCHELASTIC_RESTART_COUNT


def _int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidArgumentError(f"environment variable {name}={raw!r} is not an integer") from None


def _first_int(env: Mapping[str, str], *names: str) -> int | None:
    """The first of ``names`` that is set (0 counts as set, unlike ``a or b``)."""
    for name in names:
        value = _int(env, name)
        if value is not None:
            return value
    return None


_UNSAFE = re.compile(r"[\x00-\x1f/\\]")


def _group_name(raw: str | None) -> str | None:
    return None if raw is None else _UNSAFE.sub("_", raw)[:128]


def _parent_token(ppid: int) -> str:
    """A token for the parent process that all its children agree on: pid plus start time."""
    try:
        import psutil

        started = psutil.Process(ppid).create_time()
        return f"{ppid}-{int(started * 1000):x}"
    except Exception:  # psutil missing the process is not worth failing init for
        return str(ppid)


# What an MPI launcher runs on each node to fork its ranks (MPICH / Intel MPI hydra, Open MPI).
_PROXIES = frozenset({"hydra_pmi_proxy", "pmi_proxy", "orted", "prted"})


def _proxy_pid() -> int:
    """The nearest ancestor that is an MPI launcher's node proxy, else the parent. A rank started through
    a wrapper (``mpiexec -n 4 ./run.sh``) has its own shell as parent: the proxy is what ranks share."""
    try:
        import psutil

        for proc in psutil.Process().parents():  # nearest first
            if proc.name() in _PROXIES:
                return proc.pid
    except Exception:  # psutil missing or a parent gone: the parent is the best guess left
        pass
    return os.getppid()


def detect(env: Mapping[str, str] = os.environ, parent_token: Callable[[], str] | None = None) -> Launch:
    """Read the launcher's environment. ``parent_token`` is injectable for tests."""
    token = parent_token or (lambda: _parent_token(os.getppid()))
    proxy_token = parent_token or (lambda: _parent_token(_proxy_pid()))
    node = env.get("SLURMD_NODENAME") or socket.gethostname()
    restart = _int(env, "TORCHELASTIC_RESTART_COUNT") or 0
    launch = _detect(env, token, proxy_token, node, restart)
    return dataclasses.replace(launch, group=_group_name(launch.group))


def _detect(
    env: Mapping[str, str], token: Callable[[], str], proxy_token: Callable[[], str], node: str, restart: int
) -> Launch:
    """The launcher's view, with the group id as the launcher spells it (``detect`` cleans it)."""
    slurm_group = None
    if env.get("SLURM_JOB_ID"):
        slurm_group = "slurm-" + env["SLURM_JOB_ID"]
        step = env.get("SLURM_STEP_ID") or env.get("SLURM_STEPID")
        if step:
            slurm_group += "." + step

    if _int(env, "RANK") is not None and ("TORCHELASTIC_RUN_ID" in env or "LOCAL_RANK" in env or "WORLD_SIZE" in env):
        run_id = env.get("TORCHELASTIC_RUN_ID")
        if run_id and run_id != "none":
            group = run_id
        elif slurm_group:
            group = slurm_group
        else:
            group = "torchrun-" + token()
        return Launch(
            "torchrun",
            _int(env, "RANK") or 0,
            _int(env, "WORLD_SIZE") or 1,
            _int(env, "LOCAL_RANK") or 0,
            group,
            node,
            restart,
        )
    if _int(env, "OMPI_COMM_WORLD_RANK") is not None:
        group = env.get("PMIX_NAMESPACE") or env.get("OMPI_MCA_ess_base_jobid") or env.get("OMPI_MCA_orte_ess_jobid")
        return Launch(
            "openmpi",
            _int(env, "OMPI_COMM_WORLD_RANK") or 0,
            _int(env, "OMPI_COMM_WORLD_SIZE") or 1,
            _int(env, "OMPI_COMM_WORLD_LOCAL_RANK") or 0,
            ("ompi-" + group) if group else (slurm_group or "mpirun-" + proxy_token()),
            node,
        )
    if _int(env, "PMI_RANK") is not None:
        group = env.get("PMIX_NAMESPACE")
        return Launch(
            "mpich",
            _int(env, "PMI_RANK") or 0,
            _int(env, "PMI_SIZE") or 1,
            _first_int(env, "MPI_LOCALRANKID", "PMI_LOCAL_RANK") or 0,
            ("pmix-" + group) if group else (slurm_group or "mpiexec-" + proxy_token()),
            node,
        )
    if (
        _int(env, "SLURM_PROCID") is not None
        and env.get("SLURM_JOB_ID")
        and (env.get("SLURM_STEP_ID") or env.get("SLURM_STEPID"))
    ):
        return Launch(
            "slurm",
            _int(env, "SLURM_PROCID") or 0,
            _first_int(env, "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_NPROCS") or 1,
            _int(env, "SLURM_LOCALID") or 0,
            slurm_group,
            node,
        )
    return Launch("none", 0, 1, 0, None, node)
