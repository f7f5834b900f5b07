"""Which store a spec names, and opening it: the one place that chooses between SQLite and ClickHouse.

A spec is what ``RANKWISE_STORE``, ``rankwise agent --store``, ``rankwise.Api(spec)`` and every command's
``--store`` take: ``clickhouse://[user[:password]@]host:port/database[?cluster=NAME&secure=1]`` (a server
or cluster) or ``chdb://<dir>`` (the engine in this process) open the ClickHouse store
(agent/store/clickhouse/); anything else is a SQLite store file, as always. The ClickHouse package and its
driver are imported inside the functions, only for such a URL: SQLite users never load them.

Errors: a malformed URL or an unknown scheme is an InvalidArgumentError naming the form to write; a store
that cannot be reached is a StoreError naming the URL (its password replaced by ``***``), the driver's
words after it.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from agent.errors import StoreError
from client.errors import InvalidArgumentError

URL_SCHEMES = ("clickhouse", "chdb")
URL_FORMS = "clickhouse://[user[:password]@]host:port/database[?cluster=NAME&secure=1] or chdb://<dir>"
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def is_url(spec: object) -> bool:
    """True for ``scheme://…`` (a store URL, known scheme or not); False for None and filesystem paths."""
    return isinstance(spec, str) and _URL.match(spec) is not None


def redact(spec: str | os.PathLike | None) -> str:
    """``spec`` fit for logs and messages: a URL's password replaced by ``***`` (a path as it is)."""
    text = "" if spec is None else os.fspath(spec)
    if not is_url(text):
        return text
    scheme, rest = text.split("://", 1)
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{hostport}{slash}{tail}"
    return text


def _scheme(spec: str) -> str:
    scheme = _URL.match(spec).group(1).lower()  # type: ignore[union-attr]
    if scheme not in URL_SCHEMES:
        raise InvalidArgumentError(f"store {redact(spec)!r}: unknown scheme {scheme}://; write {URL_FORMS}, or a path")
    return scheme


def _clickhouse() -> Any:
    # clickhouse-driver logs every failed connect as a WARNING with its traceback; with no handler of the
    # program's own that lands on stderr through logging's last resort (a CLI user would see a traceback):
    # the StoreError raised here says it once, naming the URL
    driver_log = logging.getLogger("clickhouse_driver")
    if not driver_log.handlers:
        driver_log.addHandler(logging.NullHandler())
    try:
        import agent.store.clickhouse as ch
    except ImportError as exc:  # the package itself (not the driver: that one is imported on open)
        raise StoreError(f"the ClickHouse store is not available in this installation ({exc})") from exc
    return ch


def check(spec: str | os.PathLike | None) -> None:
    """Reject a malformed store URL early (settings, command lines), opening nothing: InvalidArgumentError."""
    if is_url(spec):
        _scheme(str(spec))
        _parse(str(spec))


def _parse(url: str) -> Any:
    try:
        return _clickhouse().parse_url(url)
    except ValueError as exc:  # agent.errors.StoreURLError: names the part and the form
        raise InvalidArgumentError(f"--store / RANKWISE_STORE {redact(url)!r}: {exc}") from None


def _scrub(url: str, words: str) -> str:
    password = getattr(_parse(url), "password", "")
    return words.replace(password, "***") if password else words


def _open_url(kind: str, url: str) -> Any:
    """``ClickHouseStore(url)`` or ``ClickHouseReader(url)``, its errors naming the URL without the password."""
    _scheme(url)
    _parse(url)
    try:
        return getattr(_clickhouse(), kind)(url)
    except StoreError as exc:  # unreachable, refused, no store there: the same class, the URL in front
        raise type(exc)(f"cannot open the store at {redact(url)}: {_scrub(url, str(exc))}") from exc.__cause__
    except ValueError as exc:  # StoreURLError: a URL this store cannot serve (an option it does not support)
        raise InvalidArgumentError(f"store {redact(url)}: {_scrub(url, str(exc))}") from None


def open_store(spec: str | os.PathLike, wal_max_bytes: int | None = None) -> Any:
    """The store the agent writes (agent/store/base.py ``Store``). ``wal_max_bytes``: SQLite's WAL bound."""
    if not is_url(spec):
        from agent.store.sqlite import SQLiteStore

        return SQLiteStore(Path(spec), wal_max_bytes) if wal_max_bytes else SQLiteStore(Path(spec))
    return _open_url("ClickHouseStore", str(spec))


def open_reader(spec: str | os.PathLike) -> Any:
    """A read-only view of the store (agent/store/base.py ``Reader``)."""
    if not is_url(spec):
        from agent.store.sqlite_reader import SQLiteReader

        return SQLiteReader(Path(spec))
    return _open_url("ClickHouseReader", str(spec))
