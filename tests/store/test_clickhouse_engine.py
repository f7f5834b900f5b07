"""What only the ClickHouse store has: codecs chosen by what the engine takes (none on 18.16, all on chdb
26.x), the message of a missing package, foreign errors leaving as StoreError, a dropped database as
StoreLost that reset() recovers from, and chdb's one directory per process."""

from __future__ import annotations

import socket
import sys

import numpy as np
import pytest

from agent.errors import StoreError, StoreLost
from agent.store.base import store_problem
from agent.store.clickhouse import ClickHouseReader, ClickHouseStore
from support.chfixtures import require_package

RUN = {"run_key": "k", "local_rank": 0, "node": "n0", "pid": 1, "name": "rank-0", "rank": 0}


def codecs_of(store, table: str) -> dict[str, str]:
    name, codec = store.conn.query(
        f"SELECT name, compression_codec FROM system.columns WHERE database = '{store.url.database}' "
        f"AND table = '{table}'",
        2,
    )
    return {n.decode(): c.decode() for n, c in zip(name, codec, strict=True)}


def test_server_18_16_gets_no_codecs(clickhouse_url):
    """clickhouse-server 18.16 rejects CODEC (a syntax error): the store detects it and creates its tables
    without; the DDL the server keeps names none."""
    store = ClickHouseStore(clickhouse_url)
    try:
        assert store.conn.version.startswith("18.16.") and store.schema.codecs is False
        (ddl,) = store.conn.query(f"SHOW CREATE TABLE {store.schema.t('history_chunks')}", 1)
        text = ddl[0].decode()
        assert (
            "CODEC" not in text
            and "ReplacingMergeTree" in text
            and "ORDER BY (group_id, key, run_id, step_min, ver)" in text
        )
    finally:
        store.close()


def test_chdb_gets_codecs(tmp_path):
    """chdb (ClickHouse 26.x) takes them: DoubleDelta for chunks' first steps, Delta for versions, ZSTD for
    steps bytes, Gorilla for group rows' values."""
    require_package("chdb")
    store = ClickHouseStore(f"chdb://{tmp_path / 'c'}")
    try:
        assert store.schema.codecs is True and int(store.conn.version.split(".")[0]) >= 20
        got = codecs_of(store, "history_chunks")
        assert (got["step_min"], got["ver"], got["steps"]) == (
            "CODEC(DoubleDelta)",
            "CODEC(Delta(8), LZ4)",
            "CODEC(ZSTD(1))",
        )
        assert codecs_of(store, "group_rows")["mean"] == "CODEC(Gorilla(8))"
    finally:
        store.close()


def test_a_missing_package_names_the_install(monkeypatch, tmp_path):
    """Without clickhouse-driver (or chdb) the store says which pip install brings it."""
    monkeypatch.setitem(sys.modules, "clickhouse_driver", None)
    with pytest.raises(StoreError, match=r"pip install 'rankwise\[clickhouse\]'"):
        ClickHouseStore("clickhouse://127.0.0.1:9000/rankwise")
    monkeypatch.setitem(sys.modules, "chdb", None)
    with pytest.raises(StoreError, match=r"pip install chdb"):
        ClickHouseStore(f"chdb://{tmp_path}")


def test_no_server_is_a_store_error():
    """Nothing listening: a StoreError (unavailable, retried by the agent) with the socket's words, the
    driver's exception chained."""
    require_package("clickhouse_driver")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(StoreError) as err:
            ClickHouseStore(f"clickhouse://127.0.0.1:{port}/rankwise")
    assert str(err.value).startswith(
        f"cannot connect to ClickHouse at 127.0.0.1:{port} (default@127.0.0.1:{port}/rankwise): "
    )
    assert err.value.__cause__ is not None and store_problem(err.value)[0] == "store unavailable"


def test_a_dropped_database_is_lost_and_reset_starts_over(clickhouse_url):
    """The database dropped under the agent: the next write raises StoreLost; reset() creates the tables
    again and the store takes writes."""
    store = ClickHouseStore(clickhouse_url)
    try:
        g, r, _ = store.register("p", "g", 1, RUN, 1.0)
        store.conn.execute(f"DROP DATABASE {store.url.database}")
        with pytest.raises(StoreLost), store.transaction() as txn:
            txn.add_history(r.id, "loss", np.array([0]), np.array([1.0]), False)
        assert store_problem(StoreLost("x"))[0] == "store lost"
        assert store.reset("dropped") is None
        g, r, new = store.register("p", "g", 1, RUN, 2.0)
        assert new
        with store.transaction() as txn:
            txn.add_history(r.id, "loss", np.array([0]), np.array([2.0]), False)
        assert store.reader().run_history(r.id)["loss"][1].tolist() == [2.0]
    finally:
        store.close()


def test_chdb_one_directory_per_process(tmp_path):
    """chdb runs one data directory per process: a second directory while the first is open is refused
    with both named; stores and readers of the same directory share it; once all are closed another opens."""
    require_package("chdb")
    a = ClickHouseStore(f"chdb://{tmp_path / 'a'}")
    try:
        with pytest.raises(StoreError, match="chdb runs one data directory per process"):
            ClickHouseStore(f"chdb://{tmp_path / 'b'}")
        reader = ClickHouseReader(f"chdb://{tmp_path / 'a'}")
        assert reader.groups() == []
        reader.close()
    finally:
        a.close()
    b = ClickHouseStore(f"chdb://{tmp_path / 'b'}")
    b.close()


def test_a_reader_without_a_store(clickhouse_url):
    """A reader of a database holding no store: a StoreError saying so (a reader never creates tables)."""
    with pytest.raises(StoreError, match="no rankwise store in"):
        ClickHouseReader(clickhouse_url)
