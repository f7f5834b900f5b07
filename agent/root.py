"""The root agent's ingest: a single agent that also applies node agents' spool records.

A root is the same program as a single agent (its own processes talk to it over
ipc as usual) plus a TCP socket for node agents (agent/rootlink.py). Each node
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

import numpy as np

from agent import record
from agent.errors import StoreError
from agent.ingest import Ingest, _check_batch
from agent.rootgroups import RootGroupState
from agent.runs import RunState, WriterState
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
        return {"agent": self.agent, "node": self.node, "instance": self.instance, "applied": self.applied,
                "stored": self.stored, "synced": self.synced, "records": self.records, "lost_records": self.lost,
                "last_heard_s": max(0.0, time.monotonic() - self.heard) if self.heard else None}  # fmt: skip


class RootIngest(Ingest):
    group_class = RootGroupState
    resets_store_on_loss = False  # node links' acknowledged seqs live in the store: hold and say so instead

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.links: dict[str, Link] = {}
        # node agents owed an acknowledgement (with the groups to name as complete) once the store is synced
        self.acks_owed: dict[str, list] = {}
        self._group_index: dict[tuple[str, str], int] = {}
        self._reader: Any = None
        self._told: set[tuple[str, str | None, int]] = set()  # (node agent, its instance, group) told "complete"
        self.link_status: Any = None  # RootLink.status, set by the daemon
        self._next_sync = 0.0  # monotonic: when the store may be fsynced again for the held acks_owed

    # ------------------------------------------------------------ lookups

    def _group_named(self, project: str, name: str) -> RootGroupState | None:
        gid = self._group_index.get((project, name))
        if gid is None or gid not in self.groups:
            self._group_index = {(g.record.project, g.record.name): i for i, g in self.groups.items()}
            gid = self._group_index.get((project, name))
        if gid is None:
            # not in memory (a restarted root whose runs of the group all ended): the stored group record
            if self._reader is None:
                self._reader = self.store.reader()
            grecord = self._reader.group(project, name)
            if grecord is None:
                return None
            return self._group_state(grecord, time.time())  # type: ignore[return-value]
        return self.groups[gid]  # type: ignore[return-value]

    def lookup(self, project: str, group: str, name: str, writer: str) -> tuple[dict | None, int]:
        """A node's question before it answers a HELLO: the run's resume point and the writer's seq."""
        run = self._find(project, group, name)
        r = run.record if run is not None else self.store.find_run(project, group, name)
        wseq = self.store.writer_seq(writer) if not writer.startswith("agent:") else 0
        if r is None:
            return None, wseq
        fields = ("state", "step", "runtime", "rows", "incarnations", "pid", "node", "summary", "config")
        return {f: getattr(r, f) for f in fields}, wseq

    # ------------------------------------------------------------ local HELLOs

    def _writer_for(self, peer: bytes, h: wire.Hello, body: dict, now: float) -> Any:
        got = super()._writer_for(peer, h, body, now)
        if not isinstance(got, str) and got[0].run.via is not None:
            run = got[0].run  # a rank that was behind a node agent now talks to the root directly
            run.via = None
            run.record.meta.pop("via", None)
            self.pending.runs[run.record.id] = run.record
        return got

    # ------------------------------------------------------------ records

    def apply_record(self, link: Link, seq: int, payload: bytes, now: float) -> None:
        """Apply one record (raises ProtocolError, before changing anything, when it is malformed)."""
        rec = record.decode(payload)
        if rec.instance != link.instance:
            if link.instance is not None:
                # the node agent restarted: what it held open is lost; no partial of a step seen so far counts
                self.counters.add("node_restarts")
                for group in self.groups.values():
                    if any(r.via == link.agent for r in group.ranks.values()):
                        group.forget_open(link.agent)  # type: ignore[attr-defined]
            link.instance = rec.instance
        link.node = rec.node
        for kind, index, arg in rec.ops:
            try:
                info = rec.runs[index]
                if kind == "h":
                    self._remote_hello(link, info, arg[0], arg[1], now)
                elif kind == "b":
                    self._remote_batch(link, info, arg, now)
                else:
                    run, _ = self._resolve(link, info, now)
                    if run.running:
                        self._crash(run, now, f"{arg}, reported by node agent {link.agent}")
            except ProtocolError as exc:
                self._bad_frame("record op: " + str(exc)[:60], len(payload), exc)
            except Exception as exc:
                self._bad_frame(f"record op internal error: {type(exc).__name__}", len(payload), exc, trace=True)
        for info in rec.runs:
            run = self._find(info["project"], info["group"], info["name"])
            if run is not None:
                link.touched.add(run.group.record.id)
        groups = [self._group_named(p, n) for p, n, _ in rec.groups]
        for gi, key, steps in rec.late:
            if groups[gi] is not None:
                groups[gi].mark_late(key, steps, self.pending)
        for gi, key, ranks, part in rec.parts:
            if groups[gi] is not None:
                groups[gi].add_partial(link.agent, key, ranks, part, now, self.pending)
                self.counters.add("partials")
        for gi, w in rec.marks:
            if groups[gi] is not None:
                groups[gi].set_watermark(link.agent, w, now)
        link.touched.update(g.record.id for g in groups if g is not None)
        self.pending.links[link.agent] = seq
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
        project, group_name, name = info["project"], info["group"], info["name"]
        run = self._find(project, group_name, name)
        created = False
        if run is None:
            fields = dict(hello.run if hello is not None else info)
            fields.update(run_key=str(fields.get("run_id", "")), pid=hello.pid if hello is not None else info["pid"])
            grecord, rec, created = self.store.register(project, group_name, fields["world_size"], fields, now)
            group = self._group_state(grecord, now)
            run = self._add_run(RunState(rec, group, now))
        if run.via != link.agent:
            run.via = link.agent
            run.record.meta["via"] = link.agent
            self.pending.runs[run.record.id] = run.record
        return run, created

    def _remote_hello(self, link: Link, info: dict, body: dict, resumed: bool, now: float) -> None:
        h = wire.decode_hello(body)
        self._check_hello(h)
        fork_of = body.get("fork_of")
        parent = self.writers.get(fork_of) if isinstance(fork_of, str) else None
        if parent is not None:
            run = parent.run
        else:
            run, created = self._resolve(link, info, now, h)
            if resumed and not created:
                self._resume(run, h, now)
        ws = self.writers.get(h.writer)
        if ws is None:
            ws = WriterState(h.writer, run, self.store.writer_seq(h.writer), b"", h.pid, parent is not None)
            self.writers[h.writer] = ws
            run.writers.add(h.writer)
        run.last_seen = now
        self.pending.writers[h.writer] = (ws.run.record.id, ws.applied)
        self.counters.add("remote_hellos")

    def _remote_batch(self, link: Link, info: dict, frame: bytes, now: float) -> None:
        kind, body = wire.unpack(frame)
        if kind != wire.BATCH:
            raise ProtocolError(f"record batch op holds a {kind!r} message")
        b = wire.decode_batch(body, len(frame))
        ws = self.writers.get(b.writer)
        if ws is None:
            run, _ = self._resolve(link, info, now)
            ws = WriterState(b.writer, run, self.store.writer_seq(b.writer), b"", info["pid"], False)
            self.writers[b.writer] = ws
            run.writers.add(b.writer)
        if b.seq <= ws.applied:
            self.counters.add("duplicate_batches")  # a replay a restarted node agent had already spooled
            return
        if b.seq > ws.applied + 1:
            self.counters.add("forwarded_gaps")
        _check_batch(b)
        self._apply(ws.run, b, now)
        ws.applied = b.seq
        self.pending.writers[ws.id] = (ws.run.record.id, b.seq)
        self.counters.add("batches")
        self.counters.add("bytes", b.nbytes)

    def _paced(self, run: RunState, b: wire.Batch, now: float) -> float:
        if run.via is None or not b.n:
            return now
        # a forwarded batch counts against the row and media budgets at the time its rows were committed:
        # a node's backlog, replayed at once after an outage of the root, was logged at its own pace
        return min(now, float(b.t.max()))

    # ------------------------------------------------------------ commit, restart, status

    def _committed(self, pending: Any) -> None:
        touched: set[int] = set()
        for agent, seq in pending.links.items():
            link = self.links.get(agent)
            if link is not None:
                link.stored = max(link.stored, seq)
                touched |= link.touched
                link.touched.clear()
        # groups every rank has joined: tell each node agent serving them (once per node agent instance), so
        # that it stops waiting for ranks it will never see — also a node whose own records are all acknowledged
        done: dict[str, list] = {}
        for gid in touched:
            g = self.groups.get(gid)
            if g is None or len(g.ranks) < g.record.world_size:
                continue
            for via in {r.via for r in g.ranks.values() if r.via is not None}:
                link = self.links.get(via)
                key = (via, link.instance if link is not None else None, gid)
                if link is not None and key not in self._told:
                    self._told.add(key)
                    done.setdefault(via, []).append([g.record.project, g.record.name])
        for agent in set(pending.links) | set(done):
            self.acks_owed.setdefault(agent, []).extend(done.get(agent, []))

    def durable_link_acks(self, force: bool = False) -> list[tuple[bytes, bytes]]:
        """The acknowledgements to node agents, once what they acknowledge survives a power failure.

        A node deletes what the root acknowledged, so an ack must not run ahead of the disk: the
        store is fsynced at most every ``spool_fsync_s`` (the nodes' own power-loss window) and the
        acks held until then go out after it. A sync that fails keeps them held (the nodes keep
        their spools and resend; nothing is lost, the error is counted)."""
        if not self.acks_owed:
            return []
        mono = time.monotonic()
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
        return [(link.peer, record_ack(link.synced, done)) for agent, done in owed.items()
                if (link := self.links.get(agent)) is not None and link.peer]  # fmt: skip

    def _reopen(self, group: Any, key: str, rank: int, steps: np.ndarray, values: np.ndarray, now: float) -> None:
        # the partials this root had merged but not sealed died with it: these steps are recomputed
        group.recover_dirty(key, steps)

    def status(self) -> dict[str, Any]:
        snap = super().status()
        snap["role"] = "root"
        snap["links"] = [link.summary() for link in self.links.values()][:500]
        if self.link_status is not None:
            snap["listen"] = self.link_status()
        return snap


def record_ack(seq: int, done: list) -> bytes:
    from agent import linkwire

    body: dict[str, Any] = {"s": seq}
    if done:
        body["done"] = done
    return linkwire.pack(linkwire.RACK, body)
