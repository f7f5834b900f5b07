"""rankwise: logging for distributed training, wandb's API.

    import rankwise
    run = rankwise.init(project="demo", config={"lr": 3e-4})   # rank/world from torchrun/MPI/SLURM
    run.log({"loss": loss})                                     # ~1 µs, never blocks
    run.finish()

    rankwise.Api().group("demo", "job-42").history("loss")      # mean/min/max/std over ranks per step

A wandb script switches with ``import rankwise as wandb``. ``import rankwise``
stays light: the agent, SQLite and HTTP code load only when used (``Api``, CLI),
and so do the media types (``rankwise.Image``, ``Histogram``, ...: numpy and the
optional Pillow/matplotlib/plotly are imported on first use), ``rankwise.plot``
and ``rankwise.plots``.
"""

from __future__ import annotations

from typing import Any

from client.run import Run
from client.session import init
from client.state import define_metric, finish, log
from client.wandb_surface import lend as _lend
from rankwise.errors import (
    ConfigError,
    Error,
    InvalidArgumentError,
    InvalidValueError,
    RunConflictError,
    UnsupportedError,
    UsageError,
)


def _load_artifacts() -> Any:
    from rankwise import _artifacts

    return _artifacts


def _load_run_files() -> Any:
    from rankwise import _run_files

    return _run_files


def _load_group_url() -> Any:
    from rankwise._ui.address import group_url

    return group_url


# run.log_artifact/use_artifact/save/restore and run.url are rankwise's: client/ never imports rankwise/
_lend("artifacts", _load_artifacts)
_lend("run_files", _load_run_files)
_lend("group_url", _load_group_url)

__version__ = "0.1.0"

# media types and chart modules, loaded on first access (see __getattr__)
_MEDIA = frozenset({"Audio", "Chart", "Histogram", "Html", "Image", "Object3D", "Plotly", "Table", "Video"})
_SUBMODULES = frozenset({"plot", "plots"})
# wandb's names beyond init/log/finish (rankwise.wandb_compat): functions, Settings(**kw), and the submodules
# scripts reach through the top-level module (wandb.util, wandb.errors, ...)
_WANDB_FUNCTIONS = frozenset(
    {
        "login",
        "require",
        "setup",
        "teardown",
        "mark_preempting",
        "watch",
        "unwatch",
        "save",
        "restore",
        "alert",
        "log_artifact",
        "use_artifact",
        "log_model",
        "use_model",
        "link_model",
        "sweep",
        "agent",
        "controller",
        "plot_table",
        "Molecule",
        "Graph",
        "Classes",
        "AlertLevel",
        "termlog",
        "termwarn",
        "termerror",
        "termsetup",
        "Settings",
    }
)
# (wandb.errors is rankwise.errors: one set of exception classes)
_WANDB_SUBMODULES = frozenset({"util", "apis", "sdk", "wandb_run"})

__all__ = [
    "AlertLevel",
    "Api",
    "Artifact",
    "Audio",
    "Chart",
    "ConfigError",
    "Error",
    "Histogram",
    "Html",
    "Image",
    "InvalidArgumentError",
    "InvalidValueError",
    "Object3D",
    "Plotly",
    "Run",
    "RunConflictError",
    "Settings",
    "Table",
    "UsageError",
    "UnsupportedError",
    "Video",
    "__version__",
    "alert",
    "config",
    "define_metric",
    "errors",
    "finish",
    "init",
    "log",
    "log_artifact",
    "login",
    "mark_preempting",
    "plot",
    "plots",
    "require",
    "restore",
    "run",
    "save",
    "setup",
    "summary",
    "teardown",
    "termerror",
    "termlog",
    "termwarn",
    "unwatch",
    "use_artifact",
    "util",
    "watch",
]

# Run and ConfigError keep the module they are defined in: wandb's surface reaches them as
# wandb.wandb_run.Run and wandb.sdk.lib.config_util.ConfigError, and tests/compat pins what they report there
_OWN_MODULE = frozenset({"Run", "ConfigError"})


def _public(value: Any) -> Any:
    """``value`` (a class exported here) renamed into this module: it prints as ``rankwise.UsageError``, not
    ``client.errors.UsageError``. Pickle finds it by that name too (``rankwise.X`` resolves, lazily or not)."""
    if isinstance(value, type) and value.__name__ in __all__ and value.__name__ not in _OWN_MODULE:
        value.__module__ = __name__
    return value


for _cls in (Error, UsageError, InvalidValueError, InvalidArgumentError, RunConflictError, UnsupportedError):
    _public(_cls)
del _cls


def __getattr__(name: str) -> Any:
    # wandb exposes the current run as module attributes; they change over time, so resolve on access
    if name == "run":
        from client.state import current

        return current()
    if name in ("config", "summary"):
        from client.state import current

        run = current()
        if run is None:
            # wandb's placeholder: the name exists before init(), using it raises UsageError
            from rankwise.wandb_compat._functions import PREINIT

            return PREINIT[name]
        return getattr(run, name)
    if name == "Api":
        from rankwise._api import Api

        return _public(Api)
    if name == "Artifact":
        from rankwise._artifacts import Artifact

        return _public(Artifact)
    if name in _MEDIA:
        import client.media

        value = _public(getattr(client.media, name))
        globals()[name] = value  # later accesses skip __getattr__
        return value
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"rankwise.{name}")
    if name in _WANDB_FUNCTIONS:
        from rankwise.wandb_compat import _functions

        value = _public(getattr(_functions, name))
        globals()[name] = value
        return value
    if name in _WANDB_SUBMODULES:
        import importlib

        return importlib.import_module(f"rankwise.wandb_compat.{name}")
    raise AttributeError(f"module 'rankwise' has no attribute {name!r}")
