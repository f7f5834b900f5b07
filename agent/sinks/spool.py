"""The spool sink: a forwarding node agent's commits become spool records, on to the root.

Every drain ends in one commit, as on a single agent; here a commit appends one
spool record (agent/record.py) holding the client batches applied in that drain
(raw, as the clients sent them), the HELLOs and crashes seen, the partial group
rows sealed over this node's ranks, late marks and this node's watermarks. Only
once the record is in the spool (written to the page cache; fsynced within
``spool_fsync_s``) are the clients acknowledged. Then a small SQLite *catalog*
(``node.sqlite``: runs, groups, writers, no history; the agent's own store) is
updated, so that a restarted node agent knows its runs (to detect their crashes
and answer their reconnects) and the writers' last acknowledged seqs (to
de-duplicate their replays). The catalog is written after the spool: if the
agent dies in between, the records after the catalog's mark are read back at
start-up (:meth:`SpoolSink.recover`).

A full spool (its byte quota) is backpressure: new client batches are not
applied or acknowledged, the clients keep them (in memory, then spilled to
disk) and resend; counted as ``deferred_spool_full``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from agent import record
from agent.clientspans import count_client_spans
from agent.groups import NodeGroupState
from agent.linkwire import RECORD_SOFT_BYTES
from agent.nextcommit import LINK_PREFIX, BatchOp, CrashOp, HelloOp, SystemOp
from agent.sinks.base import Sink
from agent.system.forward import system_ops
from client import wire
from client.errors import ProtocolError

if TYPE_CHECKING:
    from agent.nextcommit import NextCommit
    from agent.runs import RunState
    from agent.spool import Spool

log = logging.getLogger("rankwise.agent")
SPOOL_MARK = LINK_PREFIX + "spool"  # catalog entry: the last spool record the catalog reflects
_SLIM = ("project", "group", "name", "rank", "world_size", "local_rank", "node", "launcher", "run_id", "started")


class SpoolSink(Sink):
    group_class = NodeGroupState
    sliced = False  # batches go upstream whole (the root applies them in slices if need be)
    tracks_store_health = False  # its commit writes the spool (quota, backpressure: agent/spool.py), not the store
    resets_store_on_loss = False  # its catalog (node.sqlite) is not the data
    # reconnecting writers this node has no seq for (its catalog was lost): their first batch sets the
    # baseline instead of being a gap; the root de-duplicates whatever was delivered before
    rebases_reconnects = True
    every_run_local = True  # every run of a node agent came over its private socket: its process runs here

    def __init__(self, spool: Spool):
        self.spool = spool
        self.sent_w: dict[int, int] = {}  # group id -> watermark already in a spool record
        self.spool_full = False

    def __repr__(self) -> str:
        return f"<SpoolSink full={self.spool_full} spool={self.spool!r}>"

    # ------------------------------------------------------------ applying

    def apply(self, run: RunState, b: wire.Batch, frame: bytes, now: float) -> None:
        """What the node needs of a batch (the root applies it whole): step, state, group windows."""
        applier = self.ingest.applier
        nc = applier.next_commit
        r = run.record
        group = run.group
        run.last_seen = now
        self._op(BatchOp(r.id, frame), len(frame))
        for op, arg in b.control:
            if op == "define":
                applier.control(run, op, arg, now)
        if b.n:
            late = b.late
            n_late = 0 if late is None else int(late.sum())
            for col in b.columns:  # list columns too: their numbers make group rows (agent/groups.py add_column)
                steps = b.step if col.rows is None else b.step[col.rows]
                group.add_column(r.rank, col.key, steps, col.values, now, nc)
            applier.count_rows(run, b, n_late)
        if b.spans is not None:  # rows the client coalesced under overload: group points, step, rows
            count_client_spans(applier, run, b.spans, now)
        if b.open_row is not None or r.open_row is not None:
            r.open_row = None if b.open_row is None else [b.open_row[0], b.open_row[1], _numbers(b.open_row[2])]
        if b.summary:
            r.summary.update(_numbers(b.summary))  # the resume point a reconnecting rank gets back
        for op, arg in b.control:
            if op != "define":
                applier.control(run, op, arg, now)
        r.updated = now
        nc.runs[r.id] = r

    def hello(self, run: RunState, h: wire.Hello, body: dict, resumed: bool) -> None:
        if run.info is None or resumed:
            run.info = dict({k: h.run[k] for k in _SLIM if k in h.run}, pid=h.pid)
        self._op(HelloOp(run.record.id, body, bool(resumed)), 256)

    def crash(self, run: RunState, why: str) -> None:
        self._op(CrashOp(run.record.id, why), 64)

    def _op(self, op: HelloOp | BatchOp | CrashOp, nbytes: int) -> None:
        nc = self.ingest.next_commit
        nc.ops.append(op)
        nc.op_bytes += nbytes

    def refusing(self) -> str | None:
        return "deferred_spool_full" if self.spool_full else None

    def drain_full(self) -> bool:
        """The next record is big enough: commit before draining more (records stay well within the quota)."""
        return self.ingest.next_commit.op_bytes >= min(RECORD_SOFT_BYTES, self.spool.quota_bytes // 4)

    # ------------------------------------------------------------ commit

    def write(self, nc: NextCommit, now: float) -> bool:
        counters = self.ingest.counters
        payload = self._record(nc, now)
        seq = None
        if payload is not None:
            try:
                seq = self.spool.append(payload)
            except OSError as exc:  # a full or failing disk: like a full quota, keep everything and retry
                log.error("spool append failed, will retry: %s", exc)
                seq = None
            if seq is None:
                self.spool_full = True
                counters.add("spool_refusals")
                return False
            self.spool_full = False
            counters.add("records")
            counters.add("record_bytes", len(payload))
            for gid, group in nc.groups.items():
                self.sent_w[gid] = group.sealed_through
            if self.ingest.upstream is not None:
                self.ingest.upstream.appended(seq, payload)
        self._write_catalog(nc, seq)
        return True

    def _write_catalog(self, nc: NextCommit, seq: int | None) -> None:
        try:
            with self.ingest.store.transaction() as txn:
                nc.write_registry(txn)
                if seq is not None:
                    txn.put_writer(SPOOL_MARK, 0, seq)
        except Exception as exc:  # the spool holds the data; a restart reads the catalog's lag back from it
            counters = self.ingest.counters
            counters.add("catalog_failures")
            if counters.values["catalog_failures"] <= 5:
                log.error("node catalog update failed (the spool has the data): %s", exc)

    def _record(self, nc: NextCommit, now: float) -> bytes | None:
        ingest = self.ingest
        run_index: dict[int, int] = {}
        runs: list[dict] = []
        group_index: dict[int, int] = {}
        groups: list[tuple[str, str, int]] = []

        def run_ref(run_id: int) -> int:
            if run_id not in run_index:
                run_index[run_id] = len(runs)
                runs.append(_info(ingest.runs[run_id]))
            return run_index[run_id]

        def group_ref(gid: int) -> int:
            if gid not in group_index:
                g = ingest.groups[gid].record
                group_index[gid] = len(groups)
                groups.append((g.project, g.name, g.world_size))
            return group_index[gid]

        ops = [[op.kind, run_ref(op.run_id), *op[1:]] for op in nc.ops]
        for run_id, host, columns in system_ops(nc, ingest):  # agent/system/forward.py
            ops.append([SystemOp.kind, run_ref(run_id), *record.system_op_fields(host, columns)])
        late = [(group_ref(gid), key, np.unique(np.concatenate(parts))) for (gid, key), parts in nc.recompute.items()]
        parts = [(group_ref(gid), key, ranks, p) for gid, key, ranks, p in nc.partials]
        marks = [
            (group_ref(gid), g.sealed_through)
            for gid, g in nc.groups.items()
            if g.sealed_through != self.sent_w.get(gid)
        ]
        if not (ops or late or parts or marks):
            return None
        return record.encode(ingest.instance, ingest.node, now, runs, groups, ops, late, parts, marks)

    # ------------------------------------------------------------ the loop's hooks

    def pump(self) -> None:
        self.spool.maybe_fsync()  # records go upstream once fsynced (agent/spool.py)

    def wal_full(self) -> bool:
        return self.ingest.store.wal_full()  # the catalog's

    def checkpoint(self) -> bool:
        self.ingest.store.checkpoint()
        return True

    def close(self) -> None:
        self.spool.close()

    def recover(self) -> None:
        """Spool records after the catalog's mark (the agent died between the two): their writers' seqs."""
        store = self.ingest.store
        mark = store.writer_seq(SPOOL_MARK)
        seqs: dict[str, tuple[int, int]] = {}
        last = mark
        for seq, payload in self.spool.replay(after_seq=mark):
            last = seq
            try:
                rec = record.decode(payload)
            except ProtocolError:
                continue
            for kind, ri, arg in rec.ops:
                if kind != BatchOp.kind:
                    continue
                try:
                    _, body = wire.unpack(arg)
                    w, s = body["w"], body["s"]
                except (ProtocolError, KeyError, TypeError):
                    continue
                info = rec.runs[ri]
                found = store.find_run(info["project"], info["group"], info["name"])
                if found is not None and isinstance(w, str) and isinstance(s, int) and s > seqs.get(w, (0, 0))[1]:
                    seqs[w] = (found.id, s)
        if last > mark:
            with store.transaction() as txn:
                for w, (run_id, s) in seqs.items():
                    if s > store.writer_seq(w):
                        txn.put_writer(w, run_id, s)
                txn.put_writer(SPOOL_MARK, 0, last)
            log.info("catalog caught up with %d spool record(s) after a restart", last - mark)

    def idle(self) -> bool:
        """Nothing left for the root, or the root silent past the linger time: a root gone for good must not
        keep an agent on every compute node forever (the spool stays on disk and the next node agent on this
        machine sends it)."""
        if self.spool.unacked == 0:
            return True
        linger, up, clock = self.ingest.cfg.upstream_linger_s, self.ingest.upstream, self.ingest.clock
        if linger > 0 and up is not None and clock() - up.heard_at > linger:
            log.warning(
                "the root %s has not answered for %.0f s: exiting with %d record(s) kept in %s for the "
                "next node agent on this machine",
                up.endpoint,
                clock() - up.heard_at,
                self.spool.unacked,
                self.spool.dir,
            )
            return True
        return False

    def watermarks(self) -> list[list]:
        """[project, group, watermark] already spooled, of groups with running ranks (``state`` message)."""
        out = []
        for gid, w in self.sent_w.items():
            g = self.ingest.groups.get(gid)
            if g is not None and any(r.running for r in g.ranks.values()):
                out.append([g.record.project, g.record.name, w])
        return out[:10000]

    def status(self, snap: dict[str, Any]) -> None:
        snap["role"] = "node"
        snap["store"] = str(self.ingest.cfg.data_dir / "node.sqlite")  # the catalog; the data goes upstream
        if self.ingest.upstream is not None:
            snap["upstream"] = self.ingest.upstream.status()


def _info(run: RunState) -> dict:
    """How a record names a run: the HELLO's identity fields (rebuilt from the catalog after a restart)."""
    r = run.record
    if run.info is None:
        g = run.group.record
        run.info = {
            "project": g.project,
            "group": g.name,
            "name": r.name,
            "rank": r.rank,
            "world_size": g.world_size,
            "local_rank": r.local_rank,
            "node": r.node,
            "run_id": r.run_key,
        }
    run.info["pid"] = r.pid
    return run.info


def _numbers(values: dict) -> dict:
    """A summary or pending row without media (the node keeps it only for resume points and its windows;
    the root stores the real thing)."""
    return {
        k: v
        for k, v in values.items()
        if not isinstance(v, (dict, bytes))
        and not (isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v))
    }
