"""The ClickHouse test harness itself (tests/support/chserver.py, tests/support/chfixtures.py): a server
starts, answers, listens on 127.0.0.1 only and is gone after its stop; a port race is retried; a server
that cannot start fails with its log; the 2-shard cluster is what ``?cluster=rw2`` URLs expect."""

from __future__ import annotations

import socket

import psutil
import pytest

from support.chfixtures import require_clickhouse
from support.chserver import ClickHouseCluster, ClickHouseServer, PortTaken, ServerError, cluster_xml, free_port
from support.probes import pid_gone, wait_for


def _listening(pid: int) -> set[tuple[str, int]]:
    return {(c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections("inet") if c.status == "LISTEN"}


def test_server_answers_on_loopback_only_and_is_gone_after_stop():
    """A server of its own answers SELECT 1, listens on exactly its tcp and http ports on 127.0.0.1 (no
    interserver port, nothing on 0.0.0.0 or ::), and after stop() its process and directory are gone."""
    require_clickhouse()
    server = ClickHouseServer().start()
    try:
        pid, directory = server.pid, server.dir
        assert server.execute("SELECT 1") == [(1,)]
        assert server.execute("SELECT version()")[0][0].startswith("18.16")
        assert _listening(pid) == {("127.0.0.1", server.tcp_port), ("127.0.0.1", server.http_port)}
        assert server.started_s is not None and server.started_s < 90
        assert "127.0.0.1" in repr(server) and str(pid) in repr(server)
    finally:
        server.stop()
    assert pid_gone(pid)
    assert not directory.exists()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", server.tcp_port)) != 0
    server.stop()  # twice is harmless


def test_session_server_and_fresh_database(clickhouse_server, clickhouse_url):
    """``clickhouse_url`` names a database that exists on the worker's server and is empty."""
    database = clickhouse_url.rsplit("/", 1)[1]
    assert clickhouse_url == f"clickhouse://127.0.0.1:{clickhouse_server.tcp_port}/{database}"
    assert database.startswith("t_")
    assert clickhouse_server.execute("SELECT count() FROM system.databases WHERE name = %(d)s", {"d": database}) == [
        (1,)
    ]
    assert clickhouse_server.execute(f"SHOW TABLES FROM {database}") == []


def test_database_dropped_after_the_test(clickhouse_server):
    """The function-scoped database goes at teardown (driven by hand through the fixture's generator)."""
    from support.chfixtures import _fresh_database

    gen = _fresh_database([clickhouse_server], clickhouse_server.url("t_dropme"), "t_dropme")
    assert next(gen).endswith("/t_dropme")
    clickhouse_server.execute("CREATE TABLE t_dropme.x (a UInt8) ENGINE = Memory")
    with pytest.raises(StopIteration):
        next(gen)
    assert clickhouse_server.execute("SELECT count() FROM system.databases WHERE name = 't_dropme'") == [(0,)]


def test_port_race_is_retried():
    """A tcp port bound by someone else between choice and bind: the server exits with "Address already in
    use", ``wait_ready`` raises PortTaken, and ``start`` comes up on other ports."""
    require_clickhouse()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        server = ClickHouseServer()
        try:
            server.configure(taken, free_port())
            server.spawn()
            with pytest.raises(PortTaken, match="Address already in use"):
                server.wait_ready()
            server.start()
            assert server.tcp_port != taken
            assert server.execute("SELECT 1") == [(1,)]
        finally:
            server.stop()


def test_a_server_that_cannot_start_fails_with_its_log():
    """A config the server rejects: ServerError quoting the server's own error, not a timeout."""
    require_clickhouse()
    server = ClickHouseServer()
    try:
        server.configure(free_port(), free_port())
        (server.dir / "config.xml").write_text("<yandex><path>")
        server.spawn()
        with pytest.raises(ServerError, match="exited with") as info:
            server.wait_ready(timeout_s=60)
        assert "config" in str(info.value).lower()
    finally:
        server.stop()


def test_cluster_has_two_shards_and_a_distributed_table_reads_both(clickhouse_cluster_servers, clickhouse_cluster):
    """``system.clusters`` on each server lists rw2 with two shards (their tcp ports); rows inserted into
    each shard's local table are all read back through a Distributed table over both."""
    cluster = clickhouse_cluster_servers
    database = clickhouse_cluster.split("/")[3].split("?")[0]
    assert clickhouse_cluster == f"clickhouse://127.0.0.1:{cluster.servers[0].tcp_port}/{database}?cluster=rw2"
    ports = sorted(s.tcp_port for s in cluster.servers)
    for server in cluster.servers:
        rows = server.execute("SELECT shard_num, host_address, port FROM system.clusters WHERE cluster = 'rw2'")
        assert sorted(r[2] for r in rows) == ports
        assert {r[0] for r in rows} == {1, 2} and {r[1] for r in rows} == {"127.0.0.1"}
    for shard, server in enumerate(cluster.servers):
        server.execute(f"CREATE TABLE {database}.pts (shard UInt8, v Float64) ENGINE = MergeTree ORDER BY shard")
        server.execute(f"INSERT INTO {database}.pts VALUES", [(shard, float(i)) for i in range(100 * (shard + 1))])
    head = cluster.servers[1]
    head.execute(f"CREATE TABLE {database}.pts_all AS {database}.pts ENGINE = Distributed(rw2, {database}, pts, shard)")
    rows = head.execute(f"SELECT shard, count(), sum(v) FROM {database}.pts_all GROUP BY shard ORDER BY shard")
    assert rows == [(0, 100, float(sum(range(100)))), (1, 200, float(sum(range(200))))]


def test_cluster_stop_leaves_nothing_running():
    """A cluster of its own: both servers answer, and both processes are gone after stop()."""
    require_clickhouse()
    cluster = ClickHouseCluster(name="rwx").start()
    try:
        pids = [s.pid for s in cluster.servers]
        assert [s.execute("SELECT 1") for s in cluster.servers] == [[(1,)], [(1,)]]
        assert "rwx" in repr(cluster)
    finally:
        cluster.stop()
    wait_for(lambda: all(pid_gone(p) for p in pids), 30, "both servers gone")


def test_cluster_xml_lists_one_shard_per_port():
    """The ``remote_servers`` entry: one single-replica shard per port, in order."""
    xml = cluster_xml("rw2", [9001, 9002])
    assert xml.count("<shard>") == 2 and xml.index("9001") < xml.index("9002") and xml.startswith("<rw2>")


def test_missing_binary_skips_or_fails_under_require(monkeypatch):
    """Without the server the fixtures skip, unless RANKWISE_REQUIRE_CLICKHOUSE=1 (CI), where they fail."""
    monkeypatch.delenv("RANKWISE_REQUIRE_CLICKHOUSE", raising=False)
    with pytest.raises(pytest.skip.Exception, match="/nonexistent/clickhouse-server is missing"):
        require_clickhouse("/nonexistent/clickhouse-server")
    monkeypatch.setenv("RANKWISE_REQUIRE_CLICKHOUSE", "1")
    with pytest.raises(pytest.fail.Exception, match="RANKWISE_REQUIRE_CLICKHOUSE=1 but /nonexistent"):
        require_clickhouse("/nonexistent/clickhouse-server")


def test_a_server_that_never_answers_fails_at_the_deadline_with_its_log(tmp_path):
    """A "server" that runs but never listens: ServerError at the deadline quoting what it wrote, and the
    process is stopped (nothing left running)."""
    require_clickhouse()
    fake = tmp_path / "silent-server"
    fake.write_text("#!/bin/sh\necho 'silent server starting' >&2\nexec sleep 600\n")
    fake.chmod(0o755)
    server = ClickHouseServer(binary=str(fake))
    try:
        server.configure(free_port(), free_port())
        server.spawn()
        pid = server.pid
        with pytest.raises(ServerError, match="did not answer SELECT 1 within 2 s") as info:
            server.wait_ready(timeout_s=2)
        assert "silent server starting" in str(info.value)
        assert pid_gone(pid) and server.proc is None
    finally:
        server.stop()
