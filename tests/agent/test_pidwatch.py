"""Liveness of a run's process by pid and start time (agent/runs.py PidWatch): a rank that died is not
kept running by another process that got its pid."""

from __future__ import annotations

import subprocess
import sys
import time

from agent.config import AgentConfig
from agent.ingest import Ingest
from agent.runs import PidWatch, process_started
from agent.store import MemoryStore
from client import wire
from support.probes import wait_for


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_live_registered_pid_is_alive_and_a_reaped_one_gone():
    """With the real source (/proc or psutil): a registered live process reads alive; once it exited and
    was reaped, gone, and forgotten; a zombie (exited, not yet reaped) reads gone too."""
    proc = _sleeper()
    watch = PidWatch()
    try:
        watch.register(proc.pid)
        assert watch(proc.pid) is True and repr(watch) == "<PidWatch 1 pids>"
        proc.kill()
        wait_for(lambda: process_started(proc.pid) is None, what="the killed child to be a zombie")
        assert watch(proc.pid) is False
    finally:
        proc.kill()
        proc.wait()
    assert watch(proc.pid) is False and repr(watch) == "<PidWatch 0 pids>"


def test_a_pid_whose_process_started_at_another_time_is_gone():
    """The pid is registered for a process that started at tick 100; the process now holding it started
    at tick 200 (what pid reuse looks like): the stranger does not count; registering the pid again (a
    HELLO from the new process) makes it ours."""
    started = {4242: 100.0}
    watch = PidWatch(started.get)
    watch.register(4242)
    assert watch(4242) is True
    started[4242] = 200.0
    assert watch(4242) is False
    watch.register(4242)
    assert watch(4242) is True
    del started[4242]
    assert watch(4242) is False and repr(watch) == "<PidWatch 0 pids>"


def test_the_table_is_swept_of_dead_pids():
    """Past sweep_at entries, registering drops the pids whose processes are gone or were replaced."""
    started = {1: 10.0, 2: 20.0, 3: 30.0}
    watch = PidWatch(started.get, sweep_at=3)
    for pid in (1, 2, 3):
        watch.register(pid)
    del started[1]
    started[2] = 21.0
    started[4] = 40.0
    watch.register(4)
    assert repr(watch) == "<PidWatch 2 pids>" and watch(3) and watch(4)


def test_the_agent_crashes_a_run_whose_pid_went_to_another_process(tmp_path):
    """Through the agent: the pid was last seen with an earlier process (a stale entry); a HELLO from the
    process now holding it registers it afresh, so the run stays running while that process runs; when
    the pid's process turns out to be another one (reuse), the next liveness check marks the run
    crashed."""
    started = {4242: 50.0}
    pids = PidWatch(started.get)
    assert pids(4242)  # an earlier process with this pid, never seen to exit
    started[4242] = 100.0
    cfg = AgentConfig(data_dir=tmp_path / "d", runtime_dir=tmp_path / "r", liveness_interval_s=0.0)
    ingest = Ingest(MemoryStore(), cfg, node="n1", pids=pids)
    run = {
        "project": "p",
        "group": "g",
        "name": "rank-0",
        "rank": 0,
        "world_size": 1,
        "local_rank": 0,
        "node": "n1",
        "launcher": "none",
        "resume": "allow",
        "started": time.time(),
        "run_id": "g-0",
    }
    replies = ingest.handle(b"peer", wire.pack(wire.HELLO, {"w": "w0", "pid": 4242, "run": run, "h": 1}))
    assert wire.unpack(replies[0][1])[0] == wire.WELCOME
    (state,) = ingest.runs.values()
    ingest.tick()
    assert state.record.state == "running"
    started[4242] = 200.0
    ingest.tick()
    assert state.record.state == "crashed" and ingest.counters.values["crashed_runs"] == 1
