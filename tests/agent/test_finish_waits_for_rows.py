"""A done run's finish() returns when its group rows are stored (README "What is guaranteed"), also when its last
batch brought steps beyond a seal pass that was under way: the pass completes through the bound it started
with, and the ACK of the last batch waits for the next pass. Found by a loaded CI run of
tests/integration/test_rate_limit.py (1,004,224 group rows of 1,047,516 steps right after finish()). Driven in
process over the in-memory sink with an injected clock; seal passes cut to one key per turn."""

from __future__ import annotations

import os

import msgpack
import numpy as np

from agent.config import AgentConfig
from agent.ingest import Ingest
from agent.runs import PidWatch
from agent.sinks.memory import MemorySink
from agent.store import MemoryStore
from support import frames
from support.frames import T0

KEYS = ("a", "b", "c")


def turn(ingest: Ingest, now: float) -> list[tuple[str, int]]:
    """One loop turn after the drain: tick (sealing), then the commit; the (writer, seq) of the ACKs it sends."""
    ingest.tick(now)
    acks = [msgpack.unpackb(frame) for _, frame in ingest.commit(now)]
    return [(body["w"], body["s"]) for _, kind, body in acks if kind == "ack"]


def batch(seq: int, steps, finish: bool = False) -> bytes:
    cols = {k: np.asarray(steps, np.float64) * (i + 1) for i, k in enumerate(KEYS)}
    return frames.batch("w0", seq, steps, cols, ctl=[["finish", {"exit_code": 0}]] if finish else None)


def test_last_batch_beyond_a_seal_pass_holds_the_ack_until_its_rows_are_sealed(tmp_path, monkeypatch):
    """Steps 0–99 are in the window; a seal pass starts (one key a turn: monkeypatched slice size) through 98
    (the running rank's step 99 may still get values). The last batch (steps 100–149, finish) arrives mid-pass:
    when its ACK is given, the sink holds group rows of every key at every step 0–149, equal to the values."""
    import agent.groups

    monkeypatch.setattr(agent.groups, "SEAL_SLICE_BYTES", 1)
    sink = MemorySink()
    cfg = AgentConfig(data_dir=tmp_path / "d", runtime_dir=tmp_path / "r", rows_per_s=0.0)
    ingest = Ingest(MemoryStore(), cfg, node="n1", pids=PidWatch(lambda pid: 1.0), sink=sink, clock=lambda: 0.0)
    ingest.handle(b"p0", frames.hello("w0", 0, 1, name="rank-0", run_id="r0", pid=os.getpid()), T0)
    ingest.handle(b"p0", batch(1, range(100)), T0)
    assert turn(ingest, T0) == [("w0", 1)]
    gid = next(iter(ingest.groups))
    assert ingest.groups[gid].sealing is not None  # a pass under way: one key of three sealed
    ingest.handle(b"p0", batch(2, range(100, 150), finish=True), T0)
    for _ in range(20):
        if ("w0", 2) in turn(ingest, T0):
            break
    else:
        raise AssertionError("the last batch was never acknowledged")
    for i, key in enumerate(KEYS):
        chunks = [rows for rows, _ in sink.group_rows[(gid, key)]]
        steps = np.concatenate([c["step"] for c in chunks])
        mean = np.concatenate([c["mean"] for c in chunks])
        assert np.array_equal(np.sort(steps), np.arange(150)), key
        assert np.array_equal(mean[np.argsort(steps)], np.arange(150) * (i + 1.0)), key
