"""``rankwise.Api``: the read side over a store.

``Api()`` opens the default store (``$RANKWISE_DIR/store.sqlite``); ``Api(path)``
another one (the file or its directory). Reads never block the agent (SQLite
WAL readers), and see what the agent has committed, which is everything a
finished run logged.

Rich values (media, histograms, tables, charts; docs/media.md) are read per key and by step:
``RunView.media(key)``, ``Group.media(key, step)``, ``Group.histograms(key)`` (merged over the ranks),
``Api.media_path(ref)`` / ``Api.open_media(ref)`` for the file a reference names. Those reads decode only
the stored chunks that hold the steps asked for, so a long run costs what is read, not its whole history.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from agent.store.base import ROW_KEYS
from client import paths
from client.errors import Error, InvalidArgumentError


class NotFound(Error, LookupError):
    """No such project, group or run in the store."""


#: ``_type`` of the values that get a media panel (docs/media.md).
MEDIA_TYPES = ("histogram", "image", "video", "audio", "table", "object3d", "html", "plotly", "chart")


def media_type(value: Any) -> str | None:
    """The media type of a stored value: its ``_type`` (``"image"``, ``"histogram"``, ...); for a list of
    media its elements' type when they share one, else ``"list"``; None for plain values (numbers, text)."""
    if isinstance(value, dict):
        t = value.get("_type")
        return t if isinstance(t, str) else None
    if isinstance(value, list) and value:
        types = {v.get("_type") if isinstance(v, dict) else None for v in value}
        if None in types:
            return None
        return types.pop() if len(types) == 1 else "list"
    return None


def _valid_histogram(h: dict) -> bool:
    from grouping.errors import GroupingError
    from grouping.histogram import merge_histograms

    try:
        merge_histograms([h])
        return True
    except GroupingError:
        return False


def _steps_arg(steps: Any) -> np.ndarray | None:
    if steps is None:
        return None
    if isinstance(steps, (int, np.integer)):
        return np.array([int(steps)], np.int64)
    return np.asarray(list(steps), np.int64)


def _store_path(path: str | os.PathLike | None) -> Path:
    if path is None:
        return paths.data_dir() / paths.STORE_FILE
    p = Path(path).expanduser()
    return p / paths.STORE_FILE if p.is_dir() else p


class Api:
    """Read access to groups, runs, summaries, configs and full-resolution history."""

    def __init__(self, path: str | os.PathLike | None = None, overrides: dict | None = None,
                 timeout: float | None = None, api_key: str | None = None):  # fmt: skip
        """``path``: the store (file or directory; the default store when None). ``overrides`` (wandb's:
        ``{"project": ..., "entity": ...}``) sets the project ``runs()`` reads without a path; ``timeout`` and
        ``api_key`` are accepted for wandb's signature and unused (the store is a local file)."""
        from agent.store.sqlite_reader import SQLiteReader

        if isinstance(path, dict) and overrides is None:  # wandb.Api({"project": ...})
            path, overrides = None, path
        self.overrides = dict(overrides or {})
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

    def runs(self, path: str | None = None, filters: dict | None = None, order: str = "+created_at",
             per_page: int = 50, include_sweeps: bool = True, lazy: bool = True) -> Any:  # fmt: skip
        """wandb's ``Api.runs``: the runs of ``"project"`` or ``"entity/project"`` (every project when None
        and no ``overrides["project"]``) matching ``filters`` (MongoDB-style, as wandb's: ``{"group": "g"}``,
        ``{"state": "finished"}``, ``{"config.lr": {"$gt": 0.01}}``, ``{"$or": [...]}``), ordered by ``order``
        (``+created_at``: oldest first, the default; ``-summary_metrics.loss``, ``config.lr``, ...). Returns
        a list of :class:`rankwise._api_wandb.Run` (RunViews with wandb's attributes; docs in that module).
        ``per_page``, ``include_sweeps`` and ``lazy`` are accepted and unused (the store is local)."""
        from rankwise._api_wandb import find_runs

        return find_runs(self, path, filters, order)

    def run(self, path: str) -> Any:
        """wandb's ``Api.run("project/run_id")`` (also ``"entity/project/run_id"``,
        ``"entity/project/runs/run_id"``): one run by its id (``run.id``: the ``id=`` given to ``init()``,
        else a hash of project, group and name)."""
        from rankwise._api_wandb import find_run

        return find_run(self, path)

    # ------------------------------------------------------------ media files

    @property
    def media_root(self) -> Path:
        """The directory that media references' ``path`` is relative to (the store's directory)."""
        return self.path.parent

    def media_path(self, ref: dict | str) -> Path:
        """The file a media reference names (a stored value such as ``{"_type": "image", "sha256": ...,
        "format": "png", "path": "media/ab/<sha>.png"}``, or that ``path``).

        Raises NotFound when the value's bytes were not stored (``skipped``, e.g. over the byte budget;
        ``error``: encoding failed in the client) or the file is missing, and InvalidArgumentError for a
        value that is not a media reference."""
        from agent.media import MediaError, relative_path

        if isinstance(ref, str):
            parts = ref.split("/")
            name = parts[-1].split(".", 1)
            if len(parts) != 3 or parts[0] != "media" or len(name) != 2:
                raise InvalidArgumentError(f"media path {ref!r} is not of the form media/ab/<sha256>.<ext>")
            sha, ext = name
        elif isinstance(ref, dict):
            if ref.get("skipped"):
                raise NotFound(f"{ref.get('_type', 'media')} value was not stored ({ref['skipped']}): it has no file")
            if ref.get("error"):
                raise NotFound(f"{ref.get('_type', 'media')} value failed to encode in the client: {ref['error']}")
            sha, ext = ref.get("sha256"), ref.get("format")
            if sha is None or ext is None:
                raise InvalidArgumentError(
                    f"{ref.get('_type', 'value')!r} value has no sha256/format: not a media reference "
                    "(histograms, tables, charts and plotly figures are stored inline)"
                )
        else:
            raise InvalidArgumentError(f"media_path(ref): expected a media reference dict, got {type(ref).__name__}")
        try:
            rel = relative_path(sha, ext)
        except MediaError as exc:
            raise InvalidArgumentError(f"media_path(ref): {exc}") from None
        if isinstance(ref, str) and rel != ref:
            raise InvalidArgumentError(f"media path {ref!r} does not match its hash directory ({rel})")
        path = self.media_root / rel
        if not path.is_file():
            raise NotFound(f"media file {rel} is not in {self.media_root} (the agent stores it before the row commits)")
        return path

    def open_media(self, ref: dict | str) -> Any:
        """The referenced file opened for reading in binary mode (see :meth:`media_path`)."""
        return open(self.media_path(ref), "rb")

    # ------------------------------------------------------------ artifacts (rankwise/_artifacts.py)

    def artifacts(self, project: str | None = None, name: str | None = None) -> list[Any]:
        """Every version of every artifact of ``project`` (all projects when None; only ``name`` when
        given), by project, name and version: ``rankwise.Artifact`` objects with ``download()``."""
        from rankwise._artifact_store import ArtifactStore
        from rankwise._artifacts import Artifact

        store = ArtifactStore(self.media_root)
        return [Artifact._from_manifest(store, m) for p, n in store.names(project) if name in (None, n)
                for m in store.versions(p, n)]  # fmt: skip

    def artifact(self, name: str, type: str | None = None) -> Any:
        """One artifact version: ``"project/name:alias"`` (``latest``, a user alias or ``v3``)."""
        from rankwise._artifact_store import ArtifactStore
        from rankwise._artifacts import get_artifact

        art = get_artifact(ArtifactStore(self.media_root), name)
        if type is not None and art.type != type:
            raise InvalidArgumentError(f"artifact {name!r} is of type {art.type!r}, not {type!r}")
        return art


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

    def history(self, key: str, x_axis: str | None = None) -> dict[str, np.ndarray]:
        """Group rows of ``key``: arrays step, count, expected, mean, min, max, std, min_rank, max_rank.

        ``x_axis``: a step metric (``define_metric(key, step_metric=x_axis)``): only the rows that have its
        value, with an array ``x`` of it: the group mean of ``x_axis`` at the same step (the ranks log the
        same global step), or the latest earlier one when ``key`` was defined with it (wandb's step_sync;
        :mod:`rankwise._step_metric`)."""
        rows = self._api._reader.group_history(self._record.id, key)
        if x_axis is None or x_axis == "_step":
            return rows
        from rankwise._step_metric import syncs, x_of

        m = self._api._reader.group_history(self._record.id, x_axis)
        if len(m["step"]) == 0:
            raise NotFound(f"history(x_axis={x_axis!r}): group {self.name!r} has no numeric key {x_axis!r}")
        sync = any(syncs(r.meta, key, x_axis) for r in self._api._reader.runs(self._record.id))
        ok, x = x_of(rows["step"], m["step"], m["mean"], sync)
        out = {f: v[ok] for f, v in rows.items()}
        out["x"] = x
        return out

    # ------------------------------------------------------------ rich values

    def media_keys(self) -> list[dict[str, Any]]:
        """Keys with media values (``MEDIA_TYPES``, or lists of them): ``[{key, type, runs, first, last}]`` by
        key: ``type`` of the value at the last step (:func:`media_type`), how many runs logged the key, its
        first and last step."""
        out = []
        for key, e in sorted(self._api._reader.group_media_keys(self._record.id).items()):
            t = media_type(e["sample"])
            if t is not None:
                out.append({"key": key, "type": t, "runs": e["runs"], "first": e["first"], "last": e["last"]})
        return out

    def media_steps(self, key: str) -> dict[int, np.ndarray]:
        """Rank → the steps at which that rank has a value of ``key`` (no value is decoded)."""
        rank_of = {r.id: r.rank for r in self._api._reader.runs(self._record.id)}
        out: dict[int, np.ndarray] = {}
        for rid, steps in self._api._reader.group_value_steps(self._record.id, key).items():
            rank = rank_of.get(rid)
            if rank is not None:
                out[rank] = steps if rank not in out else np.union1d(out[rank], steps)
        return dict(sorted(out.items()))

    def media(self, key: str, step: int | None = None, start: int | None = None, end: int | None = None,
              steps: Any = None) -> dict[int, list[tuple[int, Any]]]:  # fmt: skip
        """Per rank, the values of ``key`` as ``[(step, value)]`` by step: media references, histograms,
        tables, charts as stored (docs/media.md). Images and other media are not merged across ranks:
        every rank's own value is kept. ``step`` (one step), ``steps`` (several) and ``start``/``end``
        (inclusive) limit what is read; ranks without a value there are left out."""
        want = _steps_arg(step) if step is not None else _steps_arg(steps)
        values = self._api._reader.group_values(self._record.id, key, want, start, end)
        rank_of = {r.id: r.rank for r in self._api._reader.runs(self._record.id)}
        out: dict[int, list[tuple[int, Any]]] = {}
        for rid, (st, vals) in values.items():
            rank = rank_of.get(rid)
            if rank is not None:
                out.setdefault(rank, []).extend(zip(st.tolist(), vals))
        return {r: sorted(v, key=lambda sv: sv[0]) for r, v in sorted(out.items())}

    def histograms(self, key: str, rank: int | None = None, start: int | None = None, end: int | None = None,
                   steps: Any = None) -> list[tuple[int, dict]]:  # fmt: skip
        """The group's histogram of ``key`` at each step: ``[(step, {"_type": "histogram", "bins", "values",
        "ranks"})]``, the ranks' histograms of that step merged by
        :func:`grouping.histogram.merge_histograms` (bins summed where every rank used the same edges,
        re-binned otherwise; docs/media.md), ``ranks`` the ranks merged. With ``rank=`` that rank's own
        histograms. Values that are not histograms (e.g. an ``error`` value) are left out."""
        from grouping.errors import GroupingError
        from grouping.histogram import merge_histograms

        per_rank = self.media(key, start=start, end=end, steps=steps)
        if rank is not None:
            per_rank = {rank: per_rank.get(rank, [])}
        by_step: dict[int, list[tuple[int, dict]]] = {}
        for r, values in per_rank.items():
            for st, v in values:
                if isinstance(v, dict) and v.get("_type") == "histogram" and "bins" in v and "values" in v:
                    by_step.setdefault(st, []).append((r, v))
        out = []
        for st in sorted(by_step):
            hs = by_step[st]
            try:
                merged = merge_histograms([h for _, h in hs])
            except GroupingError:  # a malformed one among them: merge the others
                hs = [(r, h) for r, h in hs if _valid_histogram(h)]
                if not hs:
                    continue
                merged = merge_histograms([h for _, h in hs])
            merged["ranks"] = [r for r, _ in hs]
            out.append((st, merged))
        return out

    def run(self, rank: int | None = None, name: str | None = None) -> "RunView":
        for r in self.runs:
            if (rank is not None and r.rank == rank) or (name is not None and r.name == name):
                return r
        raise NotFound(f"group {self.name!r} has no run with rank={rank!r} name={name!r}")


class RunView:
    """One rank's run as stored: identity, state, summary, config, history."""

    def __init__(self, api: Api, group: Group, record: Any):
        self._api = api
        self._group = group
        self._record = record

    @property
    def group(self) -> Group:
        return self._group

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

    def media(self, key: str, start: int | None = None, end: int | None = None) -> list[tuple[int, Any]]:
        """The rich values of ``key`` over steps, ``[(step, value)]``: media references (``path`` relative
        to ``Api.media_root``; open with ``Api.open_media(value)``), histograms, tables, charts, plotly
        figures, lists of media, as stored (docs/media.md). Plain numbers and text are left out. Reads only
        this key's chunks (within ``start``/``end`` when given)."""
        steps, values = self._api._reader.run_values(self._record.id, key, None, start, end)
        return [(s, v) for s, v in zip(steps.tolist(), values) if media_type(v) is not None]

    def history_arrays(self, keys: list[str] | None = None) -> dict[str, tuple[np.ndarray, Any]]:
        """Per key: (steps, values), values a numpy array for numbers, else a list. Includes _timestamp/_runtime."""
        want = None if keys is None else list(keys) + list(ROW_KEYS)
        return self._api._reader.run_history(self._record.id, want)

    @property
    def coalesced_rows(self) -> tuple[int, int]:
        """(logged rows that were coalesced, spans they became): (0, 0) when the run stayed in budget."""
        tally = self._record.meta.get("coalesced") or {}
        return int(tally.get("rows", 0)), int(tally.get("spans", 0))

    def coalesced(self, key: str | None = None) -> dict[str, Any]:
        """Rows the agent coalesced over the run's row budget: per key (or for ``key``) arrays ``step``
        (the last step of each span, where ``history()`` has the span's row), ``first_step``, ``count``
        (values the span stands for), ``last``, ``mean``, ``min`` and ``max``. In ``history()`` such rows
        carry ``_first_step`` and ``_rows``; their key values are the span's last values."""
        spans = self._api._reader.run_spans(self._record.id, None if key is None else [key])
        return spans.get(key, {}) if key is not None else spans

    def step_metric(self, key: str) -> str | None:
        """The step metric ``key`` was defined with (``define_metric(key, step_metric=M)``; globs match),
        None when it has none (its x axis is ``_step``)."""
        from rankwise._step_metric import step_metric_of

        return step_metric_of(self._record.meta, key)

    def step_metrics(self) -> dict[str, list[str]]:
        """Every step metric the run defined → the keys (or globs) defined with it."""
        from rankwise._step_metric import step_metrics

        return step_metrics([self._record.meta])

    def history(self, keys: list[str] | None = None, pandas: bool = False, x_axis: str | None = None) -> Any:
        """Full-resolution rows (dicts with _step, _timestamp, _runtime and the keys), ordered by step.

        ``x_axis``: a step metric (e.g. ``"train/global_step"``): only rows that have its value, or take the
        latest earlier one as wandb's ``step_sync`` does for keys defined with ``step_metric=x_axis``
        (:mod:`rankwise._step_metric`), each with that value. With ``pandas=True`` a DataFrame (pandas must
        be installed)."""
        if x_axis is not None and x_axis not in ("_step", *ROW_KEYS):
            from rankwise._step_metric import pair_rows

            scan = self.scan_history(None if keys is None else [*keys, x_axis])
            rows = list(pair_rows(scan, x_axis, self._record.meta, keys))
        else:
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
