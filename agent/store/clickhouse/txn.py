"""One agent commit into ClickHouse: the rows a :class:`ClickHouseTxn` gathered, INSERTed in an order that
loses nothing when the process dies between two INSERTs.

Every chunk, record and counter of a commit gets a version: ``commit number << CHUNK_BITS | position``
(agent/store/clickhouse/store.py hands out commit numbers, never the same twice). Later chunks win by
version; the incremental reads' "chunk ids" are these versions (they only grow).

Order of the INSERTs (one per table): history, group rows, system samples, alerts, drops, groups, runs,
and the writers' sequence numbers LAST. The agent drops a resent batch whose sequence number is stored
already (agent/registry.py): stored before the history, a crash in between would make it drop the batch
whose points never arrived. Stored last, a crash anywhere before leaves the batch unacknowledged: it is
resent and written again under a newer version, and reads keep one value per (run, key, step).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from agent.alerts.alert import Alert
from agent.store import system_chunks
from agent.store.base import GROUP_FIELDS, META_KEYS, GroupRecord, RunRecord, Txn
from agent.store.clickhouse import points
from agent.store.clickhouse.conn import lit
from agent.store.clickhouse.records import pack_record
from agent.store.clickhouse.schema import types

if TYPE_CHECKING:
    from agent.store.clickhouse.store import ClickHouseStore

CHUNK_BITS = 24  # versions of one commit: 16M chunks (a row of 100k new keys for 100 runs fits)
_HISTORY_COLS = ("group_id", "key", "run_id", "step_min", "step_max", "ver", "n", "late", "enc", "steps", "vals")


class ClickHouseTxn(Txn):
    def __init__(self, store: ClickHouseStore, commit: int):
        self.store = store
        self.commit = commit
        self._n = 0
        self.history: list[tuple] = []  # one tuple of _HISTORY_COLS per chunk
        self.group_rows: list[dict] = []
        self.runs: dict[int, RunRecord] = {}
        self.groups: dict[int, GroupRecord] = {}
        self.writers: dict[str, tuple[int, int]] = {}
        self.drops: dict[str, int] = {}
        self.alerts: list[Alert] = []
        self.system: list[tuple] = []

    def __repr__(self) -> str:
        return (
            f"<ClickHouseTxn commit={self.commit} chunks={self._n} history={len(self.history)} "
            f"group_rows={len(self.group_rows)} runs={len(self.runs)} writers={len(self.writers)}>"
        )

    def ver(self) -> int:
        if self._n >= 1 << CHUNK_BITS:
            raise ValueError(f"a commit holds at most {1 << CHUNK_BITS} chunks; commit less per transaction")
        self._n += 1
        return (self.commit << CHUNK_BITS) | (self._n - 1)

    def add_history(self, run_id, key, steps, values, late) -> None:
        if len(steps) == 0:
            return
        lo, hi, n, enc, sblob, vblob = points.encode_chunk(steps, values, first=key in META_KEYS)
        self.history.append(
            (self.store.group_of(run_id), key.encode(), run_id, lo, hi, self.ver(), n, int(late), enc, sblob, vblob)
        )

    def add_group_rows(self, group_id, key, rows, revision) -> None:
        n = len(rows["step"])
        if n == 0:
            return
        cols = {
            "group_id": np.full(n, group_id, np.uint64),
            "key": np.full(n, key.encode(), object),
            "ver": np.full(n, self.ver(), np.uint64),
            "revision": np.full(n, int(revision), np.uint8),
        }
        for f, t in types("group_rows").items():
            if f in GROUP_FIELDS:
                cols[f] = np.asarray(rows[f], np.float64 if t == "Float64" else np.int64)
        self.group_rows.append(cols)

    def put_run(self, run: RunRecord) -> None:
        self.runs[run.id] = run

    def put_group(self, group: GroupRecord) -> None:
        self.groups[group.id] = group

    def put_writer(self, writer: str, run_id: int, seq: int) -> None:
        self.writers[writer] = (run_id, seq)

    def count_drop(self, cause: str, n: int) -> None:
        self.drops[cause] = self.drops.get(cause, 0) + n

    def add_alert(self, alert: Alert) -> None:
        self.alerts.append(alert)

    def add_system(self, group_id, run_id, node, columns) -> None:
        if system_chunks.check_columns(columns, "add_system"):
            self.system.append((group_id, run_id or 0, node, system_chunks.encode_columns(columns)))

    def rank_values(self, group_id, key, steps):
        empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
        steps = np.asarray(steps, np.int64)
        if len(steps) == 0:
            return empty
        lo, hi = int(steps.min()), int(steps.max())
        chunks = self.store.read.chunks(
            f"group_id = {lit(group_id)} AND key = {lit(key)} AND step_max >= {lo} AND step_min <= {hi}"
        )
        for c in self.history:  # the transaction's own chunks, not INSERTed yet
            if c[0] == group_id and c[1] == key.encode() and c[4] >= lo and c[3] <= hi:
                chunks.append((c[2], key, c[5], c[3], c[4], c[8], c[9], c[10]))
        out_s, out_r, out_v = [], [], []
        for run_id, cs in sorted(points.by_run(chunks).items()):
            got = points.join(cs, first=key in META_KEYS, numeric=True)
            if got is None:
                continue
            s, v = got
            keep = np.isin(s, steps)
            out_s.append(s[keep])
            out_r.append(np.full(int(keep.sum()), self.store.rank_of(run_id), np.int64))
            out_v.append(v[keep])
        if not out_s:
            return empty
        return np.concatenate(out_s), np.concatenate(out_r), np.concatenate(out_v).astype(np.float64, copy=False)

    # ------------------------------------------------------------------ the INSERTs
    def flush(self) -> None:
        """INSERT everything gathered, one statement per table, the writers' sequence numbers last."""
        conn, db = self.store.conn, self.store.schema
        if self.history:
            cols = dict(zip(_HISTORY_COLS, zip(*self.history, strict=True), strict=True))
            for c in ("key", "enc", "steps", "vals"):
                cols[c] = _objects([x.encode() if isinstance(x, str) else x for x in cols[c]])
            conn.insert(db.t("history_chunks"), _arrays(cols, "history_chunks"), types("history_chunks"))
        if self.group_rows:
            conn.insert(db.t("group_rows"), _join(self.group_rows, tuple(self.group_rows[0])), types("group_rows"))
        if self.system:
            g, r, node, data = zip(*self.system, strict=True)
            cols = {"group_id": g, "run_id": r, "node": node, "data": data}
            cols["ver"] = [self.ver() for _ in g]
            conn.insert(db.t("system"), _arrays(cols, "system"), types("system"))
        if self.alerts:
            rows = [
                (a.group_id, a.kind, -1 if a.rank is None else a.rank, a.key or "", a.token, self.ver(), _doc(a))
                for a in self.alerts
            ]
            conn.insert(
                db.t("alerts"), _arrays(dict(zip(types("alerts"), zip(*rows), strict=True)), "alerts"), types("alerts")
            )
        if self.drops:
            causes = list(self.drops)
            cols = {"cause": causes, "ver": [self.ver() for _ in causes], "n": [self.drops[c] for c in causes]}
            conn.insert(db.t("drops"), _arrays(cols, "drops"), types("drops"))
        if self.groups:
            gs = list(self.groups.values())
            cols = {
                "id": [g.id for g in gs],
                "project": [g.project for g in gs],
                "name": [g.name for g in gs],
                "ver": [self.ver() for _ in gs],
                "rec": [pack_record(g) for g in gs],
            }
            conn.insert(db.t("groups"), _arrays(cols, "groups"), types("groups"))
        if self.runs:
            rs = list(self.runs.values())
            cols = {
                "id": [r.id for r in rs],
                "group_id": [r.group_id for r in rs],
                "name": [r.name for r in rs],
                "state": [r.state for r in rs],
                "ver": [self.ver() for _ in rs],
                "rec": [pack_record(r) for r in rs],
            }
            conn.insert(db.t("runs"), _arrays(cols, "runs"), types("runs"))
        if self.writers:  # last: see the module's docstring
            ws = list(self.writers)
            cols = {
                "writer": ws,
                "run_id": [self.writers[w][0] for w in ws],
                "seq": [self.writers[w][1] for w in ws],
                "ver": [self.ver() for _ in ws],
            }
            conn.insert(db.t("writers"), _arrays(cols, "writers"), types("writers"))


_NP = {"UInt64": np.uint64, "Int64": np.int64, "UInt8": np.uint8, "Float64": np.float64}


def _arrays(cols: dict, table: str) -> dict:
    ts = types(table)
    return {
        c: (v if isinstance(v, np.ndarray) else list(v)) if ts[c] == "String" else np.asarray(v, _NP[ts[c]])
        for c, v in cols.items()
    }


def _join(chunks: list[dict], names: tuple[str, ...]) -> dict:
    out = {}
    for c in names:
        parts = [ch[c] for ch in chunks]
        out[c] = [x for p in parts for x in p] if isinstance(parts[0], list) else np.concatenate(parts)
    return out


def _objects(items: list) -> np.ndarray:
    out = np.empty(len(items), object)
    out[:] = items
    return out


def _doc(a: Alert) -> str:
    return json.dumps(a.to_dict(), sort_keys=True, default=str)
