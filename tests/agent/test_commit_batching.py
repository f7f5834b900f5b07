"""Stores that want few large inserts (``Store.batch_points`` / ``Store.batch_wait_s``, set by the ClickHouse
store) get them: the agent holds the next commit until it is full, old enough, ends a run, or the
uncommitted-bytes budget forces it; nothing is acknowledged before it is written, nothing is lost. Driven
in process over the in-memory sink with an injected clock."""

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


class BatchingStore(MemoryStore):
    """The in-memory store asking for batches of 300 points (values of every key, ``_timestamp`` and
    ``_runtime`` included: 3 a row here) or 1 s, as an engine like ClickHouse does."""

    batch_points = 300
    batch_wait_s = 1.0


def make(tmp_path, store=None, **cfg) -> tuple[Ingest, MemorySink, Clock]:
    clock = Clock()
    sink = MemorySink()
    config = AgentConfig(data_dir=tmp_path / "d", runtime_dir=tmp_path / "r", rows_per_s=0.0, **cfg)
    store = BatchingStore() if store is None else store
    ingest = Ingest(store, config, node="n1", pids=PidWatch(lambda pid: 1.0), sink=sink, clock=clock)
    return ingest, sink, clock


def start(ingest: Ingest, ranks: int = 2) -> None:
    for rank in range(ranks):
        hello = frames.hello(f"w{rank}", rank, ranks, name=f"rank-{rank}", run_id=f"r{rank}", pid=os.getpid() + rank)
        ingest.handle(b"p%d" % rank, hello, T0)
    ingest.commit(T0, force=True)  # the registrations


def send(ingest: Ingest, rank: int, seq: int, steps, **ctl) -> None:
    values = np.arange(len(steps), dtype=np.float64) + rank
    frame = frames.batch(f"w{rank}", seq, steps, {"loss": values}, ctl=[["finish", ctl]] if ctl else None)
    ingest.handle(b"p%d" % rank, frame, T0)


def stored_points(sink: MemorySink) -> int:
    """Per-rank ``loss`` values the sink has been given."""
    return sum(len(steps) for (_, key), chunks in sink.rows.items() if key == "loss" for steps, _, _ in chunks)


def test_a_batching_store_gets_one_commit_per_second_not_one_per_turn(tmp_path):
    """Ten loop turns of 2 small batches within 0.9 s write nothing and acknowledge nothing; at 1.0 s one
    commit writes all 40 points and acknowledges each writer's last batch."""
    ingest, sink, clock = make(tmp_path)
    start(ingest)
    commits = sink.commits
    for turn in range(10):
        clock.t = turn * 0.1
        for rank in range(2):
            send(ingest, rank, turn + 1, [2 * turn, 2 * turn + 1])
        assert ingest.commit(T0) == [] and not ingest.commit_due()
    assert sink.commits == commits and stored_points(sink) == 0
    clock.t = 1.0
    assert ingest.commit_due()
    acks = ingest.commit(T0)
    assert sink.commits == commits + 1 and stored_points(sink) == 40
    assert sorted(sink.acks)[-2:] == [("w0", 10), ("w1", 10)] and len(acks) == 2


def test_a_full_batch_is_written_before_its_time(tmp_path):
    """At 300 points (100 rows of one key) the batch goes at once, whatever the clock says."""
    ingest, sink, clock = make(tmp_path)
    start(ingest)
    send(ingest, 0, 1, list(range(60)))
    assert not ingest.commit_due()
    send(ingest, 1, 1, list(range(60)))
    assert ingest.commit_due() and clock.t == 0.0
    ingest.commit(T0)
    assert stored_points(sink) == 120


def test_a_finishing_run_is_committed_at_once(tmp_path):
    """A batch that finishes its run (the client's finish() waits for its ACK) is written on the same turn."""
    ingest, sink, _ = make(tmp_path)
    start(ingest)
    send(ingest, 0, 1, [0, 1, 2])
    assert not ingest.commit_due()
    send(ingest, 1, 1, [0, 1, 2], exit_code=0)
    assert ingest.commit_due()
    acks = ingest.commit(T0)
    assert stored_points(sink) == 6 and ("w1", 1) in sink.acks and acks


def test_a_store_without_batching_commits_every_turn(tmp_path):
    """The default (SQLite, memory): whatever waits is due on the next turn."""
    ingest, sink, _ = make(tmp_path, store=MemoryStore())
    start(ingest)
    send(ingest, 0, 1, [0])
    assert ingest.commit_due()
    ingest.commit(T0)
    assert stored_points(sink) == 1
