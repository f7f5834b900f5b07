"""When ``log()`` outruns the writer: the switch between the op deque and the coalescer (client/coalesce.py).

The I/O thread drains the op deque at each turn; this module estimates what the backlog weighs and,
past ``max_queued_bytes``, points the run's push (``Run._push``) at the coalescer, which folds rows
into spans on the training thread; below a quarter of the bound again (after ``min_overload_s``) it
points it back at the deque. The coalescer does the folding; this decides when.

Called by the writer (client/transport.py) with its lock held.
"""

from __future__ import annotations

import logging
import sys
import time
import weakref
from collections.abc import Callable
from typing import Any

from client.assembler import Assembler
from client.coalesce import Coalescer
from client.counters import DeliveryCounters
from client.ops import CONTROL, OP_ARG, OP_KIND, OP_NAME, OP_SIZE
from client.settings import Settings

log = logging.getLogger("rankwise")
_OP_BASE_BYTES = 96  # one queued op besides its dict: four deque slots, the step int and the time float
_VALUE_BYTES = 32  # one value of a row (a float object, with allocator rounding)
_BUSY_CALLS = 256  # calls found queued at a turn above which the I/O thread looks again after 2 ms


class OverloadSwitch:
    """The backlog estimate and the push switch of one writer. See the module docstring."""

    min_overload_s = 0.25  # once entered, overload lasts at least this long (no switching back and forth)

    def __init__(
        self,
        settings: Settings,
        counters: DeliveryCounters,
        coalescer: Coalescer,
        assembler: Assembler,
        deque_push: Callable[[tuple], Any],
        run_name: Any,
    ):
        self.settings = settings
        self.counters = counters
        self.coalescer = coalescer
        self.assembler = assembler
        self._deque_push = deque_push  # the writer's ops.extend: the run's push outside overload
        self._run_name = run_name
        self._owner: Callable[[], Any] | None = None  # the run whose push we switch (a weak reference)
        self.op_bytes = float(_OP_BASE_BYTES + 256)  # estimated from the ops assembled (see estimate)
        self._since = 0.0
        self.busy = False  # calls come fast (or overload): the I/O thread looks again soon
        self._busy_until = 0.0
        self._warned = False

    def __repr__(self) -> str:
        state = "coalescing" if self.coalescer.active else ("busy" if self.busy else "idle")
        return f"<OverloadSwitch {state} op_bytes={self.op_bytes:.0f} overloads={self.counters.overloads}>"

    def bind(self, owner: Any) -> None:
        self._owner = weakref.ref(owner)

    def estimate(self, items: list) -> None:
        """Bytes one queued op takes, from the last row op of a drained chunk: its four deque slots, step
        and time objects, the dict and its values (an upper estimate: small ints and shared keys cost less)."""
        data = items[-1]
        if isinstance(data, dict):
            est = _OP_BASE_BYTES + sys.getsizeof(data) + _VALUE_BYTES * len(data)
            self.op_bytes += (est - self.op_bytes) * 0.25

    def check(self, queued: int, items: list | None, in_flight: int, closing: bool) -> None:
        """Past ``max_queued_bytes`` of backlog: the run's push becomes the coalescer's; below a quarter of
        it again (after ``min_overload_s``): back to the deque. Lock held (writer's).

        The backlog is what was logged and is held in memory for delivery: queued ops, and, while the agent
        answers, the frames waiting for it (sent or not): ``in_flight`` bytes, which the writer passes as 0
        during an outage. An agent that stores slower than the loop logs makes frames pile up as surely as
        a slow I/O thread makes ops pile up. While the agent does not answer (no ACK for retry_after_s)
        frames are not counted: they spill to disk beyond max_unacked_bytes, row for row, as before."""
        nbytes = int(queued * self.op_bytes)
        bound = self.settings.max_queued_bytes
        c = self.counters
        if nbytes > c.queued_peak_bytes:
            c.queued_peak_bytes = nbytes
        # look again soon (2 ms, not flush_interval_s) while calls come fast, in overload and for a second
        # after it: between two looks the loop can queue a poll interval's worth of calls (bound + slack)
        now = time.monotonic()
        self.busy = queued > _BUSY_CALLS or self.coalescer.active or now < self._busy_until
        nbytes += in_flight
        if not self.coalescer.active:
            if nbytes > bound and not closing:
                self.enter(queued, nbytes, items)
        elif nbytes < bound // 4 and now - self._since >= self.min_overload_s:
            self.leave()

    def enter(self, queued: int, nbytes: int, items: list | None = None) -> None:
        owner = self._owner() if self._owner is not None else None
        if owner is None or owner._push != self._deque_push:  # finished, a fork's first push, or not bound
            return
        coalescer = self.coalescer
        coalescer.learn_rules(self.assembler.raw_rules + _rate_rules(items))
        coalescer.start()
        owner._push = coalescer.push  # ops pushed before this (even through a stale reference) come first
        self._since = time.monotonic()
        self.counters.overloads += 1
        if not self._warned:
            self._warned = True
            log.warning(
                "rankwise: run %s: log() is called faster than the I/O thread can deliver (%d calls, ~%d MB "
                "queued, above max_queued_bytes = %d MB, RANKWISE_MAX_QUEUED_BYTES): consecutive rows are now "
                "coalesced into spans (count, last, mean, min, max per key, like the agent's rate limiter; "
                "the summary stays exact), counted in run.stats['coalesced_rows']",
                self._run_name,
                queued,
                nbytes >> 20,
                self.settings.max_queued_bytes >> 20,
            )

    def leave(self) -> None:
        """The coalescer's open span and open row go to the deque first (under its lock: a push in
        progress on the training thread finishes before, or finds it inactive and appends after)."""
        coalescer = self.coalescer
        coalescer.stop()
        self._busy_until = time.monotonic() + 1.0  # the loop likely goes on as fast: watch the backlog closely
        owner = self._owner() if self._owner is not None else None
        if owner is not None and owner._push == coalescer.push:
            owner._push = self._deque_push


def _rate_rules(items: list | None) -> list[tuple[str, bool]]:
    """The define_metric(name, rate_limit=...) ops among drained ``items`` (four per op), as the assembler
    records them (``Assembler.raw_rules``): (name or glob, kept row for row)."""
    if not items:
        return []
    kinds = items[OP_KIND::OP_SIZE]
    if CONTROL not in kinds:  # (one C-level scan: the usual case)
        return []
    return [
        (arg["name"], arg["rate_limit"] is False)
        for kind, name, arg in zip(kinds, items[OP_NAME::OP_SIZE], items[OP_ARG::OP_SIZE])
        if kind == CONTROL and name == "define" and isinstance(arg, dict) and "rate_limit" in arg
    ]
