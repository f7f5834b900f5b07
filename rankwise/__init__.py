"""rankwise: logging for distributed training, wandb's API.

    import rankwise
    run = rankwise.init(project="demo", config={"lr": 3e-4})   # rank/world from torchrun/MPI/SLURM
    run.log({"loss": loss})                                     # ~1 µs, never blocks
    run.finish()

    rankwise.Api().group("demo", "job-42").history("loss")      # mean/min/max/std over ranks per step

A wandb script switches with ``import rankwise as wandb``. ``import rankwise``
stays light: the agent, SQLite and HTTP code load only when used (``Api``, CLI).
"""

from __future__ import annotations

from typing import Any

from client.errors import Error, InvalidArgumentError, InvalidValueError, RunConflictError, UsageError
from client.run import Run
from client.settings import Settings
from client.state import define_metric, finish, init, log

__version__ = "0.1.0"

__all__ = [
    "Api",
    "Error",
    "InvalidArgumentError",
    "InvalidValueError",
    "Run",
    "RunConflictError",
    "Settings",
    "UsageError",
    "__version__",
    "config",
    "define_metric",
    "finish",
    "init",
    "log",
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
    raise AttributeError(f"module 'rankwise' has no attribute {name!r}")
