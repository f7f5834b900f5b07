"""wandb's module-level functions beyond init/log/finish, on the current run (``rankwise.<name>`` and, under
``RANKWISE_AS_WANDB=1``, ``wandb.<name>``).

What needs a run (``watch``, ``save``, ``alert``, ``log_artifact``, ...) raises ``UsageError`` before
``init()``, as wandb does. What rankwise has no counterpart for (sweeps, registries, custom Vega charts)
raises :class:`rankwise.UnsupportedError` (a ``rankwise.Error``) naming it. Credentials are never needed:
``login()`` answers True at once.
"""

from __future__ import annotations

import enum
import sys
from typing import Any

from client import state
from client.settings import Settings as _RunSettings
from rankwise.errors import UnsupportedError, UsageError

VERSION = "0.31.0"  # what `wandb.__version__` / the routed distribution metadata answer (frameworks check it)

_said: set[str] = set()


def _run(what: str) -> Any:
    run = state.current()
    if run is None:
        raise UsageError(f"rankwise.init() must be called before {what}")
    return run


# ---------------------------------------------------------------- session: nothing to set up


def login(
    anonymous: Any = None,
    key: Any = None,
    relogin: Any = None,
    host: Any = None,
    force: Any = None,
    timeout: Any = None,
    verify: bool = False,
    referrer: Any = None,
) -> bool:
    """No account: the agent is local. Always True (an API key passed here is ignored, never stored)."""
    return True


def require(requirement: Any = None) -> None:
    """wandb's feature switches ("service", "core", ...): rankwise has one behaviour, nothing to require."""
    return None


def setup(settings: Any = None) -> None:
    """wandb prepares its service process here; rankwise starts its agent at the first init()."""
    return None


def teardown(exit_code: int | None = None) -> None:
    """Finish every unfinished run of this process (wandb's teardown)."""
    state._finish_all(0 if exit_code is None else int(exit_code))


def mark_preempting() -> None:
    run = state.current()
    if run is not None:
        run.mark_preempting()


# ---------------------------------------------------------------- forwarded to the current run


def watch(
    models: Any,
    criterion: Any = None,
    log: Any = "gradients",
    log_freq: int = 1000,
    idx: Any = None,
    log_graph: bool = False,
) -> Any:
    return _run("watch()").watch(models, criterion=criterion, log=log, log_freq=log_freq, idx=idx, log_graph=log_graph)


def unwatch(models: Any = None) -> None:
    return _run("unwatch()").unwatch(models)


def save(glob_str: str | None = None, base_path: str | None = None, policy: str = "live") -> Any:
    return _run("save()").save(glob_str, base_path=base_path, policy=policy)


def restore(name: str, run_path: str | None = None, replace: bool = False, root: str | None = None) -> Any:
    run = state.current()
    if run is not None:
        return run.restore(name, run_path=run_path, replace=replace, root=root)
    if run_path is None:
        raise UsageError("rankwise.restore(name) needs rankwise.init() first, or run_path='project/run_id'")
    from rankwise import _run_files

    return _run_files.restore(None, name, run_path=run_path, replace=replace, root=root)


def alert(title: str, text: str, level: Any = None, wait_duration: Any = None) -> None:
    return _run("alert()").alert(title, text, level=level, wait_duration=wait_duration)


def log_artifact(
    artifact_or_path: Any, name: str | None = None, type: str | None = None, aliases: Any = None, tags: Any = None
) -> Any:
    return _run("log_artifact()").log_artifact(artifact_or_path, name=name, type=type, aliases=aliases)


def use_artifact(artifact_or_name: Any, type: str | None = None, aliases: Any = None, use_as: str | None = None) -> Any:
    return _run("use_artifact()").use_artifact(artifact_or_name, type=type, aliases=aliases)


def log_model(path: Any, name: str | None = None, aliases: Any = None) -> Any:
    return _run("log_model()").log_model(path, name=name, aliases=aliases)


def use_model(name: str) -> Any:
    return _run("use_model()").use_model(name)


def link_model(*args: Any, **kwargs: Any) -> None:
    raise UnsupportedError("rankwise.link_model(): rankwise has no model registry to link into")


# ---------------------------------------------------------------- no counterpart


def sweep(*args: Any, **kwargs: Any) -> None:
    raise UnsupportedError("rankwise.sweep(): hyperparameter sweeps are not supported; launch the runs yourself")


def agent(*args: Any, **kwargs: Any) -> None:
    raise UnsupportedError("rankwise.agent(): sweep agents are not supported (rankwise has no sweeps)")


def controller(*args: Any, **kwargs: Any) -> None:
    raise UnsupportedError("rankwise.controller(): sweep controllers are not supported (rankwise has no sweeps)")


def plot_table(*args: Any, **kwargs: Any) -> None:
    raise UnsupportedError("rankwise.plot_table(): custom Vega presets are not supported; use rankwise.plot.*")


def _unsupported_media(name: str) -> type:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        raise UnsupportedError(f"rankwise.{name}: this media type is not supported; log an Image, Table or Html")

    return type(name, (), {"__init__": __init__, "__doc__": f"wandb.{name}: not supported by rankwise."})


Molecule = _unsupported_media("Molecule")
Graph = _unsupported_media("Graph")
Classes = _unsupported_media("Classes")


class AlertLevel(str, enum.Enum):
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


# ---------------------------------------------------------------- terminal messages


def _term(kind: str, string: Any, newline: bool, repeat: bool, prefix: bool) -> None:
    text = str(string)
    if not repeat:
        if text in _said:
            return
        _said.add(text)
    head = "rankwise: " if prefix else ""
    tag = {"warn": "WARNING ", "error": "ERROR "}.get(kind, "")
    sys.stderr.write(f"{head}{tag}{text}" + ("\n" if newline else ""))


def termlog(string: Any = "", newline: bool = True, repeat: bool = True, prefix: bool = True) -> None:
    _term("log", string, newline, repeat, prefix)


def termwarn(string: Any, newline: bool = True, repeat: bool = True, prefix: bool = True) -> None:
    _term("warn", string, newline, repeat, prefix)


def termerror(string: Any, newline: bool = True, repeat: bool = True, prefix: bool = True) -> None:
    _term("error", string, newline, repeat, prefix)


def termsetup(settings: Any = None, logger: Any = None) -> None:
    return None


# ---------------------------------------------------------------- Settings(**kw)

# wandb.Settings field → rankwise run setting
_SETTING_NAMES = {
    "project": "project",
    "run_group": "group",
    "run_name": "name",
    "run_id": "run_id",
    "entity": "entity",
    "mode": "mode",
    "resume": "resume",
    "root_dir": "files_dir",
    "init_timeout": "init_timeout_s",
}
_RUN_FIELDS = frozenset(_RunSettings.__dataclass_fields__)


class Settings:
    """``wandb.Settings(**kw)`` for ``init(settings=...)``: wandb's names that have a rankwise meaning are
    used (project, run_group, run_name, run_id, entity, mode, resume, root_dir, init_timeout), as are
    rankwise's own setting names; every other wandb setting (start_method, _disable_stats, ...) is kept
    and ignored."""

    def __init__(self, **kwargs: Any):
        object.__setattr__(self, "_values", dict(kwargs))

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        return self.__dict__["_values"].get(key)

    def __setattr__(self, key: str, value: Any) -> None:
        self._values[key] = value

    def update(self, settings: Any = None, **kwargs: Any) -> None:
        if isinstance(settings, Settings):
            self._values.update(settings._values)
        elif settings:
            self._values.update(settings)
        self._values.update(kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def rankwise_overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self._values.items():
            if value is None:
                continue
            if key in _SETTING_NAMES:
                out[_SETTING_NAMES[key]] = value
            elif key in _RUN_FIELDS:
                out[key] = value
        return out

    def __repr__(self) -> str:
        return f"rankwise.Settings({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"


class _PreInit:
    """``rankwise.config`` / ``rankwise.summary`` before ``init()``: the name exists (``hasattr`` works,
    ``from rankwise import *`` works), using it raises ``UsageError`` as wandb's placeholder does."""

    def __init__(self, name: str):
        object.__setattr__(self, "_name", name)

    def _fail(self, what: str) -> UsageError:
        return UsageError(f"rankwise.init() must be called before rankwise.{self._name}{what}")

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        raise self._fail(f".{key}")

    def __setattr__(self, key: str, value: Any) -> None:
        raise self._fail(f".{key} = ...")

    def __getitem__(self, key: Any) -> Any:
        raise self._fail(f"[{key!r}]")

    def __setitem__(self, key: Any, value: Any) -> None:
        raise self._fail(f"[{key!r}] = ...")

    def __repr__(self) -> str:
        return f"<rankwise.{self._name} placeholder: call rankwise.init() first>"


PREINIT = {"config": _PreInit("config"), "summary": _PreInit("summary")}
