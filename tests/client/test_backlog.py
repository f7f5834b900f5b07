"""The writer's backlog (client/backlog.py) alone, in-process: no socket, no agent, no I/O thread."""

from __future__ import annotations

from types import SimpleNamespace

from client import wire
from client.backlog import Backlog
from client.counters import DeliveryCounters


def _frame(seq: int, size: int = 100) -> bytes:
    """A batch frame of about ``size`` bytes (a finish op in its control, as a last batch carries)."""
    body = {"w": "w1", "s": seq, "rows": None, "pend": None, "sum": {"pad": "x" * size}, "ctl": [["finish", {}]]}
    return wire.pack(wire.BATCH, body)


def _backlog(tmp_path, bound: int) -> Backlog:
    settings = SimpleNamespace(max_unacked_bytes=bound, data_dir=tmp_path)
    return Backlog(settings, "w1", DeliveryCounters(), {})


class _Socket:
    """Takes every frame (a live connection with room)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, frame, flags=0, copy=True) -> None:
        self.sent.append(frame)


def test_batches_past_the_memory_bound_spill_and_come_back_in_order(tmp_path):
    """Within max_unacked_bytes batches wait in memory; beyond it, in the spill file; after ACKs free memory,
    refill brings them back, and the socket sees every seq once, in order."""
    b = _backlog(tmp_path, bound=1000)
    for seq in range(1, 11):
        b.add(seq, _frame(seq), rows=5)
    assert len(b.outbox) < 10 and b.spilled == 10 - len(b.outbox)
    assert b.counters.spilled_batches == b.spilled
    sock = _Socket()
    seen = []
    while not b.empty():
        b.send(sock)
        seen += [wire.unpack(f)[1]["s"] for f in sock.sent]
        sock.sent.clear()
        b.ack(b.max_sent)
        b.refill()
    assert seen == list(range(1, 11))
    assert b.counters.rows_sent == 50 and b.counters.batches_sent == 10 and b.held_bytes == 0
    b.close_spill()
    assert not list((tmp_path / "spill").glob("*.spill"))


def test_requeue_resends_unacknowledged_batches_first_and_counts_them(tmp_path):
    """After a WELCOME (or a gap) the unacknowledged batches in the range go back to the front of the
    outbox, in order; the ACK of a later seq forgets every batch through it."""
    b = _backlog(tmp_path, bound=1 << 20)
    sock = _Socket()
    for seq in (1, 2, 3):
        b.add(seq, _frame(seq), rows=2)
    b.send(sock)
    b.add(4, _frame(4), rows=2)
    b.requeue(2, 3)
    assert [s for s, _, _ in b.outbox] == [2, 3, 4] and list(b.unacked) == [1]
    assert b.counters.resends == 2
    b.send(sock)
    assert b.counters.rows_resent == 4 and b.counters.rows_sent == 8
    b.ack(3)
    assert list(b.unacked) == [4] and b.rows() == 2


def test_reject_forgets_a_batch_sent_or_not(tmp_path):
    """A batch the agent rejected is forgotten wherever it waits; its rows are returned for the drop count."""
    b = _backlog(tmp_path, bound=1 << 20)
    b.add(1, _frame(1), rows=3)
    b.add(2, _frame(2), rows=4)
    b.send(_Socket())
    b.add(3, _frame(3), rows=5)
    assert b.reject(1) == 3 and b.reject(3) == 5 and b.reject(9) is None and b.reject("x") is None
    assert list(b.unacked) == [2] and not b.outbox and b.held_bytes == len(_frame(2))


def test_a_refused_spill_beyond_memory_becomes_a_tombstone_with_the_same_seq(tmp_path):
    """When the disk refuses the spill and memory is full, a batch keeps its seq but loses its rows (counted
    as spill_failed); its control ops (finish) still go."""
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    settings = SimpleNamespace(max_unacked_bytes=300, data_dir=blocked)
    b = Backlog(settings, "w1", DeliveryCounters(), {})
    b.add(1, _frame(1), rows=1)
    b.add(2, _frame(2, size=400), rows=7)
    assert b.drops == {"spill_failed": 7} and b.counters.dropped_rows == 7 and b.spilled == 1
    b.send(_Socket())
    b.ack(1)
    b.refill()
    seq, tomb, rows = b.outbox[0]
    body = wire.unpack(tomb)[1]
    assert (seq, rows, body["s"], body["rows"]) == (2, 0, 2, None)
    assert ["finish", {}] in body["ctl"] and ["dropped", {"rows": 7, "cause": "spill_failed"}] in body["ctl"]
