"""Helpers of the real-launcher tests: which launcher binaries exist (skip where missing, fail under
RANKWISE_REQUIRE_LAUNCHERS=1 as in CI), the per-rank report files the programs write, and the values
every rank logs (computed here the same way, so stored values are compared exactly).

The tests call the implementation-specific binaries (``mpirun.openmpi``, ``mpiexec.mpich``), never the
``mpirun`` / ``mpiexec`` alternatives, which point at whichever MPI was installed last.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

# Read at import (collection), before the autouse fixture of tests/conftest.py removes RANKWISE_* vars.
REQUIRE = os.environ.get("RANKWISE_REQUIRE_LAUNCHERS") == "1"

OPENMPI = "/usr/bin/mpirun.openmpi"
MPICH = "/usr/bin/mpiexec.mpich"
SRUN = "/usr/bin/srun"
MUNGED = "/usr/sbin/munged"
SLURMCTLD = "/usr/sbin/slurmctld"
SLURMD = "/usr/sbin/slurmd"
# Debian's MPICH names its library libmpich.so.12; mpi4py's MPICH build links libmpi.so.12 (MPICH's ABI name).
LIBMPICH = "/usr/lib/x86_64-linux-gnu/libmpich.so.12"

INSTALL = {
    "openmpi": "apt-get install -y openmpi-bin libopenmpi-dev",
    "mpich": "apt-get install -y mpich",
    "slurm": "apt-get install -y slurm-wlm munge",
    "mpi4py": ".venv/bin/pip install mpi4py",
}


def require(what: str, *paths: str) -> None:
    """Skip (fail under RANKWISE_REQUIRE_LAUNCHERS=1) unless every path in ``paths`` exists and runs."""
    missing = [p for p in paths if not os.access(p, os.X_OK) and not os.path.exists(p)]
    if not missing:
        return
    reason = f"{', '.join(missing)} missing ({INSTALL[what]})"
    if REQUIRE:
        pytest.fail(f"RANKWISE_REQUIRE_LAUNCHERS=1 but {reason}")
    pytest.skip(reason)


def require_mpi4py() -> None:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        reason = f"the Python package mpi4py is not installed ({INSTALL['mpi4py']})"
        if REQUIRE:
            pytest.fail(f"RANKWISE_REQUIRE_LAUNCHERS=1 but {reason}")
        pytest.skip(reason)


def root_env() -> dict[str, str]:
    """Open MPI refuses to start as root unless told twice; CI runs as root."""
    if os.geteuid() != 0:
        return {}
    return {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def mpich_lib_dir(tmp: Path) -> str:
    """A directory holding libmpi.so.12 -> Debian's libmpich.so.12, for LD_LIBRARY_PATH."""
    d = tmp / "mpichlib"
    d.mkdir(exist_ok=True)
    link = d / "libmpi.so.12"
    if not link.exists():
        link.symlink_to(LIBMPICH)
    return str(d)


def reports(folder: Path) -> list[dict]:
    """The JSON reports the ranks wrote (one file per rank and attempt), in file-name order."""
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def x_value(rank: int, step: int) -> float:
    """What rank ``rank`` logs as ``x`` at ``step`` (the programs compute it alike)."""
    return math.sin(rank * 0.7 + step * 0.1) * (rank + 1)


def x_values(world: int, steps: int) -> np.ndarray:
    """ranks x steps."""
    return np.array([[x_value(r, s) for s in range(steps)] for r in range(world)])
