"""Store URLs of the ClickHouse store: ``clickhouse://[user[:password]@]host:port/database[?cluster=NAME&secure=1]``
(a server, over the native protocol) and ``chdb://<dir>`` (the in-process engine, chdb, keeping its data in
``<dir>``). A bad URL raises :class:`agent.errors.StoreURLError` naming the part and the fix."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from agent.errors import StoreURLError

SCHEMES = ("clickhouse", "chdb")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")  # a database or cluster name used unquoted in SQL
_FORM = "clickhouse://[user[:password]@]host:port/database[?cluster=NAME&secure=1] or chdb://<dir>"


@dataclass(frozen=True)
class ClickHouseURL:
    """A parsed store URL. ``engine`` is ``server`` (clickhouse://) or ``chdb``; ``path`` is chdb's directory."""

    engine: str
    database: str
    host: str = ""
    port: int = 0
    user: str = "default"
    password: str = ""
    cluster: str = ""
    secure: bool = False
    path: str = ""

    def __repr__(self) -> str:  # never the password
        if self.engine == "chdb":
            return f"<ClickHouseURL chdb://{self.path}>"
        extra = f" cluster={self.cluster}" if self.cluster else ""
        return f"<ClickHouseURL {self.user}@{self.host}:{self.port}/{self.database}{extra}{' secure' if self.secure else ''}>"

    def __str__(self) -> str:
        return repr(self)[len("<ClickHouseURL ") : -1]


def is_clickhouse_url(spec: str) -> bool:
    """True for a store spec this package handles (``clickhouse://…``, ``chdb://…``), whether valid or not:
    a path to a SQLite file is not one."""
    return isinstance(spec, str) and spec.split("://", 1)[0].lower() in SCHEMES and "://" in spec


def _bad(part: str, why: str) -> StoreURLError:
    return StoreURLError(f"store URL: {part} {why}; write {_FORM}")


def parse_url(url: str) -> ClickHouseURL:
    """The parts of a store URL; StoreURLError for anything missing or malformed."""
    if not is_clickhouse_url(url):
        raise _bad("scheme", f"of {url!r} is not clickhouse:// or chdb://")
    scheme, rest = url.split("://", 1)
    if scheme.lower() == "chdb":
        if not rest or "?" in rest:
            raise _bad("chdb directory", f"{rest!r} must be a directory path without a query (chdb:///var/lib/rw)")
        return ClickHouseURL("chdb", "rankwise", path=unquote(rest))
    parts = urlsplit(url)
    if parts.fragment:
        raise _bad("fragment", f"#{parts.fragment} is not allowed")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise _bad("port", f"in {parts.netloc!r} is not a number from 1 to 65535 ({exc})") from None
    if not host:
        raise _bad("host", "is missing")
    if port is None:
        raise _bad("port", f"is missing after host {host!r} (the native protocol's port, 9000 by default)")
    database = parts.path.lstrip("/")
    if not database:
        raise _bad("database", "is missing (the path after host:port, e.g. /rankwise)")
    if not _NAME.match(database):
        raise _bad("database", f"{database!r} must be letters, digits and _ (not starting with a digit)")
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    unknown = sorted(set(query) - {"cluster", "secure"})
    if unknown:
        raise _bad("query", f"has unknown parameter(s) {', '.join(unknown)} (known: cluster, secure)")
    cluster = query.get("cluster", [""])[-1]
    if "cluster" in query and not _NAME.match(cluster):
        raise _bad("cluster", f"{cluster!r} must be a cluster name of the server's remote_servers")
    secure = query.get("secure", ["0"])[-1]
    if secure not in ("0", "1"):
        raise _bad("secure", f"{secure!r} must be 0 or 1")
    return ClickHouseURL(
        "server",
        database,
        host=host,
        port=port,
        user=unquote(parts.username) if parts.username else "default",
        password=unquote(parts.password) if parts.password else "",
        cluster=cluster,
        secure=secure == "1",
    )
