"""The ClickHouse store's read side (``rankwise.Api``, the CLI, the UI): every read picks, per (run, key,
step) or per (group, key, step), the value of the latest version (the earliest for ``META_KEYS``: a row's
time is its first commit's), so what it returns never depends on whether the engine merged the parts
holding replays or revisions yet. History is read as chunks (agent/store/clickhouse/points.py), a (run,
key)'s joined in version order by ``last_wins``; step filters select the chunks whose [step_min, step_max]
overlaps them, ``select_steps`` the exact steps. Group rows are read unsorted and sorted in numpy
(``lexsort`` by step, then version; ``winners``): measured on the former per-point history rows (6.4M),
18.16's ``ORDER BY`` took 4.2 s where the unsorted read took 0.3 s; records (runs, groups) are read with
``ORDER BY id, ver DESC LIMIT 1 BY id``.

Chunk ids of the incremental reads are versions (agent/store/clickhouse/txn.py): they only grow.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from agent.errors import StoreEmpty
from agent.ratelimit import unpack_spans
from agent.store import system_chunks
from agent.store.base import GROUP_FIELDS, META_KEYS, ROW_KEYS, GroupRecord, Reader, RunRecord, select_steps
from agent.store.clickhouse import points
from agent.store.clickhouse.conn import Conn, connect, lit
from agent.store.clickhouse.records import unpack_record
from agent.store.clickhouse.schema import GROUP_TYPES, Schema
from agent.store.clickhouse.url import ClickHouseURL, parse_url
from agent.store.sqlite_format import SPAN_BYTES

_EMPTY_ROWS = {f: np.empty(0, np.float64 if GROUP_TYPES[f] == "Float64" else np.int64) for f in GROUP_FIELDS}


class ClickHouseReader(Reader):
    """Read side over its own connection (a chdb reader shares the process's session)."""

    def __init__(self, url: str | ClickHouseURL, conn: Conn | None = None):
        self.url = parse_url(url) if isinstance(url, str) else url
        self.conn = conn or connect(self.url)
        self._own = conn is None
        self.schema = Schema(self.conn, self.url.database, create=False)
        self._groups_of: dict[int, int] = {}  # run id → group id (never changes)
        (n,) = self.conn.query(
            f"SELECT count() FROM system.tables WHERE database = {lit(self.url.database)} AND name = 'history_chunks'",
            1,
        )
        if not len(n) or int(n[0]) == 0:
            self.close()
            raise StoreEmpty(f"no rankwise store in {self.url}; log a run into it first or pass the right URL")

    def __repr__(self) -> str:
        return f"<ClickHouseReader {self.url}>"

    def t(self, table: str) -> str:
        return self.schema.t(table)

    # ---------------------------------------------------------------- records
    def _records(self, cls: type, table: str, where: str = "1") -> list:
        (recs,) = self.conn.query(
            f"SELECT rec FROM {self.t(table)} WHERE {where} ORDER BY id, ver DESC LIMIT 1 BY id", 1, exact=True
        )
        return [unpack_record(cls, r) for r in recs]

    def projects(self) -> list[str]:
        return sorted({g.project for g in self._records(GroupRecord, "groups")})

    def groups(self, project: str | None = None) -> list[GroupRecord]:
        where = "1" if project is None else f"project = {lit(project)}"
        gs = self._records(GroupRecord, "groups", where)
        return sorted(gs, key=lambda g: (g.created, g.id), reverse=True)

    def group(self, project: str, name: str) -> GroupRecord | None:
        gs = self._records(GroupRecord, "groups", f"project = {lit(project)} AND name = {lit(name)}")
        return gs[0] if gs else None

    def runs(self, group_id: int) -> list[RunRecord]:
        rs = self._records(RunRecord, "runs", f"group_id = {lit(group_id)}")
        return sorted(rs, key=lambda r: (r.rank, r.id))

    def group_of(self, run_id: int) -> int:
        """The group of a run (0: no such run)."""
        gid = self._groups_of.get(run_id)
        if gid is None:
            (g,) = self.conn.query(f"SELECT group_id FROM {self.t('runs')} WHERE id = {lit(run_id)} LIMIT 1", 1)
            gid = int(g[0]) if len(g) else 0
            if gid:
                self._groups_of[run_id] = gid
        return gid

    def _run_where(self, run_id: int) -> str:
        return f"group_id = {lit(self.group_of(run_id))} AND run_id = {lit(run_id)}"

    # ---------------------------------------------------------------- history
    def chunks(self, where: str) -> list[points.Chunk]:
        """The history chunks matching ``where`` (agent/store/clickhouse/points.py ``Chunk``), unsorted."""
        cols = self.conn.query(
            f"SELECT run_id, key, ver, step_min, step_max, enc, steps, vals FROM {self.t('history_chunks')} "
            f"WHERE {where}",
            8,
            exact=True,
        )
        run, key, ver, lo, hi = (np.asarray(c).tolist() if i != 1 else c for i, c in enumerate(cols[:5]))
        enc = [e.decode() if isinstance(e, bytes) else e for e in cols[5]]
        keys = [k.decode() if isinstance(k, bytes) else k for k in key]
        return list(zip(run, keys, ver, lo, hi, enc, cols[6], cols[7], strict=True))

    def run_keys(self, run_id: int) -> list[str]:
        (keys,) = self.conn.query(
            f"SELECT DISTINCT key FROM {self.t('history_chunks')} WHERE {self._run_where(run_id)}", 1
        )
        return sorted(k.decode() for k in keys if k.decode() not in ROW_KEYS)

    def _series(self, where: str) -> dict[tuple[int, str], tuple[np.ndarray, Any]]:
        """(run id, key) → (steps, values) of the chunks matching ``where``, later versions winning per step."""
        parts: dict[tuple[int, str], list[points.Chunk]] = {}
        for c in self.chunks(where):
            parts.setdefault((c[0], c[1]), []).append(c)
        out = {}
        for (run_id, name), cs in sorted(parts.items()):
            got = points.join(cs, first=name in META_KEYS)
            if got is not None:
                out[(run_id, name)] = got
        return out

    def run_history(self, run_id: int, keys: list[str] | None = None) -> dict[str, tuple[np.ndarray, Any]]:
        where = self._run_where(run_id)
        if keys is not None:
            if not keys:
                return {}
            where += f" AND key IN {lit(list(keys))}"
        return {k: sv for (_, k), sv in self._series(where).items()}

    def run_spans(self, run_id: int, keys: list[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
        where = f"{self._run_where(run_id)} AND enc = 'span'"
        if keys is not None:
            where += f" AND key IN {lit(list(keys) or [''])}"
        parts: dict[str, list[dict]] = {}
        for c in sorted(self.chunks(where), key=lambda c: c[2]):
            vblob = c[7]
            spans = dict(unpack_spans(vblob, len(vblob) // SPAN_BYTES), step=points.steps_of(c[3], c[4], c[6]))
            parts.setdefault(c[1], []).append(spans)
        return {k: {f: np.concatenate([p[f] for p in v]) for f in v[0]} for k, v in parts.items()}

    def group_rank_history(
        self, group_id: int, key: str, after: int = 0
    ) -> tuple[int, dict[int, tuple[np.ndarray, np.ndarray]]]:
        chunks = self.chunks(f"group_id = {lit(group_id)} AND key = {lit(key)} AND ver > {lit(after)}")
        if not chunks:
            return after, {}
        out = {}
        for run_id, cs in sorted(points.by_run(chunks).items()):
            got = points.join(cs, first=key in META_KEYS, numeric=True)
            if got is not None and len(got[0]):
                out[run_id] = got
        return max(c[2] for c in chunks), out

    def group_value_steps(self, group_id: int, key: str) -> dict[int, np.ndarray]:
        run, lo, hi, sblob = self.conn.query(
            f"SELECT run_id, step_min, step_max, steps FROM {self.t('history_chunks')} "
            f"WHERE group_id = {lit(group_id)} AND key = {lit(key)}",
            4,
            exact=True,
        )
        parts: dict[int, list[np.ndarray]] = {}
        for r, a, b, s in zip(
            np.asarray(run).tolist(), np.asarray(lo).tolist(), np.asarray(hi).tolist(), sblob, strict=True
        ):
            parts.setdefault(r, []).append(points.steps_of(a, b, s))
        return {r: np.unique(np.concatenate(p)) for r, p in sorted(parts.items())}

    def _values(self, where, key, steps, start, end) -> dict[int, tuple[np.ndarray, list]]:
        want = None if steps is None else np.asarray(steps, np.int64)
        if want is not None and len(want) == 0:
            return {}
        where += f" AND key = {lit(key)}"
        if start is not None:
            where += f" AND step_max >= {lit(int(start))}"
        if end is not None:
            where += f" AND step_min <= {lit(int(end))}"
        if want is not None:
            where += f" AND step_max >= {lit(int(want.min()))} AND step_min <= {lit(int(want.max()))}"
        out = {}
        for (run_id, _), (st, vals) in self._series(where).items():
            st, vals = select_steps(st, vals, want, start, end)
            if len(st):
                out[run_id] = (st, vals)
        return out

    def group_values(self, group_id, key, steps=None, start=None, end=None) -> dict[int, tuple[np.ndarray, list]]:
        return self._values(f"group_id = {lit(group_id)}", key, steps, start, end)

    def run_values(self, run_id, key, steps=None, start=None, end=None) -> tuple[np.ndarray, list]:
        out = self._values(self._run_where(run_id), key, steps, start, end)
        return out.get(run_id, (np.empty(0, np.int64), []))

    def group_media_keys(self, group_id: int) -> dict[str, dict[str, Any]]:
        where = f"group_id = {lit(group_id)} AND enc = 'mp'"
        key, runs, lo, hi = self.conn.query(
            f"SELECT key, uniqExact(run_id), min(step_min), max(step_max) FROM {self.t('history_chunks')} "
            f"WHERE {where} GROUP BY key",
            4,
        )
        out: dict[str, dict[str, Any]] = {}
        for k, n, first, last in zip(key, runs, lo, hi, strict=True):
            # the sample: the value at the key's highest step, from the latest chunk holding it
            found = self.conn.query(
                f"SELECT steps, vals FROM {self.t('history_chunks')} WHERE {where} AND key = {lit(k)} "
                f"AND step_max = {int(last)} ORDER BY ver DESC LIMIT 1",
                2,
                exact=True,
            )
            sample = None
            if len(found[0]):
                values = points.unpack(found[1][0])
                at = (
                    len(values) - 1
                    if not found[0][0]
                    else int(np.flatnonzero(np.frombuffer(found[0][0], "<i8") == last)[-1])
                )
                sample = values[at]
            out[k.decode()] = {"runs": int(n), "first": int(first), "last": int(last), "sample": sample}
        return out

    # ---------------------------------------------------------------- group rows
    def group_keys(self, group_id: int) -> list[str]:
        (keys,) = self.conn.query(
            f"SELECT DISTINCT key FROM {self.t('group_rows')} WHERE group_id = {lit(group_id)}", 1
        )
        return sorted(k.decode() for k in keys)

    def group_history(self, group_id: int, key: str) -> dict[str, np.ndarray]:
        return self.group_history_since(group_id, key, 0)[1]

    def group_history_since(self, group_id: int, key: str, after: int = 0) -> tuple[int, dict[str, np.ndarray]]:
        names = ", ".join(f"`{f}`" for f in GROUP_FIELDS)
        cols = self.conn.query(
            f"SELECT ver, {names} FROM {self.t('group_rows')} WHERE group_id = {lit(group_id)} AND key = {lit(key)} "
            f"AND ver > {lit(after)}",
            1 + len(GROUP_FIELDS),
        )
        ver, rows = cols[0], dict(zip(GROUP_FIELDS, cols[1:], strict=True))
        if not len(ver):
            return after, {f: v.copy() for f, v in _EMPTY_ROWS.items()}
        o = points.order(rows["step"], ver)
        ver, rows = ver[o], {f: v[o] for f, v in rows.items()}
        win = points.winners((rows["step"], ver))
        return int(ver.max()), {f: np.asarray(rows[f], _EMPTY_ROWS[f].dtype)[win] for f in GROUP_FIELDS}

    def group_key_stats(self, group_id: int) -> dict[str, tuple[int, int, int]]:
        # distinct steps of first-time rows: a commit written again (a replay) seals its steps again, and
        # must not count them twice
        key, n, lo, hi = self.conn.query(
            f"SELECT key, uniqExactIf(step, revision = 0), min(step), max(step) FROM {self.t('group_rows')} "
            f"WHERE group_id = {lit(group_id)} GROUP BY key",
            4,
        )
        return {k.decode(): (int(a), int(b), int(c)) for k, a, b, c in zip(key, n, lo, hi, strict=True)}

    # ---------------------------------------------------------------- the rest
    def drops(self) -> dict[str, int]:
        cause, n = self.conn.query(
            f"SELECT cause, sum(n) FROM (SELECT cause, ver, any(n) AS n FROM {self.t('drops')} GROUP BY cause, ver) "
            "GROUP BY cause",
            2,
        )
        return {c.decode(): int(x) for c, x in zip(cause, n, strict=True)}

    def alerts(self, group_id: int) -> list[dict[str, Any]]:
        ver, doc = self.conn.query(
            f"SELECT ver, doc FROM {self.t('alerts')} WHERE group_id = {lit(group_id)} "
            "ORDER BY kind, rank, key, token, ver LIMIT 1 BY kind, rank, key, token",
            2,
            exact=True,
        )
        return [json.loads(d) for _, d in sorted(zip(np.asarray(ver).tolist(), doc, strict=True))]

    def alert_identities(self, group_id: int) -> set[tuple[str, int | None, str | None, str]]:
        kind, rank, key, token = self.conn.query(
            f"SELECT DISTINCT kind, rank, key, token FROM {self.t('alerts')} WHERE group_id = {lit(group_id)}",
            4,
            exact=True,
        )
        # stored with -1 for no rank and '' for no key (the columns are not Nullable: 18.16)
        return {
            (k.decode(), None if int(r) < 0 else int(r), y.decode() or None, t.decode())
            for k, r, y, t in zip(kind, rank, key, token, strict=True)
        }

    def _system(self, where: str) -> list[tuple[str, dict]]:
        node, data = self.conn.query(
            f"SELECT node, data FROM {self.t('system')} WHERE {where} ORDER BY node, ver LIMIT 1 BY node, ver",
            2,
            exact=True,
        )
        return [(n.decode(), system_chunks.decode_columns(d)) for n, d in zip(node, data, strict=True)]

    def run_system(self, run_id: int) -> dict[str, np.ndarray]:
        return system_chunks.once_per_time(
            system_chunks.join_columns([c for _, c in self._system(f"run_id = {lit(run_id)}")])
        )

    def group_system(self, group_id: int) -> dict[str, dict[str, np.ndarray]]:
        nodes: dict[str, list] = {}
        for node, c in self._system(f"group_id = {lit(group_id)} AND run_id = 0"):
            nodes.setdefault(node, []).append(c)
        return {node: system_chunks.once_per_time(system_chunks.join_columns(cs)) for node, cs in sorted(nodes.items())}

    def close(self) -> None:
        if self._own:
            self.conn.close()
