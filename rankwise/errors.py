"""Every exception the ``rankwise`` package raises, all subclasses of ``rankwise.Error``.

The base classes live in ``client/errors.py`` (a training process raises them without loading the read
side) and are re-exported here, so that ``except rankwise.errors.X`` covers both halves. This module is
also wandb's ``wandb.errors`` (``rankwise.wandb_compat.errors`` re-exports it): ``CommError`` and
``AuthenticationError`` are wandb's names. Errors that are also a builtin (``LookupError``,
``ValueError``) keep that base, so code written against the builtin still catches them.

Kept light: ``import rankwise`` imports it.
"""

from __future__ import annotations

from client.errors import (
    ConfigError,
    Error,
    InvalidArgumentError,
    InvalidValueError,
    NonFiniteValueError,
    RunConflictError,
    UnsupportedError,
    UsageError,
)

__all__ = [
    "ApiError",
    "ArtifactNotFound",
    "AuthenticationError",
    "CommError",
    "ConfigError",
    "Error",
    "InvalidArgumentError",
    "InvalidValueError",
    "NonFiniteValueError",
    "NotFound",
    "RunConflictError",
    "StoreMissing",
    "UnsupportedError",
    "UsageError",
]


# raised in training processes (client/stop_on_nan.py), named where users catch it: rankwise.errors
NonFiniteValueError.__module__ = __name__


class NotFound(Error, LookupError):
    """No such project, group, run, key or media file in the store (``rankwise.Api``)."""


class StoreMissing(NotFound):
    """No store file yet: no run has logged to this directory (``rankwise ui`` answers 503 and retries)."""


class ArtifactNotFound(NotFound):
    """No artifact (or version, alias, file) of that name in the store."""


class ApiError(Error):
    """An error of the UI's JSON API with its HTTP ``status`` (400 a bad parameter, 404 an unknown name)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message

    def __reduce__(self) -> tuple:
        # the default would call ApiError(message) without the status
        return type(self), (self.status, self.message)


class CommError(Error):
    """wandb's communication error; rankwise never raises it from a training process (transport trouble is counted)."""


class AuthenticationError(Error):
    """Never raised: rankwise needs no credentials."""
