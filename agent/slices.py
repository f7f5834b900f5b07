"""Wide batches applied in slices of columns, one slice per loop turn (the reasons: agent/apply.py).

:class:`WideBatches` is the queue: a batch of more than ``SLICE_KEYS`` columns waits here, and so does
every later batch of its writer (a writer's batches apply in order). :meth:`WideBatches.work` applies
about ``SLICE_KEYS`` columns per call with the sink's :class:`agent.apply.Applier`; a batch whose last
slice is applied is accepted (acknowledged with the next commit), one that breaks something while
applied is rejected like a malformed one. The dispatcher (agent/ingest.py) provides both outcomes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from agent.apply import SLICE_KEYS, Applier, Applying

if TYPE_CHECKING:
    from agent.runs import WriterState
    from client import wire

Reply = tuple[bytes, bytes]


class _Work:
    """A queued batch and how many of its columns are applied."""

    __slots__ = ("ws", "b", "state", "done")

    def __init__(self, ws: WriterState, b: wire.Batch):
        self.ws, self.b = ws, b
        self.state: Applying | None = None
        self.done = 0

    def __repr__(self) -> str:
        return f"<_Work {self.ws.id[:8]} seq={self.b.seq} {self.done}/{len(self.b.columns)} columns>"


class WideBatches:
    def __init__(self) -> None:
        self.queue: deque[_Work] = deque()
        self.queued: dict[str, int] = {}  # writer id -> its batches in the queue

    def __repr__(self) -> str:
        return f"<WideBatches {len(self.queue)} queued of {len(self.queued)} writer(s)>"

    def __len__(self) -> int:
        return len(self.queue)

    def __iter__(self):
        return (w.b for w in self.queue)

    def clear(self) -> None:
        self.queue.clear()
        self.queued.clear()

    def take(self, ws: WriterState, b: wire.Batch) -> bool:
        """Queue ``b`` to be applied in slices over several loop turns (True), or let the caller apply it
        now (False). A batch is sliced when it has more than ``SLICE_KEYS`` columns; a batch of a writer
        that has queued work waits behind it."""
        if len(b.columns) <= SLICE_KEYS and not self.queued.get(ws.id):
            return False
        self.queue.append(_Work(ws, b))
        self.queued[ws.id] = self.queued.get(ws.id, 0) + 1
        return True

    def work(
        self,
        applier: Applier,
        now: float,
        budget: int | None,
        accepted: Callable[[WriterState, wire.Batch], None],
        rejected: Callable[[WriterState, wire.Batch, Exception], list[Reply]],
    ) -> list[Reply]:
        """Apply queued batches for about ``budget`` columns (None: all of them, at shutdown)."""
        done = 0
        replies: list[Reply] = []
        while self.queue and (budget is None or done < budget):
            w = self.queue[0]
            run = w.ws.run
            try:
                if w.state is None:
                    w.state = applier.head(run, w.b, now)
                left = len(w.b.columns) - w.done
                take = left if budget is None else min(budget - done, left)
                applier.columns(run, w.b, w.b.columns[w.done : w.done + take], w.state, now)
                w.done += take
                done += take
                if w.done < len(w.b.columns):
                    break
                applier.tail(run, w.b, w.state, now)
            except Exception as exc:  # as a batch applied at once: count, go on
                self._dequeue(w)
                applied = w.ws.applied  # its later batches may wait in the queue already
                replies += rejected(w.ws, w.b, exc)
                w.ws.applied = max(applied, w.ws.applied)
                continue
            self._dequeue(w)
            accepted(w.ws, w.b)
        return replies

    def _dequeue(self, w: _Work) -> None:
        self.queue.popleft()
        left = self.queued.pop(w.ws.id, 1) - 1
        if left:
            self.queued[w.ws.id] = left
