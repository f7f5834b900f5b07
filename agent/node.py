"""A forwarding node agent's ingest: the same validation, de-duplication and group windows as a
single agent, but its commits go to the write-ahead spool and on to the root.

Every drain ends in one commit, as on a single agent; here a commit appends one
spool record (agent/record.py) holding the client batches applied in that drain
(raw, as the clients sent them), the HELLOs and crashes seen, the partial group
rows sealed over this node's ranks, late marks and this node's watermarks. Only
once the record is in the spool (written to the page cache; fsynced within
``spool_fsync_s``) are the clients acknowledged. Then a small SQLite *catalog*
(``node.sqlite``: runs, groups, writers, no history) is updated, so that a
restarted node agent knows its runs (to detect their crashes and answer their
reconnects) and the writers' last acknowledged seqs (to de-duplicate their
replays). The catalog is written after the spool: if the agent dies in between,
the records after the catalog's mark are read back at start-up.

A HELLO for a run this node does not know (elastic restart on another node, a
new node agent) waits for the root's view of the run (its resume point), at
most ``lookup_timeout_s`` (asked as soon as the link to the root is up: the
node agent may have just been started by that very rank); without an answer
in time it is answered from what the node knows. A full spool (its byte quota) is backpressure: new client
batches are not applied or acknowledged, the clients keep them (in memory,
then spilled to disk) and resend; counted as ``deferred_spool_full``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from agent import record
from agent.config import AgentConfig
from agent.groups import NodeGroupState
from agent.ingest import Ingest, Reply
from agent.linkwire import RECORD_SOFT_BYTES
from agent.pending import LINK_PREFIX
from agent.runs import PidWatch, RunState
from agent.spool import Spool
from agent.store.base import Store
from client import wire
from client.errors import ProtocolError

log = logging.getLogger("rankwise.agent")
SPOOL_MARK = LINK_PREFIX + "spool"  # catalog entry: the last spool record the catalog reflects
_SLIM = ("project", "group", "name", "rank", "world_size", "local_rank", "node", "launcher", "run_id", "started")


class NodeIngest(Ingest):
    group_class = NodeGroupState
    resets_store_on_loss = False  # its catalog (node.sqlite) is not the data
    store_health = False  # its commit writes the spool (quota, backpressure: agent/spool.py), not the store

    def __init__(self, catalog: Store, cfg: AgentConfig, spool: Spool, node: str | None = None,
                 pids: PidWatch | None = None):  # fmt: skip
        super().__init__(catalog, cfg, node=node, pids=pids, media=None)
        self.spool = spool
        self.upstream: Any = None  # agent.upstream.Upstream, set by the daemon
        # writer -> (peer, HELLO, body, deadline, asked): HELLOs of runs this node does not know, awaiting the root
        self.parked: dict[str, tuple[bytes, wire.Hello, dict, float, bool]] = {}
        self.outbox: list[Reply] = []  # replies made outside handle() (parked HELLOs answered)
        self.sent_w: dict[int, int] = {}  # group id -> watermark already in a spool record
        self.spool_full = False
        self._frame = b""
        # reconnecting writers this node has no seq for (its catalog was lost): their first batch sets the
        # baseline instead of being a gap; the root de-duplicates whatever was delivered before
        self._rebase: set[str] = set()

    def __repr__(self) -> str:
        return f"<NodeIngest {super().__repr__()[8:-1]} spool={self.spool!r}>"

    # ------------------------------------------------------------ HELLO

    def handle(self, peer: bytes, frame: bytes, now: float | None = None) -> list[Reply]:
        self._frame = frame  # a batch goes upstream as the client sent it
        return super().handle(peer, frame, now)

    def _hello(self, peer: bytes, h: wire.Hello, body: dict, now: float) -> list[Reply]:
        self.counters.add("hellos")
        self._check_hello(h)
        old = self.parked.get(h.writer)
        if old is not None:  # the same HELLO again (the client's retry): answer its latest copy, same deadline
            self.parked[h.writer] = (peer, h, body, old[3], old[4])
            return []
        if h.writer not in self.writers and self.upstream is not None and self._unknown(h, body):
            # wait for the root's view of the run (asked now, or once the link is up: a node agent that was
            # just started by this very rank is not connected yet), at most lookup_timeout_s in all
            self.parked[h.writer] = (peer, h, body, time.monotonic() + self.cfg.lookup_timeout_s, False)
            self._ask(h.writer)
            return []
        return self._hello_now(peer, h, body, now)

    def _ask(self, writer: str) -> None:
        peer, h, body, deadline, asked = self.parked[writer]
        if not asked and self.upstream.ready:
            self.parked[writer] = (peer, h, body, deadline, True)
            self.counters.add("lookups")
            self.upstream.lookup(writer, h.run["project"], h.run["group"], h.run["name"])

    def _unknown(self, h: wire.Hello, body: dict) -> bool:
        if isinstance(body.get("fork_of"), str) and body["fork_of"] in self.writers:
            return False
        info = h.run
        key = (info["project"], info["group"], info["name"])
        return self._find(*key) is None and self.store.find_run(*key) is None

    def _hello_now(self, peer: bytes, h: wire.Hello, body: dict, now: float) -> list[Reply]:
        new = h.writer not in self.writers
        got = self._writer_for(peer, h, body, now)
        if isinstance(got, str):
            self.counters.add("refused")
            return [(peer, wire.pack(wire.REFUSE, {"w": h.writer, "error": got}))]
        ws, resumed = got
        run = ws.run
        if new and h.reconnect and ws.stored == 0 and not ws.fork:
            self._rebase.add(ws.id)
        if new:
            if run.info is None or resumed:
                run.info = dict({k: h.run[k] for k in _SLIM if k in h.run}, pid=h.pid)
            self._op(("h", run.record.id, body, bool(resumed)), 256)
        return self._welcome(peer, ws, resumed, body, now)

    def found(self, writer: str, run: dict | None, writer_seq: int, now: float | None = None) -> None:
        """The root's answer to a lookup: adopt its view of the run, then answer the parked HELLO."""
        parked = self.parked.pop(writer, None)
        if parked is None:
            return
        now = time.time() if now is None else now
        peer, h, body, _, _ = parked
        try:
            if run is not None:
                self._adopt(h, run, writer_seq, now)
                self.counters.add("lookups_found")
            self.outbox.extend(self._hello_now(peer, h, body, now))
        except ProtocolError as exc:
            self._bad_frame("lookup answer: " + str(exc)[:60], 0, exc)
        except Exception as exc:  # a HELLO must never take the loop down
            self._bad_frame(f"internal error: {type(exc).__name__}", 0, exc, trace=True)

    def _adopt(self, h: wire.Hello, found: dict, writer_seq: int, now: float) -> None:
        """Register the run in the catalog as the root knows it (state, step, summary, runtime, ...)."""
        info = h.run
        if self._find(info["project"], info["group"], info["name"]) is not None:
            return
        if self.store.find_run(info["project"], info["group"], info["name"]) is not None:
            return
        fields = dict(info, run_key=str(info.get("run_id", "")), pid=h.pid)
        grec, rec, _ = self.store.register(info["project"], info["group"], info["world_size"], fields, now)
        for attr, typ in (("state", str), ("step", int), ("runtime", float), ("rows", int), ("incarnations", int),
                          ("pid", int), ("node", str), ("summary", dict), ("config", dict)):  # fmt: skip
            value = found.get(attr)
            if isinstance(value, typ) and not isinstance(value, bool):
                setattr(rec, attr, value)
        if rec.state not in ("running", "finished", "failed", "crashed"):
            raise ProtocolError(f"unknown run state {rec.state!r}")
        with self.store.transaction() as txn:
            txn.put_run(rec)
            if writer_seq > 0:
                txn.put_writer(h.writer, rec.id, writer_seq)

    # ------------------------------------------------------------ BATCH

    def _batch(self, peer: bytes, b: wire.Batch, now: float) -> list[Reply]:
        ws = self.writers.get(b.writer)
        if ws is not None and ws.id in self._rebase:
            self._rebase.discard(ws.id)
            if ws.applied == 0 and b.seq > 1:
                ws.applied = ws.stored = b.seq - 1
                self.counters.add("writers_rebased")
        if self.spool_full and ws is not None and b.seq > ws.applied:
            self.counters.add("deferred_spool_full")  # backpressure: the client keeps it and resends
            return []
        return super()._batch(peer, b, now)

    def _apply(self, run: RunState, b: wire.Batch, now: float) -> None:
        """What the node needs of a batch (the root applies it whole): step, state, group windows."""
        r = run.record
        group = run.group
        pending = self.pending
        run.last_seen = now
        self._op(("b", r.id, self._frame), len(self._frame))
        for op, arg in b.control:
            if op == "define":
                self._control(run, op, arg, now)
        if b.n:
            late = b.late
            n_late = 0 if late is None else int(late.sum())
            for col in b.columns:  # list columns too: their numbers make group rows (agent/groups.py add_column)
                steps = b.step if col.rows is None else b.step[col.rows]
                group.add_column(r.rank, col.key, steps, col.values, now, pending)
            self._count_rows(run, b, n_late)
        if b.spans is not None:  # rows the client coalesced under overload: group points, step, rows
            from agent.clientspans import count_client_spans

            count_client_spans(self, run, b.spans, now)
        if b.pending is not None or r.pending is not None:
            r.pending = None if b.pending is None else [b.pending[0], b.pending[1], _numbers(b.pending[2])]
        if b.summary:
            r.summary.update(_numbers(b.summary))  # the resume point a reconnecting rank gets back
        for op, arg in b.control:
            if op != "define":
                self._control(run, op, arg, now)
        r.updated = now
        pending.runs[r.id] = r

    def _crash(self, run: RunState, now: float, why: str) -> None:
        super()._crash(run, now, why)
        self._op(("c", run.record.id, why), 64)

    def _local(self, run: RunState) -> bool:
        return True  # every run of a node agent came over its private socket: its process runs here

    def _op(self, op: tuple, nbytes: int) -> None:
        self.pending.ops.append(op)
        self.pending.op_bytes += nbytes

    def drain_full(self) -> bool:
        """The next record is big enough: commit before draining more (records stay well within the quota)."""
        return super().drain_full() or self.pending.op_bytes >= min(RECORD_SOFT_BYTES, self.spool.quota_bytes // 4)

    # ------------------------------------------------------------ timers

    def tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        super().tick(now)
        if self.parked:
            mono = time.monotonic()
            for writer, (_, _, _, deadline, _) in list(self.parked.items()):
                if mono >= deadline:
                    self.counters.add("lookups_timed_out")
                    self.found(writer, None, 0, now)
                else:
                    self._ask(writer)

    def root_done(self, names: list) -> None:
        """The root says every rank of these groups has joined: stop waiting for unseen ranks."""
        for group in self.groups.values():
            if [group.record.project, group.record.name] in names:
                group.complete = True

    # ------------------------------------------------------------ commit

    def commit(self, now: float | None = None, force: bool = False) -> list[Reply]:
        pending = self.pending
        if not pending or (not force and time.monotonic() < self._commit_retry_at):
            return []
        now = time.time() if now is None else now
        payload = self._record(now)
        seq = None
        if payload is not None:
            try:
                seq = self.spool.append(payload)
            except OSError as exc:  # a full or failing disk: like a full quota, keep everything and retry
                log.error("spool append failed, will retry: %s", exc)
                seq = None
            if seq is None:
                self.spool_full = True
                self._commit_failures += 1
                self._commit_retry_at = time.monotonic() + min(2.0, 0.01 * 2 ** min(self._commit_failures, 8))
                self.counters.add("spool_refusals")
                return []
            self.spool_full = False
            self._commit_failures = 0
            self._commit_retry_at = 0.0
            self.counters.add("records")
            self.counters.add("record_bytes", len(payload))
            for gid, group in pending.groups.items():
                self.sent_w[gid] = group.sealed_through
            if self.upstream is not None:
                self.upstream.appended(seq, payload)
        self._write_catalog(seq)
        self.counters.add("commits")
        acks = []
        for writer, (peer, s) in pending.acks.items():
            ws = self.writers.get(writer)
            if ws is not None:
                ws.stored = max(ws.stored, s)
            acks.append((peer, wire.pack(wire.ACK, {"w": writer, "s": s})))
        pending.clear()
        return acks

    def _write_catalog(self, seq: int | None) -> None:
        pending = self.pending
        try:
            with self.store.transaction() as txn:
                for run in pending.runs.values():
                    txn.put_run(run)
                for group in pending.groups.values():
                    txn.put_group(group)
                for writer, (run_id, s) in pending.writers.items():
                    txn.put_writer(writer, run_id, s)
                if seq is not None:
                    txn.put_writer(SPOOL_MARK, 0, seq)
        except Exception as exc:  # the spool holds the data; a restart reads the catalog's lag back from it
            self.counters.add("catalog_failures")
            if self.counters.values["catalog_failures"] <= 5:
                log.error("node catalog update failed (the spool has the data): %s", exc)

    def _record(self, now: float) -> bytes | None:
        pending = self.pending
        run_index: dict[int, int] = {}
        runs: list[dict] = []
        group_index: dict[int, int] = {}
        groups: list[tuple[str, str, int]] = []

        def run_ref(run_id: int) -> int:
            if run_id not in run_index:
                run_index[run_id] = len(runs)
                runs.append(self._info(self.runs[run_id]))
            return run_index[run_id]

        def group_ref(gid: int) -> int:
            if gid not in group_index:
                g = self.groups[gid].record
                group_index[gid] = len(groups)
                groups.append((g.project, g.name, g.world_size))
            return group_index[gid]

        ops = [[op[0], run_ref(op[1]), *op[2:]] for op in pending.ops]
        late = [(group_ref(gid), key, np.unique(np.concatenate(parts))) for (gid, key), parts in pending.recompute.items()]
        parts = [(group_ref(gid), key, ranks, p) for gid, key, ranks, p in pending.partials]
        marks = [(group_ref(gid), g.sealed_through) for gid, g in pending.groups.items()
                 if g.sealed_through != self.sent_w.get(gid)]  # fmt: skip
        if not (ops or late or parts or marks):
            return None
        return record.encode(self.instance, self.node, now, runs, groups, ops, late, parts, marks)

    def _info(self, run: RunState) -> dict:
        """How a record names a run: the HELLO's identity fields (rebuilt from the catalog after a restart)."""
        r = run.record
        if run.info is None:
            g = run.group.record
            run.info = {"project": g.project, "group": g.name, "name": r.name, "rank": r.rank,
                        "world_size": g.world_size, "local_rank": r.local_rank, "node": r.node, "run_id": r.run_key}  # fmt: skip
        run.info["pid"] = r.pid
        return run.info

    # ------------------------------------------------------------ restart, status

    def recover(self, now: float | None = None) -> int:
        self._recover_tail()
        return super().recover(now)

    def _recover_tail(self) -> None:
        """Spool records after the catalog's mark (the agent died between the two): their writers' seqs."""
        mark = self.store.writer_seq(SPOOL_MARK)
        seqs: dict[str, tuple[int, int]] = {}
        last = mark
        for seq, payload in self.spool.replay(after_seq=mark):
            last = seq
            try:
                rec = record.decode(payload)
            except ProtocolError:
                continue
            for kind, ri, arg in rec.ops:
                if kind != "b":
                    continue
                try:
                    _, body = wire.unpack(arg)
                    w, s = body["w"], body["s"]
                except (ProtocolError, KeyError, TypeError):
                    continue
                info = rec.runs[ri]
                found = self.store.find_run(info["project"], info["group"], info["name"])
                if found is not None and isinstance(w, str) and isinstance(s, int) and s > seqs.get(w, (0, 0))[1]:
                    seqs[w] = (found.id, s)
        if last > mark:
            with self.store.transaction() as txn:
                for w, (run_id, s) in seqs.items():
                    if s > self.store.writer_seq(w):
                        txn.put_writer(w, run_id, s)
                txn.put_writer(SPOOL_MARK, 0, last)
            log.info("catalog caught up with %d spool record(s) after a restart", last - mark)

    def idle(self) -> bool:
        """Idle like any agent, and nothing left for the root, or the root silent past the linger time: a
        root gone for good must not keep an agent on every compute node forever (the spool stays on disk
        and the next node agent on this machine sends it)."""
        if not super().idle() or self.parked:
            return False
        if self.spool.pending == 0:
            return True
        linger, up = self.cfg.upstream_linger_s, self.upstream
        if linger > 0 and up is not None and time.monotonic() - up.heard_at > linger:
            log.warning("the root %s has not answered for %.0f s: exiting with %d record(s) kept in %s for the "
                        "next node agent on this machine", up.endpoint, time.monotonic() - up.heard_at,
                        self.spool.pending, self.spool.dir)  # fmt: skip
            return True
        return False

    def watermarks(self) -> list[list]:
        """[project, group, watermark] already spooled, of groups with running ranks (``state`` message)."""
        out = []
        for gid, w in self.sent_w.items():
            g = self.groups.get(gid)
            if g is not None and any(r.running for r in g.ranks.values()):
                out.append([g.record.project, g.record.name, w])
        return out[:10000]

    def status(self) -> dict[str, Any]:
        snap = super().status()
        snap["role"] = "node"
        snap["store"] = str(self.cfg.data_dir / "node.sqlite")  # the catalog; the data goes upstream
        if self.upstream is not None:
            snap["upstream"] = self.upstream.status()
        return snap


def _numbers(values: dict) -> dict:
    """A summary or pending row without media (the node keeps it only for resume points and its windows;
    the root stores the real thing)."""
    return {
        k: v for k, v in values.items()
        if not isinstance(v, (dict, bytes)) and not (isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v))
    }  # fmt: skip
