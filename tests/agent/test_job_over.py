"""When a group stops waiting for ranks that never said hello (GroupState.job_over): only once every
rank that did is done *and* the launcher process of each has exited; until then the join grace holds."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from agent.config import AgentConfig
from agent.groups import GroupState
from agent.nextcommit import NextCommit
from agent.runs import RunState, parent_of, process_started
from agent.store.base import GroupRecord, RunRecord

T0 = 1000.0


def _group(state: str, launcher: tuple[int, float] | None) -> tuple[GroupState, RunState]:
    g = GroupState(GroupRecord(1, "p", "job", world_size=2, created=T0, updated=T0), T0)
    run = RunState(RunRecord(1, 1, "rank-0", "", 0, 0, "n", 1, state, T0, T0, step=10), g, T0)
    run.launcher = launcher
    g.ranks[0] = run
    g.window.add("loss", 0, np.arange(10), np.arange(10.0), T0)
    return g, run


def _cfg(tmp_path) -> AgentConfig:
    return AgentConfig(tmp_path, tmp_path, join_grace_s=30.0, liveness_interval_s=0.5)


def test_parent_of_names_the_parent_process():
    """parent_of(a child) is (our pid, our start time); a pid with no process has none."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert parent_of(child.pid) == (os.getpid(), process_started(os.getpid()))
    finally:
        child.kill()
        child.wait()
    assert parent_of(child.pid) is None


def test_rows_wait_while_the_launcher_lives_and_seal_once_it_exits(tmp_path):
    """Rank 0 of 2 finished, rank 1 never said hello: while rank 0's launcher runs the group still waits
    (nothing may seal, a rank may start); once the launcher has exited, at the next liveness check the
    group no longer waits and all 10 steps seal, one row each, count 1 of expected 2."""
    cfg = _cfg(tmp_path)
    launcher = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        g, _ = _group("finished", (launcher.pid, process_started(launcher.pid)))
        assert g.awaits_joiners(T0 + 1, cfg)
        assert g.seal_bound(T0 + 1, cfg, everything=False) == -1
    finally:
        launcher.kill()
        launcher.wait()
    assert g.awaits_joiners(T0 + 1.2, cfg), "checked again before the liveness interval"
    assert not g.awaits_joiners(T0 + 1.6, cfg)
    pending = NextCommit()
    assert g.seal(T0 + 1.6, cfg, pending) == 1
    ((gid, key, rows, revision),) = pending.group_rows
    assert (gid, key, revision) == (1, "loss", False) and g.record.sealed_through == 9
    assert np.array_equal(rows["step"], np.arange(10)) and np.array_equal(rows["count"], np.ones(10))


def test_a_running_rank_or_an_unknown_launcher_keeps_the_grace(tmp_path):
    """The grace holds for a rank still running (its launcher gone or not), and for a finished rank whose
    launcher this agent does not know (forwarded by a node agent, taken back after a restart); after the
    join grace nobody is waited for in any case."""
    cfg = _cfg(tmp_path)
    gone = (2**22 + 7, 1.0)  # a pid above any pid_max here: no such process
    assert process_started(gone[0]) is None
    g, run = _group("running", gone)
    assert g.awaits_joiners(T0 + 1, cfg)
    g, run = _group("finished", None)
    assert g.awaits_joiners(T0 + 1, cfg)
    assert not g.awaits_joiners(T0 + 30, cfg)
    g, run = _group("crashed", gone)
    assert not g.awaits_joiners(T0 + 1, cfg)
    run.record.state = "running"  # a rank resumed: the job is on again
    assert g.awaits_joiners(T0 + 2, cfg)
