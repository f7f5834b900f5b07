"""ClickHouse down under a single agent (issue 15: "back-pressure ... when ClickHouse is slow or down ... and
recovery when it returns"): 4 real ranks log into an agent with RANKWISE_STORE=<clickhouse URL>; the server
is SIGKILLed mid-stream, stays down while every rank logs 1500 more steps, and is started again on the same
port and data directory (tests/support/chserver.py ``kill``/``restart``).

While it is down the agent's uncommitted work stays within its byte budget (RANKWISE_AGENT_PENDING_BYTES,
small here so that the clients must hold the rest), ``rankwise status`` (JSON and text) and the agent log
name the store and the cause, and no ``log()`` call blocks. After the restart everything the ranks logged is
stored exactly once: read back through ``rankwise.Api(URL)``, group rows equal to numpy's over the raw
values, the raw table counted against what was sent.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import rankwise
from support.chfixtures import require_clickhouse
from support.grouprows import assert_dense_group
from support.probes import agent_log, cli, status, wait_for
from support.processes import communicate, start_ranks, wait_all

WORLD, STEPS, A, B = 4, 3000, 500, 2000
BUDGET = 16 * 1024  # the agent's uncommitted-bytes budget: far below what the ranks log while the server is down

SCRIPT = """
import json, os, time
from pathlib import Path
import numpy as np
import rankwise
rank = int(os.environ["RANK"])
gates = Path(os.environ["RW_DIR"])
run = rankwise.init(project="chdown")
slowest = 0.0

def log(a, b):
    global slowest
    for s in range(a, b):
        t0 = time.perf_counter()
        run.log({"x": rank * 10000.0 + s, "y": float(np.sin(0.01 * s + rank))})
        slowest = max(slowest, time.perf_counter() - t0)

def gate(name):
    while not (gates / name).exists():
        time.sleep(0.005)

log(0, %(a)d)
assert run.flush(60)
print("stored", flush=True)
gate("down")
log(%(a)d, %(b)d)
print("logged", flush=True)
gate("up")
log(%(b)d, %(steps)d)
run.finish()
st = run.stats
out = {k: st[k] for k in ("rows_sent", "unacked_rows", "agent_restarts")}
out["slowest_log_s"] = slowest
print(json.dumps(out))
""" % {"a": A, "b": B, "steps": STEPS}


def _values(key: str) -> np.ndarray:
    ranks, steps = np.arange(WORLD)[:, None], np.arange(STEPS)[None, :]
    if key == "x":
        return ranks * 10000.0 + steps
    return np.array([[float(np.sin(0.01 * s + r)) for s in range(STEPS)] for r in range(WORLD)])


@pytest.fixture
def own_server():
    """A clickhouse-server of this test alone (the shared one must not be killed), stopped at the end."""
    require_clickhouse()
    from support.chserver import ClickHouseServer

    server = ClickHouseServer()
    try:
        yield server.start()
    finally:
        server.stop()


def start_job(rankwise_env, server, tmp_path, finish_timeout_s: float) -> tuple[str, str, list]:
    """(database, its URL, the rank processes): the WORLD ranks of SCRIPT, group job-down, storing into a new
    database of ``server`` through an agent with a BUDGET of uncommitted bytes."""
    from support.chserver import random_database

    database = random_database()
    server.execute(f"CREATE DATABASE {database}")
    url = server.url(database)
    procs = start_ranks(
        rankwise_env,
        SCRIPT,
        WORLD,
        "job-down",
        RANKWISE_STORE=url,
        RANKWISE_AGENT_PENDING_BYTES=BUDGET,
        RW_DIR=tmp_path,
        RANKWISE_RETRY_AFTER=0.2,
        RANKWISE_FINISH_TIMEOUT=finish_timeout_s,
    )
    return database, url, procs


def check_exactly_once(url: str, server, database: str, group: str) -> int:
    """Every point once through Api(URL), group rows equal numpy's; returns the raw history rows of x and y."""
    with rankwise.Api(url) as api:
        assert_dense_group(api.group("chdown", group), {key: _values(key) for key in ("x", "y")})
    rows, points = server.execute(
        f"SELECT count(), uniqExact(run_id, key, step) FROM {database}.history WHERE key IN ('x', 'y')"
    )[0]
    assert points == WORLD * STEPS * 2
    return rows


def test_server_killed_mid_stream_back_pressure_then_every_point_once(rankwise_env, own_server, tmp_path):
    """SIGKILL of the server after 500 acknowledged steps per rank; 1500 more steps per rank logged while it
    is down: `rankwise status --json` says ``store unavailable`` with the cause, names the store URL and
    counts held batches, its uncommitted bytes not growing while the clients' resends are held too (a 16 KiB
    budget: the agent takes one batch, which alone may pass it, then nothing); the text status and the agent log say the
    same; no log() call took 0.5 s. The server restarted on its port and data: the status is back to ok, the
    log says the store is writable again, every rank finishes with nothing unacknowledged and no agent
    restart, and Api(URL) reads each of the 4 × 3000 steps once with numpy's group aggregates."""
    server = own_server
    database, url, procs = start_job(rankwise_env, server, tmp_path, finish_timeout_s=180)
    try:
        for p in procs:
            wait_line(p, "stored")
        before = status(rankwise_env)
        assert before["store_state"] == "ok" and before["store"] == url
        server.kill()
        (tmp_path / "down").touch()
        for p in procs:
            wait_line(p, "logged")
        down = wait_for(
            lambda: _held(status(rankwise_env, timeout_s=10)), 120, "the agent to hold batches back: store down"
        )
        state = down["store_state"]
        assert state.startswith("store unavailable: ") and f"127.0.0.1:{server.tcp_port}" in state, state
        assert down["store"] == url and down["store_failures"] >= 1
        assert down["pending_bytes"] > 0 and down["pending_budget_bytes"] == BUDGET, down
        # bounded: the clients resend what was held, and the agent takes none of it while the store is down
        held = down["counters"]["held_batches"]
        later = wait_for(
            lambda: (s := status(rankwise_env, timeout_s=10)) and s["counters"]["held_batches"] >= held + 4 and s,
            120,
            "the clients' resends to be held too",
        )
        assert later["pending_bytes"] == down["pending_bytes"] and later["store_state"] == state, (down, later)
        text = cli(rankwise_env, "status")
        assert text.returncode == 0, text.stderr
        assert f"STORE: {state}" in text.stdout and "client batches held back" in text.stdout, text.stdout
        logged = agent_log(rankwise_env)
        assert f"store write failed: store unavailable ({state.removeprefix('store unavailable: ')}" in logged
        assert url in logged
        print(
            f"down: {down['pending_bytes']} uncommitted bytes of {BUDGET}, {down['counters']['held_batches']} held "
            f"batches, {down['store_failures']} failed commits, agent rss {down.get('rss_bytes')}"
        )

        server.restart()
        wait_for(lambda: status(rankwise_env)["store_state"] == "ok", 120, "the store back to ok after the restart")
        assert "store writable again" in agent_log(rankwise_env)
        (tmp_path / "up").touch()
        results = wait_all(procs, timeout_s=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    stats = []
    for code, out, err in results:
        assert code == 0, err
        stats.append(json.loads(out.splitlines()[-1]))
    assert [(s["rows_sent"] >= STEPS, s["unacked_rows"], s["agent_restarts"]) for s in stats] == [
        (True, 0, 0)
    ] * WORLD, stats
    assert max(s["slowest_log_s"] for s in stats) < 0.5, stats
    assert status(rankwise_env)["store_state"] == "ok"
    rows = check_exactly_once(url, server, database, "job-down")
    sent = sum(s["rows_sent"] for s in stats)
    print(f"rows sent {sent} (resends included) for {WORLD * STEPS}; raw history rows of x and y {rows}")


def _held(st: dict | None) -> dict | None:
    if st and st["store_state"] != "ok" and st["counters"].get("held_batches", 0) > 0:
        return st
    return None


def wait_line(proc, expected: str) -> None:
    from support.probes import read_line

    assert read_line(proc, 120, expected) == expected


ONE_RANK = """
import os, time
from pathlib import Path
import rankwise
gates = Path(os.environ["RW_DIR"])
run = rankwise.init(project="chdown", group="pw", name="only")
for s in range(200):
    run.log({"x": float(s)})
assert run.flush(60)
print("stored", flush=True)
while not (gates / "down").exists():
    time.sleep(0.005)
for s in range(200, 400):
    run.log({"x": float(s)})
print("logged", flush=True)
run.finish()
print(run.stats["unacked_rows"], flush=True)
"""


def test_store_down_messages_name_the_store_never_its_password(rankwise_env, own_server, tmp_path):
    """An agent whose RANKWISE_STORE has a user and password; the server is SIGKILLed after 200 acknowledged
    rows: `rankwise status --json` names the store as ``clickhouse://rwpw:***@127.0.0.1:<port>/<db>`` and
    says ``store unavailable`` with the cause (connection refused, the port), the text status and the agent
    log say it too, and the password is in none of them. Restarted, the 400 rows are stored once."""
    from support.chserver import PASSWORD, PASSWORD_USER, random_database
    from support.probes import read_line, start_script

    server = own_server
    database = random_database()
    server.execute(f"CREATE DATABASE {database}")
    url = server.password_url(database)
    label = f"clickhouse://{PASSWORD_USER}:***@127.0.0.1:{server.tcp_port}/{database}"
    rank = start_script(rankwise_env, ONE_RANK, {"RANKWISE_STORE": url, "RW_DIR": tmp_path})
    try:
        assert read_line(rank, 120, "stored") == "stored"
        server.kill()
        (tmp_path / "down").touch()
        assert read_line(rank, 60, "logged") == "logged"
        down = wait_for(
            lambda: (s := status(rankwise_env)) and s["store_state"] != "ok" and s, 120, "the store unavailable"
        )
        state = down["store_state"]
        assert down["store"] == label and state.startswith("store unavailable: "), down
        assert "Connection refused" in state and f"127.0.0.1:{server.tcp_port}" in state, state
        text = cli(rankwise_env, "status").stdout
        logged = agent_log(rankwise_env)
        assert f"STORE: {state}" in text and label in text, text
        (failed,) = [line for line in logged.splitlines() if "store write failed: store unavailable" in line]
        assert f"{PASSWORD_USER}@127.0.0.1:{server.tcp_port}/{database}" in failed and label in logged, logged
        for where in (json.dumps(down), text, logged):
            assert PASSWORD not in where
        server.restart()
        out, err = communicate(rank, 180)
        assert rank.returncode == 0 and out.split()[-1] == "0", err
    finally:
        if rank.poll() is None:
            rank.kill()
    with rankwise.Api(url) as api:
        steps, values = api.group("chdown", "pw").run(name="only").history_arrays(["x"])["x"]
    assert np.array_equal(steps, np.arange(400)) and np.array_equal(values, np.arange(400.0))
    assert PASSWORD not in agent_log(rankwise_env)
