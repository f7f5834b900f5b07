"""``rankwise.Api``: the read side over a store.

``Api()`` opens the store ``$RANKWISE_STORE`` names, else the default (``$RANKWISE_DIR/store.sqlite``); ``Api(path)``
another one (the file or its directory), ``Api("clickhouse://host:port/db")`` a ClickHouse store
(agent/store/open.py; media files then under ``$RANKWISE_DIR``, docs/scale.md). Reads never block the agent (SQLite
WAL readers), and see what the agent has committed, which is everything a
finished run logged. What it returns are views (rankwise/_views.py): a ``Group``
per distributed job, a ``RunView`` per rank.

Rich values (media, histograms, tables, charts; docs/media.md) are read per key and by step:
``RunView.media(key)``, ``Group.media(key, step)``, ``Group.histograms(key)`` (merged over the ranks),
``Api.media_path(ref)`` / ``Api.open_media(ref)`` for the file a reference names. Those reads decode only
the stored chunks that hold the steps asked for, so a long run costs what is read, not its whole history.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agent.errors import StoreError
from rankwise._stores import chosen_store, is_store_url, media_root_of, store_path
from rankwise._views import Group
from rankwise.errors import InvalidArgumentError, NotFound


class Api:
    """Read access to groups, runs, summaries, configs and full-resolution history."""

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        overrides: dict | None = None,
        timeout: float | None = None,
        api_key: str | None = None,
    ):
        """``path``: the store (file or directory; when None the one ``RANKWISE_STORE`` names, else the default
        file: :func:`chosen_store`; or a ``clickhouse://`` /
        ``chdb://`` URL, where one that cannot be reached raises StoreError naming it, password hidden). ``overrides`` (wandb's:
        ``{"project": ..., "entity": ...}``) sets the project ``runs()`` reads without a path; ``timeout`` and
        ``api_key`` are accepted for wandb's signature and unused (the store is a local file).

        Raises NotFound when there is no store at ``path``; a store that is there but cannot be read (damaged,
        no permission) raises the reader's ``StoreError``, also a ``rankwise.Error``, with its cause."""
        from agent.store.sqlite_reader import SQLiteReader

        if isinstance(path, dict) and overrides is None:  # wandb.Api({"project": ...})
            path, overrides = None, path
        self.overrides = dict(overrides or {})
        path = chosen_store(path)
        self._media_root = media_root_of(path)
        if is_store_url(path):  # a ClickHouse server, cluster or chdb directory (docs/scale.md)
            from agent.store.open import open_reader, redact

            self.path = redact(path)  # what messages and repr show: never the password
            self._reader = open_reader(path)
            return
        self.path = store_path(path)
        try:
            self._reader = SQLiteReader(self.path)
        except StoreError as exc:
            if self.path.exists():
                raise  # there but unreadable (damaged, no permission): not a missing store
            raise NotFound(str(exc)) from exc

    def __repr__(self) -> str:
        return f"<rankwise.Api {self.path}>"

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def projects(self) -> list[str]:
        return self._reader.projects()

    def groups(self, project: str | None = None) -> list[Group]:
        """The project's groups (all projects' when None), newest first."""
        return [Group(self, g) for g in self._reader.groups(project)]

    def group(self, project: str | None, name: str | None = None) -> Group:
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

    def runs(
        self,
        path: str | None = None,
        filters: dict | None = None,
        order: str = "+created_at",
        per_page: int = 50,
        include_sweeps: bool = True,
        lazy: bool = True,
    ) -> Any:
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
        """The directory that media references' ``path`` is relative to (the store's directory; for a URL
        store, ``$RANKWISE_DIR``)."""
        return self._media_root

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
            raise InvalidArgumentError(f"media_path(ref): {exc}") from exc
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
        return [
            Artifact._from_manifest(store, m)
            for p, n in store.names(project)
            if name in (None, n)
            for m in store.versions(p, n)
        ]

    def artifact(self, name: str, type: str | None = None) -> Any:
        """One artifact version: ``"project/name:alias"`` (``latest``, a user alias or ``v3``)."""
        from rankwise._artifact_store import ArtifactStore
        from rankwise._artifacts import get_artifact

        art = get_artifact(ArtifactStore(self.media_root), name)
        if type is not None and art.type != type:
            raise InvalidArgumentError(f"artifact {name!r} is of type {art.type!r}, not {type!r}")
        return art
