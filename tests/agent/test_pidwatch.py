"""Liveness of a run's process by pid and start time (agent/runs.py PidWatch): a rank that died is not
kept running by another process that got its pid."""

from __future__ import annotations

import subprocess
import sys
import time

from agent.config import AgentConfig
from agent.ingest import Ingest
from agent.runs import PidWatch
from agent.store import MemoryStore
from client import wire


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_live_registered_pid_is_alive_and_a_reaped_one_gone():
    """A registered live process reads alive; once it exited and was reaped, gone, and forgotten."""
    proc = _sleeper()
    watch = PidWatch()
    try:
        watch.register(proc.pid)
        assert watch(proc.pid) is True and repr(watch) == "<PidWatch 1 pids>"
    finally:
        proc.kill()
        proc.wait()
    assert watch(proc.pid) is False and repr(watch) == "<PidWatch 0 pids>"


def test_a_pid_whose_process_started_at_another_time_is_gone():
    """The pid is registered for a process that started earlier than the one holding it now (what pid
    reuse looks like): the live stranger does not count; registering the pid again (a HELLO from the new
    process) makes it ours."""
    proc = _sleeper()
    watch = PidWatch()
    try:
        watch.register(proc.pid)
        watch._started[proc.pid] -= 100.0  # the rank that had this pid started long before this process
        assert watch(proc.pid) is False
        watch.register(proc.pid)
        assert watch(proc.pid) is True
    finally:
        proc.kill()
        proc.wait()


def test_the_table_is_swept_of_dead_pids():
    """Past sweep_at entries, registering drops the pids whose processes are gone."""
    dead = [_sleeper() for _ in range(3)]
    watch = PidWatch(sweep_at=3)
    for p in dead:
        watch.register(p.pid)
        p.kill()
        p.wait()
    live = _sleeper()
    try:
        watch.register(live.pid)
        assert list(watch._started) == [live.pid]
    finally:
        live.kill()
        live.wait()


def test_the_agent_crashes_a_run_whose_pid_went_to_another_process(tmp_path):
    """Through the agent: the pid was last seen with an earlier rank (a stale entry); a HELLO from the live
    process now holding it registers it afresh, so the run stays running while that process runs; when
    the pid's process turns out to be another one (simulated reuse), the next liveness check marks the
    run crashed."""
    proc = _sleeper()
    try:
        cfg = AgentConfig(data_dir=tmp_path / "d", runtime_dir=tmp_path / "r", liveness_interval_s=0.0)
        ingest = Ingest(MemoryStore(), cfg, node="n1")
        ingest.alive._started[proc.pid] = 12345.0  # an earlier process with this pid, never seen to exit
        run = {"project": "p", "group": "g", "name": "rank-0", "rank": 0, "world_size": 1, "local_rank": 0,
               "node": "n1", "launcher": "none", "resume": "allow", "started": time.time(), "run_id": "g-0"}  # fmt: skip
        replies = ingest.handle(b"peer", wire.pack(wire.HELLO, {"w": "w0", "pid": proc.pid, "run": run, "h": 1}))
        assert wire.unpack(replies[0][1])[0] == wire.WELCOME
        (state,) = ingest.runs.values()
        ingest.tick()
        assert state.record.state == "running"
        ingest.alive._started[proc.pid] -= 100.0
        ingest.tick()
        assert state.record.state == "crashed" and ingest.counters.values["crashed_runs"] == 1
    finally:
        proc.kill()
        proc.wait()
