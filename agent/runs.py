"""The agent's view of runs and writers.

A *run* is one rank of one group (``rank-3`` of ``job-42``); it lives across
restarts of its process (elastic restarts resume it). A *writer* is one process
incarnation sending batches for a run (a forked child that logs is a second
writer of the same run). Sequence numbers, de-duplication and acks are per
writer; steps, summary and state are per run.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import psutil

from agent.ratelimit import RowBudget
from agent.store.base import RunRecord

if TYPE_CHECKING:
    from agent.groups import GroupState


class WriterState:
    __slots__ = ("id", "run", "applied", "stored", "peer", "pid", "fork")

    def __init__(self, writer_id: str, run: RunState, stored: int, peer: bytes, pid: int, fork: bool):
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
    __slots__ = ("record", "group", "writers", "last_seen", "budget", "_raw_cache", "via", "info", "launcher")

    def __init__(self, record: RunRecord, group: GroupState, now: float):
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
        # the parent of the run's process (pid, start time) as read at its HELLO, on this machine only: the
        # launcher (torchrun's agent, mpirun, slurmstepd) that could still start the ranks not heard of yet
        self.launcher: tuple[int, float] | None = None

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


_PROC = os.path.isfile("/proc/self/stat")


class PidWatch:
    """``pid -> alive?`` for processes on this machine, by pid *and* start time.

    A pid names a process only until it exits: the kernel hands it to a new
    process later (soon, on a busy node with a small ``pid_max``). The watch
    remembers when the process behind each registered pid started (read at
    HELLO from ``started``: :func:`process_started` unless a test injects its
    own) and reports a pid whose process started at another time as gone, so a
    rank that died is not kept "running" by a stranger that got its pid. Pids
    seen gone are forgotten; the table is swept of dead pids when it grows past
    ``sweep_at`` entries (finished runs' pids are never asked again).
    """

    def __init__(self, started: Callable[[int], float | None] | None = None, sweep_at: int = 100_000):
        self._source = process_started if started is None else started
        self._started: dict[int, float] = {}
        self.sweep_at = sweep_at

    def __repr__(self) -> str:
        return f"<PidWatch {len(self._started)} pids>"

    def register(self, pid: int) -> None:
        """``pid`` is ours from now on (a HELLO came from it): remember when its process started."""
        started = self._source(pid)
        if started is None:
            self._started.pop(pid, None)
            return
        self._started[pid] = started
        if len(self._started) > self.sweep_at:
            self._started = {p: t for p, t in self._started.items() if _same(self._source(p), t)}

    def __call__(self, pid: int) -> bool:
        started = self._source(pid)
        if started is None:
            self._started.pop(pid, None)
            return False
        # a pid never registered (a run taken back after an agent restart) is judged by existence alone
        return _same(self._started.setdefault(pid, started), started)


def _same(a: float | None, b: float) -> bool:
    # exact for /proc clock ticks; psutil's float seconds (other systems) get half a second of slack
    return a is not None and abs(a - b) < 0.5


def parent_of(pid: int) -> tuple[int, float] | None:
    """The parent of the live process ``pid`` as ``(ppid, start time)`` (:func:`process_started`'s
    clock); None when either is gone or unknown, or the parent is init (an orphan has no launcher)."""
    ppid = 0
    if _PROC:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])  # after "pid (comm) ": state, then ppid
        except (OSError, ValueError, IndexError):
            ppid = 0
    if not ppid:
        try:
            ppid = psutil.Process(pid).ppid()
        except (psutil.Error, OSError):
            return None
    if ppid <= 1:
        return None
    started = process_started(ppid)
    return None if started is None else (ppid, started)


def launcher_gone(launcher: tuple[int, float]) -> bool:
    """The parent recorded by :func:`parent_of` has exited (its pid is free or names another process)."""
    return not _same(process_started(launcher[0]), launcher[1])


def process_started(pid: int) -> float | None:
    """When the live, non-zombie process ``pid`` started; None if there is none.

    On Linux the kernel's own start time from ``/proc/PID/stat`` (clock ticks since boot: exact, and
    immune to clock steps, which move psutil's wall-clock ``create_time``); elsewhere psutil's."""
    if pid <= 0:
        return None
    stat = b""
    if _PROC:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except (FileNotFoundError, ProcessLookupError):
            return None
        except OSError:
            pass
    if stat:
        fields = stat[stat.rindex(b")") + 2 :].split()  # after "pid (comm) ": state is field 3, starttime 22
        return None if fields[0] in (b"Z", b"X") else float(fields[19])
    try:
        proc = psutil.Process(pid)
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
