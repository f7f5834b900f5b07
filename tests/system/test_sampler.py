"""The sampler part (agent/system/sampler.py) in a real agent core with an injected clock: its schedule
(``RANKWISE_SYSTEM_INTERVAL``, 0 = off, the first sample one interval in), which roles get it, ranks
whose processes vanish, CPU % of a stopped and of a busy process, and a failing sample that never raises."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from agent.config import AgentConfig, resolve
from agent.ingest import Ingest
from agent.plugged import plug
from agent.sinks.memory import MemorySink
from agent.store.memory import MemoryStore
from agent.system.proc import ProcTrees
from agent.system.sampler import SystemSampler
from client.errors import InvalidArgumentError
from support import frames
from support.probes import pid_gone, wait_for
from support.processes import child_env, spawn

SLEEPER = [sys.executable, "-c", "import time; time.sleep(300)"]
BUSY = [sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 300: pass"]


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _agent(tmp_path, interval: float, role: str = "single") -> tuple[Ingest, MemoryStore, Clock]:
    clock = Clock()
    cfg = AgentConfig(data_dir=tmp_path, runtime_dir=tmp_path, system_interval_s=interval)
    store = MemoryStore()
    ingest = Ingest(store, cfg, node="n1", sink=MemorySink(), clock=clock)
    plug(ingest, role)
    return ingest, store, clock


def _hello(ingest: Ingest, rank: int, pid: int, world: int = 2) -> int:
    ingest.handle(b"p%d" % rank, frames.hello(f"w{rank}", rank, world, "job", node="n1", pid=pid))
    return next(r.record.id for r in ingest.runs.values() if r.record.rank == rank)


def _sampler(ingest: Ingest) -> SystemSampler:
    return next(p for p in ingest.parts if isinstance(p, SystemSampler))


def test_schedule_and_roles(tmp_path):
    """Interval 2 s: nothing before 2 s on the agent's clock, one sample per interval after; each tick's rank
    and host rows share the tick's wall time; a commit stores them. Interval 0 samples nothing; a root samples
    the rank of its own machine, not one on another machine."""
    proc = spawn(SLEEPER, child_env())
    ingest, store, clock = _agent(tmp_path, 2.0)
    run_id = _hello(ingest, 0, proc.pid)
    for t, wall in ((101.0, 1.0), (101.9, 2.0), (102.0, 3.0), (103.0, 4.0), (104.1, 5.0), (106.0, 6.0)):
        clock.t = t
        ingest.tick(wall)
    ingest.commit(7.0)
    assert store.run_system(run_id)["_timestamp"].tolist() == [3.0, 5.0]
    gid = ingest.runs[run_id].group.record.id
    assert store.group_system(gid)["n1"]["_timestamp"].tolist() == [3.0, 5.0]
    assert ingest.status()["system"]["samples"] == 2 and ingest.status()["system"]["uss_every"] == 2

    off, off_store, off_clock = _agent(tmp_path, 0.0)
    off_id = _hello(off, 0, proc.pid)
    off_clock.t = 1e6
    off.tick(1.0)
    off.commit(2.0)
    assert off_store.run_system(off_id) == {} and _sampler(off).samples == 0

    # a root samples the ranks of its own machine that talk to it directly: a HELLO from its node (n1), not one
    # naming another machine (a rank it cannot see; ranks behind node agents arrive as records, sampled there)
    root, root_store, root_clock = _agent(tmp_path, 1.0, role="root")
    local_id = _hello(root, 0, proc.pid)
    root.handle(b"p1", frames.hello("w1", 1, 2, "job", node="n2", pid=proc.pid))
    root_clock.t = 101.0
    root.tick(8.0)
    root.commit(9.0)
    remote_id = next(r.record.id for r in root.runs.values() if r.record.rank == 1)
    assert root_store.run_system(local_id)["_timestamp"].tolist() == [8.0]
    assert root_store.run_system(remote_id) == {}
    assert list(root_store.group_system(root.runs[local_id].group.record.id)) == ["n1"]


def test_vanished_ranks_are_skipped(tmp_path):
    """A rank whose process exited gets no row and raises nothing; the live rank beside it is sampled."""
    live, dead = spawn(SLEEPER, child_env()), spawn(SLEEPER, child_env())
    ingest, store, _ = _agent(tmp_path, 1.0)
    live_id, dead_id = _hello(ingest, 0, live.pid), _hello(ingest, 1, dead.pid)
    dead.kill()
    dead.wait(30)
    wait_for(lambda: pid_gone(dead.pid), 30, "the killed rank gone")
    assert _sampler(ingest).sample(1.0, 1.0) == 1
    ingest.commit(2.0)
    assert store.run_system(live_id)["_timestamp"].tolist() == [1.0]
    assert store.run_system(dead_id) == {}


def test_cpu_percent_of_a_stopped_and_a_busy_process():
    """A stopped process used no CPU between two samples: exactly 0 %. A busy loop: more than 0 % once
    enough time passed between samples (its first sample has no figure)."""
    stopped, busy = spawn(SLEEPER, child_env()), spawn(BUSY, child_env())
    os.kill(stopped.pid, signal.SIGSTOP)
    try:
        trees = ProcTrees()
        first = trees.sample([stopped.pid, busy.pid], time.monotonic(), time.time())
        assert "proc.cpu_percent" not in first[stopped.pid] and "proc.cpu_percent" not in first[busy.pid]

        def busy_seen():
            rows = trees.sample([stopped.pid, busy.pid], time.monotonic(), time.time())
            assert rows[stopped.pid]["proc.cpu_percent"] == 0.0
            return rows[busy.pid]["proc.cpu_percent"] > 0

        wait_for(busy_seen, 60, "CPU time of the busy process", interval_s=0.2)
    finally:
        os.kill(stopped.pid, signal.SIGCONT)


def test_a_failing_sample_is_counted_not_raised(tmp_path, monkeypatch):
    """A bug inside a sample (here the host reading) never leaves tick(): counted as a failure in the status."""
    proc = spawn(SLEEPER, child_env())
    ingest, store, clock = _agent(tmp_path, 1.0)
    _hello(ingest, 0, proc.pid)
    sampler = _sampler(ingest)

    def broken(t: float) -> dict:
        raise RuntimeError("boom")

    monkeypatch.setattr(sampler.host, "sample", broken)
    clock.t = 1000.0
    ingest.tick(1.0)
    assert ingest.status()["system"]["failures"] == 1 and sampler.samples == 0
    assert "SystemSampler" in repr(sampler) and "ProcTrees" in repr(sampler.procs)


def test_setting():
    """RANKWISE_SYSTEM_INTERVAL: seconds, default 5, 0 turns it off; negative or not a number is refused."""
    assert resolve({}).system_interval_s == 5.0
    assert resolve({"RANKWISE_SYSTEM_INTERVAL": "0.5"}).system_interval_s == 0.5
    assert resolve({"RANKWISE_SYSTEM_INTERVAL": "0"}).system_interval_s == 0.0
    with pytest.raises(InvalidArgumentError, match="system_interval_s"):
        resolve({"RANKWISE_SYSTEM_INTERVAL": "-1"})
    with pytest.raises(InvalidArgumentError, match="RANKWISE_SYSTEM_INTERVAL"):
        resolve({"RANKWISE_SYSTEM_INTERVAL": "often"})
    with pytest.raises(ValueError, match="uss_every"):
        ProcTrees(uss_every=0)


def test_a_child_that_vanishes_mid_sample_is_skipped(monkeypatch):
    """A process of a rank's tree that is gone by the time it is read (here: a pid that names no process, as
    the process-table scan saw it) is skipped and counted; the rank's row is made of the others."""
    from agent.system import proc as proc_module

    rank = spawn(SLEEPER, child_env())
    gone = 1 << 30  # above any pid_max: names no process
    real = proc_module.children_map
    monkeypatch.setattr(proc_module, "children_map", lambda: {**real(), rank.pid: [gone]})
    trees = ProcTrees()
    rows = trees.sample([rank.pid], time.monotonic(), time.time())
    assert rows[rank.pid]["proc.children"] == 0.0 and rows[rank.pid]["proc.rss_bytes"] > 0
    assert trees.skipped == 1 and trees.trees[rank.pid] == [rank.pid, gone]
