"""The writer's link to its agent (client/link.py) in-process: a fake socket, no agent, no I/O thread."""

from __future__ import annotations

from types import SimpleNamespace

import zmq

from client import wire
from client.backlog import Backlog
from client.counters import DeliveryCounters
from client.link import AgentLink

RUN = {"name": "r", "project": "p", "group": "g"}


class _Socket:
    """Takes every frame; hands out the frames queued in ``inbox``."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.inbox: list[bytes] = []

    def send(self, frame, flags=0, copy=True) -> None:
        self.sent.append(frame)

    def recv(self, flags=0) -> bytes:
        if not self.inbox:
            raise zmq.Again()
        return self.inbox.pop(0)


def _link(tmp_path):
    settings = SimpleNamespace(max_unacked_bytes=1 << 20, data_dir=tmp_path, retry_after_s=60.0)
    counters = DeliveryCounters()
    backlog = Backlog(settings, "w1", counters, {})
    drops: list = []
    link = AgentLink(settings, "w1", RUN, None, backlog, counters, lambda *a: drops.append(a))
    return link, backlog, drops


def _batch(backlog: Backlog, sock: _Socket, *seqs: int) -> None:
    for seq in seqs:
        backlog.add(seq, wire.pack(wire.BATCH, {"w": "w1", "s": seq}), 1)
    backlog.send(sock)


def _answer(link: AgentLink, sock: _Socket, kind: str, **body) -> None:
    sock.inbox.append(wire.pack(kind, {"w": "w1", **body}))
    link.receive(sock)


def test_only_the_latest_hellos_welcome_resends_and_only_up_to_its_mark(tmp_path):
    """A WELCOME answering an older HELLO changes nothing; the latest one's resends the unacknowledged
    batches from its next_seq through the highest seq sent before that HELLO (later ones travel behind it),
    and a new agent instance counts as a restart."""
    link, backlog, _ = _link(tmp_path)
    sock = _Socket()
    link.send_hello(sock)
    _answer(link, sock, wire.WELCOME, h=1, next_seq=1, agent="a")
    assert link.ready and link.welcomed.is_set() and link.counters.resends == 0
    _batch(backlog, sock, 1, 2, 3)
    link.send_hello(sock)  # HELLO #2, sent after seq 3
    _batch(backlog, sock, 4)
    _answer(link, sock, wire.WELCOME, h=1, next_seq=1, agent="a")  # stale: ignored
    assert not backlog.outbox and not link.ready
    _answer(link, sock, wire.WELCOME, h=2, next_seq=2, agent="b")
    assert [s for s, _, _ in backlog.outbox] == [2, 3] and list(backlog.unacked) == [1, 4]
    assert link.ready and link.counters.agent_restarts == 1 and link.counters.resends == 2


def test_acks_gaps_and_rejections(tmp_path):
    """An ACK forgets batches through its seq; a gap NACK resends once per retry period however many
    batches report it; a rejected batch is forgotten and its rows reported as dropped."""
    link, backlog, drops = _link(tmp_path)
    sock = _Socket()
    link.send_hello(sock)
    _answer(link, sock, wire.WELCOME, h=1, next_seq=1, agent="a")
    _batch(backlog, sock, 1, 2, 3, 4)
    _answer(link, sock, wire.ACK, s=1)
    assert link.counters.acked_seq == 1 and list(backlog.unacked) == [2, 3, 4]
    _answer(link, sock, wire.NACK, expect=2)
    _answer(link, sock, wire.NACK, expect=2)
    assert [s for s, _, _ in backlog.outbox] == [2, 3, 4] and link.counters.resends == 3
    _answer(link, sock, wire.NACK, reason="rejected", s=3, cause="bad")
    assert [s for s, _, _ in backlog.outbox] == [2, 4] and link.counters.rejected_batches == 1
    assert drops == [("rejected", 1, "the agent rejected batch 3: bad")]
    _answer(link, sock, wire.REFUSE, error="taken")
    assert link.refusal == "taken" and link.counters.refused == 1
    assert "refused" in repr(link) and "outbox=2" in repr(backlog) and "refused=1" in repr(link.counters)
