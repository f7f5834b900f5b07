"""The ``store`` fixture of the store contract suite: a fresh, empty Store of each implementation —
``memory`` (agent/store/memory.py), ``sqlite`` (agent/store/sqlite.py), ``chdb`` (ClickHouse 26.x in this
process, agent/store/clickhouse/) and ``clickhouse`` (a clickhouse-server 18.16 of tests/support/chserver.py,
a database of its own per test; skipped without the server unless RANKWISE_REQUIRE_CLICKHOUSE=1)."""

from __future__ import annotations

import pytest

from support.chfixtures import require_package

STORES = ("memory", "sqlite", "chdb", "clickhouse")


def open_store(kind: str, request: pytest.FixtureRequest, tmp_path):
    if kind == "memory":
        from agent.store import MemoryStore

        return MemoryStore()
    if kind == "sqlite":
        from agent.store import SQLiteStore

        return SQLiteStore(tmp_path / "store.sqlite")
    from agent.store.clickhouse import ClickHouseStore

    if kind == "chdb":
        require_package("chdb")
        return ClickHouseStore(f"chdb://{tmp_path / 'chdb'}")
    return ClickHouseStore(request.getfixturevalue("clickhouse_url"))


@pytest.fixture(params=STORES)
def store(request, tmp_path):
    """A fresh Store of the parameter's kind, closed at teardown."""
    s = open_store(request.param, request, tmp_path)
    yield s
    s.close()
