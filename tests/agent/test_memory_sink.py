"""The single agent's core driven in-process with the in-memory sink (agent/sinks/memory.py) and an injected
clock: no store file, no socket, no sleep. What a commit hands to the sink is read from plain structures."""

from __future__ import annotations

import os

import numpy as np

from agent.config import AgentConfig
from agent.ingest import Ingest
from agent.runs import PidWatch
from agent.sinks.memory import MemorySink
from agent.store import MemoryStore
from support import frames
from support.frames import T0


class Clock:
    """Monotonic time a test moves by hand."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def hello(writer: str, name: str, rank: int, world: int) -> bytes:
    return frames.hello(writer, rank, world, name=name, run_id=name, pid=os.getpid() + rank)


def batch(writer: str, seq: int, steps, values) -> bytes:
    return frames.batch(writer, seq, steps, {"loss": values})


def make(tmp_path, **cfg) -> tuple[Ingest, MemorySink, Clock]:
    clock = Clock()
    sink = MemorySink()
    config = AgentConfig(data_dir=tmp_path / "d", runtime_dir=tmp_path / "r", rows_per_s=0.0, **cfg)
    ingest = Ingest(MemoryStore(), config, node="n1", pids=PidWatch(lambda pid: 1.0), sink=sink, clock=clock)
    return ingest, sink, clock


def test_two_ranks_seal_into_group_rows_equal_to_numpy(tmp_path):
    """Two ranks log 5 steps each; one tick seals them: the group row the sink received is numpy's mean of the
    two ranks, and both writers are acknowledged by the commit."""
    ingest, sink, _ = make(tmp_path)
    a, b = np.arange(5.0), np.arange(5.0) * 3
    for rank, values in enumerate((a, b)):
        ingest.handle(b"p%d" % rank, hello(f"w{rank}", f"rank-{rank}", rank, 2), T0)
        ingest.handle(b"p%d" % rank, batch(f"w{rank}", 1, range(5), values), T0)
    ingest.tick(T0)
    acks = ingest.commit(T0)
    assert sorted(sink.acks) == [("w0", 1), ("w1", 1)] and len(acks) == 2
    gid = next(iter(ingest.groups))
    ((rows, revision),) = sink.group_rows[(gid, "loss")]
    assert not revision and np.array_equal(rows["step"][:4], np.arange(4))
    assert np.allclose(rows["mean"][:4], ((a + b) / 2)[:4])


def test_a_failed_commit_backs_off_on_the_injected_clock(tmp_path):
    """A sink that refuses a write keeps everything for the next try, which waits on the agent's clock (no
    sleep): not due at once, due after the back-off, and then the commit goes through."""
    ingest, sink, clock = make(tmp_path)
    ingest.handle(b"p", hello("w0", "rank-0", 0, 1), T0)
    ingest.handle(b"p", batch("w0", 1, [0, 1], [1.0, 2.0]), T0)
    write = sink.write
    sink.write = lambda nc, now: False  # a refused write (a full spool does this)
    assert ingest.commit(T0) == [] and not ingest.commit_due()
    sink.write = write
    clock.t += 1.0
    assert ingest.commit_due() and ingest.commit(T0)
    assert sink.acks == [("w0", 1)] and ingest.commits.backoff.failures == 0
