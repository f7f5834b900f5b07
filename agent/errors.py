"""Errors of the agent process: the agent's one errors module. Frame-level trouble is counted, not raised out of
the loop. Foreign errors of the store (sqlite3's) become these at the store's boundary
(:func:`agent.store.sqlite_errors.map_exceptions`), the original chained as ``__cause__``."""

from __future__ import annotations

from client.errors import Error


class AgentError(Error):
    """Base class of agent errors."""


class AlreadyRunning(AgentError):
    """Another agent holds the lock for this runtime directory."""


class StoreInUse(AgentError):
    """Another agent (maybe with another runtime directory, maybe on another host) holds the data directory."""


class StoreError(AgentError):
    """The store cannot be opened, read or written (foreign sqlite3 errors are translated to this or a subclass):
    locked, read-only, an I/O error. Such a store is *unavailable*: the agent keeps its work and retries."""


class StoreEmpty(StoreError):
    """The store's server answers but holds no rankwise tables yet (a new ClickHouse database): no run has logged
    into it. ``rankwise ui`` waits for one, as it waits for a SQLite file that does not exist yet."""


class SchemaError(StoreError):
    """The store was written by an incompatible version of rankwise."""


class StoreFull(StoreError):
    """The store's disk (or quota) is full: writes fail until space returns (agent/storehealth.py)."""


class StoreLost(StoreError):
    """The store file was deleted, replaced or damaged under the running agent: what it acknowledged is
    in the file moved aside (or gone with the deleted one); the agent starts a fresh store."""


class MediaError(AgentError, ValueError):
    """A media value or name that cannot be stored: bad hash, bad extension, bytes not bytes (agent/media.py).
    Still a ValueError for the callers that catch one."""


class StoreURLError(ValueError):
    """A store URL (``RANKWISE_STORE``, ``--store``) that cannot be used: the message names the part that is
    wrong and how to write it (agent/store/clickhouse/url.py)."""
