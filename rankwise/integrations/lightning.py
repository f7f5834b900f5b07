"""``RankwiseLogger``: a Lightning logger that logs from every rank, each into its own run of the job's group.

    from rankwise.integrations.lightning import RankwiseLogger
    trainer = L.Trainer(strategy="ddp", devices=8, logger=RankwiseLogger(project="vision"))

Lightning calls a logger from every process: ``LoggerConnector.log_metrics`` has no rank guard, it is
the loggers that decorate their methods with ``rank_zero_only`` (CSV, TensorBoard, WandbLogger) so
that only rank 0 writes. This one is not decorated: every rank's ``self.log(...)`` values (its own
loss, unless ``sync_dist=True`` averaged them) land in its own run, so the group view shows the
per-rank lines and their band. ``logger.experiment`` is the rankwise run on every rank.

The run starts at the first call that needs it (hyperparameters, metrics, ``version``), by then the
strategy has set up distributed: rank and world size come from ``torch.distributed`` (else Lightning's
``rank_zero_only.rank`` and ``WORLD_SIZE``). The group comes from the launcher (torchrun, SLURM, MPI)
or ``group=``. Under Lightning's own launcher (``strategy="ddp"`` started with plain ``python``), which
re-runs the script for ranks 1..n with no id shared by the job, the logger built in the main process
draws a group id and leaves it in the environment the children inherit (``RANKWISE_LIGHTNING_GROUP``);
on several nodes started that way pass ``group=``. ``version`` is the group id: the same on every rank,
so Lightning's checkpoint directory (``<root>/<project>/<group>/checkpoints``) is one per job.

The run is finished when the process exits (``finalize`` only flushes): a ``trainer.test()`` after
``fit()`` logs into the same run, as with wandb.
"""

from __future__ import annotations

import os
import uuid
from argparse import Namespace
from typing import Any

from rankwise.integrations import sanitize_config
from rankwise.integrations.errors import need

_pl_loggers = need("lightning.pytorch.loggers", "lightning", "rankwise.integrations.lightning.RankwiseLogger")

__all__ = ["RankwiseLogger"]

GROUP_ENV = "RANKWISE_LIGHTNING_GROUP"


def _lightning_group() -> str | None:
    """The job's group when no launcher names one: drawn in Lightning's main process, inherited by the
    processes its launcher starts (they have ``LOCAL_RANK`` >= 1 in their environment)."""
    from client import launcher

    if launcher.detect().launcher != "none" or os.environ.get("RANKWISE_GROUP") or os.environ.get("WANDB_RUN_GROUP"):
        return None  # torchrun / SLURM / MPI or the user name the job: rankwise derives the group as usual
    try:
        child = int(os.environ.get("LOCAL_RANK", "0")) > 0
    except ValueError:
        child = False
    if child and os.environ.get(GROUP_ENV):
        return os.environ[GROUP_ENV]
    group = "lightning-" + uuid.uuid4().hex[:12]
    os.environ[GROUP_ENV] = group  # the children Lightning spawns during fit() copy os.environ
    return group


def _rank_world() -> tuple[int, int]:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:
        pass
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        world = 1
    return int(getattr(rank_zero_only, "rank", 0) or 0), max(1, world)


class RankwiseLogger(_pl_loggers.Logger):
    """Every rank logs; arguments are :func:`rankwise.init`'s (``project`` defaults to ``WANDB_PROJECT``
    or ``"lightning"``; any other keyword is passed on)."""

    def __init__(
        self,
        project: str | None = None,
        group: str | None = None,
        name: str | None = None,
        config: dict | None = None,
        prefix: str = "",
        **init_kwargs: Any,
    ) -> None:
        super().__init__()
        self._project = project or os.environ.get("WANDB_PROJECT") or "lightning"
        self._group = group or _lightning_group()
        self._name = name
        self._config = dict(config or {})
        self._prefix = prefix
        self._init_kwargs = init_kwargs
        self._run: Any = None

    def __repr__(self) -> str:
        run = self._run
        where = "not started" if run is None else f"run={run.name!r} step={run.step}"
        return f"<RankwiseLogger project={self._project!r} group={self._group!r} {where}>"

    @property
    def experiment(self) -> Any:
        """This rank's rankwise run (started on first use)."""
        if self._run is None:
            import rankwise

            kwargs = dict(self._init_kwargs)
            rank, world = _rank_world()
            if world > 1:
                kwargs.setdefault("rank", rank)
                kwargs.setdefault("world_size", world)
            self._run = rankwise.init(
                project=self._project, group=self._group, name=self._name, config=self._config, **kwargs
            )
            self._group = self._run.group
        return self._run

    @property
    def name(self) -> str:
        return self._project

    @property
    def version(self) -> str:
        return self.experiment.group

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """This rank's metrics at ``step`` (Lightning's count of optimizer steps)."""
        row = {self._prefix + k: v for k, v in metrics.items()} if self._prefix else dict(metrics)
        if step is None:
            self.experiment.log(row)
        else:
            self.experiment.log(row, step=int(step))

    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        if isinstance(params, Namespace):
            params = vars(params)
        self.experiment.config.update(sanitize_config(dict(params)))

    def finalize(self, status: str) -> None:
        """End of fit/test: deliver what was logged (the run itself is finished at exit)."""
        if self._run is not None and not self._run.finished:
            self._run.flush()
