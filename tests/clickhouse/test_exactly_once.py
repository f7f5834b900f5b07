"""Exactly once into ClickHouse across two SIGKILLs of the agent (issue 15's "done when"): 8 ranks × 2000
steps stream into the agent they spawn with RANKWISE_STORE=<clickhouse URL>; the agent is killed -9 twice
mid-stream and respawned by the ranks' retries each time; every point is read back exactly once through
``rankwise.Api(URL)`` and every group aggregate equals numpy over the raw values.

The two kills differ on purpose. The first (as tests/fault/test_agent_kill.py does for SQLite) comes after
a SIGSTOP, once every rank has handed 700 more rows to the stopped agent: those are certainly lost with it
and must be replayed. The second hits the next agent while it is running and committing (the ranks stream
with a 1 ms pause per step; each holds its last step until the kill, so none has finished before it and every
rank sees both agents go), so it may land between the INSERTs of a commit: what it had written of that
commit is written again by the replay, under a newer version, and the reads must still see one point per
step. The raw table is inspected too: rows written twice must be identical replays (one value per
(run, key, step)); how many there were is printed (measured, not assumed)."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

import rankwise
from support.grouprows import assert_dense_group
from support.probes import kill9, pid_gone, read_line, wait_for
from support.processes import agent_pid, start_ranks, wait_all

WORLD, STEPS, A, B = 8, 2000, 600, 1300

SCRIPT = """
import json, os, time
from pathlib import Path
import numpy as np
import rankwise
rank = int(os.environ["RANK"])
gates = Path(os.environ["RW_DIR"])
run = rankwise.init(project="chonce")

def log(a, b, pause=0.0):
    for s in range(a, b):
        run.log({"x": rank * 10000.0 + s, "y": float(np.sin(0.01 * s + rank))})
        if pause:
            time.sleep(pause)

log(0, %(a)d)
assert run.flush(60)
print("stored", flush=True)
while not (gates / "stopped").exists():
    time.sleep(0.005)
log(%(a)d, %(b)d)
while run.stats["rows_sent"] < %(b)d:        # every batch handed to the socket of the stopped agent
    time.sleep(0.005)
print("sent", flush=True)
log(%(b)d, %(b)d + 100)
assert run.flush(120)                         # the second agent (spawned by a retry) has acknowledged
print("second", flush=True)
log(%(b)d + 100, %(steps)d - 1, pause=0.001)  # streaming while the second agent is killed
while not (gates / "killed").exists():        # the last step waits for the kill: no rank is done before it
    time.sleep(0.005)
log(%(steps)d - 1, %(steps)d)
run.finish()
st = run.stats
keys = ("rows_sent", "unacked_rows", "agent_restarts", "spawns", "resends", "rows_resent")
print(json.dumps({k: st[k] for k in keys}))
""" % {"a": A, "b": B, "steps": STEPS}


def _values(key: str) -> np.ndarray:
    ranks, steps = np.arange(WORLD)[:, None], np.arange(STEPS)[None, :]
    if key == "x":
        return ranks * 10000.0 + steps
    return np.array([[float(np.sin(0.01 * s + r)) for s in range(STEPS)] for r in range(WORLD)])


@pytest.fixture(params=["server", "cluster"])
def target(request) -> tuple[str, list]:
    """(store URL, its servers): one clickhouse-server, or the 2-shard cluster rw2 (its URL names shard 1)."""
    if request.param == "server":
        return request.getfixturevalue("clickhouse_url"), [request.getfixturevalue("clickhouse_server")]
    url = request.getfixturevalue("clickhouse_cluster")
    return url, request.getfixturevalue("clickhouse_cluster_servers").servers


def test_two_agent_kills_every_point_exactly_once(rankwise_env, target, tmp_path):
    """Kill -9 of a stopped agent holding 700 unacknowledged rows per rank, then kill -9 of its successor
    mid-stream: all 8 ranks finish with nothing unacknowledged after seeing two new agents; Api(URL) reads
    8 finished runs of 2000 steps, every key's steps 0..1999 once with the logged values, and group rows
    whose count, min, max, mean and std equal numpy's over the 8 ranks; in the raw table every
    (run, key, step) of x and y has one value. On one server and on the 2-shard cluster, where each run's
    rows, replays included, are on one shard and both shards hold runs."""
    clickhouse_url, servers = target
    procs = start_ranks(
        rankwise_env,
        SCRIPT,
        WORLD,
        "job-twice",
        RANKWISE_STORE=clickhouse_url,
        RW_DIR=tmp_path,
        RANKWISE_RETRY_AFTER=0.2,
        RANKWISE_FINISH_TIMEOUT=120,
    )
    try:
        for p in procs:
            assert read_line(p, 120, "first rows stored") == "stored"
        first = agent_pid(rankwise_env)
        assert first is not None
        os.kill(first, signal.SIGSTOP)
        (tmp_path / "stopped").touch()
        for p in procs:
            assert read_line(p, 120, "rows sent to the stopped agent") == "sent"
        kill9(first)
        wait_for(lambda: pid_gone(first), 30, "the first agent to die")
        for p in procs:
            assert read_line(p, 180, "the second agent's acknowledgement") == "second"
        second = agent_pid(rankwise_env)
        assert second is not None and second != first
        kill9(second)  # mid-stream: the ranks log their last 600 steps 1 ms apart, the last one after the kill
        wait_for(lambda: pid_gone(second), 30, "the second agent to die")
        (tmp_path / "killed").touch()
        results = wait_all(procs, timeout_s=240)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    stats = []
    for code, out, err in results:
        assert code == 0, err
        stats.append(json.loads(out.splitlines()[-1]))
    assert [(s["rows_sent"], s["unacked_rows"]) for s in stats] == [(STEPS, 0)] * WORLD, stats
    assert [s["agent_restarts"] for s in stats] == [2] * WORLD, stats
    assert all(s["rows_resent"] >= B - A for s in stats), stats  # at least the stopped agent's share
    third = agent_pid(rankwise_env)
    assert third not in (None, first, second)

    with rankwise.Api(clickhouse_url) as api:
        assert_dense_group(api.group("chonce", "job-twice"), {key: _values(key) for key in ("x", "y")})

    database = clickhouse_url.rsplit("/", 1)[1].split("?")[0]
    rows, points = servers[0].execute(
        f"SELECT count(), uniqExact(run_id, key, step) FROM {database}.history WHERE key IN ('x', 'y')"
    )[0]
    assert points == WORLD * STEPS * 2
    conflicting = servers[0].execute(
        f"SELECT run_id, key, step, uniqExact(value) AS n FROM {database}.history WHERE key IN ('x', 'y') "
        "GROUP BY run_id, key, step HAVING n > 1 LIMIT 5"
    )
    assert conflicting == []
    if len(servers) > 1:  # the cluster: history_local of each shard holds whole runs, disjoint, all of them
        per_shard = [
            {int(r) for (r,) in server.execute(f"SELECT DISTINCT run_id FROM {database}.history_local")}
            for server in servers
        ]
        assert all(per_shard) and not per_shard[0] & per_shard[1]
        stored_runs = {int(r) for (r,) in servers[0].execute(f"SELECT DISTINCT id FROM {database}.runs")}
        assert len(stored_runs) == WORLD and per_shard[0] | per_shard[1] == stored_runs
    print(f"raw history rows of x and y: {rows} for {points} points ({rows - points} written twice by replays)")
