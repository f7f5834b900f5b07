"""``rankwise.Api``: the read side over a store.

``Api()`` opens the default store (``$RANKWISE_DIR/store.sqlite``); ``Api(path)``
another one (the file or its directory). Reads never block the agent (SQLite
WAL readers), and see what the agent has committed, which is everything a
finished run logged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from client import paths
from client.errors import Error, InvalidArgumentError


class NotFound(Error, LookupError):
    """No such project, group or run in the store."""


def _store_path(path: str | os.PathLike | None) -> Path:
    if path is None:
        return paths.data_dir() / paths.STORE_FILE
    p = Path(path).expanduser()
    return p / paths.STORE_FILE if p.is_dir() else p


class Api:
    """Read access to groups, runs, summaries, configs and full-resolution history."""

    def __init__(self, path: str | os.PathLike | None = None):
        from agent.store.sqlite import SQLiteReader

        self.path = _store_path(path)
        try:
            self._reader = SQLiteReader(self.path)
        except Error as exc:
            raise NotFound(str(exc)) from None

    def __repr__(self) -> str:
        return f"<rankwise.Api {self.path}>"

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> "Api":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def projects(self) -> list[str]:
        return self._reader.projects()

    def groups(self, project: str | None = None) -> list["Group"]:
        """The project's groups (all projects' when None), newest first."""
        return [Group(self, g) for g in self._reader.groups(project)]

    def group(self, project: str | None, name: str | None = None) -> "Group":
        """One group. ``group(project, name)``; ``group(None, name)`` when the name is unique; with no
        name, the newest group of the project."""
        if name is None:
            groups = self._reader.groups(project)
            if not groups:
                raise NotFound(f"no groups{' in project ' + repr(project) if project else ''} in {self.path}")
            return Group(self, groups[0])
        if project is None:
            matches = [g for g in self._reader.groups() if g.name == name]
            if len(matches) > 1:
                projects = ", ".join(sorted(g.project for g in matches))
                raise InvalidArgumentError(f"group {name!r} exists in several projects ({projects}); pass project=")
            if matches:
                return Group(self, matches[0])
        else:
            g = self._reader.group(project, name)
            if g is not None:
                return Group(self, g)
        known = ", ".join(g.name for g in self._reader.groups(project)[:10]) or "none"
        raise NotFound(f"no group {name!r}{' in project ' + repr(project) if project else ''}; newest: {known}")

    def runs(self, project: str | None = None) -> list["RunView"]:
        """Every run of every group of a project, newest group first, then by rank."""
        return [r for g in self.groups(project) for r in g.runs]


class Group:
    """One distributed job: its runs (one per rank) and its group rows per key."""

    def __init__(self, api: Api, record: Any):
        self._api = api
        self._record = record

    def __repr__(self) -> str:
        return f"<Group {self.project}/{self.name} ranks={self.world_size} state={self.state}>"

    project = property(lambda self: self._record.project)
    name = property(lambda self: self._record.name)
    world_size = property(lambda self: self._record.world_size)
    created = property(lambda self: self._record.created)
    updated = property(lambda self: self._record.updated)
    sealed_through = property(lambda self: self._record.sealed_through)
    late_rows = property(lambda self: self._record.late_rows)

    @property
    def runs(self) -> list["RunView"]:
        return [RunView(self._api, self, r) for r in self._api._reader.runs(self._record.id)]

    @property
    def state(self) -> str:
        """running while any rank runs; else crashed, failed or finished (the worst of its ranks)."""
        states = {r.state for r in self._api._reader.runs(self._record.id)}
        for s in ("running", "crashed", "failed", "finished"):
            if s in states:
                return s
        return "empty"

    @property
    def nodes(self) -> list[str]:
        return sorted({r.node for r in self.runs})

    def keys(self) -> list[str]:
        """Keys with group rows (numeric keys logged by any rank)."""
        return self._api._reader.group_keys(self._record.id)

    def history(self, key: str) -> dict[str, np.ndarray]:
        """Group rows of ``key``: arrays step, count, expected, mean, min, max, std, min_rank, max_rank."""
        return self._api._reader.group_history(self._record.id, key)

    def run(self, rank: int | None = None, name: str | None = None) -> "RunView":
        for r in self.runs:
            if (rank is not None and r.rank == rank) or (name is not None and r.name == name):
                return r
        raise NotFound(f"group {self.name!r} has no run with rank={rank!r} name={name!r}")


class RunView:
    """One rank's run as stored: identity, state, summary, config, history."""

    def __init__(self, api: Api, group: Group, record: Any):
        self._api = api
        self.group = group
        self._record = record

    def __repr__(self) -> str:
        return f"<RunView {self.group.name}/{self.name} rank={self.rank} {self.state} step={self.step}>"

    name = property(lambda self: self._record.name)
    rank = property(lambda self: self._record.rank)
    local_rank = property(lambda self: self._record.local_rank)
    node = property(lambda self: self._record.node)
    pid = property(lambda self: self._record.pid)
    state = property(lambda self: self._record.state)
    exit_code = property(lambda self: self._record.exit_code)
    summary = property(lambda self: dict(self._record.summary))
    config = property(lambda self: dict(self._record.config))
    meta = property(lambda self: dict(self._record.meta))
    step = property(lambda self: self._record.step)
    rows = property(lambda self: self._record.rows)
    late_updates = property(lambda self: self._record.late)
    incarnations = property(lambda self: self._record.incarnations)
    created = property(lambda self: self._record.created)
    finished_at = property(lambda self: self._record.finished)
    runtime = property(lambda self: self._record.runtime)
    id = property(lambda self: self._record.run_key)

    def keys(self) -> list[str]:
        return self._api._reader.run_keys(self._record.id)

    def history_arrays(self, keys: list[str] | None = None) -> dict[str, tuple[np.ndarray, Any]]:
        """Per key: (steps, values), values a numpy array for numbers, else a list. Includes _timestamp/_runtime."""
        want = None if keys is None else list(keys) + ["_timestamp", "_runtime"]
        return self._api._reader.run_history(self._record.id, want)

    def history(self, keys: list[str] | None = None, pandas: bool = False) -> Any:
        """Full-resolution rows (dicts with _step, _timestamp, _runtime and the keys), ordered by step.

        With ``pandas=True`` a DataFrame (pandas must be installed)."""
        rows = list(self.scan_history(keys))
        if pandas:
            try:
                import pandas as pd
            except ImportError:
                raise InvalidArgumentError("history(pandas=True) needs pandas: pip install pandas") from None
            return pd.DataFrame(rows)
        return rows

    def scan_history(self, keys: list[str] | None = None) -> Iterator[dict[str, Any]]:
        columns = self.history_arrays(keys)
        ts = columns.pop("_timestamp", (np.empty(0, np.int64), np.empty(0)))
        rt = columns.pop("_runtime", (np.empty(0, np.int64), np.empty(0)))
        rows: dict[int, dict[str, Any]] = {}
        for step, t in zip(ts[0].tolist(), np.asarray(ts[1]).tolist()):
            rows[step] = {"_step": step, "_timestamp": t}
        for step, r in zip(rt[0].tolist(), np.asarray(rt[1]).tolist()):
            rows.setdefault(step, {"_step": step})["_runtime"] = r
        for key, (steps, values) in columns.items():
            vals = values.tolist() if isinstance(values, np.ndarray) else values
            for step, v in zip(steps.tolist(), vals):
                row = rows.get(step)
                if row is None:
                    row = rows[step] = {"_step": step}
                row[key] = v
        if keys is not None:
            wanted = set(keys)
            for step in sorted(rows):
                row = rows[step]
                if wanted & row.keys():
                    yield row
            return
        for step in sorted(rows):
            yield rows[step]
