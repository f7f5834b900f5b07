"""The agent's view of runs and writers.

A *run* is one rank of one group (``rank-3`` of ``job-42``); it lives across
restarts of its process (elastic restarts resume it). A *writer* is one process
incarnation sending batches for a run (a forked child that logs is a second
writer of the same run). Sequence numbers, de-duplication and acks are per
writer; steps, summary and state are per run.
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING

import psutil

from agent.ratelimit import RowBudget
from agent.store.base import RunRecord

if TYPE_CHECKING:
    from agent.groups import GroupState


class WriterState:
    __slots__ = ("id", "run", "applied", "stored", "peer", "pid", "fork")

    def __init__(self, writer_id: str, run: "RunState", stored: int, peer: bytes, pid: int, fork: bool):
        self.id = writer_id
        self.run = run
        self.applied = stored  # last seq folded into memory
        self.stored = stored  # last seq committed to the store (acknowledged)
        self.peer = peer
        self.pid = pid
        self.fork = fork

    def __repr__(self) -> str:
        return f"<Writer {self.id[:8]} run={self.run.record.name} applied={self.applied} stored={self.stored}>"


class RunState:
    __slots__ = ("record", "group", "writers", "last_seen", "budget", "_raw_cache", "via", "info")

    def __init__(self, record: RunRecord, group: "GroupState", now: float):
        self.record = record
        self.group = group
        self.writers: set[str] = set()
        self.last_seen = now
        self.budget: RowBudget | None = None  # created with the first batch (rate from the run or the agent)
        self._raw_cache: dict[str, bool] = {}
        # at a root: the node agent that forwards this run (None: a process talking to this agent itself);
        # kept in the run's meta so that a restarted root knows it too
        via = record.meta.get("via")
        self.via: str | None = via if isinstance(via, str) and via else None
        self.info: dict | None = None  # at a node agent: the run as its HELLO described it (sent upstream)

    def allow(self, n: int, now: float, default_rows_per_s: float) -> int:
        """How many stored rows ``n`` committed rows may become under the run's budget (n: no limit)."""
        if self.budget is None:
            rate = self.record.meta.get("rows_per_s")
            rate = default_rows_per_s if not isinstance(rate, (int, float)) or isinstance(rate, bool) else rate
            if not rate or rate <= 0 or rate == float("inf"):
                return n
            self.budget = RowBudget(float(rate), now=now)
        return self.budget.allow(n, now)

    def keeps_raw(self, key: str) -> bool:
        """``define_metric(key, rate_limit=False)`` (a name or a glob): never coalesce this key."""
        raw = self._raw_cache.get(key)
        if raw is None:
            raw = False
            for name, spec in self.record.meta.get("metrics", {}).items():
                if isinstance(spec, dict) and "rate_limit" in spec and (name == key or fnmatch.fnmatchcase(key, name)):
                    raw = spec["rate_limit"] is False  # later definitions win
            self._raw_cache[key] = raw
        return raw

    def forget_metric_rules(self) -> None:
        self._raw_cache.clear()

    @property
    def running(self) -> bool:
        return self.record.state == "running"

    @property
    def watermark(self) -> int:
        """The last committed step (-1 before the first commit)."""
        return self.record.step - 1

    def __repr__(self) -> str:
        r = self.record
        return f"<RunState {r.name} rank={r.rank} {r.state} step={r.step} rows={r.rows} writers={len(self.writers)}>"


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live (non-zombie) process on this machine."""
    if pid <= 0:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
