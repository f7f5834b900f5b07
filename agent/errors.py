"""Errors of the agent process. Frame-level trouble is counted, not raised out of the loop."""

from __future__ import annotations

from client.errors import Error


class AgentError(Error):
    """Base class of agent errors."""


class AlreadyRunning(AgentError):
    """Another agent holds the lock for this runtime directory."""


class StoreError(AgentError):
    """The store cannot be opened or written (foreign sqlite3 errors are translated to this)."""


class SchemaError(StoreError):
    """The store was written by an incompatible version of rankwise."""
