"""``wandb.sdk``: the submodules frameworks import (``wandb.sdk.lib``, ``wandb.sdk.wandb_run``)."""

from client.run import Run  # noqa: F401
from rankwise.wandb_compat._functions import Settings  # noqa: F401
