"""The embedded store's read side: Api, CLI and UI read over their own connection.

WAL readers never block the agent's writes. One lock guards the connection
because the UI server may share a reader between its threads.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import StoreError
from agent.ratelimit import unpack_spans
from agent.store import system_chunks
from agent.store.base import GROUP_FIELDS, META_KEYS, ROW_KEYS, GroupRecord, Reader, RunRecord, last_wins, select_steps
from agent.store.sqlite_errors import map_exceptions
from agent.store.sqlite_format import (
    RUN_COLUMNS,
    SPAN_BYTES,
    KeyIds,
    connect,
    decode_group_chunks,
    decode_values,
    numeric_chunk,
    ordered_or_last_wins,
    run_record,
    unpack,
)


class SQLiteReader(Reader):
    """Read side over its own connection (WAL readers never block the agent's writes)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if not self.path.exists():
            raise StoreError(f"no store at {self.path}; log a run first or pass the right path")
        self.con = connect(self.path, readonly=True)
        self.keys = KeyIds(self.con)
        self._lock = threading.Lock()  # the UI server may share one reader between threads

    def __repr__(self) -> str:
        return f"<SQLiteReader {self.path}>"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The connection, to this thread alone; sqlite3's errors leave as StoreError (agent/store/sqlite_errors.py)."""
        with self._lock, map_exceptions(f"reading {self.path} failed"):
            yield

    def _all(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._locked():
            return self.con.execute(sql, args).fetchall()

    def projects(self) -> list[str]:
        return [r[0] for r in self._all("SELECT DISTINCT project FROM groups ORDER BY project")]

    def groups(self, project: str | None = None) -> list[GroupRecord]:
        cols = "id, project, name, world_size, created, updated, sealed_through, late_rows"
        if project is None:
            rows = self._all(f"SELECT {cols} FROM groups ORDER BY created DESC, id DESC")
        else:
            rows = self._all(f"SELECT {cols} FROM groups WHERE project=? ORDER BY created DESC, id DESC", (project,))
        return [GroupRecord(*r) for r in rows]

    def group(self, project: str, name: str) -> GroupRecord | None:
        rows = self._all(
            "SELECT id, project, name, world_size, created, updated, sealed_through, late_rows FROM groups "
            "WHERE project=? AND name=?",
            (project, name),
        )
        return GroupRecord(*rows[0]) if rows else None

    def runs(self, group_id: int) -> list[RunRecord]:
        return [
            run_record(r)
            for r in self._all(f"SELECT {RUN_COLUMNS} FROM runs WHERE group_id=? ORDER BY rank, id", (group_id,))
        ]

    def run_keys(self, run_id: int) -> list[str]:
        rows = self._all("SELECT DISTINCT key_id FROM history WHERE run_id=?", (run_id,))
        with self._locked():
            names = [self.keys.name(r[0]) for r in rows]
        return sorted(n for n in names if n not in ROW_KEYS)

    def run_history(self, run_id: int, keys: list[str] | None = None) -> dict[str, tuple[np.ndarray, Any]]:
        if keys is None:
            rows = self._all("SELECT key_id, enc, steps, vals FROM history WHERE run_id=? ORDER BY id", (run_id,))
        else:
            with self._locked():
                ids = [k for k in (self.keys.id(name, create=False) for name in keys) if k is not None]
            if not ids:
                return {}
            marks = ",".join("?" * len(ids))
            rows = self._all(
                f"SELECT key_id, enc, steps, vals FROM history WHERE run_id=? AND key_id IN ({marks}) ORDER BY id",
                (run_id, *ids),
            )
        chunks: dict[int, tuple[list, list]] = {}
        for kid, enc, sblob, vblob in rows:
            entry = chunks.setdefault(kid, ([], []))
            entry[0].append(np.frombuffer(sblob, "<i8"))
            entry[1].append(decode_values(enc, vblob))
        with self._locked():
            named = {self.keys.name(kid): sv for kid, sv in chunks.items()}
        return {k: last_wins(s, v, first=k in META_KEYS) for k, (s, v) in named.items()}

    def run_steps(self, run_id: int, key: str | None = None) -> np.ndarray:
        """The steps at which a run has a value of ``key`` (of any key when None), sorted and unique, read
        from the steps blobs only."""
        if key is None:
            rows = self._all("SELECT steps FROM history WHERE run_id=?", (run_id,))
        else:
            kid = self._key_id(key)
            rows = (
                [] if kid is None else self._all("SELECT steps FROM history WHERE run_id=? AND key_id=?", (run_id, kid))
            )
        if not rows:
            return np.empty(0, np.int64)
        return np.unique(np.concatenate([np.frombuffer(r[0], "<i8") for r in rows]))

    def run_history_between(
        self, run_id: int, keys: list[str] | None, lo: int, hi: int
    ) -> dict[str, tuple[np.ndarray, Any]]:
        """:meth:`run_history` of the steps in [lo, hi] only: reads just the chunks that overlap them (a
        page of ``scan_history``), later chunks winning per step as there."""
        sql = "SELECT key_id, enc, steps, vals FROM history WHERE run_id=? AND step_max >= ? AND step_min <= ?"
        args: tuple = (run_id, int(lo), int(hi))
        if keys is not None:
            with self._locked():
                ids = [k for k in (self.keys.id(name, create=False) for name in keys) if k is not None]
            if not ids:
                return {}
            sql += f" AND key_id IN ({','.join('?' * len(ids))})"
            args = (*args, *ids)
        chunks: dict[int, tuple[list, list]] = {}
        for kid, enc, sblob, vblob in self._all(sql + " ORDER BY id", args):
            entry = chunks.setdefault(kid, ([], []))
            entry[0].append(np.frombuffer(sblob, "<i8"))
            entry[1].append(decode_values(enc, vblob))
        with self._locked():
            named = {self.keys.name(kid): sv for kid, sv in chunks.items()}
        out = {}
        for k, (s, v) in named.items():
            st, vals = last_wins(s, v, first=k in META_KEYS)
            keep = (st >= lo) & (st <= hi)
            if not keep.all():
                idx = np.flatnonzero(keep)
                st, vals = st[idx], (vals[idx] if isinstance(vals, np.ndarray) else [vals[i] for i in idx])
            out[k] = (st, vals)
        return out

    def run_spans(self, run_id: int, keys: list[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
        """Per key, the coalesced spans of a run (``step`` = last step, and ``SPAN_FIELDS``)."""
        rows = self._all("SELECT id, key_id, steps, vals FROM history WHERE run_id=? AND enc='span'", (run_id,))
        rows.sort(key=lambda r: r[0])
        parts: dict[str, list[dict]] = {}
        with self._locked():
            for _, kid, sblob, vblob in rows:
                name = self.keys.name(kid)
                if keys is None or name in keys:
                    spans = dict(unpack_spans(vblob, len(vblob) // SPAN_BYTES), step=np.frombuffer(sblob, "<i8"))
                    parts.setdefault(name, []).append(spans)
        return {k: {f: np.concatenate([p[f] for p in v]) for f in v[0]} for k, v in parts.items()}

    def group_keys(self, group_id: int) -> list[str]:
        rows = self._all("SELECT DISTINCT key_id FROM group_rows WHERE group_id=?", (group_id,))
        with self._locked():
            return sorted(self.keys.name(r[0]) for r in rows)

    def group_history(self, group_id: int, key: str) -> dict[str, np.ndarray]:
        with self._locked():
            kid = self.keys.id(key, create=False)
        if kid is None:
            return {f: np.empty(0) for f in GROUP_FIELDS}
        # sorting ids in Python: ORDER BY would make SQLite copy every blob through a temporary sort
        rows = self._all("SELECT id, data FROM group_rows WHERE group_id=? AND key_id=?", (group_id, kid))
        rows.sort(key=lambda r: r[0])
        return decode_group_chunks([r[1] for r in rows])

    def drops(self) -> dict[str, int]:
        return dict(self._all("SELECT cause, n FROM drops"))

    def alerts(self, group_id: int) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT kind, level, rank, key, step, time, message, details FROM alerts WHERE group_id=? ORDER BY id",
            (group_id,),
        )
        names = ("kind", "level", "rank", "key", "step", "time", "message")
        return [{**dict(zip(names, r[:7], strict=True)), "details": json.loads(r[7])} for r in rows]

    def alert_identities(self, group_id: int) -> set[tuple[str, int | None, str | None, str]]:
        return {tuple(r) for r in self._all("SELECT kind, rank, key, token FROM alerts WHERE group_id=?", (group_id,))}

    def run_system(self, run_id: int) -> dict[str, np.ndarray]:
        rows = self._system("SELECT data FROM system WHERE run_id=? ORDER BY id", (run_id,))
        return system_chunks.join_columns([system_chunks.decode_columns(r[0]) for r in rows])

    def group_system(self, group_id: int) -> dict[str, dict[str, np.ndarray]]:
        rows = self._system(
            "SELECT node, data FROM system WHERE group_id=? AND run_id IS NULL ORDER BY node, id", (group_id,)
        )
        nodes: dict[str, list] = {}
        for node, blob in rows:
            nodes.setdefault(node, []).append(system_chunks.decode_columns(blob))
        return {node: system_chunks.join_columns(cs) for node, cs in nodes.items()}

    def _system(self, sql: str, args: tuple) -> list[tuple]:
        """A read of the ``system`` table; none in a store no agent of this version has opened yet (a reader
        never changes the schema)."""
        try:
            return self._all(sql, args)
        except StoreError as exc:
            if "no such table" in str(exc.__cause__ or exc):
                return []
            raise

    def use_mmap(self, nbytes: int) -> None:
        """Read the file through a memory map of up to ``nbytes`` (a long-lived reader such as the web UI:
        history blobs span overflow pages, and a read per page is several times slower than a map)."""
        with self._locked():
            self.con.execute(f"PRAGMA mmap_size={int(nbytes)}")

    def group_key_stats(self, group_id: int) -> dict[str, tuple[int, int, int]]:
        rows = self._all(
            "SELECT key_id, SUM(CASE WHEN revision=0 THEN n ELSE 0 END), MIN(step_min), MAX(step_max) "
            "FROM group_rows WHERE group_id=? GROUP BY key_id",
            (group_id,),
        )
        with self._locked():
            return {self.keys.name(kid): (int(n), int(lo), int(hi)) for kid, n, lo, hi in rows}

    def group_history_since(self, group_id: int, key: str, after: int = 0) -> tuple[int, dict[str, np.ndarray]]:
        with self._locked():
            kid = self.keys.id(key, create=False)
        # no ORDER BY: sorting in SQLite would copy every blob through a temporary b-tree; a few hundred
        # (id, blob) tuples sort in Python for free
        rows = (
            []
            if kid is None
            else self._all(
                "SELECT id, data FROM group_rows WHERE group_id=? AND key_id=? AND id>?", (group_id, kid, after)
            )
        )
        rows.sort(key=lambda r: r[0])
        return (rows[-1][0] if rows else after), decode_group_chunks([r[1] for r in rows])

    def group_rank_history(
        self, group_id: int, key: str, after: int = 0
    ) -> tuple[int, dict[int, tuple[np.ndarray, np.ndarray]]]:
        with self._locked():
            kid = self.keys.id(key, create=False)
        if kid is None:
            return after, {}
        rows = self._all(
            "SELECT h.id, h.run_id, h.enc, h.steps, h.vals FROM history h JOIN runs r ON r.id = h.run_id "
            "WHERE r.group_id=? AND h.key_id=? AND h.id>?",
            (group_id, kid, after),
        )
        rows.sort(key=lambda r: r[0])
        chunks: dict[int, tuple[list, list]] = {}
        for _, run_id, enc, sblob, vblob in rows:
            chunk = numeric_chunk(enc, sblob, vblob)
            if chunk is not None:
                entry = chunks.setdefault(run_id, ([], []))
                entry[0].append(chunk[0])
                entry[1].append(chunk[1])
        first = key in META_KEYS
        out = {run_id: ordered_or_last_wins(s, v, first) for run_id, (s, v) in chunks.items()}
        return (rows[-1][0] if rows else after), out

    # ---------------------------------------------------------------- values of one key, by step
    # (media views: the steps blob is read without the values; values only of the chunks holding wanted steps)

    def _key_id(self, key: str) -> int | None:
        with self._locked():
            return self.keys.id(key, create=False)

    def group_value_steps(self, group_id: int, key: str) -> dict[int, np.ndarray]:
        kid = self._key_id(key)
        if kid is None:
            return {}
        rows = self._all(
            "SELECT h.run_id, h.steps FROM history h JOIN runs r ON r.id = h.run_id WHERE r.group_id=? AND h.key_id=?",
            (group_id, kid),
        )
        parts: dict[int, list[np.ndarray]] = {}
        for run_id, sblob in rows:
            parts.setdefault(run_id, []).append(np.frombuffer(sblob, "<i8"))
        return {rid: np.unique(np.concatenate(p)) for rid, p in parts.items()}

    def _values(
        self, where: str, args: tuple, key: str, steps: np.ndarray | None, start: int | None, end: int | None
    ) -> dict[int, tuple[np.ndarray, list]]:
        kid = self._key_id(key)
        if kid is None:
            return {}
        sql = f"SELECT h.id, h.run_id, h.steps FROM history h {where} AND h.key_id=?"
        args = (*args, kid)
        if start is not None:
            sql, args = sql + " AND h.step_max >= ?", (*args, int(start))
        if end is not None:
            sql, args = sql + " AND h.step_min <= ?", (*args, int(end))
        want = None if steps is None else np.asarray(steps, np.int64)
        if want is not None and len(want) == 0:
            return {}
        if want is not None:
            sql, args = sql + " AND h.step_max >= ? AND h.step_min <= ?", (*args, int(want.min()), int(want.max()))
        chunks = []
        for cid, run_id, sblob in self._all(sql, args):
            s = np.frombuffer(sblob, "<i8")
            if want is None or np.isin(s, want).any():
                chunks.append((cid, run_id, s))
        chunks.sort(key=lambda c: c[0])
        blobs: dict[int, tuple[str, bytes]] = {}
        ids = [c[0] for c in chunks]
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ",".join("?" * len(part))
            for cid, enc, vblob in self._all(f"SELECT id, enc, vals FROM history WHERE id IN ({marks})", tuple(part)):
                blobs[cid] = (enc, vblob)
        per_run: dict[int, tuple[list, list]] = {}
        for cid, run_id, s in chunks:
            enc, vblob = blobs[cid]
            entry = per_run.setdefault(run_id, ([], []))
            entry[0].append(s)
            entry[1].append(decode_values(enc, vblob))
        out = {}
        for run_id, (s_list, v_list) in per_run.items():
            st, vals = last_wins(s_list, v_list, first=key in META_KEYS)
            st, vals = select_steps(st, vals, want, start, end)
            if len(st):
                out[run_id] = (st, vals)
        return out

    def group_values(
        self, group_id: int, key: str, steps: np.ndarray | None = None, start: int | None = None, end: int | None = None
    ) -> dict[int, tuple[np.ndarray, list]]:
        return self._values("JOIN runs r ON r.id = h.run_id WHERE r.group_id=?", (group_id,), key, steps, start, end)

    def run_values(
        self, run_id: int, key: str, steps: np.ndarray | None = None, start: int | None = None, end: int | None = None
    ) -> tuple[np.ndarray, list]:
        out = self._values("WHERE h.run_id=?", (run_id,), key, steps, start, end)
        return out.get(run_id, (np.empty(0, np.int64), []))

    def group_media_keys(self, group_id: int) -> dict[str, dict[str, Any]]:
        rows = self._all(
            "SELECT h.key_id, COUNT(DISTINCT h.run_id), MIN(h.step_min), MAX(h.step_max) "
            "FROM history h JOIN runs r ON r.id = h.run_id WHERE r.group_id=? AND h.enc='mp' GROUP BY h.key_id",
            (group_id,),
        )
        out: dict[str, dict[str, Any]] = {}
        for kid, runs, lo, hi in rows:
            # the sample: the value at the key's highest step, from the latest chunk holding it (only its id is
            # sorted; the one chunk is read after)
            top = self._all(
                "SELECT h.id FROM history h JOIN runs r ON r.id = h.run_id WHERE r.group_id=? AND h.key_id=? "
                "AND h.enc='mp' AND h.step_max=? ORDER BY h.id DESC LIMIT 1",
                (group_id, kid, hi),
            )
            sample = None
            if top:
                sblob, vblob = self._all("SELECT steps, vals FROM history WHERE id=?", (top[0][0],))[0]
                steps, values = np.frombuffer(sblob, "<i8"), unpack(vblob, [])
                at = np.flatnonzero(steps == hi)
                sample = values[int(at[-1])] if len(at) and len(values) == len(steps) else None
            with self._locked():
                name = self.keys.name(kid)
            out[name] = {"runs": int(runs), "first": int(lo), "last": int(hi), "sample": sample}
        return out

    def close(self) -> None:
        self.con.close()
