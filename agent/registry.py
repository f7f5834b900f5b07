"""The run registry: the runs, groups and writers an agent knows, and how a HELLO registers or resumes them.

A *run* is one rank of one group, a *writer* one process incarnation sending its
batches (agent/runs.py). The registry mirrors the agent's store (at a node agent:
its catalog): a HELLO finds its run in memory or in the store, or registers it;
a restart takes back the runs left running (:meth:`Registry.recover`). A lost
store empties it (:meth:`Registry.clear`): the writers say HELLO again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.apply import client_meta
from agent.nextcommit import LINK_PREFIX
from agent.runs import PidWatch, RunState, WriterState, parent_of
from client import wire
from client.errors import ProtocolError

if TYPE_CHECKING:
    from agent.apply import Applier
    from agent.groups import GroupState
    from agent.store.base import Store

log = logging.getLogger("rankwise.agent")

MAX_WORLD = 1 << 20  # ranks per group; the sealing policy visits the ranks it knows on every tick
MAX_PID = 1 << 31


class Registry:
    def __init__(
        self,
        store: Store,
        group_class: type[GroupState],
        pids: PidWatch,
        applier: Applier,
        local: Callable[[RunState], bool],
    ):
        self.store = store
        self.group_class = group_class
        self.pids = pids
        self.applier = applier  # a resumed run's uncommitted row is committed first; its record joins the commit
        self.local = local  # is a run's process on this machine (its launcher can be read here)
        self.runs: dict[int, RunState] = {}
        self.groups: dict[int, GroupState] = {}
        self.writers: dict[str, WriterState] = {}
        self._run_index: dict[tuple[str, str, str], int] = {}  # (project, group, name) -> run id
        self.lost_writers: set[str] = set()  # writers known when the store was lost: told so, then rebased
        # writers whose first batch after their HELLO sets where they resume: known when the store was lost, or
        # reconnecting to a node agent that has no seq for them (its catalog was lost)
        self.rebase: set[str] = set()

    def __repr__(self) -> str:
        running = sum(r.running for r in self.runs.values())
        return (
            f"<Registry runs={len(self.runs)} running={running} groups={len(self.groups)} writers={len(self.writers)}>"
        )

    def clear(self) -> None:
        """The store was lost: forget everything that mirrored it (in place: the agent holds these dicts)."""
        self.lost_writers.update(self.writers)
        self.runs.clear()
        self.groups.clear()
        self.writers.clear()
        self._run_index.clear()
        self.rebase.clear()

    def group_state(self, record: Any, now: float) -> GroupState:
        group = self.groups.get(record.id)
        if group is None:
            group = self.groups[record.id] = self.group_class(record, now)
        elif record.world_size > group.record.world_size:
            group.record.world_size = record.world_size
        return group

    def add_run(self, run: RunState) -> RunState:
        g, r = run.group.record, run.record
        self.runs[r.id] = run
        run.group.ranks[r.rank] = run
        self._run_index[(g.project, g.name, r.name)] = r.id
        return run

    def find(self, project: str, group: str, name: str) -> RunState | None:
        key = (project, group, name)
        run = self.runs.get(self._run_index.get(key, -1))
        if run is None and len(self._run_index) != len(self.runs):  # runs were added: index them (once each)
            self._run_index = {
                (r.group.record.project, r.group.record.name, r.record.name): rid for rid, r in self.runs.items()
            }
            run = self.runs.get(self._run_index.get(key, -1))
        return run

    def check_hello(self, h: wire.Hello) -> None:
        """What the wire decoder cannot know: the numbers the store and the sealing policy can take."""
        info = h.run
        if not 0 <= h.pid < MAX_PID:
            raise ProtocolError(f"pid {h.pid} out of range")
        if info["world_size"] > MAX_WORLD:
            raise ProtocolError(f"world_size {info['world_size']} above {MAX_WORLD}")
        if not 0 <= info["local_rank"] < MAX_PID:
            raise ProtocolError(f"local_rank {info['local_rank']} out of range")
        if h.writer.startswith(LINK_PREFIX):
            raise ProtocolError(f"writer id {h.writer!r} uses the reserved prefix {LINK_PREFIX!r}")

    def writer_for(self, peer: bytes, h: wire.Hello, body: dict, now: float) -> tuple[WriterState, bool] | str:
        """The writer of a HELLO, registered (with its run) if new: (writer, resumed), or why it is refused."""
        ws = self.writers.get(h.writer)
        if ws is None:
            stored = self.store.writer_seq(h.writer)
            fork_of = self.writers.get(body.get("fork_of", "")) if isinstance(body.get("fork_of"), str) else None
            resumed = False
            if fork_of is not None:
                run = fork_of.run
            else:
                # a forked child whose parent writer this agent does not know (it restarted, and the parent
                # has not said HELLO again yet) continues the live run like a reconnect: no resume, no refusal
                forked = isinstance(body.get("fork_of"), str)
                opened = self._open_run(h, now, reconnect=stored > 0 or h.reconnect or forked)
                if isinstance(opened, str):
                    return opened
                run, resumed = opened
            ws = WriterState(h.writer, run, stored, peer, h.pid, fork_of is not None)
            if h.writer in self.lost_writers and stored == 0:  # its acknowledged seqs went with the lost store
                self.rebase.add(h.writer)
            if run.record.pid == h.pid:  # the run's own process (not a forked child of it)
                self.pids.register(h.pid)
                # its launcher: once it and every rank are gone, no rank can join (GroupState.job_over)
                run.launcher = parent_of(h.pid) if self.local(run) else None
            self.writers[h.writer] = ws
            run.writers.add(h.writer)
        else:
            ws.peer = peer
            resumed = True
        if ws.run.via is not None:  # at a root: a rank that was behind a node agent now talks to it directly
            ws.run.via = None
            ws.run.record.meta.pop("via", None)
            self.applier.next_commit.runs[ws.run.record.id] = ws.run.record
        return ws, resumed

    def _open_run(self, h: wire.Hello, now: float, reconnect: bool) -> tuple[RunState, bool] | str:
        """Register a new run or resume an existing one: (run, resumed), or a refusal reason."""
        info = h.run
        project, group_name, name = info["project"], info["group"], info["name"]
        run = self.find(project, group_name, name)
        record = run.record if run is not None else self.store.find_run(project, group_name, name)
        resume = info.get("resume", "allow")
        found = record is not None
        if not reconnect:
            if record is None and resume == "must":
                return f"run {name!r} of group {group_name!r} does not exist and resume='must'"
            if record is not None and resume == "never":
                return f"run {name!r} of group {group_name!r} exists and resume='never'; pick another group or name"
            if (
                record is not None
                and record.state == "running"
                and record.pid != h.pid
                and record.node == info["node"]
                and self.pids(record.pid)
            ):
                return (
                    f"run {name!r} of group {group_name!r} is already running as pid {record.pid} on {record.node}; "
                    "two processes cannot log as the same rank (pass name= or rank=)"
                )
        if run is None:
            # meta keys the agent keeps itself (metric rules, drops, coalesced tally, via) are not a peer's to set
            fields = dict(info, run_key=str(info.get("run_id", "")), pid=h.pid, meta=client_meta(info.get("meta")))
            grecord, record, _ = self.store.register(project, group_name, info["world_size"], fields, now)
            group = self.group_state(grecord, now)
            run = self.add_run(RunState(record, group, now))
        if found and not reconnect:
            self.resume(run, h, now)
            return run, True
        return run, False

    def resume(self, run: RunState, h: wire.Hello, now: float) -> None:
        r = run.record
        if r.state == "running" and r.open_row:
            self.applier.commit_pending_row(run, now)
        r.state = "running"
        r.exit_code = None
        r.finished = None
        r.meta.pop("exception", None)  # the last incarnation's failure: this one has not failed
        r.pid = h.pid
        r.incarnations += 1
        r.node = h.run["node"]
        if h.run.get("config"):
            r.config.update(h.run["config"])
        r.updated = now
        self.applier.next_commit.runs[r.id] = r
        self.applier.counters.add("resumed_runs")

    def recover(self, now: float) -> int:
        """After a restart: take back runs left running and reopen their groups' unsealed windows."""
        count = 0
        for grecord, record in self.store.open_runs():
            group = self.group_state(grecord, now)
            self.add_run(RunState(record, group, now))
            count += 1
        for group in self.groups.values():
            for key, rank, steps, values in self.store.unsealed_points(group.record.id, group.record.sealed_through):
                if len(steps):
                    group.reopen(key, rank, steps, values, now)
        if count:
            log.info("recovered %d running run(s) in %d group(s)", count, len(self.groups))
        return count
