"""wandb's public read API over a rankwise store, so that wandb analysis notebooks run unchanged.

``Api().runs("project" or "entity/project", filters={...}, order="+created_at")`` and
``Api().run("project/run_id")`` return :class:`Run` objects: rankwise's :class:`RunView` (rank, node,
``keys()``, ``media()``, ``coalesced()`` ...) with wandb's attributes (``id``, ``name``, ``group`` as the
group's name, ``state``, ``config``, ``summary``, ``project``, ``entity``, ``path``, ``created_at``,
``tags`` ...) and wandb's ``history()`` / ``scan_history()``.

What differs from wandb, and why:

- ``entity``: rankwise has no accounts. A run's entity is the one it was logged with (``init(entity=)``,
  ``project="team/proj"``, ``WANDB_ENTITY``) when there was one, else the reading user's login name; a
  path's entity only filters runs that were logged with an entity.
- The store is read-only here: ``run.update()``, ``run.delete()`` raise :class:`rankwise.Error`; so do
  ``stream="system"`` (no system metrics are stored) and the file and artifact methods.
- ``history(samples=N)`` keeps N rows chosen evenly by position, first and last included (wandb's server
  samples by its own rule); ``scan_history()`` returns every row.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.store.base import ROW_KEYS
from rankwise._api_filters import iso, matches, ordered
from rankwise._views import Group, RunView
from rankwise.errors import Error, InvalidArgumentError, NotFound

if TYPE_CHECKING:
    from rankwise._api import Api


def _default_entity() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "local"


def _keys_arg(where: str, keys: Any) -> list[str] | None:
    if keys is None:
        return None
    if isinstance(keys, str) or not isinstance(keys, (list, tuple)) or not all(isinstance(k, str) for k in keys):
        raise InvalidArgumentError(f"{where}(keys=...) must be a list of key names, e.g. keys=['loss'], got {keys!r}")
    return list(keys)


class Summary(dict):
    """A run's summary as wandb's public API gives it: a dict (read here; rankwise's store is not written
    through the Api)."""

    @property
    def _json_dict(self) -> dict:
        return dict(self)


class Run(RunView):
    """One run as wandb's ``wandb.apis.public.Run`` presents it (and every :class:`RunView` attribute:
    ``rank``, ``node``, ``keys()``, ``media()``, ``history_arrays()``, ``coalesced()`` ...; the group object is
    ``group_view``)."""

    def __repr__(self) -> str:
        return f"<Run {self.entity}/{self.project}/{self.id} ({self.state})>"

    # ------------------------------------------------------------ wandb's attributes

    @property
    def group(self) -> str:  # type: ignore[override]
        """The group's name (wandb's ``run.group``)."""
        return self._group.name

    @property
    def group_view(self) -> Group:
        return self._group

    @property
    def project(self) -> str:
        return self._group.project

    @property
    def entity(self) -> str:
        e = self._record.meta.get("entity")
        return e if isinstance(e, str) and e else _default_entity()

    @property
    def path(self) -> list[str]:
        return [self.entity, self.project, self.id]

    @property
    def storage_id(self) -> str:
        return str(self._record.id)

    display_name = property(lambda self: self._record.name)
    tags = property(lambda self: [t for t in self._record.meta.get("tags") or [] if isinstance(t, str)])
    notes = property(lambda self: self._record.meta.get("notes"))
    job_type = property(lambda self: self._record.meta.get("job_type"))
    jobType = job_type
    sweep = None
    sweep_name = None
    system_metrics = property(lambda self: {})  # rankwise stores no system metrics
    created_at = property(lambda self: iso(self._record.created))
    heartbeat_at = property(lambda self: iso(self._record.updated))
    updated_at = heartbeat_at
    lastHistoryStep = property(lambda self: self._record.step - 1)
    user = property(lambda self: self._record.meta.get("user") or self.entity)
    username = user

    @property
    def summary(self) -> Summary:  # type: ignore[override]
        return Summary(self._record.summary)

    summary_metrics = summary

    @property
    def rawconfig(self) -> dict:
        return {k: {"value": v} for k, v in self._record.config.items()}

    @property
    def json_config(self) -> str:
        import json

        return json.dumps(self.rawconfig, default=repr)

    @property
    def url(self) -> str:
        from rankwise._ui.address import group_url

        return group_url(self.project, self.group)

    @property
    def metadata(self) -> dict:
        r = self._record
        return {
            "host": r.node,
            "rank": r.rank,
            "local_rank": r.local_rank,
            "pid": r.pid,
            "startedAt": self.created_at,
            "exit_code": r.exit_code,
        }

    @property
    def history_keys(self) -> dict:
        return {"keys": {k: {} for k in self.keys()}, "lastStep": self.lastHistoryStep}

    # ------------------------------------------------------------ history

    def _steps(self, keys: list[str] | None, every: bool) -> np.ndarray:
        """Steps of the rows with a value of every one of ``keys`` (``every``) or of any of them (of any key
        when None), from the steps blobs alone (no value is decoded)."""
        reader, rid = self._api._reader, self._record.id
        named = [k for k in keys or () if k != "_step"]
        if keys is None or not named:
            return reader.run_steps(rid)
        parts = [reader.run_steps(rid, k) for k in named]
        out = parts[0]
        for p in parts[1:]:
            out = np.intersect1d(out, p) if every else np.union1d(out, p)
        return out

    def _rows(self, keys: list[str] | None, steps: np.ndarray, page_size: int) -> Iterator[dict]:
        """The rows at ``steps`` (sorted) as dicts with ``_step``, the meta keys and ``keys`` (every key when
        None), read ``page_size`` rows at a time: each read decodes only the chunks overlapping the page."""
        reader, rid = self._api._reader, self._record.id
        want = None if keys is None else list(dict.fromkeys([*(k for k in keys if k != "_step"), *ROW_KEYS]))
        for i in range(0, len(steps), page_size):
            page = steps[i : i + page_size]
            columns = reader.run_history_between(rid, want, int(page[0]), int(page[-1]))
            rows: dict[int, dict[str, Any]] = {s: {"_step": s} for s in page.tolist()}
            for key, (st, values) in columns.items():
                at = np.flatnonzero(np.isin(st, page))  # a sampled page skips most steps of its range
                vals = values[at].tolist() if isinstance(values, np.ndarray) else [values[j] for j in at.tolist()]
                for s, v in zip(st[at].tolist(), vals):
                    rows[s][key] = v
            yield from rows.values()

    def scan_history(
        self,
        keys: list[str] | None = None,
        page_size: int = 1000,
        min_step: int | None = None,
        max_step: int | None = None,
    ) -> Iterator[dict]:  # type: ignore[override]
        """Every row of the run, in step order, as dicts (wandb's ``scan_history``). With ``keys`` only the rows
        that have all of them, holding only them. ``min_step`` inclusive, ``max_step`` exclusive; read
        ``page_size`` rows at a time."""
        keys = _keys_arg("scan_history", keys)
        if not isinstance(page_size, int) or isinstance(page_size, bool) or page_size < 1:
            raise InvalidArgumentError(f"scan_history(page_size={page_size!r}) must be a positive integer")
        steps = self._steps(keys, every=True)
        if min_step is not None:
            steps = steps[steps >= int(min_step)]
        if max_step is not None:
            steps = steps[steps < int(max_step)]
        rows = self._rows(keys, steps, page_size)
        if keys is None:
            return rows
        return ({k: r[k] for k in keys} for r in rows)

    beta_scan_history = scan_history

    def history(
        self,
        samples: int = 500,
        keys: list[str] | None = None,
        x_axis: str = "_step",  # type: ignore[override]
        pandas: bool = True,
        stream: str = "default",
    ) -> Any:
        """Sampled rows (wandb's ``history``): at most ``samples`` rows, chosen evenly (first and last kept).
        Without ``keys``: whole rows. With ``keys``: the rows that have every key and ``x_axis``, holding only
        those. ``x_axis`` may be a step metric (``define_metric(key, step_metric=x_axis)``; rows of such keys
        take its latest earlier value when they lack one, as wandb's ``step_sync``). A pandas DataFrame when
        ``pandas`` and pandas is installed, else a list of dicts."""
        keys = _keys_arg("history", keys)
        if stream != "default":
            raise Error(f"history(stream={stream!r}): rankwise stores no system metrics; use stream='default'")
        if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
            raise InvalidArgumentError(f"history(samples={samples!r}) must be a positive integer")
        if not isinstance(x_axis, str) or not x_axis:
            raise InvalidArgumentError(f"history(x_axis={x_axis!r}) must be a key name such as '_step'")
        read = None if keys is None else list(dict.fromkeys([*keys, x_axis]))
        if x_axis in ("_step", *ROW_KEYS):  # the rows are known from their steps: read only the samples
            rows: Any = list(self._rows(read, _sample(self._steps(read, every=True), samples), 1000))
        else:  # a step metric: pairing needs the rows before each one (step_sync)
            from rankwise._step_metric import pair_rows

            rows = pair_rows(self._rows(read, self._steps(read, every=False), 1000), x_axis, self._record.meta)
            rows = _sample([r for r in rows if read is None or all(k in r for k in read)], samples)
        if read is not None:
            rows = [{k: r[k] for k in read} for r in rows]
        return _frame(rows) if pandas else rows

    # ------------------------------------------------------------ what a read-only local store cannot do

    def update(self) -> None:
        raise Error(
            "Run.update(): rankwise.Api reads the store and never writes it; change a run from its "
            "training process (run.summary[...] = ..., run.config.update(...))"
        )

    def delete(self, delete_artifacts: bool = False) -> None:
        raise Error("Run.delete(): rankwise.Api is read-only; delete runs with the rankwise CLI")

    def _unsupported(self, what: str) -> Any:
        raise Error(f"Run.{what}(): rankwise keeps no run files on a server; media are read with run.media(key)")

    def files(self, *args: Any, **kwargs: Any) -> Any:
        return self._unsupported("files")

    def file(self, *args: Any, **kwargs: Any) -> Any:
        return self._unsupported("file")

    def upload_file(self, *args: Any, **kwargs: Any) -> Any:
        return self._unsupported("upload_file")

    def logged_artifacts(self, *args: Any, **kwargs: Any) -> Any:
        raise Error("Run.logged_artifacts(): artifacts are listed per project in rankwise: Api().artifacts(project)")

    def used_artifacts(self, *args: Any, **kwargs: Any) -> Any:
        raise Error("Run.used_artifacts(): artifacts are listed per project in rankwise: Api().artifacts(project)")


def _sample(items: Any, samples: int) -> Any:
    """At most ``samples`` of ``items`` (an array or a list), evenly spread by position, first and last kept."""
    if len(items) <= samples:
        return items
    idx = np.unique(np.round(np.linspace(0, len(items) - 1, samples)).astype(np.int64))
    return items[idx] if isinstance(items, np.ndarray) else [items[i] for i in idx.tolist()]


def _frame(rows: list[dict]) -> Any:
    try:
        import pandas as pd
    except ImportError:  # pandas is optional (the `media` extra); wandb returns the rows too
        return rows
    return pd.DataFrame.from_records(rows)


class Runs(list):
    """The runs ``Api.runs()`` found (a list; wandb's lazy ``Runs`` pages, this one is read at once)."""

    def __init__(self, runs: list[Run], path: str | None, filters: dict | None, order: str):
        super().__init__(runs)
        self.path, self.filters, self.order = path, filters, order

    def __repr__(self) -> str:
        return f"<Runs {self.path or '*'} {len(self)} run(s)>"

    @property
    def length(self) -> int:
        return len(self)

    def histories(
        self,
        samples: int = 500,
        keys: list[str] | None = None,
        x_axis: str = "_step",
        format: str = "default",
        stream: str = "default",
    ) -> Any:
        """Every run's ``history()`` with a ``run_id`` column: a list of dicts (``format="default"``) or one
        DataFrame (``"pandas"``)."""
        if format not in ("default", "pandas"):
            raise InvalidArgumentError(
                f"histories(format={format!r}) must be 'default' or 'pandas' (polars is not supported)"
            )
        rows = [dict(row, run_id=r.id) for r in self for row in r.history(samples, keys, x_axis, False, stream)]
        if format == "pandas":
            frame = _frame(rows)
            if frame is rows:
                raise InvalidArgumentError("histories(format='pandas') needs pandas: pip install pandas")
            return frame
        return rows


# ---------------------------------------------------------------- finding runs


def _split(api: Api, path: str | None, what: str) -> tuple[str | None, str | None, list[str]]:
    """(entity, project, rest) of a wandb path; project from ``Api(overrides=)`` when the path has none."""
    if path is None:
        return api.overrides.get("entity"), api.overrides.get("project"), []
    if not isinstance(path, str) or not path.strip("/"):
        raise InvalidArgumentError(f"{what}(path={path!r}) must be a string such as 'project' or 'entity/project'")
    return None, None, [p for p in path.strip("/").split("/") if p]


def _all_runs(api: Api, entity: str | None, project: str | None) -> list[Run]:
    if project is not None and project not in api._reader.projects():
        known = ", ".join(api._reader.projects()[:20]) or "none"
        raise NotFound(f"no project {project!r} in {api.path}; projects: {known}")
    out = []
    for g in api.groups(project):
        for rec in api._reader.runs(g._record.id):
            run = Run(api, g, rec)
            e = rec.meta.get("entity")
            if entity is None or not isinstance(e, str) or not e or e == entity:
                out.append(run)
    return out


def find_runs(api: Api, path: str | None, filters: dict | None, order: str) -> Runs:
    entity, project, parts = _split(api, path, "runs")
    if parts:
        if len(parts) > 2:
            raise InvalidArgumentError(f"runs(path={path!r}): expected 'project' or 'entity/project'")
        entity, project = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    if filters is not None and not isinstance(filters, dict):
        raise InvalidArgumentError(
            f"runs(filters=...) must be a dict such as {{'group': 'g'}}, got {type(filters).__name__}"
        )
    runs = [r for r in _all_runs(api, entity, project) if filters is None or matches(r, filters)]
    return Runs(ordered(runs, order), path, filters, order)


def find_run(api: Api, path: str) -> Run:
    entity, project, parts = _split(api, path, "run")
    if len(parts) == 4 and parts[2] == "runs":
        parts = [parts[0], parts[1], parts[3]]
    if len(parts) == 3:
        entity, project, run_id = parts
    elif len(parts) == 2:
        project, run_id = parts
    elif len(parts) == 1:
        run_id = parts[0]
    else:
        raise InvalidArgumentError(f"run(path={path!r}): expected 'project/run_id' or 'entity/project/run_id'")
    runs = _all_runs(api, entity, project)
    hits = [r for r in runs if r.id == run_id]
    if len(hits) == 1:
        return hits[0]
    where = f"project {project!r}" if project else "the store"
    if not hits:
        known = ", ".join(f"{r.id} ({r.group}/{r.name})" for r in runs[:10]) or "none"
        raise NotFound(f"no run with id {run_id!r} in {where}; runs: {known}")
    groups = ", ".join(sorted({f"{r.project}/{r.group}" for r in hits}))
    raise InvalidArgumentError(
        f"run id {run_id!r} names {len(hits)} runs in {where} (groups {groups}); pick one with "
        f"api.runs(project, filters={{'group': ..., 'name': {run_id!r}}})"
    )
