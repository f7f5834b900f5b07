"""pytest fixtures for ClickHouse (registered from tests/conftest.py): real servers from
tests/support/chserver.py.

- ``clickhouse_server``: one clickhouse-server per xdist worker (session scope), stopped at the end;
- ``clickhouse_url``: a fresh database ``t_<random>`` on it for one test, dropped after; the value is the
  store URL ``clickhouse://127.0.0.1:<port>/<db>``;
- ``clickhouse_cluster_servers``: two servers forming the 2-shard cluster ``rw2`` (session scope);
- ``clickhouse_cluster``: a fresh database on both shards, the value the cluster URL
  ``clickhouse://127.0.0.1:<port1>/<db>?cluster=rw2``.

Where /usr/sbin/clickhouse-server or the clickhouse-driver package is missing they skip, unless
RANKWISE_REQUIRE_CLICKHOUSE=1 (CI, .ci/run), where they fail. Nothing here imports the driver at
collection time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

REQUIRE_VAR = "RANKWISE_REQUIRE_CLICKHOUSE"


def require_package(name: str) -> None:
    """Skip (fail under RANKWISE_REQUIRE_CLICKHOUSE=1: CI installs the test extra) without the package ``name``
    (chdb, clickhouse_driver)."""
    import importlib.util

    if importlib.util.find_spec(name) is None:
        _missing(f"the Python package {name} is not installed (pip install -e '.[test]')")


def _missing(what: str) -> None:
    """Fail under RANKWISE_REQUIRE_CLICKHOUSE=1 (CI installs the server and the test extra), else skip."""
    if os.environ.get(REQUIRE_VAR) == "1":
        pytest.fail(f"{REQUIRE_VAR}=1 but {what}")
    pytest.skip(what)


def require_clickhouse(binary: str | None = None) -> None:
    """Skip (fail under RANKWISE_REQUIRE_CLICKHOUSE=1) without the server binary or the driver."""
    from support.chserver import CLICKHOUSE_SERVER

    binary = binary or CLICKHOUSE_SERVER
    if not os.access(binary, os.X_OK):
        _missing(f"{binary} is missing (apt-get install -y clickhouse-server)")
    require_package("clickhouse_driver")


@pytest.fixture(scope="session")
def clickhouse_server() -> Iterator[Any]:
    """One clickhouse-server 18.16 on private loopback ports for this xdist worker, stopped at the end."""
    require_clickhouse()
    from support.chserver import ClickHouseServer

    server = ClickHouseServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _fresh_database(servers: list[Any], url: str, database: str) -> Iterator[str]:
    for server in servers:
        server.execute(f"CREATE DATABASE {database}")
    try:
        yield url
    finally:
        for server in servers:
            if server.proc is not None:
                server.execute(f"DROP DATABASE IF EXISTS {database}")


@pytest.fixture
def clickhouse_url(clickhouse_server) -> Iterator[str]:
    """``clickhouse://127.0.0.1:<port>/t_<random>``: a database of its own for this test, dropped after."""
    from support.chserver import random_database

    database = random_database()
    yield from _fresh_database([clickhouse_server], clickhouse_server.url(database), database)


@pytest.fixture(scope="session")
def clickhouse_cluster_servers() -> Iterator[Any]:
    """Two servers configured as the 2-shard cluster ``rw2`` (session scope), stopped at the end."""
    require_clickhouse()
    from support.chserver import ClickHouseCluster

    cluster = ClickHouseCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def clickhouse_cluster(clickhouse_cluster_servers) -> Iterator[str]:
    """``clickhouse://127.0.0.1:<port1>/t_<random>?cluster=rw2``: the database exists on both shards."""
    from support.chserver import random_database

    database = random_database()
    cluster = clickhouse_cluster_servers
    yield from _fresh_database(cluster.servers, cluster.url(database), database)
