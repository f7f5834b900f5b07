"""``wandb.apis``: ``wandb.apis.public.Api`` is rankwise's ``Api``; ``Run`` / ``Runs`` what its ``runs()`` returns."""

from __future__ import annotations

import types
from typing import Any


def __getattr__(name: str) -> Any:
    if name == "public":
        from rankwise._api import Api
        from rankwise._api_wandb import Run, Runs

        return types.SimpleNamespace(Api=Api, Run=Run, Runs=Runs)
    raise AttributeError(f"module 'wandb.apis' has no attribute {name!r}")
