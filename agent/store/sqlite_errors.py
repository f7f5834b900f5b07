"""The SQLite store's exception boundary: sqlite3's exceptions become the agent's (agent/errors.py).

Every call into sqlite3 of the store's write side (:mod:`agent.store.sqlite`), its read side
(:mod:`agent.store.sqlite_reader`) and its connections (:mod:`agent.store.sqlite_format`) runs inside
:func:`map_exceptions` (as httpcore wraps its socket calls), so what leaves the store is a
:class:`~agent.errors.StoreError`, classified once, here, by SQLite's primary result code:

* ``SQLITE_FULL`` → :class:`~agent.errors.StoreFull` (a full disk: the agent holds and retries);
* ``SQLITE_CORRUPT``, ``SQLITE_NOTADB`` → :class:`~agent.errors.StoreLost` (the agent starts a fresh store);
* anything else (locked, read-only, I/O error) → :class:`~agent.errors.StoreError` (unavailable: retried).

The sqlite3 exception stays chained as ``__cause__``: :func:`agent.store.base.store_problem` reports its
own words. This module defines no exception class: agent/errors.py is the agent's one errors module.
"""

from __future__ import annotations

import sqlite3
from types import TracebackType

from agent.errors import StoreError, StoreFull, StoreLost

# SQLite's primary result codes (the low byte of an extended one, ``sqlite_errorcode``)
SQLITE_CORRUPT, SQLITE_FULL, SQLITE_NOTADB = 11, 13, 26
_BY_CODE: dict[int, type[StoreError]] = {SQLITE_FULL: StoreFull, SQLITE_CORRUPT: StoreLost, SQLITE_NOTADB: StoreLost}


def error_class(exc: sqlite3.Error) -> type[StoreError]:
    """The StoreError class an sqlite3 exception stands for."""
    return _BY_CODE.get((getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF, StoreError)


def is_sqlite_error(exc: BaseException) -> bool:
    """One of sqlite3's own exceptions, not (yet) mapped."""
    return type(exc).__module__ == "sqlite3"


class map_exceptions:  # noqa: N801 -- used as a function, like contextlib.suppress
    """``with map_exceptions(what):`` raises an sqlite3 exception of the block as the StoreError class it stands
    for, ``what`` and its words as the message (``"write to PATH failed: database or disk is full"``), the
    original as ``__cause__``.

    ``os_errors``: an OSError too (a file of the store beside the connection: its fsync, its identity), as a
    StoreError; a full disk's ENOSPC stays visible in the cause (store_problem reads it there). Without it an
    OSError passes through untouched: inside a transaction it is no verdict on the store. A class, not a
    generator: it wraps every commit and every read, and costs a fraction of a generator's microseconds."""

    __slots__ = ("what", "os_errors")

    def __init__(self, what: str, os_errors: bool = False):
        self.what = what
        self.os_errors = os_errors

    def __repr__(self) -> str:
        return f"<map_exceptions {self.what!r}{' os_errors' if self.os_errors else ''}>"

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        if isinstance(exc, sqlite3.Error):
            raise error_class(exc)(f"{self.what}: {exc}") from exc
        if self.os_errors and isinstance(exc, OSError):
            raise StoreError(f"{self.what}: {exc}") from exc
        return False
