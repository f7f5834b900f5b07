"""SIGKILL of the node agent while ranks stream: the clients notice (no ACK), a new agent comes up
(spawned by a client's retry, or started by hand), the writers say HELLO again and replay what was
not acknowledged, and the new agent de-duplicates: every row is stored exactly once.

To make sure batches really are lost with the agent (not merely never sent), the agent is first
SIGSTOPped: the ranks' batches are then handed to ZeroMQ and sit in its queues and the kernel's
socket buffer, unacknowledged, when SIGKILL arrives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rankwise
from client import paths
from support.probes import agent_log, kill9, pid_gone, raw_steps, read_line, start_script, wait_for
from support.processes import RankwiseEnv, agent_pid, communicate, start_ranks, stop_agent, wait_all

WORLD, STEPS, BEFORE = 4, 1500, 500

SCRIPT = """
import json, os, time
from pathlib import Path
import rankwise
rank = int(os.environ["RANK"])
run = rankwise.init(project="akill")
for s in range(%(before)d):
    run.log({"x": rank * 10000.0 + s, "i": s})
assert run.flush(30)
print("stored", flush=True)
stopped = Path(os.environ["RW_DIR"]) / "stopped"
while not stopped.exists():
    time.sleep(0.005)
for s in range(%(before)d, %(steps)d):
    run.log({"x": rank * 10000.0 + s, "i": s})
    if s %% 50 == 0:
        time.sleep(0.002)                 # a stream over a while, not one burst
while run.stats["rows_sent"] < %(steps)d:     # every batch handed to the socket of the stopped agent
    time.sleep(0.005)
print("sent", flush=True)
run.finish()
st = run.stats
keys = ("rows_sent", "unacked_rows", "agent_restarts", "spawns", "resends", "rows_resent", "hellos")
print(json.dumps({k: st[k] for k in keys}))
"""


def _start(env, tmp_path, group: str, **extra):
    return start_ranks(
        env,
        SCRIPT % {"before": BEFORE, "steps": STEPS},
        WORLD,
        group,
        RW_DIR=tmp_path,
        RANKWISE_RETRY_AFTER=0.2,
        RANKWISE_FINISH_TIMEOUT=60,
        **extra,
    )


def _check_exactly_once(env, group: str) -> None:
    g = rankwise.Api().group("akill", group)
    runs = g.runs
    assert [(r.rank, r.state, r.rows, r.step) for r in runs] == [(r, "finished", STEPS, STEPS) for r in range(WORLD)]
    for r in runs:
        for key in ("x", "i", "_timestamp"):
            assert np.array_equal(raw_steps(env, "akill", group, r.name, key), np.arange(STEPS)), (r.name, key)
        assert np.array_equal(r.history_arrays(["x"])["x"][1], r.rank * 10000.0 + np.arange(STEPS))
    h = g.history("x")
    values = np.arange(WORLD)[:, None] * 10000.0 + np.arange(STEPS)[None, :]
    assert np.array_equal(h["step"], np.arange(STEPS))
    assert np.array_equal(h["count"], np.full(STEPS, WORLD))
    assert np.array_equal(h["min"], values.min(axis=0))
    assert np.array_equal(h["max"], values.max(axis=0))
    np.testing.assert_allclose(h["mean"], values.mean(axis=0), rtol=1e-15)


@pytest.fixture(params=["ipc", "tcp"])
def endpoint_env(request, rankwise_env, tmp_path, monkeypatch):
    """The test's environment with the agent on ipc (the default), or on TCP 127.0.0.1 (what the
    agent falls back to when the socket path would be too long): each restart gets a new port,
    so the clients must reconnect to the endpoint of the new agent."""
    if request.param == "ipc":
        yield rankwise_env
        return
    runtime = tmp_path / ("r" * 100)
    assert paths.ipc_endpoint(runtime) is None
    monkeypatch.setenv("RANKWISE_RUNTIME_DIR", str(runtime))
    env = RankwiseEnv(rankwise_env.data, str(runtime))
    yield env
    stop_agent(env)


def test_clients_respawn_a_killed_agent_and_replay(endpoint_env, tmp_path):
    """4 ranks have 500 rows each acknowledged; the agent is SIGSTOPped, the ranks send 1000 more
    rows each, and the agent is SIGKILLed with them unacknowledged. A client's retry finds no
    agent (lock free) and spawns one, which recovers the 4 running runs; the writers replay the
    lost batches (each of the 1000 rows exactly once). All ranks finish with nothing unacknowledged, each run
    holds steps 0..1499 exactly once (raw store rows, no duplicates) with the logged values, and
    every group row covers the 4 ranks. On ipc and on TCP."""
    rankwise_env = endpoint_env
    procs = _start(rankwise_env, tmp_path, "job-respawn")
    try:
        for p in procs:
            assert read_line(p, what="first rows stored") == "stored"
        first = agent_pid(rankwise_env)
        os.kill(first, signal.SIGSTOP)
        (tmp_path / "stopped").touch()
        for p in procs:
            assert read_line(p, what="all rows sent") == "sent"
        kill9(first)
        wait_for(lambda: pid_gone(first), what="the agent to die")
        results = wait_all(procs, timeout_s=120)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    stats = []
    for code, out, err in results:
        assert code == 0, err
        stats.append(json.loads(out.splitlines()[-1]))
    assert [(s["rows_sent"], s["unacked_rows"]) for s in stats] == [(STEPS, 0)] * WORLD
    assert [s["agent_restarts"] for s in stats] == [1] * WORLD, stats  # one new agent instance seen
    # everything sent to the stopped agent was lost with it and replayed exactly once
    assert [s["rows_resent"] for s in stats] == [STEPS - BEFORE] * WORLD, stats
    assert sum(s["spawns"] for s in stats) >= 1, stats
    second = agent_pid(rankwise_env)
    assert second is not None and second != first
    tcp = paths.ipc_endpoint(Path(rankwise_env.runtime)) is None
    assert rankwise_env.agent_info()["endpoint"].startswith("tcp://127.0.0.1:" if tcp else "ipc://")
    log = agent_log(rankwise_env)
    assert log.count(" serving ") == 2
    assert "recovered 4 running run(s) in 1 group(s)" in log
    _check_exactly_once(rankwise_env, "job-respawn")


def test_agent_restarted_by_hand_gets_the_replay(rankwise_env, tmp_path):
    """Same stream with spawning disabled: the agent is started by hand (``python -m agent`` in
    the foreground), stopped after 500 acknowledged rows per rank, and SIGKILLed once the ranks
    have sent the rest and called finish(), which then waits; a second agent started by hand
    receives the HELLOs, the replayed batches and the finish ops: every rank finishes with all
    1500 rows stored once."""
    cmd = [sys.executable, "-m", "agent"]
    first = subprocess.Popen(cmd, env=rankwise_env.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = None
    procs = []
    try:
        wait_for(lambda: agent_pid(rankwise_env) == first.pid, what="the first agent")
        procs = _start(rankwise_env, tmp_path, "job-byhand", RANKWISE_SPAWN_AGENT=0)
        for p in procs:
            assert read_line(p, what="first rows stored") == "stored"
        os.kill(first.pid, signal.SIGSTOP)
        (tmp_path / "stopped").touch()
        for p in procs:
            assert read_line(p, what="all rows sent") == "sent"
        kill9(first)
        first.wait(timeout=30)
        assert all(p.poll() is None for p in procs), "finish() must wait for the agent"
        second = subprocess.Popen(cmd, env=rankwise_env.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        results = wait_all(procs, timeout_s=120)
        for code, out, err in results:
            assert code == 0, err
            st = json.loads(out.splitlines()[-1])
            assert (st["rows_sent"], st["unacked_rows"], st["spawns"]) == (STEPS, 0, 0)
            assert st["agent_restarts"] == 1
            assert st["rows_resent"] == STEPS - BEFORE
        assert agent_pid(rankwise_env) == second.pid
        _check_exactly_once(rankwise_env, "job-byhand")
    finally:
        for p in [first, second, *procs]:
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


FORK_AFTER_RESTART = """
import os, sys, time
from pathlib import Path
import rankwise
run = rankwise.init(project="akill", group="job-fork")
for s in range(50):
    run.log({"p": s})
assert run.flush(30)
print("ready", flush=True)
restarted = Path(os.environ["RW_DIR"]) / "restarted"
while not restarted.exists():
    time.sleep(0.005)
pid = os.fork()
if pid == 0:                         # the parent's writer has not met the new agent yet
    for i in range(30):
        run.log({"c": i})
    os._exit(0 if run.flush(30) else 7)
code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
for s in range(50, 100):
    run.log({"p": s})
run.finish()
print("child", code, flush=True)
"""


def test_forked_child_meets_a_restarted_agent_first(rankwise_env, tmp_path):
    """The agent is SIGKILLed and restarted by hand while a rank is idle; the rank then forks and
    the child logs before the parent's writer has said HELLO to the new agent. The new agent does
    not know the parent's writer, yet it must take the child as a continuation of the live run
    (not refuse it as a second process logging as the same rank): the child's 30 rows are stored
    (its flush succeeds), and the run finishes with 50 + 30 + 50 rows, each step once."""
    cmd = [sys.executable, "-m", "agent"]
    agents = [subprocess.Popen(cmd, env=rankwise_env.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    rank = None
    try:
        wait_for(lambda: agent_pid(rankwise_env) == agents[0].pid, what="the first agent")
        rank = start_script(rankwise_env, FORK_AFTER_RESTART, {"RW_DIR": tmp_path, "RANKWISE_SPAWN_AGENT": 0})
        assert read_line(rank, what="ready") == "ready"
        kill9(agents[0])
        agents[0].wait(timeout=30)
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        agents.append(subprocess.Popen(cmd, env=rankwise_env.env(), **quiet))
        wait_for(lambda: agent_pid(rankwise_env) == agents[1].pid, what="the second agent")
        (tmp_path / "restarted").touch()
        out, err = communicate(rank, 120)
        assert rank.returncode == 0, err
        assert out.split() == ["child", "0"], err
        run = rankwise.Api().group("akill", "job-fork").run(rank=0)
        assert (run.state, run.rows, run.incarnations) == ("finished", 130, 1)
        assert np.array_equal(raw_steps(rankwise_env, "akill", "job-fork", "rank-0", "p"), np.arange(100))
        assert np.array_equal(raw_steps(rankwise_env, "akill", "job-fork", "rank-0", "c"), np.arange(50, 80))
    finally:
        for p in [*agents, rank]:
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
