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

from client.errors import Error, InvalidArgumentError, InvalidValueError, RunConflictError, UsageError
from client.run import Run
from client.settings import Settings
from client.state import define_metric, finish, init, log

__version__ = "0.1.0"

# media types and chart modules, loaded on first access (see __getattr__)
_MEDIA = frozenset({"Audio", "Chart", "Histogram", "Html", "Image", "Object3D", "Plotly", "Table", "Video"})
_SUBMODULES = frozenset({"plot", "plots"})

__all__ = [
    "Api",
    "Audio",
    "Chart",
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
    "Video",
    "__version__",
    "config",
    "define_metric",
    "finish",
    "init",
    "log",
    "plot",
    "plots",
    "run",
    "summary",
]


def __getattr__(name: str) -> Any:
    # wandb exposes the current run as module attributes; they change over time, so resolve on access
    if name == "run":
        from client.state import current

        return current()
    if name in ("config", "summary"):
        from client.state import current

        run = current()
        if run is None:
            raise UsageError(f"rankwise.{name} is available after rankwise.init()")
        return getattr(run, name)
    if name == "Api":
        from rankwise._api import Api

        return Api
    if name in _MEDIA:
        import client.media

        value = getattr(client.media, name)
        globals()[name] = value  # later accesses skip __getattr__
        return value
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"rankwise.{name}")
    raise AttributeError(f"module 'rankwise' has no attribute {name!r}")
