"""Connections of the ClickHouse store: one small protocol, two implementations, one exception boundary.

* :class:`DriverConn`: a ClickHouse server over the native protocol (clickhouse-driver's ``Client``; the
  ``clickhouse`` extra). Reads come back as numpy columns (``use_numpy``), except queries that return
  value bytes (msgpack): numpy's fixed-width bytes would cut their trailing NUL bytes, so those are read
  as Python objects (``exact``).
* :class:`ChdbConn`: the engine in this process (chdb's ``Session``), results as Arrow tables, inserts
  through chdb's ``Python()`` table function over an Arrow table. chdb runs one data directory per
  process at a time: stores and readers of the same ``chdb://<dir>`` share one session (counted), another
  directory while one is open is a StoreError naming both.

Both packages are imported when a store opens, never before; a missing one is a StoreError naming the
``pip install`` that brings it. Every call runs inside :class:`map_exceptions`, so what leaves is
agent/errors.py's StoreError family (as agent/store/sqlite_errors.py does for sqlite3): not enough
space → StoreFull; the database or a table gone (dropped under the agent) → StoreLost; anything else
(connection refused, timeouts, a server error) → StoreError, the foreign exception chained as ``__cause__``.
"""

from __future__ import annotations

import os
import re
import threading
from types import TracebackType
from typing import Any

import numpy as np

from agent.errors import StoreError, StoreFull, StoreLost
from agent.store.clickhouse.url import ClickHouseURL

NOT_ENOUGH_SPACE, UNKNOWN_TABLE, UNKNOWN_DATABASE = 243, 60, 81
_BY_CODE: dict[int, type[StoreError]] = {
    NOT_ENOUGH_SPACE: StoreFull,
    UNKNOWN_TABLE: StoreLost,
    UNKNOWN_DATABASE: StoreLost,
}
_CODE = re.compile(r"Code:\s*(\d+)")
DRIVER_HINT = "pip install 'rankwise[clickhouse]' (clickhouse-driver, the native protocol client)"
CHDB_HINT = "pip install chdb (ClickHouse in this process)"


def error_code(exc: BaseException) -> int:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    m = _CODE.search(str(exc))
    return int(m.group(1)) if m else 0


def _foreign(exc: BaseException) -> bool:
    mod = type(exc).__module__ or ""
    return mod.startswith(("clickhouse_driver", "chdb")) or isinstance(exc, (OSError, EOFError, RuntimeError))


class map_exceptions:  # noqa: N801 -- used as a function, like contextlib.suppress
    """``with map_exceptions(what):`` raises a driver's or chdb's exception (or a socket's OSError) of the
    block as the StoreError class it stands for, ``what`` and its words as the message."""

    __slots__ = ("what",)

    def __init__(self, what: str):
        self.what = what

    def __repr__(self) -> str:
        return f"<map_exceptions {self.what!r}>"

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        if exc is None or isinstance(exc, StoreError) or not _foreign(exc):
            return False
        words = " ".join(str(exc).split())[:500]
        raise _BY_CODE.get(error_code(exc), StoreError)(f"{self.what}: {words}") from exc


class Conn:
    """What the store needs of a connection. ``query`` returns ``n`` columns: numbers as numpy arrays,
    strings as lists of bytes."""

    engine = ""
    version = ""

    def execute(self, sql: str) -> None:
        raise NotImplementedError

    def query(self, sql: str, n: int, exact: bool = False) -> list[Any]:
        raise NotImplementedError

    def insert(self, table: str, columns: dict[str, Any], types: dict[str, str]) -> None:
        """INSERT one block: ``columns`` name → numpy array (numbers) or list of bytes/str (String)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def _strings(col: Any) -> list:
    return [bytes(x) if not isinstance(x, bytes) else x for x in col]


class DriverConn(Conn):
    engine = "server"

    def __init__(
        self, url: ClickHouseURL, connect_timeout: float = 10.0, timeout: float = 300.0, host: str = "", port: int = 0
    ):
        try:
            from clickhouse_driver import Client
        except ImportError as exc:
            raise StoreError(f"a clickhouse:// store needs clickhouse-driver: {DRIVER_HINT}") from exc
        self.url = url
        self.timeout = timeout
        self._lock = threading.Lock()  # a Client is one socket: the UI server's threads take turns
        settings: dict[str, Any] = {"use_numpy": True, "strings_as_bytes": True}
        if url.cluster:  # an INSERT into a Distributed table returns once every shard has its rows
            settings["insert_distributed_sync"] = 1
        self.host, self.port = host or url.host, port or url.port
        self.client = Client(
            host=self.host,
            port=self.port,
            user=url.user,
            password=url.password,
            secure=url.secure,
            connect_timeout=connect_timeout,
            send_receive_timeout=timeout,
            settings=settings,
        )
        with map_exceptions(f"cannot connect to ClickHouse at {self.host}:{self.port} ({url})"):
            v = self.client.execute("SELECT version()")[0][0]
            self.version = v.decode() if isinstance(v, bytes) else str(v)

    def __repr__(self) -> str:
        return f"<DriverConn {self.url} version={self.version}>"

    def execute(self, sql: str) -> None:
        with self._lock, map_exceptions(f"ClickHouse at {self.url} failed"):
            self.client.execute(sql)

    def query(self, sql: str, n: int, exact: bool = False) -> list[Any]:
        with self._lock, map_exceptions(f"reading ClickHouse at {self.url} failed"):
            if exact:
                cols = self.client.execute(sql, columnar=True, settings={"use_numpy": False})
            else:
                cols = self.client.execute(sql, columnar=True)
        if not cols:
            return [np.empty(0) for _ in range(n)]
        out = []
        for c in cols:
            if isinstance(c, np.ndarray) and c.dtype.kind not in "SOU":
                out.append(c)
            elif isinstance(c, np.ndarray) or (len(c) and isinstance(c[0], (bytes, str))):
                out.append(_strings(c))
            else:
                out.append(np.asarray(c))
        return out

    def insert(self, table: str, columns: dict[str, Any], types: dict[str, str]) -> None:
        data = []
        for name, c in columns.items():
            if types[name] == "String" and not (isinstance(c, np.ndarray) and c.dtype == object):
                # strings_as_bytes: bytes in, bytes out (the history's columns come as object arrays of bytes)
                c = np.array([x.encode() if isinstance(x, str) else x for x in c], object)
            data.append(np.asarray(c))
        with self._lock, map_exceptions(f"writing to ClickHouse at {self.url} failed"):
            self.client.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES", data, columnar=True)

    def close(self) -> None:
        with self._lock:
            self.client.disconnect()


class _Shared:
    """chdb's one session of this process and who uses it."""

    lock = threading.Lock()
    session: Any = None
    path = ""
    users = 0


class ChdbConn(Conn):
    engine = "chdb"

    def __init__(self, url: ClickHouseURL):
        try:
            import pyarrow  # noqa: F401 -- chdb's results
            from chdb import session as chdb_session
        except ImportError as exc:
            raise StoreError(f"a chdb:// store needs chdb: {CHDB_HINT}") from exc
        except RuntimeError as exc:  # chdb starts its engine when imported (it reads a config.xml in the cwd)
            raise StoreError(f"chdb cannot start in {os.getcwd()}: {exc}") from exc
        self.url = url
        self._closed = False
        with _Shared.lock:
            if _Shared.session is not None and _Shared.path != url.path:
                raise StoreError(
                    f"chdb runs one data directory per process: {_Shared.path} is open, {url.path} cannot be; "
                    "close the other store or use a clickhouse:// server"
                )
            if _Shared.session is None:
                with map_exceptions(f"cannot open chdb at {url.path}"):
                    _Shared.session = chdb_session.Session(url.path)
                    # String columns as Arrow binary: msgpack bytes are not UTF-8
                    _Shared.session.query("SET output_format_arrow_string_as_string=0")
                _Shared.path = url.path
            _Shared.users += 1
        self.version = str(self.query("SELECT version()", 1)[0][0].decode())

    def __repr__(self) -> str:
        return f"<ChdbConn {self.url.path} version={self.version} closed={self._closed}>"

    def execute(self, sql: str) -> None:
        with _Shared.lock, map_exceptions(f"chdb at {self.url.path} failed"):
            _Shared.session.query(sql)

    def query(self, sql: str, n: int, exact: bool = False) -> list[Any]:
        with _Shared.lock, map_exceptions(f"reading chdb at {self.url.path} failed"):
            table = _Shared.session.query(sql, "ArrowTable")
        if table.num_columns < n:  # an empty result may come without its columns
            return [np.empty(0) for _ in range(n)]
        out = []
        for col in table.columns:
            if col.type in (_pa().binary(), _pa().string(), _pa().large_binary()):
                out.append(col.to_pylist())
            else:
                out.append(col.to_numpy())
        return out

    def insert(self, table: str, columns: dict[str, Any], types: dict[str, str]) -> None:
        pa = _pa()
        arrays = {}
        for name, col in columns.items():
            if types[name] == "String":
                if not (isinstance(col, np.ndarray) and col.dtype == object):
                    col = [x.encode() if isinstance(x, str) else x for x in col]
                arrays[name] = pa.array(col, pa.binary())
            else:
                arrays[name] = pa.array(np.asarray(col))
        rows = pa.table(arrays)  # noqa: F841 -- read by chdb's Python() table function, by name
        cols = ", ".join(columns)
        with _Shared.lock, map_exceptions(f"writing to chdb at {self.url.path} failed"):
            _Shared.session.query(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM Python(rows)")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with _Shared.lock:
            _Shared.users -= 1
            if _Shared.users == 0 and _Shared.session is not None:
                _Shared.session.close()
                _Shared.session, _Shared.path = None, ""


def _pa() -> Any:
    import pyarrow

    return pyarrow


def shard_conns(conn: Conn, cluster: str) -> list[Conn]:
    """Connections to every shard of ``cluster`` (its first replica), as ``system.clusters`` names them."""
    host, port = conn.query(
        f"SELECT host_address, port FROM system.clusters WHERE cluster = {lit(cluster)} AND replica_num = 1 "
        "ORDER BY shard_num",
        2,
    )
    if not len(host):
        raise StoreError(f"cluster {cluster!r} is not in the server's remote_servers (system.clusters)")
    assert isinstance(conn, DriverConn)
    return [
        DriverConn(conn.url, timeout=conn.timeout, host=h.decode(), port=int(p))
        for h, p in zip(host, port, strict=True)
    ]


def connect(url: ClickHouseURL, timeout: float = 300.0) -> Conn:
    """A connection to ``url``; ``timeout``: seconds one socket read or write of the server's may wait (a reader
    waits long for a big read; the agent's store waits little: it writes from the agent's loop)."""
    return ChdbConn(url) if url.engine == "chdb" else DriverConn(url, timeout=timeout)


def lit(v: Any) -> str:
    """A value as an SQL literal (the store builds its statements itself: one code path for both engines)."""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str):
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(v, (list, tuple, np.ndarray)):
        return "(" + ", ".join(lit(x) for x in v) + ")" if len(v) else "(NULL)"
    raise TypeError(f"lit: cannot write {type(v).__name__} {v!r} as SQL")
