"""wandb's ``Run`` names beyond logging: identity (entity, path, url, tags, notes), wandb-only switches, and
the methods rankwise has no counterpart for, which raise :class:`client.errors.UnsupportedError`.

``client.run.Run`` inherits :class:`WandbRunMixin`; ``watch`` is client/watch.py's, ``log_artifact``,
``use_artifact``, ``save``, ``restore`` and ``url`` are what rankwise/ lends (:func:`lend`). Nothing here is on
the ``log()`` path. Tags, notes, job type, entity and a renamed display name travel in the run's meta
(the HELLO's ``meta`` and, when changed later, a ``meta`` control op), where ``Api`` reads them; ``alert``
sends an ``alert`` control op (agent/alerts/user.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from client.errors import InvalidArgumentError, UnsupportedError, UsageError

if TYPE_CHECKING:
    from client.run import Run


def run_files_dir(run: Run) -> str:
    """``<init(dir=) or WANDB_DIR or the data dir>/wandb/run-<id>/files``, created on first use."""
    base = run.settings.files_dir if run.settings.files_dir is not None else run.settings.data_dir
    path = Path(os.path.abspath(base)) / "wandb" / f"run-{run.id}" / "files"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only place: report the path anyway, as wandb's run.dir is only a name here
        pass
    return str(path)


# What rankwise/ lends the run handle: client/ never imports rankwise/ (docs/architecture.md), whose artifact
# store and UI addresses these methods use. rankwise/__init__.py lends them on import (a Run is made by
# rankwise.init(), so they are there): "artifacts" -> the module with log_artifact and use_artifact
# (rankwise/_artifacts.py, imported on first use), "run_files" -> the one with save and restore
# (rankwise/_run_files.py), "group_url" -> group_url(project, group).
_LENT: dict[str, Callable[[], Any]] = {}


def lend(name: str, load: Callable[[], Any]) -> None:
    """rankwise/ registers what ``name`` is: ``load()`` returns it (and imports it on first use)."""
    _LENT[name] = load


def _lent(name: str, use: str) -> Any:
    """What rankwise/ lent as ``name``; ``use`` (e.g. "run.save()") names the caller in the error."""
    load = _LENT.get(name)
    if load is None:
        raise UsageError(f"{use} needs the rankwise package: import rankwise before using it")
    return load()


ALERT_LEVELS = ("INFO", "WARN", "ERROR")  # rankwise.AlertLevel's values (agent/alerts/alert.py LEVELS)
ALERT_WAIT_S = 60.0  # wandb's default wait_duration: one minute


def _wait_seconds(wait_duration: Any) -> float:
    """``run.alert(wait_duration=)``: seconds (int or float >= 0), a ``timedelta``, or None (one minute)."""
    if wait_duration is None:
        return ALERT_WAIT_S
    if isinstance(wait_duration, timedelta):
        wait_duration = wait_duration.total_seconds()
    if isinstance(wait_duration, bool) or not isinstance(wait_duration, (int, float)) or not 0 <= wait_duration < 1e9:
        raise InvalidArgumentError(
            f"run.alert(wait_duration={wait_duration!r}) must be a number of seconds >= 0 or a datetime.timedelta"
        )
    return float(wait_duration)


class WandbRunMixin:
    """The part of wandb's ``Run`` surface that is not logging. See the module docstring."""

    # ------------------------------------------------------------ identity

    @property
    def entity(self: Run) -> str:
        return self.settings.entity or ""

    @property
    def path(self: Run) -> str:
        """wandb's ``entity/project/run_id`` (``project/run_id`` without an entity)."""
        parts = [self.settings.entity, self.settings.project, self.id]
        return "/".join(p for p in parts if p)

    @property
    def url(self: Run) -> str:
        """The group's page on a ``rankwise ui`` server at its default address."""
        return _lent("group_url", "run.url")(self.settings.project, self.settings.group)

    @property
    def dir(self: Run) -> str:
        """wandb's run.dir: the run's local files, ``<init(dir=) or WANDB_DIR or the data dir>/wandb/run-<id>/files``
        (created on first access). Never the store: that stays in RANKWISE_DIR."""
        return run_files_dir(self)

    def get_url(self: Run) -> str:
        return self.url

    def get_project_url(self: Run) -> str:
        return self.url.split("/g/")[0] + "/"

    def get_sweep_url(self: Run) -> None:
        return None

    def project_name(self: Run) -> str:
        return self.settings.project

    @property
    def tags(self: Run) -> tuple[str, ...]:
        return tuple(self._meta.get("tags") or ())

    @tags.setter
    def tags(self: Run, value: Any) -> None:
        if isinstance(value, str) or not all(isinstance(t, str) for t in value):
            raise InvalidArgumentError(f"run.tags = {value!r} must be a list of strings")
        self._set_meta("tags", list(value))

    @property
    def notes(self: Run) -> str | None:
        return self._meta.get("notes")

    @notes.setter
    def notes(self: Run, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise InvalidArgumentError(f"run.notes = {value!r} must be a string or None")
        self._set_meta("notes", value)

    @property
    def job_type(self: Run) -> str | None:
        return self._meta.get("job_type")

    @property
    def start_time(self: Run) -> float:
        """Wall-clock time of ``init()`` (seconds since the epoch)."""
        return self._started_wall

    @property
    def starting_step(self: Run) -> int:
        return self._starting_step

    @property
    def offline(self: Run) -> bool:
        return self.settings.mode == "offline"

    @property
    def disabled(self: Run) -> bool:
        return self.settings.mode == "disabled"

    @property
    def sweep_id(self: Run) -> None:
        return None  # rankwise has no sweeps

    @property
    def id_(self: Run) -> str:
        return self.id

    @property
    def config_static(self: Run) -> Any:
        return self.config

    @property
    def project_url(self: Run) -> str:
        return self.get_project_url()

    @property
    def sweep_url(self: Run) -> None:
        return None

    def status(self: Run) -> dict[str, Any]:
        """wandb's sync status; here: the state and the delivery counters (``run.stats``)."""
        return {"state": "finished" if self._finished else "running", **self.stats}

    def _set_meta(self: Run, key: str, value: Any) -> None:
        self._meta[key] = value
        self._control("meta", {key: value})

    # ------------------------------------------------------------ watch (client/watch.py), artifacts (lent)

    def watch(
        self: Run,
        models: Any,
        criterion: Any = None,
        log: Any = "gradients",
        log_freq: int = 1000,
        idx: Any = None,
        log_graph: bool = False,
    ) -> Any:
        """wandb's ``watch``: gradient/parameter histograms every ``log_freq`` calls (client/watch.py)."""
        from client import watch

        return watch.watch(self, models, criterion, log, log_freq, idx, log_graph)

    def unwatch(self: Run, models: Any = None) -> None:
        from client import watch

        watch.unwatch(self, models)

    def log_artifact(
        self: Run, artifact_or_path: Any, name: Any = None, type: Any = None, aliases: Any = None, **kwargs: Any
    ) -> Any:
        """Store an artifact (a new version unless its content equals the latest): rankwise/_artifacts.py."""
        artifacts = _lent("artifacts", "run.log_artifact()")
        return artifacts.log_artifact(self, artifact_or_path, name=name, type=type, aliases=aliases, **kwargs)

    def use_artifact(self: Run, artifact_or_name: Any, type: Any = None, aliases: Any = None, **kwargs: Any) -> Any:
        artifacts = _lent("artifacts", "run.use_artifact()")
        return artifacts.use_artifact(self, artifact_or_name, type=type, aliases=aliases, **kwargs)

    def save(self: Run, glob_str: Any = None, base_path: Any = None, policy: str = "live") -> Any:
        return _lent("run_files", "run.save()").save(self, glob_str, base_path=base_path, policy=policy)

    def restore(self: Run, name: str, run_path: Any = None, replace: bool = False, root: Any = None) -> Any:
        return _lent("run_files", "run.restore()").restore(self, name, run_path=run_path, replace=replace, root=root)

    # ------------------------------------------------------------ wandb-only switches (accepted, no effect)

    def _label(
        self: Run, code: str | None = None, repo: str | None = None, code_version: str | None = None, **kwargs: Any
    ) -> None:
        """wandb's integration label (``_label(code="transformers_trainer")``): kept in the run's meta."""
        label = {
            k: v for k, v in dict(kwargs, code=code, repo=repo, code_version=code_version).items() if isinstance(v, str)
        }
        if label:
            self._set_meta("label", label)

    def mark_preempting(self: Run) -> None:
        """wandb marks the run as about to be preempted; rankwise resumes a restarted rank anyway."""
        self._set_meta("preempting", True)

    def log_code(
        self: Run, root: str | None = ".", name: str | None = None, include_fn: Any = None, exclude_fn: Any = None
    ) -> None:
        """Source code is not stored by rankwise: returns None (wandb returns None when nothing is saved)."""
        return None

    def alert(self: Run, title: str, text: str, level: Any = None, wait_duration: Any = None) -> None:
        """wandb's ``run.alert``: an alert of kind ``user`` about this rank, at ``run.step``, stored by the agent
        (``Group.alerts``, ``rankwise alerts``) and sent to its alert sinks (docs/alerts.md). ``level``:
        ``rankwise.AlertLevel`` or "INFO"/"WARN"/"ERROR" (default INFO); ``wait_duration`` (seconds or a
        ``timedelta``, default 60 s as wandb): a later alert with the same title from this process within it
        is not sent. Never blocks; nothing raises for transport trouble."""
        if not isinstance(title, str) or not title or len(title) > 256:
            raise InvalidArgumentError(
                f"run.alert(title={title!r}) must be a non-empty string of at most 256 characters"
            )
        if not isinstance(text, str) or len(text) > 4096:
            raise InvalidArgumentError(f"run.alert(text={text!r:.80}) must be a string of at most 4096 characters")
        name = "INFO" if level is None else getattr(level, "value", level)
        if not isinstance(name, str) or name.upper() not in ALERT_LEVELS:
            raise InvalidArgumentError(
                f"run.alert(level={level!r}) must be rankwise.AlertLevel.INFO, WARN or ERROR (or their names)"
            )
        wait = _wait_seconds(wait_duration)
        if self._finished:
            raise UsageError(f"run.alert() on run {self.name!r} after finish(); call rankwise.init() for a new run")
        now = time.monotonic()
        alerted = self.__dict__.setdefault("_alerted", {})  # title -> when this process last sent it
        last = alerted.get(title)
        if last is not None and now - last < wait:
            return  # wandb's wait_duration: no second alert with this title within it
        alerted[title] = now
        arg = {"title": title, "text": text, "level": name.upper(), "wait": wait, "t": time.time(), "step": self._step}
        self._control("alert", arg)

    def display(self: Run, height: int = 420, hidden: bool = False) -> bool:
        return False

    def to_html(self: Run, height: int = 420, hidden: bool = False) -> str:
        return f'<a href="{self.url}">{self.name}</a>'

    # ------------------------------------------------------------ no counterpart in rankwise

    def link_artifact(self: Run, *args: Any, **kwargs: Any) -> None:
        raise UnsupportedError("run.link_artifact(): rankwise has no artifact registry to link into")

    def link_model(self: Run, *args: Any, **kwargs: Any) -> None:
        raise UnsupportedError("run.link_model(): rankwise has no model registry to link into")

    def log_model(self: Run, path: Any, name: str | None = None, aliases: Any = None) -> Any:
        return self.log_artifact(path, name=name, type="model", aliases=aliases)

    def use_model(self: Run, name: str) -> Any:
        artifact = self.use_artifact(name)
        return artifact.download()

    def upsert_artifact(self: Run, *args: Any, **kwargs: Any) -> None:
        raise UnsupportedError("run.upsert_artifact(): distributed artifacts are not supported by rankwise")

    def finish_artifact(self: Run, *args: Any, **kwargs: Any) -> None:
        raise UnsupportedError("run.finish_artifact(): distributed artifacts are not supported by rankwise")

    def plot_table(self: Run, *args: Any, **kwargs: Any) -> None:
        raise UnsupportedError("run.plot_table(): custom Vega charts are not supported; use rankwise.plot.*")
