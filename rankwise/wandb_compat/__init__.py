"""The ``wandb`` module as rankwise answers it: ``RANKWISE_AS_WANDB=1`` makes ``import wandb`` load this
package under the name ``wandb`` (see :mod:`rankwise.wandb_compat.route`); ``import rankwise as wandb``
gives the same names.

Everything comes from ``rankwise`` itself (absolute imports: whether this file runs as ``wandb`` or as
``rankwise.wandb_compat`` there is one run, one config, one set of classes). The submodules frameworks
import are here: ``wandb.sdk.lib.config_util.ConfigError`` and ``wandb.sdk.lib.RunDisabled``
(transformers, Lightning), ``wandb.wandb_run.Run`` (Lightning's isinstance check), ``wandb.util``,
``wandb.errors``, ``wandb.apis.public.Api``.
"""

from __future__ import annotations

from typing import Any

import rankwise as _rankwise
from rankwise import Error, Run, UsageError, define_metric, finish, init, log  # noqa: F401
from rankwise import __all__ as _all
from rankwise.wandb_compat._functions import VERSION as __version__  # noqa: F401

__all__ = [n for n in _all if n != "__version__"]


def __getattr__(name: str) -> Any:
    # run / config / summary change over time; Api, media and the wandb functions load on first use:
    # the facade resolves them (no star import: `import wandb` stays as light as `import rankwise`)
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        return getattr(_rankwise, name)
    except AttributeError:
        raise AttributeError(f"module 'wandb' (rankwise) has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_all))
