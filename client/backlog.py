"""A writer's batches between the assembler and the agent's ACK: in memory up to a bound, spilled beyond it.

Every batch the assembler made waits here until the agent acknowledges it (client/link.py): first in
the ``outbox`` (not sent yet), then in ``unacked`` (sent, kept for a replay after a reconnect or an
agent restart). Both count toward ``max_unacked_bytes``; past it, newer batches wait in order in a local
file (client/spill.py) and come back once memory has room. When the disk refuses them too they wait in
memory behind it as long as memory allows; beyond that a batch is dropped, the one way data is lost
(cause ``spill_failed``, README Guarantees).

Owned by the writer's I/O thread; the assembler's side (``add``) and ``refill`` run under the writer's
lock. The training thread only reads (``rows``, ``empty``), through copies.
"""

from __future__ import annotations

import collections
import struct
import time

import zmq

from client import wire
from client.counters import DeliveryCounters
from client.settings import Settings
from client.spill import SpillFifo

_SPILL_HEAD = struct.Struct("<QI")  # seq, rows: what the writer needs back with a spilled frame


class Backlog:
    """Batches not yet acknowledged, in seq order: ``outbox`` (to send) and ``unacked`` (sent), then spilled."""

    def __init__(self, settings: Settings, writer_id: str, counters: DeliveryCounters, drops: dict[str, int]):
        self.settings = settings
        self.writer_id = writer_id
        self.counters = counters
        self.drops = drops  # the writer's: cause -> rows dropped
        self.outbox: collections.deque = collections.deque()  # (seq, frame, rows) not yet sent
        self.unacked: collections.OrderedDict = collections.OrderedDict()  # seq -> (frame, rows, sent_at)
        self.held_bytes = 0  # frames in the outbox and unacked (memory); beyond the bound they spill
        self.max_sent = 0  # highest seq ever handed to the socket
        self._spill: SpillFifo | None = None
        self._tail: collections.deque = collections.deque()  # frames/tombstones queued behind a refused spill
        self._tail_bytes = 0

    def __repr__(self) -> str:
        return (
            f"<Backlog outbox={len(self.outbox)} unacked={len(self.unacked)} held={self.held_bytes}B "
            f"spilled={self.spilled} max_sent={self.max_sent}>"
        )

    @property
    def spilled(self) -> int:
        return (len(self._spill) if self._spill is not None else 0) + len(self._tail)

    @property
    def in_flight(self) -> bool:
        """Batches in memory that wait for the agent (sent or not)."""
        return bool(self.unacked or self.outbox)

    def empty(self) -> bool:
        return not self.unacked and not self.outbox and not self.spilled

    def rows(self) -> int:
        """Rows held in memory, unacknowledged (spilled batches not counted). Safe from any thread."""
        return sum(r for _, r, _ in list(self.unacked.values())) + sum(r for _, _, r in list(self.outbox))

    # ------------------------------------------------------------ in (writer's lock held)

    def add(self, seq: int, frame: bytes, rows: int) -> None:
        """A new batch: to the outbox, or, past ``max_unacked_bytes`` (or behind spilled ones), to the spill."""
        over = self.held_bytes + len(frame) > self.settings.max_unacked_bytes
        if self.spilled or (over and (self.outbox or self.unacked)):
            self._spill_batch(seq, frame, rows)
        else:
            self.outbox.append((seq, frame, rows))
            self.held_bytes += len(frame)

    def _spill_batch(self, seq: int, frame: bytes, rows: int) -> None:
        """Past max_unacked_bytes: batches wait in a local file, in order. When the disk refuses them,
        they wait in memory behind it (``_tail``) as long as memory allows; beyond that a batch is
        dropped, the one way data is lost: it becomes a tombstone with the same seq and without its
        rows (its summary, open row and control ops stay), so the agent counts the rows (cause
        ``spill_failed``) and the sequence has no gap."""
        if not self._tail:
            if self._spill is None:
                self._spill = SpillFifo(self.settings.data_dir / "spill", self.writer_id)
            if self._spill.push(_SPILL_HEAD.pack(seq, rows) + frame):
                self.counters.spilled_batches += 1
                return
        if self.held_bytes + self._tail_bytes + len(frame) <= self.settings.max_unacked_bytes:
            self._tail.append((seq, frame, rows))
            self._tail_bytes += len(frame)
            return
        self.counters.dropped_rows += rows
        self.drops["spill_failed"] = self.drops.get("spill_failed", 0) + rows
        # only the rows go: the batch's open row ("pend"), summary and control ops (finish!) are kept
        _, body = wire.unpack(frame)
        body["rows"] = None
        body.pop("spans", None)
        body["ctl"] = (body.get("ctl") or []) + [["dropped", {"rows": rows, "cause": "spill_failed"}]]
        tomb = wire.pack(wire.BATCH, body)
        self._tail.append((seq, tomb, 0))
        self._tail_bytes += len(tomb)

    def refill(self) -> None:
        """Bring spilled batches back into the outbox once memory has room (half the bound)."""
        room = self.settings.max_unacked_bytes // 2
        while self.held_bytes < room:
            if self._spill is not None and len(self._spill):
                raw = self._spill.pop()
                if raw is None:
                    break
                seq, rows = _SPILL_HEAD.unpack_from(raw)
                frame = raw[_SPILL_HEAD.size :]
            elif self._tail:
                seq, frame, rows = self._tail.popleft()
                self._tail_bytes -= len(frame)
            else:
                break
            self.outbox.append((seq, frame, rows))
            self.held_bytes += len(frame)

    def close_spill(self) -> None:
        if self._spill is not None:
            self._spill.close()

    # ------------------------------------------------------------ out (I/O thread)

    def send(self, sock: zmq.Socket) -> None:
        """Hand the outbox to the socket, in order, as far as it takes them without blocking."""
        now = time.monotonic()
        outbox, counters = self.outbox, self.counters
        while outbox:
            seq, frame, rows = outbox[0]
            try:
                sock.send(frame, zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            outbox.popleft()
            self.unacked[seq] = (frame, rows, now)
            counters.batches_sent += 1
            if seq > self.max_sent:
                self.max_sent = seq
                counters.rows_sent += rows
            else:
                counters.rows_resent += rows

    def ack(self, seq: int) -> None:
        """The agent stored everything through ``seq``: forget those batches."""
        unacked = self.unacked
        while unacked:
            first = next(iter(unacked))
            if first > seq:
                break
            frame, _, _ = unacked.pop(first)
            self.held_bytes -= len(frame)

    def requeue(self, first: int, last: int) -> None:
        """Move unacknowledged batches ``first..last`` back to the front of the outbox."""
        resend = [(s, f, r) for s, (f, r, _) in self.unacked.items() if first <= s <= last]
        for s, _, _ in resend:
            del self.unacked[s]
        if resend:
            self.counters.resends += len(resend)
            self.outbox.extendleft(reversed(resend))

    def reject(self, seq: object) -> int | None:
        """Forget batch ``seq`` (the agent rejected it); its rows, or None when it is not held."""
        entry = self.unacked.pop(seq, None) if isinstance(seq, int) else None
        if entry is None:
            for i, (s, f, r) in enumerate(self.outbox):
                if s == seq:
                    del self.outbox[i]
                    entry = (f, r, 0.0)
                    break
        if entry is None:
            return None
        self.held_bytes -= len(entry[0])
        return entry[1]
