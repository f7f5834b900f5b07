"""A batch the agent cannot use is answered, not ignored (issue 9, finding 3): when its writer and seq can
be read, the agent replies NACK "rejected" with the seq and the cause, takes the seq as consumed
(acknowledged at the next commit, so the writer's later batches are not gaps) and counts its rows as
dropped by cause "rejected". Frames whose writer or seq cannot be read stay unanswered, as before."""

from __future__ import annotations

import msgpack
import numpy as np

from client import wire


def _hello(writer: str) -> bytes:
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
        "started": 1.0,
    }
    return wire.pack(wire.HELLO, {"w": writer, "pid": 1, "run": run, "h": 1})


def _batch(writer: str, seq: int, step: int, n: int = 1, column: bytes | None = None) -> bytes:
    steps = np.arange(step, step + n, dtype="<i8").tobytes()
    t = np.full(n, 1.0).tobytes()
    col = np.arange(n, dtype="<f8").tobytes() if column is None else column
    rows = [n, steps, t, t, None, [[["x"], None, [["f8", col]]]]]
    return wire.pack(wire.BATCH, {"w": writer, "s": seq, "rows": rows, "pend": None, "sum": None, "ctl": None})


def _replies(out: list) -> list[tuple[str, dict]]:
    return [wire.unpack(frame) for _, frame in out]


def test_invalid_batch_is_nacked_rejected_and_its_seq_consumed(tmp_path):
    """seq 1 fine; seq 2 has a column of the wrong length (3 rows, 2 values); seq 3 a step at 2**62: both
    are answered NACK rejected naming seq and cause, their 3 + 1 rows count as dropped; seq 4 is applied
    (no gap), the commit acknowledges through 4, a resent seq 2 is a duplicate (ACK), and the run's
    stored rows are those of seqs 1 and 4 only."""
    from agent.config import AgentConfig
    from agent.ingest import Ingest
    from agent.store import MemoryStore

    ing = Ingest(MemoryStore(), AgentConfig(data_dir=tmp_path / "d", runtime_dir=tmp_path / "r"), node="n1")
    kinds = [k for k, _ in _replies(ing.handle(b"peer", _hello("w1")))]
    assert kinds == [wire.WELCOME]
    assert ing.handle(b"peer", _batch("w1", 1, 0)) == []
    bad_column = _replies(ing.handle(b"peer", _batch("w1", 2, 1, n=3, column=np.zeros(2).tobytes())))
    assert len(bad_column) == 1 and bad_column[0][0] == wire.NACK
    body = bad_column[0][1]
    assert (body["w"], body["reason"], body["s"]) == ("w1", "rejected", 2) and "column" in body["cause"]
    big_step = _replies(ing.handle(b"peer", _batch("w1", 3, 1 << 62)))
    assert [(k, b["reason"], b["s"]) for k, b in big_step] == [(wire.NACK, "rejected", 3)]
    assert ing.handle(b"peer", _batch("w1", 4, 4)) == []  # not a gap: 2 and 3 were consumed
    acks = _replies(ing.commit())
    assert acks == [(wire.ACK, {"w": "w1", "s": 4})]
    assert _replies(ing.handle(b"peer", _batch("w1", 2, 1))) == [(wire.ACK, {"w": "w1", "s": 4})]
    assert ing.counters.snapshot()["drops"] == {"rejected": 4}
    assert ing.store.drops() == {"rejected": 4}
    run = next(iter(ing.runs.values()))
    assert run.record.rows == 2 and run.record.meta["drops"] == {"rejected": 4}


def test_unreadable_batches_stay_unanswered(tmp_path):
    """A batch without a readable writer or seq, from an unknown writer, or far ahead of the writer's
    sequence is counted as malformed and gets no reply (nothing can be consumed safely)."""
    from agent.config import AgentConfig
    from agent.ingest import Ingest
    from agent.store import MemoryStore

    ing = Ingest(MemoryStore(), AgentConfig(data_dir=tmp_path / "d", runtime_dir=tmp_path / "r"), node="n1")
    ing.handle(b"peer", _hello("w1"))
    bad = np.zeros(2).tobytes()
    no_seq = msgpack.packb([wire.VERSION, wire.BATCH, {"w": "w1", "rows": [1]}], use_bin_type=True)
    assert ing.handle(b"peer", no_seq) == []
    assert ing.handle(b"peer", _batch("nobody", 1, 0, n=3, column=bad)) == []
    assert ing.handle(b"peer", _batch("w1", 5, 0, n=3, column=bad)) == []
    assert sum(ing.counters.malformed.values()) == 3 and ing.counters.snapshot()["drops"] == {}
    assert ing.handle(b"peer", _batch("w1", 1, 0)) == []  # the writer's sequence is untouched
