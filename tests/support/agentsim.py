"""The single-node agent in one process: its seal, budget and coalescing policy specified in milliseconds.

The multi-node simulator (tests/support/mnsim.py) drives node agents and a root; this drives the
agent a training job on one machine talks to: the real :class:`agent.ingest.Ingest` with the
in-memory sink (agent/sinks/memory.py), fed the frames a real client sends and run turn by turn as the agent's loop runs it, with time
and processes under the spec's control. Nothing here opens a socket, starts a process or sleeps.

* :class:`SimRank` is a rank's writer: its rows go through the client's own
  :class:`client.assembler.Assembler` (batches, pending row, summary, control ops, spans the client
  coalesced under overload: client/coalesce.py), its HELLO is the one client/link.py sends.
  Frames wait in the sim's inbox, as in the agent's socket, until a loop turn reads them.
* :meth:`AgentSim.turn` is one turn of the agent's loop (agent/loop.py): read frames
  until ``drain_full`` (none while the open window is over its budget), apply a slice of wide
  batches, ``tick`` (liveness, sealing), ``commit``; every reply goes back to its rank.
* Time is a :class:`SimClock` that moves only by :meth:`AgentSim.at`: the wall time ``now`` is passed
  to ``handle``/``work``/``tick``/``commit``; the monotonic time that Ingest reads itself (liveness
  interval, commit backoff, idle) comes from the same clock (see :func:`build_agent`).
* Processes are a :class:`SimPids` table: a rank's pid is alive until the spec kills it, and so is
  the launcher a rank may be given (the parent whose exit ends the job, agent/groups.py ``job_over``).
* Readers return what the store holds: per-run history and spans, group rows (latest revision per
  step, and every chunk with its revision flag), run and group records; acknowledgements per rank.

Specs check group rows against numpy over the raw values the ranks sent (tests/support/grouprows.py).
"""

from __future__ import annotations

import errno
import time as _time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import agent.groups
import agent.registry
from agent.config import AgentConfig
from agent.errors import StoreError
from agent.ingest import Ingest
from agent.plugged import plug
from agent.runs import PidWatch
from agent.sinks.memory import MemorySink
from agent.store.base import GroupRecord, RunRecord
from agent.store.memory import MemoryStore
from client import wire
from client.assembler import Assembler
from client.coalesce import fold
from client.ops import COMMIT, CONTROL, LATE, MERGE, SPAN

T0 = 1_000_000.0  # wall time of the sim's start (epoch seconds)
MONO0 = 5_000.0  # monotonic time then
NODE = "simnode"  # the machine's name: ranks that report it are local (their pids are checked)
FIRST_PID = 5_000_000  # above any pid_max (2**22): no real process can answer for a sim pid


class SimClock:
    """Wall and monotonic time that move together, and only when the spec says so: ``time()`` is the ``now``
    the harness passes to the agent, ``monotonic`` is the agent's injected clock (``Ingest(clock=)``)."""

    def __init__(self) -> None:
        self.now = T0
        self.mono = MONO0

    def __repr__(self) -> str:
        return f"<SimClock t={self.now - T0:+.3f}s>"

    def at(self, t: float) -> None:
        """Move to ``t`` seconds after the start (never back)."""
        if T0 + t < self.now:
            raise ValueError(f"at({t}): the clock is at {self.now - T0} s already and never goes back")
        self.mono += T0 + t - self.now
        self.now = T0 + t

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    perf_counter = staticmethod(_time.perf_counter)  # durations for counters only (commit_us)


class SimPids:
    """Processes of the machine: pid -> start time while alive. Ranks and launchers are spawned alive and
    die by :meth:`kill`. Callable as :class:`agent.runs.PidWatch`'s ``started`` source."""

    def __init__(self) -> None:
        self.started: dict[int, float] = {}
        self.parents: dict[int, int] = {}  # rank pid -> launcher pid
        self._next = FIRST_PID

    def __repr__(self) -> str:
        return f"<SimPids alive={sorted(self.started)}>"

    def spawn(self, parent: int | None = None) -> int:
        pid = self._next
        self._next += 1
        self.started[pid] = float(pid)  # any start time; a pid is never reused here
        if parent is not None:
            self.parents[pid] = parent
        return pid

    def kill(self, pid: int) -> None:
        self.started.pop(pid, None)

    def __call__(self, pid: int) -> float | None:
        return self.started.get(pid)

    def parent_of(self, pid: int) -> tuple[int, float] | None:
        """As agent/runs.py ``parent_of``: the live launcher of a live rank, with its start time."""
        parent = self.parents.get(pid)
        if parent is None or pid not in self.started or parent not in self.started:
            return None
        return parent, self.started[parent]

    def launcher_gone(self, launcher: tuple[int, float]) -> bool:
        return self.started.get(launcher[0]) != launcher[1]


class SimStore(MemoryStore):
    """The in-memory store, whose commits fail while ``fail`` holds an error (a full disk, say)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail: BaseException | None = None

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]} fail={self.fail!r}>"

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        if self.fail is not None:
            raise self.fail
        with super().transaction() as txn:
            yield txn


def build_agent(
    cfg: AgentConfig,
    clock: SimClock,
    pids: SimPids,
    patch: Any,
    store: SimStore | None = None,
    role: str | None = None,
    spy: Any = None,
) -> tuple[Ingest, SimStore]:
    """The agent core of a single node, as agent/roles.py builds it (media stored inline), with the in-memory
    sink (agent/sinks/memory.py) over an in-memory store (a new one, or ``store`` when the agent restarts):
    ``(ingest, store)``. The ONE place where the harness constructs the agent.

    Time: the wall time is passed as ``now`` to every call (the sim's clock); the monotonic parts (liveness
    interval, commit backoff, idleness, lookups) read Ingest's injected ``clock``. Processes: pids are
    judged by ``pids`` through :class:`agent.runs.PidWatch` (the agent's own watch, with an injected source of
    start times); the launcher of a rank is read at HELLO by ``parent_of`` (agent/registry.py) and judged by
    ``launcher_gone`` (agent/groups.py): both read /proc, so ``patch`` (pytest's ``monkeypatch``, undone when
    the test ends) points them at ``pids``. ``role``: the parts agent/plugged.py plugs for that role (the
    detectors for "single"), ``spy`` the hang detector's stack dumper then (agent/alerts/detectors/pyspy.py
    ``Spy``; a spec's fake). Specs see the agent only through :class:`AgentSim`."""
    patch.setattr(agent.registry, "parent_of", pids.parent_of)
    patch.setattr(agent.groups, "launcher_gone", pids.launcher_gone)
    store = SimStore() if store is None else store
    ingest = Ingest(store, cfg, node=NODE, pids=PidWatch(started=pids), sink=MemorySink(), clock=clock.monotonic)
    if role is not None:
        plug(ingest, role)
        for part in ingest.parts:
            if spy is not None and hasattr(part, "spy"):
                part.spy = spy
    return ingest, store


class SimRank:
    """One rank's writer: ops into the client's assembler, frames into the sim's inbox, replies back."""

    def __init__(self, sim: AgentSim, rank: int, world: int, group: str, pid: int):
        self.sim, self.rank, self.world, self.group, self.pid = sim, rank, world, group, pid
        self.writer = f"{group}-w{rank}"
        self.peer = self.writer.encode()
        self.asm = Assembler(self.writer, start_wall=sim.clock.now)
        self.unacked: dict[int, bytes] = {}  # seq -> frame, until an ACK covers it (the client's outbox)
        self.acked = 0  # highest seq acknowledged
        self.acks: list[int] = []  # the seq of every ACK received, in order
        self.welcome: dict | None = None
        self.nacks: list[dict] = []

    def __repr__(self) -> str:
        unacked = sorted(self.unacked)
        return f"<SimRank {self.group}/{self.rank} next_seq={self.asm.next_seq} acked={self.acked} unacked={unacked}>"

    def hello(self, reconnect: bool = False) -> None:
        run = {
            "project": "sim",
            "group": self.group,
            "name": f"rank-{self.rank}",
            "rank": self.rank,
            "world_size": self.world,
            "local_rank": self.rank,
            "node": NODE,
            "launcher": "none",
            "resume": "allow",
            "started": self.sim.clock.now,
            "run_id": self.writer,
        }
        body = {"w": self.writer, "pid": self.pid, "run": run, "re": reconnect, "h": 1}
        self.sim.inbox.append((self.peer, wire.pack(wire.HELLO, body)))

    def _t(self) -> float:
        """An op's perf_counter() time such that the assembler's wall time for it is the sim's now."""
        return self.sim.clock.now - (_time.time() - _time.perf_counter())

    def log(self, steps: Any, **columns: Any) -> None:
        """``log({key: value, ...})`` once per step: committed rows (values: one per step, or a scalar)."""
        steps = np.atleast_1d(steps)
        values = {k: np.broadcast_to(np.asarray(v, np.float64), steps.shape) for k, v in columns.items()}
        t = self._t()
        self.asm.feed((COMMIT, int(s), t, {k: float(v[i]) for k, v in values.items()}) for i, s in enumerate(steps))

    def pend(self, step: int, **values: float) -> None:
        """``log(values, commit=False)`` at ``step``: the pending row, sent uncommitted with the next batch."""
        self.asm.feed([(MERGE, step, self._t(), dict(values))])

    def late(self, step: int, **values: float) -> None:
        """``log(values, step=step)`` below the current step: a late update of that row."""
        self.asm.feed([(LATE, step, self._t(), dict(values))])

    def spans(self, steps: Any, rows_per_span: int, raw: tuple[str, ...] = (), **columns: Any) -> None:
        """Rows the client coalesced under overload (client/coalesce.py ``fold``), ``rows_per_span`` each;
        the keys in ``raw`` opted out of rate limiting (their every value travels with the spans)."""
        steps = [int(s) for s in steps]
        t = self._t()
        for lo in range(0, len(steps), rows_per_span):
            part = steps[lo : lo + rows_per_span]
            dicts = [{k: float(v[lo + i]) for k, v in columns.items()} for i in range(len(part))]
            self.asm.feed([(SPAN, part[-1], t, fold(part, [t] * len(part), dicts, raw.__contains__))])

    def control(self, name: str, arg: Any) -> None:
        """A control op: ``define`` (define_metric), ``config``, ``finish`` ..."""
        self.asm.feed([(CONTROL, name, arg, None)])

    def finish(self, exit_code: int = 0) -> None:
        self.control("finish", {"exit_code": exit_code, "t": self.sim.clock.now})

    def send(self) -> list[int]:
        """What the I/O thread does with what was logged: batches, into the agent's socket. Returns their seqs."""
        seqs = []
        while (taken := self.asm.take_batch()) is not None:
            seq, frame, _ = taken
            self.unacked[seq] = frame
            self.sim.inbox.append((self.peer, frame))
            seqs.append(seq)
        return seqs

    def resend(self) -> None:
        """After an answer it did not get (a held batch): HELLO again, then every unacknowledged frame, in order."""
        self.hello(reconnect=True)
        self.sim.inbox.extend((self.peer, self.unacked[s]) for s in sorted(self.unacked))

    def receive(self, frame: bytes) -> None:
        kind, body = wire.unpack(frame)
        if kind == wire.ACK:
            self.acks.append(body["s"])
            self.acked = max(self.acked, body["s"])
            for s in [s for s in self.unacked if s <= body["s"]]:
                del self.unacked[s]
        elif kind == wire.WELCOME:
            self.welcome = body
        elif kind == wire.NACK:
            self.nacks.append(body)


class AgentSim:
    """The agent and its ranks in one process. ``patch`` is pytest's ``monkeypatch`` (see :func:`build_agent`);
    ``settings`` override the agent's (timeouts long and the row budget off unless a spec sets them); ``role``
    and ``spy``: see :func:`build_agent` (``role="single"``: the detectors run). The
    patches are the process's: of several sims in one test, the last one built owns the clock and pids."""

    def __init__(self, patch: Any, role: str | None = None, spy: Any = None, **settings: Any):
        settings.setdefault("seal_timeout_s", 1000.0)
        settings.setdefault("join_grace_s", 1000.0)
        settings.setdefault("silence_s", 1000.0)
        settings.setdefault("liveness_interval_s", 0.0)
        settings.setdefault("rows_per_s", 0.0)
        self.cfg = AgentConfig(data_dir=Path("sim-data"), runtime_dir=Path("sim-run"), node_name=NODE, **settings)
        self.clock = SimClock()
        self.pids = SimPids()
        self._patch = patch
        self.role, self.spy = role, spy  # the parts plugged (agent/plugged.py), kept across restarts
        self.ingest, self.store = build_agent(self.cfg, self.clock, self.pids, patch, role=role, spy=spy)
        self.inbox: deque[tuple[bytes, bytes]] = deque()  # frames in the agent's socket, not read yet
        self.ranks: dict[tuple[str, int], SimRank] = {}
        self.max_window_bytes = 0  # highest total of open points seen after a turn's reads

    def __repr__(self) -> str:
        return f"<AgentSim {self.clock!r} ranks={len(self.ranks)} inbox={len(self.inbox)} {self.ingest!r}>"

    # ------------------------------------------------------------ the job

    def join(self, rank: int, world: int, group: str = "g", launcher: int | None = None) -> SimRank:
        """A rank starts (its process, under ``launcher`` if given) and says HELLO."""
        r = self.ranks[(group, rank)] = SimRank(self, rank, world, group, self.pids.spawn(launcher))
        r.hello()
        return r

    def kill(self, rank: SimRank) -> None:
        """The rank's process dies without a word."""
        self.pids.kill(rank.pid)

    def at(self, t: float) -> None:
        self.clock.at(t)

    def disk_full(self, full: bool = True) -> None:
        """From now on the store's commits fail as on a full disk (``full=False``: they succeed again)."""
        error = StoreError("cannot commit")
        error.__cause__ = OSError(errno.ENOSPC, "No space left on device")  # what classifies it (agent/store/base.py)
        self.store.fail = error if full else None

    def restart(self) -> None:
        """The agent is killed (SIGKILL) and a new one starts: its memory and the frames it had not read are
        gone, the store stays; the new agent takes back the running runs and their unsealed points
        (``recover``). The ranks learn of it by the replies they miss: a spec calls their ``resend``."""
        self.inbox.clear()
        self.ingest, self.store = build_agent(
            self.cfg, self.clock, self.pids, self._patch, self.store, role=self.role, spy=self.spy
        )
        self.ingest.recover(self.clock.now)

    # ------------------------------------------------------------ the loop

    def turn(self) -> None:
        """One turn of the agent's loop (agent/loop.py ``Loop``), at the clock's time."""
        ingest, now = self.ingest, self.clock.now
        if not ingest.window_full():  # over the window budget the agent reads nothing: frames wait
            for _ in range(self.cfg.max_drain):
                if not self.inbox:
                    break
                self._route(ingest.handle(*self.inbox.popleft(), now))
                if ingest.drain_full():
                    break
        self.max_window_bytes = max(self.max_window_bytes, ingest.window_bytes())  # what the reads let in
        self._route(ingest.work(now))
        ingest.tick(now)
        self._route(ingest.commit(now))

    def settle(self, turns: int = 100) -> int:
        """Turns until the inbox is read and nothing waits to be committed; returns how many it took."""
        for n in range(1, turns + 1):
            self.turn()
            # alerts raised after a commit (detectors hear ``committed``) go into the next tick's commit
            if (
                not self.inbox
                and not self.ingest.next_commit
                and not self.ingest.busy()
                and not self.ingest.alerts.pending
            ):
                return n
        raise AssertionError(f"not settled after {turns} turns: {self!r}")

    def _route(self, replies: list[tuple[bytes, bytes]]) -> None:
        by_peer = {r.peer: r for r in self.ranks.values()}
        for peer, frame in replies:
            by_peer[peer].receive(frame)

    # ------------------------------------------------------------ what was stored

    def group(self, group: str = "g") -> GroupRecord:
        g = self.store.group("sim", group)
        assert g is not None, f"group {group!r} was never stored"
        return g

    def run(self, rank: SimRank) -> RunRecord:
        """The run record as last committed."""
        found = [r for r in self.store.runs(self.group(rank.group).id) if r.rank == rank.rank]
        assert len(found) == 1, found
        return found[0]

    def history(self, rank: SimRank, key: str) -> tuple[np.ndarray, Any]:
        """The run's stored (steps, values) of ``key``, the latest write of each step."""
        steps, values = self.store.run_history(self.run(rank).id, [key])[key]
        return np.asarray(steps), values

    def spans(self, rank: SimRank, key: str) -> dict[str, np.ndarray]:
        """The run's coalesced spans of ``key`` (step, first_step, count, last, mean, min, max)."""
        return self.store.run_spans(self.run(rank).id, [key]).get(key, {})

    def group_rows(self, key: str, group: str = "g") -> dict[str, np.ndarray]:
        """The group rows of ``key``, the latest revision of each step (what readers see)."""
        return self.store.group_history(self.group(group).id, key)

    def group_chunks(self, key: str, group: str = "g") -> list[tuple[list[int], bool]]:
        """Every group-row chunk of ``key`` in write order: (its steps, whether it is a revision)."""
        gid = self.group(group).id
        return [(rows["step"].tolist(), rev) for g, k, rows, rev in self.store.group_rows if g == gid and k == key]

    def group_chunk_count(self, group: str = "g") -> int:
        """Group-row chunks written for the group: one per key and seal (or recomputation), every key."""
        gid = self.group(group).id
        return sum(g == gid for g, *_ in self.store.group_rows)

    def alerts(self, group: str = "g") -> list[dict[str, Any]]:
        """The group's stored alerts (``Reader.alerts``: ``Alert.to_dict``), in raise order."""
        return self.store.alerts(self.group(group).id)

    def status(self) -> dict[str, Any]:
        """What ``rankwise status`` shows: counters, pending and window bytes, the store's state."""
        return self.ingest.status()

    @property
    def counters(self) -> Counter[str]:
        """The agent's counters as ``rankwise status`` shows them (absent ones read 0)."""
        return Counter(self.status()["counters"])
