"""Every test gets its own RANKWISE_DIR and RANKWISE_RUNTIME_DIR (short /tmp paths: ipc socket
paths are limited to ~107 bytes), an environment without launcher variables, no row budget
(RANKWISE_ROWS_PER_S=0: tests of delivery count every row), and at teardown
any agent it started is stopped and its directories removed. Safe under pytest-xdist."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings

from rwtest import LAUNCHER_VARS, RankwiseEnv, finish_live_runs, reap_spawned, stop_agent

# Property tests share a 2-core CI machine with real agents and browsers: how fast hypothesis generates
# data says nothing about the code under test, so neither deadlines nor the too_slow check apply.
settings.register_profile("rankwise", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("rankwise")


@pytest.fixture(autouse=True)
def rankwise_env(monkeypatch: pytest.MonkeyPatch):
    data = tempfile.mkdtemp(prefix="rwd", dir="/tmp")
    runtime = tempfile.mkdtemp(prefix="rwr", dir="/tmp")
    for var in list(os.environ):
        if var in LAUNCHER_VARS or var.startswith(("RANKWISE_", "WANDB_", "SLURM_", "OMPI_", "PMI_", "PMIX_")):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RANKWISE_DIR", data)
    monkeypatch.setenv("RANKWISE_RUNTIME_DIR", runtime)
    # same-user keys of keyless loopback roots (agent/localkeys.py) stay inside the test's own directory
    monkeypatch.setenv("RANKWISE_LINK_DIR", os.path.join(data, "links"))
    monkeypatch.setenv("RANKWISE_AGENT_IDLE_TIMEOUT", "60")
    # delivery tests count every row of tight loops: no row budget unless a test sets one
    # (tests/integration/test_rate_limit.py does)
    monkeypatch.setenv("RANKWISE_ROWS_PER_S", "0")
    env = RankwiseEnv(data, runtime)
    yield env
    from client import state

    finish_live_runs()
    state.reset()
    reap_spawned()
    stop_agent(env)
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(runtime, ignore_errors=True)
