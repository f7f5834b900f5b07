"""Every test gets its own RANKWISE_DIR and RANKWISE_RUNTIME_DIR (short /tmp paths: ipc socket
paths are limited to ~107 bytes), an environment without launcher variables, no row budget
(RANKWISE_ROWS_PER_S=0: tests of delivery count every row), and at teardown
any agent it started is stopped and its directories removed. Safe under pytest-xdist.

The fixtures shared by several folders live here too (``cluster``, ``curve_cluster``, ``browser``); the
helpers behind them are in tests/support/, imported lazily so that collecting a test imports nothing
it does not use."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings

# the ClickHouse servers (tests/support/chfixtures.py): clickhouse_server, clickhouse_url, clickhouse_cluster
from support.chfixtures import (  # noqa: F401 (fixtures register by name)
    clickhouse_cluster,
    clickhouse_cluster_servers,
    clickhouse_server,
    clickhouse_url,
)
from support.processes import LAUNCHER_VARS, RankwiseEnv, finish_live_runs, reap_spawned, stop_agent

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


@pytest.fixture
def cluster(rankwise_env, tmp_path):
    """A root agent and node directories on loopback (tests/support/mncluster.py), stopped at teardown."""
    from support.mncluster import Cluster

    c = Cluster(rankwise_env, tmp_path)
    yield c
    c.stop()


@pytest.fixture
def curve_cluster(rankwise_env, tmp_path):
    """The same with CURVE keys for every agent."""
    from support.mncluster import Cluster

    c = Cluster(rankwise_env, tmp_path, curve=True)
    yield c
    c.stop()


@pytest.fixture(scope="module")
def browser():
    """Headless system Chromium, shared by a module's tests (each test opens its own page); skipped where
    missing unless RANKWISE_REQUIRE_BROWSER=1 (tests/support/uihelp.py)."""
    from support.uihelp import launch_browser

    with launch_browser() as b:
        yield b
