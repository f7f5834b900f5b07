"""Errors of the agent process. Frame-level trouble is counted, not raised out of the loop."""

from __future__ import annotations

from client.errors import Error


class AgentError(Error):
    """Base class of agent errors."""


class AlreadyRunning(AgentError):
    """Another agent holds the lock for this runtime directory."""


class StoreInUse(AgentError):
    """Another agent (maybe with another runtime directory, maybe on another host) holds the data directory."""


class StoreError(AgentError):
    """The store cannot be opened or written (foreign sqlite3 errors are translated to this)."""


class SchemaError(StoreError):
    """The store was written by an incompatible version of rankwise."""


class StoreLost(StoreError):
    """The store file was deleted, replaced or damaged under the running agent: what it acknowledged is
    in the file moved aside (or gone with the deleted one); the agent starts a fresh store."""
