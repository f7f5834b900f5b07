"""Exceptions raised by the client. ``rankwise.Error`` is :class:`Error`.

Transport trouble inside a training process never raises: it is counted and
reported. These are for programming errors caught at the edge (bad arguments,
``log()`` before ``init()``) and for things a caller must decide about.
"""

from __future__ import annotations


class Error(Exception):
    """Base class of every rankwise error (``rankwise.Error``)."""


class UsageError(Error):
    """An API used in the wrong order or state, e.g. ``log()`` before ``init()``."""


class InvalidValueError(Error, ValueError):
    """A value ``log()`` cannot store; names the key and the type."""


class InvalidArgumentError(Error, ValueError):
    """A bad argument or setting; the message names the argument and the fix."""


class ProtocolError(Error):
    """A frame that does not follow the wire protocol (raised by decoders)."""


class RunConflictError(Error):
    """The agent refused the run, e.g. the same rank is already running elsewhere."""


class UnsupportedError(Error, NotImplementedError):
    """A wandb feature rankwise has no counterpart for (sweeps, remote registries); the message names it."""


class ConfigError(InvalidValueError):
    """wandb's ``wandb.sdk.lib.config_util.ConfigError``: a config change rankwise cannot store."""


class NonFiniteValueError(Error, FloatingPointError):
    """``init(settings={"stop_on_nan": True})``: the run logged a NaN or ±Inf; raised by the next ``log()``
    (client/stop_on_nan.py). The message names the key and the step."""
