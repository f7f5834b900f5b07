"""``wandb.errors``: wandb's exception names, all ``rankwise.Error`` subclasses (defined in rankwise/errors.py:
one set of classes whether a script says ``wandb.errors.CommError`` or ``rankwise.errors.CommError``)."""

from __future__ import annotations

from rankwise.errors import AuthenticationError, CommError, ConfigError, Error, UnsupportedError, UsageError

__all__ = ["AuthenticationError", "CommError", "ConfigError", "Error", "UnsupportedError", "UsageError"]
