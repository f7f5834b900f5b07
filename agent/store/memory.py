"""An in-memory store with the semantics of the SQLite one, for tests of the agent's logic."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from agent.alerts.alert import Alert
from agent.store import system_chunks
from agent.store.base import (
    GROUP_FIELDS,
    META_KEYS,
    ROW_KEYS,
    GroupRecord,
    Reader,
    RunRecord,
    Store,
    Txn,
    last_wins,
    new_run,
)
from grouping import numeric_entries


class _MemoryTxn(Txn):
    def __init__(self, store: MemoryStore):
        self.store = store
        self.history: list[tuple] = []
        self.group_rows: list[tuple] = []
        self.runs: dict[int, RunRecord] = {}
        self.groups: dict[int, GroupRecord] = {}
        self.writers: dict[str, tuple[int, int]] = {}
        self.drops: dict[str, int] = {}
        self.alerts: list[Alert] = []
        self.system: list[tuple] = []  # (group id, run id or None, node, columns)

    def __repr__(self) -> str:
        return (
            f"<_MemoryTxn history={len(self.history)} group_rows={len(self.group_rows)} runs={len(self.runs)} "
            f"groups={len(self.groups)} writers={len(self.writers)}>"
        )

    def add_history(self, run_id, key, steps, values, late) -> None:
        if len(steps):
            if isinstance(values, dict):  # coalesced spans: kept beside, read as their last value
                spans = {f: np.array(v) for f, v in values.items()}
                spans["step"] = np.array(steps, np.int64)  # each span's last step, as Reader.run_spans says
                self.store.spans.append((run_id, key, spans))
                values = values["last"]
            vals = np.array(values) if isinstance(values, np.ndarray) else list(values)
            self.history.append((run_id, key, np.array(steps, np.int64), vals, late))

    def add_group_rows(self, group_id, key, rows, revision) -> None:
        if len(rows["step"]):
            self.group_rows.append((group_id, key, {f: np.array(rows[f]) for f in GROUP_FIELDS}, revision))

    def put_run(self, run: RunRecord) -> None:
        self.runs[run.id] = copy.deepcopy(run)

    def put_group(self, group: GroupRecord) -> None:
        self.groups[group.id] = copy.deepcopy(group)

    def put_writer(self, writer: str, run_id: int, seq: int) -> None:
        self.writers[writer] = (run_id, seq)

    def count_drop(self, cause: str, n: int) -> None:
        self.drops[cause] = self.drops.get(cause, 0) + n

    def add_alert(self, alert: Alert) -> None:
        self.alerts.append(alert)

    def add_system(self, group_id, run_id, node, columns) -> None:
        if system_chunks.check_columns(columns, "add_system"):
            self.system.append((group_id, run_id, node, {k: np.array(v, np.float64) for k, v in columns.items()}))

    def rank_values(self, group_id, key, steps):
        ranks = {r.id: r.rank for r in self.store.run_records.values() if r.group_id == group_id}
        per_run: dict[int, tuple[list, list]] = {}
        for run_id, k, s, v, _ in self.store.history + self.history:
            chunk = _numbers(s, v) if k == key and run_id in ranks else None
            if chunk is not None:
                entry = per_run.setdefault(run_id, ([], []))
                entry[0].append(chunk[0])
                entry[1].append(chunk[1])
        out = ([], [], [])
        for run_id, (s_list, v_list) in per_run.items():
            s, v = last_wins(s_list, v_list)
            mask = np.isin(s, steps)
            out[0].append(s[mask])
            out[1].append(np.full(int(mask.sum()), ranks[run_id], np.int64))
            out[2].append(v[mask])
        if not out[0]:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
        return tuple(np.concatenate(x) for x in out)  # type: ignore[return-value]


class MemoryStore(Store, Reader):
    """Store and Reader in one object; nothing survives the process."""

    def __init__(self) -> None:
        self.group_records: dict[int, GroupRecord] = {}
        self.run_records: dict[int, RunRecord] = {}
        self.history: list[tuple] = []
        self.spans: list[tuple] = []
        self.group_rows: list[tuple] = []
        self.writers: dict[str, tuple[int, int]] = {}
        self.drop_counts: dict[str, int] = {}
        self.alert_list: list[Alert] = []
        self.system_rows: list[tuple] = []  # (group id, run id or None, node, columns), in write order
        self.commits = 0

    def __repr__(self) -> str:
        return (
            f"<MemoryStore groups={len(self.group_records)} runs={len(self.run_records)} "
            f"history_chunks={len(self.history)} commits={self.commits}>"
        )

    # write side
    def register(self, project, group, world_size, run, now):
        g = next((g for g in self.group_records.values() if g.project == project and g.name == group), None)
        if g is None:
            g = GroupRecord(len(self.group_records) + 1, project, group, world_size, now, now)
            self.group_records[g.id] = g
        g.world_size = max(g.world_size, world_size)
        r = next((r for r in self.run_records.values() if r.group_id == g.id and r.name == run["name"]), None)
        if r is not None:
            return copy.deepcopy(g), copy.deepcopy(r), False
        r = new_run(len(self.run_records) + 1, g.id, run, now)
        self.run_records[r.id] = r
        return copy.deepcopy(g), copy.deepcopy(r), True

    def find_run(self, project, group, name):
        g = self.group(project, group)
        if g is None:
            return None
        r = next((r for r in self.run_records.values() if r.group_id == g.id and r.name == name), None)
        return copy.deepcopy(r)

    def unsealed_points(self, group_id, after_step):
        ranks = {r.id: r.rank for r in self.run_records.values() if r.group_id == group_id}
        chunks: dict[tuple[int, str], tuple[list, list]] = {}
        for run_id, key, s, v, _ in self.history:
            chunk = _numbers(s, v) if run_id in ranks and key not in ROW_KEYS else None
            if chunk is not None:
                entry = chunks.setdefault((run_id, key), ([], []))
                entry[0].append(chunk[0])
                entry[1].append(chunk[1])
        out = []
        for (run_id, key), (s_list, v_list) in chunks.items():
            steps, values = last_wins(s_list, v_list)
            keep = steps > after_step
            if keep.any():
                out.append((key, ranks[run_id], steps[keep], values[keep]))
        return out

    def writer_seq(self, writer: str) -> int:
        return self.writers.get(writer, (0, 0))[1]

    @contextmanager
    def transaction(self) -> Iterator[Txn]:
        txn = _MemoryTxn(self)
        yield txn
        self.history.extend(txn.history)
        self.group_rows.extend(txn.group_rows)
        self.run_records.update(txn.runs)
        self.group_records.update(txn.groups)
        self.writers.update(txn.writers)
        for cause, n in txn.drops.items():
            self.drop_counts[cause] = self.drop_counts.get(cause, 0) + n
        known = {a.identity for a in self.alert_list}
        for alert in txn.alerts:
            if alert.identity not in known:
                known.add(alert.identity)
                self.alert_list.append(alert)
        self.system_rows.extend(txn.system)
        self.commits += 1

    def open_runs(self):
        return [
            (copy.deepcopy(self.group_records[r.group_id]), copy.deepcopy(r))
            for r in self.run_records.values()
            if r.state == "running"
        ]

    def reader(self) -> MemoryStore:
        return self

    # read side
    def projects(self) -> list[str]:
        return sorted({g.project for g in self.group_records.values()})

    def groups(self, project=None) -> list[GroupRecord]:
        gs = [g for g in self.group_records.values() if project is None or g.project == project]
        return sorted(gs, key=lambda g: (g.created, g.id), reverse=True)

    def group(self, project, name):
        return next((g for g in self.group_records.values() if g.project == project and g.name == name), None)

    def runs(self, group_id) -> list[RunRecord]:
        return sorted((r for r in self.run_records.values() if r.group_id == group_id), key=lambda r: (r.rank, r.id))

    def run_keys(self, run_id) -> list[str]:
        return sorted({k for rid, k, *_ in self.history if rid == run_id} - set(ROW_KEYS))

    def run_spans(self, run_id, keys=None) -> dict[str, dict[str, np.ndarray]]:
        parts: dict[str, list[dict]] = {}
        for rid, key, spans in self.spans:
            if rid == run_id and (keys is None or key in keys):
                parts.setdefault(key, []).append(spans)
        return {k: {f: np.concatenate([p[f] for p in v]) for f in v[0]} for k, v in parts.items()}

    def run_history(self, run_id, keys=None) -> dict[str, tuple[np.ndarray, Any]]:
        chunks: dict[str, tuple[list, list]] = {}
        for rid, k, s, v, _ in self.history:
            if rid == run_id and (keys is None or k in keys):
                entry = chunks.setdefault(k, ([], []))
                entry[0].append(s)
                entry[1].append(v)
        return {k: last_wins(s, v, first=k in META_KEYS) for k, (s, v) in chunks.items()}

    def group_keys(self, group_id) -> list[str]:
        return sorted({k for gid, k, *_ in self.group_rows if gid == group_id})

    def group_history(self, group_id, key) -> dict[str, np.ndarray]:
        parts = [rows for gid, k, rows, _ in self.group_rows if gid == group_id and k == key]
        if not parts:
            return {f: np.empty(0) for f in GROUP_FIELDS}
        steps = np.concatenate([p["step"] for p in parts])
        _, idx = last_wins([steps], [np.arange(len(steps))])
        return {f: np.concatenate([p[f] for p in parts])[idx] for f in GROUP_FIELDS}

    def drops(self) -> dict[str, int]:
        return dict(self.drop_counts)

    def alerts(self, group_id) -> list[dict[str, Any]]:
        return [a.to_dict() for a in self.alert_list if a.group_id == group_id]

    def alert_identities(self, group_id) -> set[tuple[str, int | None, str | None, str]]:
        return {a.identity[1:] for a in self.alert_list if a.group_id == group_id}

    # chunk ids are positions in the lists, counted from 1, as SQLite's row ids would be
    def run_system(self, run_id) -> dict[str, np.ndarray]:
        return system_chunks.join_columns([c for _, r, _, c in self.system_rows if r == run_id])

    def group_system(self, group_id) -> dict[str, dict[str, np.ndarray]]:
        nodes: dict[str, list] = {}
        for g, r, node, c in self.system_rows:
            if g == group_id and r is None:
                nodes.setdefault(node, []).append(c)
        return {node: system_chunks.join_columns(cs) for node, cs in sorted(nodes.items())}

    def group_key_stats(self, group_id) -> dict[str, tuple[int, int, int]]:
        out: dict[str, tuple[int, int, int]] = {}
        for gid, k, rows, revision in self.group_rows:
            if gid == group_id:
                n, lo, hi = out.get(k, (0, rows["step"].min(), rows["step"].max()))
                n += 0 if revision else len(rows["step"])
                out[k] = (int(n), int(min(lo, rows["step"].min())), int(max(hi, rows["step"].max())))
        return out

    def group_history_since(self, group_id, key, after=0) -> tuple[int, dict[str, np.ndarray]]:
        parts = [
            (i, rows)
            for i, (gid, k, rows, _) in enumerate(self.group_rows, 1)
            if i > after and gid == group_id and k == key
        ]
        if not parts:
            return after, {f: np.empty(0) for f in GROUP_FIELDS}
        steps = np.concatenate([p["step"] for _, p in parts])
        _, idx = last_wins([steps], [np.arange(len(steps))])
        return parts[-1][0], {f: np.concatenate([p[f] for _, p in parts])[idx] for f in GROUP_FIELDS}

    def group_rank_history(self, group_id, key, after=0) -> tuple[int, dict[int, tuple[np.ndarray, np.ndarray]]]:
        runs = {r.id for r in self.run_records.values() if r.group_id == group_id}
        chunks: dict[int, tuple[list, list]] = {}
        last = after
        for i, (rid, k, s, v, _) in enumerate(self.history, 1):
            if i > after and rid in runs and k == key:
                last = i
                chunk = _numbers(s, v)
                if chunk is not None:
                    entry = chunks.setdefault(rid, ([], []))
                    entry[0].append(chunk[0])
                    entry[1].append(chunk[1])
        first = key in META_KEYS
        return last, {rid: last_wins(s, v, first=first) for rid, (s, v) in chunks.items()}


def _numbers(steps: np.ndarray, values: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, float64 values) of a chunk's numbers, as the SQLite store reads them (numeric_chunk)."""
    if isinstance(values, np.ndarray) and values.dtype != object:
        return steps, values.astype(np.float64)
    where, numbers = numeric_entries(list(values))
    return (steps[where], numbers) if len(where) else None
