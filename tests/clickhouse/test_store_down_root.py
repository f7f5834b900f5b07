"""ClickHouse down behind a root (issue 15: "back-pressure to the nodes when ClickHouse is slow or down (no
unbounded memory: the spool takes it, counted in `rankwise status`), and recovery when it returns"): a root
with RANKWISE_STORE=<clickhouse URL> and two node agents forwarding to it (tests/support/mncluster.py), 4
ranks streaming. The server is SIGKILLed mid-stream and started again on its port and data after the node
agents' spools have taken what the root could not store: the root says ``store unavailable`` (naming the
server) and holds its uncommitted work within its budget, the node agents keep acknowledging their ranks
from their spools and count the unacknowledged records in their `rankwise status`; after the restart the
spools drain and every row is in ClickHouse exactly once, group rows equal to numpy.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from test_store_down import own_server  # noqa: F401 (the fixture)

import rankwise
from support.mncluster import Cluster, wait_exit
from support.probes import cli, rankwise_cmd, wait_for
from support.rankscripts import log_until_file

SCRIPT = log_until_file("mndown", '{"x": rank * 100000.0 + s * 0.5}', started_after=100, chunk=2, pause_s=0.002)
BUDGET = 256 * 1024  # the root's uncommitted-bytes budget
NODES = ("node-a", "node-b")


def node_status_text(c: Cluster, name: str) -> str:
    """`rankwise status` (text) of a node agent: the command run with the node's directories."""
    n = c.node(name)
    env = c.root.env(RANKWISE_DIR=n.data, RANKWISE_RUNTIME_DIR=n.runtime)
    out = subprocess.run([*rankwise_cmd(), "status"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def held(st: dict) -> int:
    """What a root held back while its store was down: node records, and HELLOs it could not answer."""
    return st["counters"].get("held_records", 0) + st["counters"].get("held_hellos", 0)


def _value(rank, steps):
    return rank * 100000.0 + steps * 0.5


def _root_down(c: Cluster) -> dict | None:
    st = c.status()
    return st if st and st["store_state"].startswith("store unavailable") else None


def _spooled(c: Cluster, name: str, at_least: int) -> dict | None:
    st = c.status(name)
    return st if st and st["upstream"]["unacked_records"] >= at_least else None


@pytest.mark.parametrize("kill_at", ["mid-stream", "before-the-runs"])
def test_root_store_down_node_spools_take_it_then_drain(rankwise_env, own_server, tmp_path, kill_at):  # noqa: F811
    """SIGKILL of the root's ClickHouse server while 2 nodes × 2 ranks stream (``mid-stream``: the root has
    registered the 4 runs; ``before-the-runs``: killed once the root is up, before any rank starts, so that
    the root's first registration fails): the root's status says ``store unavailable`` naming the server's
    port, counts records held back and applies nothing more (its pending points stay put while the node
    spools grow by 20 records); each node
    agent's status counts 20+ unacknowledged records in a non-empty spool while its ranks' batches are all
    acknowledged (the ranks finish after the restart with nothing unacknowledged); the text status of a node
    says so. After the restart: the root is ok, both spools drain to 0, and Api(URL) reads every logged row
    of every rank once, group rows (count, min, max, mean, std) equal numpy's; the raw table has one value
    per (run, step)."""
    server = own_server
    from support.chserver import random_database

    database = random_database()
    server.execute(f"CREATE DATABASE {database}")
    url = server.url(database)
    c = Cluster(rankwise_env, tmp_path, RANKWISE_STORE=url, RANKWISE_AGENT_PENDING_BYTES=BUDGET)
    try:
        c.start_root()
        if kill_at == "before-the-runs":
            server.kill()
        stop = tmp_path / "stop"
        procs = [c.start_rank(NODES[r // 2], SCRIPT, r, 4, "job-down", RW_STOP=stop) for r in range(4)]
        for p in procs:
            line = p.stdout.readline().strip()
            assert line == "started", (line, p.stderr.read() if p.poll() is not None else "")
        if kill_at == "mid-stream":
            wait_for(lambda: (s := c.status()) and s["runs"].get("running") == 4, 60, "the 4 runs at the root")
            server.kill()
        try:
            down = wait_for(lambda: _root_down(c), 30, "the root to say its store is unavailable")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; root status {c.status()}\n{c.logs()}") from None
        assert f"127.0.0.1:{server.tcp_port}" in down["store_state"] and down["store"] == url
        base = {name: c.status(name)["upstream"]["unacked_records"] for name in NODES}
        spooled = {
            name: wait_for(lambda n=name: _spooled(c, n, base[n] + 20), 120, f"{name} to spool") for name in NODES
        }
        # the nodes resend what the root did not acknowledge (retry interval, gap NACKs): the root holds it
        later = wait_for(
            lambda: (s := c.status()) and s["store_state"].startswith("store unavailable") and held(s) > 0 and s,
            120,
            "the root to hold node records while its store is down",
        )
        assert later["pending_points"] == down["pending_points"], (down["pending_points"], later["pending_points"])
        assert later["pending_bytes"] <= BUDGET, later
        down = later
        for name, st in spooled.items():
            up = st["upstream"]
            assert up["spool_bytes"] > 0 and st["store_state"] == "ok", (name, up)
            text = node_status_text(c, name)
            assert "record(s) unacknowledged" in text, text
        root_text = cli(rankwise_env, "status")
        assert "STORE: store unavailable" in root_text.stdout, root_text.stdout
        assert "(node spools keep" in root_text.stdout, root_text.stdout
        print(
            f"down ({kill_at}): root {down['pending_points']} pending points, {held(down)} "
            f"records and HELLOs held, rss {down.get('rss_bytes', 0) >> 20} MiB; "
            + ", ".join(
                f"{n} {s['upstream']['unacked_records']} records / {s['upstream']['spool_bytes']} B"
                for n, s in spooled.items()
            )
        )
        server.restart()
        wait_for(lambda: (s := c.status()) and s["store_state"] == "ok", 120, "the root's store back to ok")
        stop.touch()
        counts = {}
        for rank, (code, out, err) in enumerate(wait_exit(procs, timeout_s=240)):
            assert code == 0, err
            n, sent, unacked = map(int, out.split())
            assert (sent, unacked) == (n, 0)
            counts[rank] = n
        for name in NODES:
            wait_for(
                lambda n=name: (s := c.status(n)) and s["upstream"]["unacked_records"] == 0,
                180,
                f"{name}'s spool to drain",
            )
        check_stored(url, server, database, counts)
    finally:
        c.stop()


def check_stored(url: str, server, database: str, counts: dict[int, int]) -> None:
    def done():
        with rankwise.Api(url) as api:
            try:
                g = api.group("mndown", "job-down")
            except Exception:  # noqa: BLE001 (not there yet)
                return None
            runs = g.runs
            ok = len(runs) == 4 and all(r.state == "finished" and r.rows == counts[r.rank] for r in runs)
            return ok and len(g.history("x")["step"]) == max(counts.values())

    wait_for(done, 180, "every run finished at the root with all its rows", interval_s=0.2)
    steps = np.arange(max(counts.values()))
    table = np.full((4, len(steps)), np.nan)
    with rankwise.Api(url) as api:
        g = api.group("mndown", "job-down")
        for r in g.runs:
            n = counts[r.rank]
            table[r.rank, :n] = _value(r.rank, np.arange(n))
            got_steps, got = r.history_arrays(["x"])["x"]
            assert np.array_equal(got_steps, np.arange(n)) and np.array_equal(got, table[r.rank, :n]), r.rank
        h = g.history("x")
    assert np.array_equal(h["step"], steps)
    assert np.array_equal(h["count"], (~np.isnan(table)).sum(axis=0))
    assert np.array_equal(h["min"], np.nanmin(table, axis=0))
    assert np.array_equal(h["max"], np.nanmax(table, axis=0))
    np.testing.assert_allclose(h["mean"], np.nanmean(table, axis=0), rtol=1e-12)
    np.testing.assert_allclose(h["std"], np.nanstd(table, axis=0), rtol=1e-9, atol=1e-9)
    rows, points, values = raw_counts(server, database, "x")
    assert points == values == sum(counts.values()), (rows, points, values)
    print(f"sent {sum(counts.values())} rows; raw history rows of x {rows} ({rows - points} replayed)")


def raw_counts(server, database: str, key: str) -> tuple[int, int, int]:
    """(stored points, distinct (run, step), distinct (run, step, value)) of ``key``, replays included, from the
    chunks table decoded here: the ``history`` view ARRAY JOINs each chunk and so copies its bytes per point,
    past 18.16's memory limit for the large chunks a root writes when its node spools drain."""
    chunks = server.execute(
        f"SELECT run_id, enc, n, step_min, steps, vals FROM {database}.history_chunks WHERE key = '{key}'",
        settings={"strings_as_bytes": True},
    )
    points = []
    for run_id, enc, n, step_min, steps, vals in chunks:
        assert enc in (b"f8", "f8"), enc
        s = np.arange(step_min, step_min + n) if not steps else np.frombuffer(steps, "<i8")[:n]
        points += zip([int(run_id)] * n, s.tolist(), np.frombuffer(vals, "<f8")[:n].tolist())
    return len(points), len({(r, st) for r, st, _ in points}), len(set(points))
