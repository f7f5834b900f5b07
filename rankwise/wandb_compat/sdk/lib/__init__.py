"""``wandb.sdk.lib``: ``RunDisabled`` (Lightning: ``isinstance(run, (Run, RunDisabled))``)."""

from client.run import Run


class RunDisabled(Run):
    """wandb's stand-in run of ``mode="disabled"``; rankwise returns a ``Run`` in that mode too."""


__all__ = ["RunDisabled"]
