"""``wandb.errors``: wandb's exception names, all ``rankwise.Error`` subclasses."""

from __future__ import annotations

from client.errors import ConfigError, Error, UnsupportedError, UsageError


class CommError(Error):
    """wandb's communication error; rankwise never raises it from a training process (transport trouble is counted)."""


class AuthenticationError(Error):
    """Never raised: rankwise needs no credentials."""


__all__ = ["AuthenticationError", "CommError", "ConfigError", "Error", "UnsupportedError", "UsageError"]
