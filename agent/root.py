"""The root agent: a single agent (agent/ingest.py over the store sink) plus the applier of node agents' records.

A root is the same program as a single agent (its own processes talk to it over
ipc as usual) plus a TCP socket for node agents (agent/rootlink.py). :class:`Root`
is not an Ingest: it owns one, built with the store sink and root group windows,
and plugs into it as a part (agent/sinks/base.py) to hear of its commits. Each node
record (agent/record.py) is applied op by op with the single agent's own code
paths — registration and resume of runs, client batches with per-writer
de-duplication, rate limiting, media, crash handling — and its partials, late
marks and watermarks go to the group windows (agent/rootgroups.py). The record's
(node agent, seq) is stored in the same SQLite transaction as everything the
record changed (``writers`` table, name ``agent:<id>``): a record is applied
exactly once across root restarts, and it is acknowledged only after that
transaction committed.

Client batches inside records are de-duplicated per writer by the root, not by
the node: a node agent that restarted lost its in-memory view, and its clients
replay what it had not acknowledged, some of which it had already spooled.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from agent import record
from agent.apply import check_batch
from agent.config import AgentConfig
from agent.errors import StoreError
from agent.ingest import Ingest, Reply
from agent.nextcommit import LINK_PREFIX, BatchOp, HelloOp, NextCommit, SystemOp
from agent.plugged import plug
from agent.rootgroups import RootGroupState
from agent.runs import RunState, WriterState
from agent.sinks.base import Part
from agent.sinks.store import StoreSink
from agent.store.base import Store
from agent.storehealth import is_store_error
from agent.system.forward import apply_system_op
from client import wire
from client.errors import ProtocolError

log = logging.getLogger("rankwise.agent")


@dataclass
class Link:
    """What the root knows of one node agent."""

    agent: str
    applied: int  # last record seq folded into memory
    stored: int  # last record seq committed
    synced: int = 0  # last record seq committed and fsynced: what the node may delete (acknowledged)
    peer: bytes = b""
    instance: str | None = None
    node: str = ""
    heard: float = 0.0
    records: int = 0
    lost: int = 0
    touched: set = field(default_factory=set)  # group ids changed by records not yet acknowledged
    state: tuple[int, list] | None = None  # a ``state`` message waiting for its as_of record

    def summary(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "node": self.node,
            "instance": self.instance,
            "applied": self.applied,
            "stored": self.stored,
            "synced": self.synced,
            "records": self.records,
            "lost_records": self.lost,
            "last_heard_s": max(0.0, time.monotonic() - self.heard) if self.heard else None,
        }


class _OfIngest:
    """An attribute of the root's ingest, read and written through the root."""

    def __init__(self, name: str = ""):
        self.name = name

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = self.name or name

    def __get__(self, root: Any, owner: type | None = None) -> Any:
        return self if root is None else getattr(root.ingest, self.name)

    def __set__(self, root: Any, value: Any) -> None:
        setattr(root.ingest, self.name, value)


class _Hooks(Part):
    """How a root plugs into its ingest: it hears of commits and adds to the status."""

    def __init__(self, root: Root):
        self.root = root

    def __repr__(self) -> str:
        return f"<root hooks links={len(self.root.links)}>"

    def committed(self, nc: NextCommit) -> None:
        self.root.committed(nc)

    def status(self, snap: dict[str, Any]) -> None:
        self.root.add_status(snap)


class Root:
    """A root: its ingest (``self.ingest``, the daemon's loop drives it) and what it knows of node agents."""

    def __init__(self, store: Store, cfg: AgentConfig, sink: StoreSink | None = None, **options: Any):
        """``options``: the ingest's (node, pids, media, clock: agent/ingest.py)."""
        # node links' acknowledged seqs live in the store: a lost store is held and said, never reset
        sink = StoreSink(resets_on_loss=False, group_class=RootGroupState) if sink is None else sink
        self.ingest = Ingest(store, cfg, sink=sink, **options)
        self.ingest.parts.append(_Hooks(self))
        plug(self.ingest, "root")
        self.links: dict[str, Link] = {}
        # node agents owed an acknowledgement (with the groups to name as complete) once the store is synced
        self.acks_owed: dict[str, list] = {}
        self._group_index: dict[tuple[str, str], int] = {}
        self._reader: Any = None
        self._told: set[tuple[str, str | None, int]] = set()  # (node agent, its instance, group) told "complete"
        self.link_status: Any = None  # RootLink.status, set by agent/roles.py
        self._next_sync = 0.0  # monotonic: when the store may be fsynced again for the held acks_owed

    def __repr__(self) -> str:
        return f"<Root links={len(self.links)} acks_owed={len(self.acks_owed)} ingest={self.ingest!r}>"

    # what agent/rootlink.py and the multi-node simulator (tests/support/mnsim.py) use of the ingest
    store = _OfIngest()
    cfg = _OfIngest()
    counters = _OfIngest()
    groups = _OfIngest()
    instance = _OfIngest()
    last_message = _OfIngest()
    next_commit = _OfIngest()

    def _count_malformed(self, cause: str) -> None:
        self.ingest._count_malformed(cause)

    def recover(self, now: float | None = None) -> int:
        return self.ingest.recover(now)

    def tick(self, now: float | None = None) -> None:
        self.ingest.tick(now)

    def commit(self, now: float | None = None, force: bool = False) -> list[Reply]:
        return self.ingest.commit(now, force)

    # ------------------------------------------------------------ lookups

    def _group_named(self, project: str, name: str) -> RootGroupState | None:
        gid = self._group_index.get((project, name))
        if gid is None or gid not in self.ingest.groups:
            self._group_index = {(g.record.project, g.record.name): i for i, g in self.ingest.groups.items()}
            gid = self._group_index.get((project, name))
        if gid is None:
            # not in memory (a restarted root whose runs of the group all ended): the stored group record
            if self._reader is None:
                self._reader = self.store.reader()
            grecord = self._reader.group(project, name)
            if grecord is None:
                return None
            return self.ingest.registry.group_state(grecord, time.time())  # type: ignore[return-value]
        return self.ingest.groups[gid]  # type: ignore[return-value]

    def lookup(self, project: str, group: str, name: str, writer: str) -> tuple[dict | None, int]:
        """A node's question before it answers a HELLO: the run's resume point and the writer's seq."""
        run = self.ingest.registry.find(project, group, name)
        r = run.record if run is not None else self.store.find_run(project, group, name)
        wseq = self.store.writer_seq(writer) if not writer.startswith(LINK_PREFIX) else 0
        if r is None:
            return None, wseq
        fields = ("state", "step", "runtime", "rows", "incarnations", "pid", "node", "summary", "config")
        return {f: getattr(r, f) for f in fields}, wseq

    # ------------------------------------------------------------ records

    def apply_record(self, link: Link, seq: int, payload: bytes, now: float) -> None:
        """Apply one record (raises ProtocolError, before changing anything, when it is malformed)."""
        ing = self.ingest
        rec = record.decode(payload)
        if rec.instance != link.instance:
            if link.instance is not None:
                # the node agent restarted: what it held open is lost; no partial of a step seen so far counts
                self.counters.add("node_restarts")
                for group in ing.groups.values():
                    if any(r.via == link.agent for r in group.ranks.values()):
                        group.forget_open(link.agent)  # type: ignore[attr-defined]
            link.instance = rec.instance
        link.node = rec.node
        for kind, index, arg in rec.ops:
            try:
                info = rec.runs[index]
                if kind == HelloOp.kind:
                    self._remote_hello(link, info, arg[0], arg[1], now)
                elif kind == BatchOp.kind:
                    self._remote_batch(link, info, arg, now)
                elif kind == SystemOp.kind:  # a node's system samples (agent/system/forward.py)
                    apply_system_op(ing, self._resolve(link, info, now)[0], rec.node, *arg)
                else:
                    run, _ = self._resolve(link, info, now)
                    if run.running:
                        ing.crash(run, now, f"{arg}, reported by node agent {link.agent}")
            except ProtocolError as exc:
                ing.bad_frame("record op: " + str(exc)[:60], len(payload), exc)
            except Exception as exc:
                if is_store_error(exc):  # the store, not the record: the caller keeps the record for a resend
                    raise
                ing.bad_frame(f"record op internal error: {type(exc).__name__}", len(payload), exc, trace=True)
        for info in rec.runs:
            run = ing.registry.find(info["project"], info["group"], info["name"])
            if run is not None:
                link.touched.add(run.group.record.id)
        groups = [self._group_named(p, n) for p, n, _ in rec.groups]
        for gi, key, steps in rec.late:
            if groups[gi] is not None:
                groups[gi].mark_late(key, steps, ing.next_commit)
        for gi, key, ranks, part in rec.parts:
            if groups[gi] is not None:
                groups[gi].add_partial(link.agent, key, ranks, part, now, ing.next_commit)
                self.counters.add("partials")
        for gi, w in rec.marks:
            if groups[gi] is not None:
                groups[gi].set_watermark(link.agent, w, now)
        link.touched.update(g.record.id for g in groups if g is not None)
        ing.next_commit.links[link.agent] = seq
        link.records += 1

    def apply_state(self, link: Link) -> None:
        """A node's watermarks after a (re)connect, once the records they describe are applied."""
        if link.state is None or link.applied < link.state[0]:
            return
        for project, name, w in link.state[1]:
            group = self._group_named(project, name)
            if group is not None:
                group.set_watermark(link.agent, w, time.time())
        link.state = None

    def _resolve(self, link: Link, info: dict, now: float, hello: wire.Hello | None = None) -> tuple[RunState, bool]:
        """The root's run for a record's run entry: found, or registered (a HELLO this root never saw)."""
        ing = self.ingest
        project, group_name, name = info["project"], info["group"], info["name"]
        run = ing.registry.find(project, group_name, name)
        created = False
        if run is None:
            fields = dict(hello.run if hello is not None else info)
            fields.update(run_key=str(fields.get("run_id", "")), pid=hello.pid if hello is not None else info["pid"])
            grecord, rec, created = self.store.register(project, group_name, fields["world_size"], fields, now)
            group = ing.registry.group_state(grecord, now)
            run = ing.registry.add_run(RunState(rec, group, now))
        if run.via != link.agent:
            run.via = link.agent
            run.record.meta["via"] = link.agent
            ing.next_commit.runs[run.record.id] = run.record
        return run, created

    def _remote_hello(self, link: Link, info: dict, body: dict, resumed: bool, now: float) -> None:
        ing = self.ingest
        h = wire.decode_hello(body)
        ing.registry.check_hello(h)
        fork_of = body.get("fork_of")
        parent = ing.writers.get(fork_of) if isinstance(fork_of, str) else None
        if parent is not None:
            run = parent.run
        else:
            run, created = self._resolve(link, info, now, h)
            if resumed and not created:
                ing.registry.resume(run, h, now)
        ws = ing.writers.get(h.writer)
        if ws is None:
            ws = WriterState(h.writer, run, self.store.writer_seq(h.writer), b"", h.pid, parent is not None)
            ing.writers[h.writer] = ws
            run.writers.add(h.writer)
        run.last_seen = now
        ing.next_commit.writers[h.writer] = (ws.run.record.id, ws.applied)
        self.counters.add("remote_hellos")

    def _remote_batch(self, link: Link, info: dict, frame: bytes, now: float) -> None:
        ing = self.ingest
        kind, body = wire.unpack(frame)
        if kind != wire.BATCH:
            raise ProtocolError(f"record batch op holds a {kind!r} message")
        b = wire.decode_batch(body, len(frame))
        ws = ing.writers.get(b.writer)
        if ws is None:
            run, _ = self._resolve(link, info, now)
            ws = WriterState(b.writer, run, self.store.writer_seq(b.writer), b"", info["pid"], False)
            ing.writers[b.writer] = ws
            run.writers.add(b.writer)
        if b.seq <= ws.applied:
            self.counters.add("duplicate_batches")  # a replay a restarted node agent had already spooled
            return
        if b.seq > ws.applied + 1:
            self.counters.add("forwarded_gaps")
        check_batch(b)
        ing.applier.apply(ws.run, b, now)
        ws.applied = b.seq
        ing.next_commit.writers[ws.id] = (ws.run.record.id, b.seq)
        self.counters.add("batches")
        self.counters.add("bytes", b.nbytes)

    # ------------------------------------------------------------ commit, restart, status

    def committed(self, nc: NextCommit) -> None:
        """A commit of the ingest went through: the records it held are stored; acknowledge them (durably)."""
        ing = self.ingest
        touched: set[int] = set()
        for agent, seq in nc.links.items():
            link = self.links.get(agent)
            if link is not None:
                link.stored = max(link.stored, seq)
                touched |= link.touched
                link.touched.clear()
        # groups every rank has joined: tell each node agent serving them (once per node agent instance), so
        # that it stops waiting for ranks it will never see — also a node whose own records are all acknowledged
        done: dict[str, list] = {}
        for gid in touched:
            g = ing.groups.get(gid)
            if g is None or len(g.ranks) < g.record.world_size:
                continue
            for via in {r.via for r in g.ranks.values() if r.via is not None}:
                link = self.links.get(via)
                key = (via, link.instance if link is not None else None, gid)
                if link is not None and key not in self._told:
                    self._told.add(key)
                    done.setdefault(via, []).append([g.record.project, g.record.name])
        for agent in set(nc.links) | set(done):
            self.acks_owed.setdefault(agent, []).extend(done.get(agent, []))

    def durable_link_acks(self, force: bool = False) -> list[tuple[bytes, bytes]]:
        """The acknowledgements to node agents, once what they acknowledge survives a power failure.

        A node deletes what the root acknowledged, so an ack must not run ahead of the disk: the
        store is fsynced at most every ``spool_fsync_s`` (the nodes' own power-loss window) and the
        acks held until then go out after it. A sync that fails keeps them held (the nodes keep
        their spools and resend; nothing is lost, the error is counted)."""
        if not self.acks_owed:
            return []
        mono = self.ingest.clock()
        if not force and mono < self._next_sync:
            return []
        self._next_sync = mono + self.cfg.spool_fsync_s
        try:
            self.store.sync()
        except StoreError as exc:
            self.counters.add("store_sync_errors")
            log.error("cannot fsync the store; node agents keep their records: %s", exc)
            return []
        self.counters.add("store_syncs")
        for link in self.links.values():  # every commit so far is on disk now
            link.synced = link.stored
        owed, self.acks_owed = self.acks_owed, {}
        # built now, not at commit time: a node that said HELLO again meanwhile has a new peer identity, and a
        # welcome in between told it to wait for this acknowledgement of what was applied but not yet durable
        return [
            (link.peer, record_ack(link.synced, done))
            for agent, done in owed.items()
            if (link := self.links.get(agent)) is not None and link.peer
        ]

    def add_status(self, snap: dict[str, Any]) -> None:
        snap["role"] = "root"
        snap["links"] = [link.summary() for link in self.links.values()][:500]
        if self.link_status is not None:
            snap["listen"] = self.link_status()


def record_ack(seq: int, done: list) -> bytes:
    from agent import linkwire

    body: dict[str, Any] = {"s": seq}
    if done:
        body["done"] = done
    return linkwire.pack(linkwire.RACK, body)
