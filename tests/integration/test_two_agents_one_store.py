"""One store, one writer: an agent started for another runtime directory (an ssh shell and a batch
job with different XDG_RUNTIME_DIR) but the same RANKWISE_DIR refuses to start, names the agent
that holds the store, and the client that tried to spawn it says so at once instead of waiting."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import tempfile

import rankwise
from support.probes import group_runs, read_line, start_script, wait_for
from support.processes import RankwiseEnv, agent_pid, communicate, stop_agent, torchrun_env

RANK = """
import os
from pathlib import Path
import rankwise
run = rankwise.init(project="two")
for s in range(50):
    run.log({"x": float(s)})
assert run.flush(30)
print("started", flush=True)
go = Path(os.environ["RW_GO"])
while not go.exists():
    pass
for s in range(50, 80):
    run.log({"x": float(s)})
run.finish()
print(run.stats["rows_sent"], run.stats["unacked_rows"], flush=True)
"""

OTHER_SHELL = """
import os, sys, time
import rankwise
t0 = time.monotonic()
run = rankwise.init(project="two", group="g-other")
print(f"{time.monotonic() - t0:.3f}", flush=True)
sys.stdout.flush(); sys.stderr.flush()
os._exit(0)   # its rows cannot be delivered while the other agent holds the store: not this test's point
"""


def _start_agent(data: str, runtime: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "agent", "--detach", "--dir", data, "--runtime-dir", runtime, "--idle-timeout", "60"]
    return subprocess.run(cmd, env=RankwiseEnv(data, runtime).env(), capture_output=True, text=True, timeout=60)


def test_second_agent_on_the_same_store_exits_naming_the_first(rankwise_env, tmp_path):
    """A rank logs through agent 1 (runtime dir R1). An agent started for runtime dir R2 with the same
    data directory exits with status 4 and a message naming agent 1's pid, host and R1; a process of
    R2 calling init() gets a warning naming agent 1 within 10 s (no 15 s wait). The rank then finishes:
    its run is ``finished`` with all 80 rows sent and acknowledged, never ``crashed``. Once agent 1 is
    stopped, an agent for R2 starts on that store (status 0)."""
    other_rt = tempfile.mkdtemp(prefix="rwr", dir="/tmp")
    other = RankwiseEnv(rankwise_env.data, other_rt)
    go = tmp_path / "go"
    try:
        rank = start_script(rankwise_env, RANK, {**torchrun_env(0, 1, "g-two"), "RW_GO": go})
        assert read_line(rank, what="started") == "started"
        first = agent_pid(rankwise_env)
        assert first is not None

        second = _start_agent(rankwise_env.data, other_rt)
        assert second.returncode == 4, (second.returncode, second.stderr)
        message = second.stderr.strip().splitlines()[-1]
        assert f"agent pid {first} on host {socket.gethostname()} (runtime dir {rankwise_env.runtime})" in message
        assert "one store has one writer" in message
        assert agent_pid(other) is None

        shell = start_script(other, OTHER_SHELL, {"RANKWISE_RUNTIME_DIR": other_rt, "RANKWISE_INIT_TIMEOUT": "15"})
        out, err = communicate(shell, 60)
        assert shell.returncode == 0, err
        assert float(out.strip()) < 10.0, (out, err)
        named = rf"in use by another agent pid {first} on host \S+ \(runtime dir {re.escape(rankwise_env.runtime)}\)"
        assert re.search(named, err), err

        go.touch()
        out, err = communicate(rank, 60)
        assert rank.returncode == 0, err
        assert out.split() == ["80", "0"]
        wait_for(
            lambda: group_runs(rankwise_env, "two", "g-two") == [("rank-0", 0, "finished")],
            what="the run to be finished",
        )
        run = rankwise.Api().group("two", "g-two").run(rank=0)
        assert (run.state, run.rows) == ("finished", 80)

        stop_agent(rankwise_env)
        wait_for(lambda: agent_pid(rankwise_env) is None, what="agent 1 to stop")
        started = _start_agent(rankwise_env.data, other_rt)
        assert started.returncode == 0, started.stderr
        assert agent_pid(other) is not None
    finally:
        stop_agent(other)  # waits until it released its locks
        shutil.rmtree(other_rt, ignore_errors=True)
