"""``wandb.wandb_run.Run``: rankwise's Run class (Lightning checks ``isinstance(run, Run)``)."""

from client.run import Run

__all__ = ["Run"]
