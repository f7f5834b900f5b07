"""The agent's life: spawned detached by the first rank, outliving it, exiting by itself when
idle; run in the foreground and stopped by ``rankwise agent stop``; reporting live runs in
``rankwise status``; and a second agent on the same runtime directory giving way at once."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

import rankwise
from rankwise._table import byte_size as _bytes
from support.probes import (
    agent_log,
    agent_processes,
    cli,
    pid_gone,
    rankwise_cmd,
    read_line,
    start_script,
    status,
    status_json,
    wait_for,
)
from support.processes import agent_pid, communicate, torchrun_env

HOLDER = """
import os, sys, rankwise
from client import spawn
run = rankwise.init(project="life", group="g-life", name="logger")
for s in range(300):
    run.log({"x": float(s)})
run.finish()
holder = rankwise.init(project="life", group="g-life", name="holder")   # keeps a run open
holder.log({"x": 1.0})
assert holder.flush(10)
print(spawn.read_info(run.settings.runtime_dir)["pid"], flush=True)
sys.stdin.readline()
"""


def test_agent_outlives_its_rank_and_exits_when_idle(rankwise_env):
    """The agent spawned by a rank runs in its own session (not the rank's); it stays while a run
    is open though nothing arrives for 2.5 idle timeouts; it survives SIGKILL of the rank's whole
    process group (what torchrun/SLURM do to stop workers), records that rank's open run as
    crashed, and then exits by itself once nothing runs for the idle timeout (1 s), releasing the
    lock and removing agent.json and its socket. Rows logged before are stored."""
    idle = {"RANKWISE_AGENT_IDLE_TIMEOUT": "1"}
    rank = start_script(rankwise_env, HOLDER, idle, stdin=subprocess.PIPE, start_new_session=True)
    pid = int(read_line(rank, what="the agent pid"))
    agent = psutil.Process(pid)
    assert os.getsid(pid) == pid, "the agent must lead its own session"
    assert os.getsid(pid) != os.getsid(rank.pid)
    assert agent.ppid() != rank.pid
    assert agent_pid(rankwise_env) == pid
    # an open run keeps the agent even when nothing arrives for longer than the idle timeout (a long
    # evaluation logs nothing): absence of an exit cannot be polled for, so wait 2.5 timeouts and look
    time.sleep(2.5)
    assert agent.is_running() and status(rankwise_env)["runs"] == {"finished": 1, "running": 1}

    os.killpg(rank.pid, signal.SIGKILL)
    rank.wait(timeout=30)
    wait_for(lambda: pid_gone(pid), timeout_s=60, what="the agent to exit after its idle timeout")
    log = agent_log(rankwise_env)
    crashed, idle = log.find("run holder of group g-life crashed"), log.find("idle for 1 s")
    assert 0 <= crashed < idle, log  # it saw the rank die, then stayed until idle
    assert f"agent {pid} stopped" in log
    runtime = Path(rankwise_env.runtime)
    assert agent_pid(rankwise_env) is None
    assert not (runtime / "agent.json").exists() and not (runtime / "agent.sock").exists()

    runs = {r.name: r for r in rankwise.Api().group("life", "g-life").runs}
    assert (runs["logger"].state, runs["logger"].rows) == ("finished", 300)
    assert (runs["holder"].state, runs["holder"].rows) == ("crashed", 1)
    assert np.array_equal(runs["logger"].history_arrays(["x"])["x"][1], np.arange(300.0))


FOREGROUND_RANK = """
import rankwise
run = rankwise.init(project="life", group="g-fg")
for s in range(250):
    run.log({"x": s})
run.finish()
print(run.stats["rows_sent"], run.stats["spawns"])
"""


def test_foreground_agent_and_agent_stop(rankwise_env, tmp_path):
    """``rankwise agent`` serves in the foreground (a rank with spawning disabled logs through
    it); ``rankwise agent stop`` stops it cleanly (exit 0 of both commands, lock released, files
    removed); then ``rankwise agent stop`` and ``rankwise status`` exit 1: no agent."""
    with open(tmp_path / "agent.err", "w") as err:
        fg = subprocess.Popen(rankwise_cmd() + ["agent"], env=rankwise_env.env(), stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_for(lambda: agent_pid(rankwise_env) == fg.pid, what="the foreground agent to serve")
        rank = start_script(rankwise_env, FOREGROUND_RANK, {"RANKWISE_SPAWN_AGENT": "0"})
        out, errs = communicate(rank, 60)
        assert rank.returncode == 0, errs
        assert out.split() == ["250", "0"]
        assert agent_processes(rankwise_env) == []  # nothing was spawned beside the foreground agent
        assert agent_pid(rankwise_env) == fg.pid

        stop = cli(rankwise_env, "agent", "stop")
        assert stop.returncode == 0, stop.stderr
        assert f"agent {fg.pid} stopped" in stop.stdout
        assert fg.wait(timeout=30) == 0
    finally:
        if fg.poll() is None:
            fg.kill()
            fg.wait()
    assert agent_pid(rankwise_env) is None
    assert not (Path(rankwise_env.runtime) / "agent.json").exists()
    assert f"agent {fg.pid} stopped" in (tmp_path / "agent.err").read_text()
    run = rankwise.Api().group("life", "g-fg").run(rank=0)
    assert (run.state, run.rows) == ("finished", 250)

    again = cli(rankwise_env, "agent", "stop")
    assert again.returncode == 1 and "no agent is running" in again.stdout
    st = cli(rankwise_env, "status")
    assert st.returncode == 1 and "no agent is running" in st.stdout


LIVE_RANK = """
import sys, rankwise
run = rankwise.init(project="life", group="g-live")
for s in range(1234):
    run.log({"x": s, "y": 0.5})
assert run.flush(30)
print("flushed", flush=True)
sys.stdin.readline()
run.finish()
"""


def test_status_shows_a_live_run(rankwise_env):
    """While a rank is connected and has 1234 rows acknowledged, ``rankwise status`` (text and
    ``--json``) reports one running run with those rows, the counters of what was received and the agent's
    memory (resident, peak, the high-water mark of uncommitted batches: the same numbers in both);
    after the rank finishes the same agent reports it finished."""
    rank = start_script(rankwise_env, LIVE_RANK, torchrun_env(0, 1, "g-live"), stdin=subprocess.PIPE)
    try:
        assert read_line(rank, what="flush") == "flushed"
        text = cli(rankwise_env, "status")
        assert text.returncode == 0, text.stderr
        assert "runs: 1 running" in text.stdout
        assert "1234 rows" in text.stdout
        assert "malformed frames: 0" in text.stdout
        js = status_json(rankwise_env)
        memory = re.fullmatch(
            r"memory: ([\d.]+) MiB resident, peak ([\d.]+) MiB; uncommitted batches peaked at (.+)",
            next(line for line in text.stdout.splitlines() if line.startswith("memory: ")),
        )
        assert memory is not None
        assert float(memory[2]) >= float(memory[1]) > 10  # an agent process: tens of MiB (RSS moves between calls)
        assert js["peak_rss_bytes"] >= js["rss_bytes"] > 10 << 20
        assert 0 < js["pending_bytes_max"] < 1 << 20 and memory[3] == _bytes(js["pending_bytes_max"])  # idle rank
        live = next(line for line in text.stdout.splitlines() if "rank-0" in line)
        assert live.split()[:6] == ["life", "g-live", "rank-0", str(rank.pid), "1234", "1234"]

        js = status_json(rankwise_env)
        assert js["pid"] == agent_pid(rankwise_env)
        assert js["runs"] == {"running": 1}
        assert js["counters"]["rows"] == 1234
        assert js["counters"]["points"] == 2 * 1234
        assert js["counters"]["stored_points"] == 4 * 1234  # x, y, _timestamp, _runtime
        assert js["malformed"] == {}
        (entry,) = js["running"]
        assert (entry["name"], entry["rank"], entry["step"], entry["rows"], entry["pid"]) == (
            "rank-0",
            0,
            1234,
            1234,
            rank.pid,
        )
        rank.stdin.write("\n")
        rank.stdin.flush()
        assert rank.wait(timeout=60) == 0
    finally:
        if rank.poll() is None:
            rank.kill()
    after = status_json(rankwise_env)
    assert after["runs"] == {"finished": 1} and after["running"] == []
    assert after["counters"]["finished_runs"] == 1


def test_second_agent_exits_with_3_and_leaves_the_socket(rankwise_env):
    """With an agent serving, a second one started by hand on the same runtime directory (in the
    foreground and with --detach) exits at once with status 3; agent.json, the socket file and
    the lock still belong to the first agent, which keeps serving a new run."""
    first = start_script(rankwise_env, "import rankwise; rankwise.init(project='life', group='g-2').finish()")
    communicate(first, 60)
    assert first.returncode == 0
    pid = wait_for(lambda: agent_pid(rankwise_env), what="the first agent")
    sock = Path(rankwise_env.runtime) / "agent.sock"
    inode = sock.stat().st_ino
    info = rankwise_env.agent_info()

    cmd = [sys.executable, "-m", "agent", "--dir", rankwise_env.data, "--runtime-dir", rankwise_env.runtime]
    for extra in ([], ["--detach"]):
        second = subprocess.run(cmd + extra, env=rankwise_env.env(), capture_output=True, text=True, timeout=60)
        assert second.returncode == 3, (extra, second.stdout, second.stderr)
    # --detach's forked child also gave way; it may take a moment to finish exiting
    wait_for(lambda: [p.pid for p in agent_processes(rankwise_env)] == [pid], what="only the first agent left")
    assert rankwise_env.agent_info() == info
    assert sock.stat().st_ino == inode
    assert agent_pid(rankwise_env) == pid
    assert status(rankwise_env)["pid"] == pid
    assert agent_log(rankwise_env).count("another agent holds") == 2

    again = start_script(rankwise_env, FOREGROUND_RANK.replace("g-fg", "g-2b"))
    out, err = communicate(again, 60)
    assert again.returncode == 0, err
    assert rankwise.Api().group("life", "g-2b").run(rank=0).rows == 250


def test_agent_that_cannot_start_is_reported_not_waited_for(rankwise_env):
    """The store was written by an incompatible version: the spawned agent exits with status 1
    and says why in agent.log; the rank is warned once with a pointer to that log, its init() and
    log() do not raise, its process exits 0 (finish() gives up after its timeout), and no agent
    process is left behind."""
    with sqlite3.connect(rankwise_env.store) as con:
        con.execute("CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
        con.execute("INSERT INTO meta VALUES ('schema_version', '99')")
    script = "import rankwise\nrun = rankwise.init(project='life', group='g-bad')\nrun.log({'x': 1})\nrun.finish()\n"
    rank = start_script(rankwise_env, script, {"RANKWISE_INIT_TIMEOUT": "3", "RANKWISE_FINISH_TIMEOUT": "1"})
    out, err = communicate(rank, 120)
    assert rank.returncode == 0, err
    assert err.count("the agent could not start (exit status 1: store ") == 1, err
    assert "has schema version 99" in err
    assert str(Path(rankwise_env.data) / "agent.log") in err
    log = agent_log(rankwise_env)
    assert "agent could not start: store" in log and "has schema version 99" in log, log
    # a retry of the writer may have started one more attempt just before the rank exited: it fails too
    wait_for(lambda: agent_processes(rankwise_env) == [], what="every failed agent to exit")
    assert agent_pid(rankwise_env) is None
