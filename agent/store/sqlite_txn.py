"""One write transaction of the SQLite store: the chunks, records and counters an agent commit writes.

History and group rows are columnar chunks (agent/store/sqlite_format.py); every new key of a commit gets
its id in one statement (:class:`agent.store.sqlite_format.KeyIds`). :meth:`SQLiteTxn.rank_values` reads
through the open transaction: a late group row's recomputation sees the commit's own history.
"""

from __future__ import annotations

import sqlite3

import numpy as np

from agent.alerts.alert import Alert
from agent.store import system_chunks
from agent.store.base import GROUP_FIELDS, GroupRecord, RunRecord, Txn, last_wins
from agent.store.sqlite_format import KeyIds, encode_values, numeric_chunk, pack

_FINITE_FIELDS = tuple(f for f in GROUP_FIELDS if f not in ("nan_count", "nan_rank"))


class SQLiteTxn(Txn):
    """One write transaction's statements, run by :meth:`agent.store.sqlite.SQLiteStore.transaction` inside
    BEGIN/COMMIT (which maps sqlite3's exceptions). History and group-row chunks are gathered and written in one
    ``executemany`` each when the transaction ends or reads (:meth:`rank_values`)."""

    def __init__(self, con: sqlite3.Connection, keys: KeyIds):
        self.con = con
        self.keys = keys
        self.history: list[tuple] = []
        self.group_rows: list[tuple] = []

    def __repr__(self) -> str:
        return f"<SQLiteTxn unwritten chunks: history={len(self.history)} group_rows={len(self.group_rows)}>"

    def add_history(self, run_id: int, key: str, steps: np.ndarray, values: np.ndarray | list, late: bool) -> None:
        if len(steps) == 0:
            return
        enc, blob = encode_values(values)
        steps = steps.astype("<i8", copy=False)
        self.history.append(
            (run_id, key, int(steps.min()), int(steps.max()), len(steps), int(late), enc, steps.tobytes(), blob)
        )

    def add_group_rows(self, group_id: int, key: str, rows: dict[str, np.ndarray], revision: bool) -> None:
        steps = rows["step"]
        if len(steps) == 0:
            return
        # rows without a non-finite value (nearly all) leave nan_count/nan_rank out: read back as 0 and -1
        # (agent/store/sqlite_format.py decode_group_chunks), 16 of 88 bytes a row saved
        fields = GROUP_FIELDS if rows["nan_count"].any() else _FINITE_FIELDS
        data = pack({f: np.ascontiguousarray(rows[f]).tobytes() for f in fields})
        self.group_rows.append((group_id, key, int(steps.min()), int(steps.max()), len(steps), int(revision), data))

    def flush(self) -> None:
        """Write the chunks gathered so far. Their keys get ids here, every new key of the commit in one
        statement (KeyIds.ensure): a row of 100k new keys is not 100k INSERTs."""
        if not self.history and not self.group_rows:
            return
        self.keys.ensure({row[1] for row in self.history} | {row[1] for row in self.group_rows})
        ids = self.keys.ids
        self.history = [(r[0], ids[r[1]], *r[2:]) for r in self.history]
        self.group_rows = [(r[0], ids[r[1]], *r[2:]) for r in self.group_rows]
        if self.history:
            self.con.executemany(
                "INSERT INTO history(run_id, key_id, step_min, step_max, n, late, enc, steps, vals) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                self.history,
            )
            self.history = []
        if self.group_rows:
            self.con.executemany(
                "INSERT INTO group_rows(group_id, key_id, step_min, step_max, n, revision, data) VALUES (?,?,?,?,?,?,?)",
                self.group_rows,
            )
            self.group_rows = []

    def put_run(self, r: RunRecord) -> None:
        self.con.execute(
            "UPDATE runs SET pid=?, state=?, exit_code=?, updated=?, finished=?, step=?, runtime=?, rows=?, late=?, "
            "incarnations=?, summary=?, config=?, pending=?, meta=?, node=?, local_rank=? WHERE id=?",
            (
                r.pid,
                r.state,
                r.exit_code,
                r.updated,
                r.finished,
                r.step,
                r.runtime,
                r.rows,
                r.late,
                r.incarnations,
                pack(r.summary),
                pack(r.config),
                None if r.open_row is None else pack(r.open_row),
                pack(r.meta),
                r.node,
                r.local_rank,
                r.id,
            ),
        )

    def put_group(self, g: GroupRecord) -> None:
        self.con.execute(
            "UPDATE groups SET world_size=?, updated=?, sealed_through=?, late_rows=? WHERE id=?",
            (g.world_size, g.updated, g.sealed_through, g.late_rows, g.id),
        )

    def put_writer(self, writer: str, run_id: int, seq: int) -> None:
        self.con.execute(
            "INSERT INTO writers(writer, run_id, seq) VALUES (?,?,?) "
            "ON CONFLICT(writer) DO UPDATE SET seq=excluded.seq",
            (writer, run_id, seq),
        )

    def count_drop(self, cause: str, n: int) -> None:
        self.con.execute(
            "INSERT INTO drops(cause, n) VALUES (?,?) ON CONFLICT(cause) DO UPDATE SET n = n + excluded.n", (cause, n)
        )

    def add_alert(self, a: Alert) -> None:
        self.con.execute(
            "INSERT OR IGNORE INTO alerts(group_id, run_id, rank, kind, key, step, time, level, message, details, "
            "token) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                a.group_id,
                a.run_id,
                a.rank,
                a.kind,
                a.key,
                a.step,
                a.time,
                a.level,
                a.message,
                a.details_json(),
                a.token,
            ),
        )

    def add_system(self, group_id: int, run_id: int | None, node: str, columns: dict[str, np.ndarray]) -> None:
        n = system_chunks.check_columns(columns, "add_system")
        if n:
            t = columns[system_chunks.TIME]
            self.con.execute(
                "INSERT INTO system(group_id, run_id, node, t_min, t_max, n, data) VALUES (?,?,?,?,?,?,?)",
                (group_id, run_id, node, float(np.min(t)), float(np.max(t)), n, system_chunks.encode_columns(columns)),
            )

    def rank_values(self, group_id: int, key: str, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.flush()
        kid = self.keys.id(key, create=False)
        empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
        if kid is None or len(steps) == 0:
            return empty
        rows = self.con.execute(
            "SELECT h.run_id, r.rank, h.enc, h.steps, h.vals FROM history h JOIN runs r ON r.id = h.run_id "
            "WHERE r.group_id=? AND h.key_id=? AND h.step_max >= ? AND h.step_min <= ? ORDER BY h.id",
            (group_id, kid, int(steps.min()), int(steps.max())),
        ).fetchall()
        per_run: dict[int, tuple[int, list, list]] = {}
        for run_id, rank, enc, sblob, vblob in rows:
            chunk = numeric_chunk(enc, sblob, vblob)
            if chunk is None:
                continue
            entry = per_run.setdefault(run_id, (rank, [], []))
            entry[1].append(chunk[0])
            entry[2].append(chunk[1])
        out_s, out_r, out_v = [], [], []
        for rank, s_list, v_list in per_run.values():
            s, v = last_wins(s_list, v_list)
            mask = np.isin(s, steps)
            out_s.append(s[mask])
            out_r.append(np.full(int(mask.sum()), rank, np.int64))
            out_v.append(np.asarray(v)[mask])
        if not out_s:
            return empty
        return np.concatenate(out_s), np.concatenate(out_r), np.concatenate(out_v)
