"""ClickHouse servers for the tests: Debian's clickhouse-server 18.16 started as a child process.

Each server gets a temporary directory holding a minimal config.xml + users.xml, its data, its tmp and
user_files directories and its logs. It listens on 127.0.0.1 only, on two free loopback ports (native
tcp and http; no interserver, mysql or https port), and lets the ``default`` user in without a password
from 127.0.0.1 only. ``start`` waits until ``SELECT 1`` answers through clickhouse-driver; ``stop`` sends
SIGTERM, then SIGKILL after a deadline, and removes the directory. A port taken between choosing it and
the server binding it (another xdist worker) makes the server exit with "Address already in use": the
start is retried on fresh ports.

``ClickHouseCluster`` starts two servers configured as a 2-shard cluster (``remote_servers``), the shape
the ``?cluster=`` store URL expects. The pytest fixtures are in tests/support/chfixtures.py.
Measured here (2 cores, idle): a server answers ``SELECT 1`` 0.1-0.3 s after the exec (RSS ~73 MiB), and
stops 0.8-2 s after SIGTERM (its shutdown waits for its background pools).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CLICKHOUSE_SERVER = "/usr/sbin/clickhouse-server"
CLUSTER_NAME = "rw2"
# generous: the suite shares 2 cores with agents, browsers and a second server
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
BIND_RETRIES = 5
_BIND_RACE = "Address already in use"

CONFIG_XML = """<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{dir}/server.log</log>
        <errorlog>{dir}/server.err.log</errorlog>
        <size>50M</size>
        <count>1</count>
        <console>0</console>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{tcp_port}</tcp_port>
    <http_port>{http_port}</http_port>
    <path>{dir}/data/</path>
    <tmp_path>{dir}/tmp/</tmp_path>
    <user_files_path>{dir}/user_files/</user_files_path>
    <format_schema_path>{dir}/format_schemas/</format_schema_path>
    <users_config>{dir}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
    <mlock_executable>false</mlock_executable>
    <remote_servers>{remote_servers}</remote_servers>
</yandex>
"""

USERS_XML = """<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
        <{pw_user}>
            <password>{pw}</password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </{pw_user}>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"""


# a second user with a password (tests that a password never shows in status, logs or messages)
PASSWORD_USER, PASSWORD = "rwpw", "pw-Zq7-s3cret"
USERS_XML = USERS_XML.replace("{pw_user}", PASSWORD_USER).replace("{pw}", PASSWORD)


class ServerError(RuntimeError):
    """The server did not come up; the message carries the tail of its error log."""


class PortTaken(ServerError):
    """Another process bound a chosen port first."""


def free_port() -> int:
    """A loopback port free right now (the kernel's choice; a race with another process is retried)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_xml(name: str, shard_ports: list[int]) -> str:
    """A ``remote_servers`` entry: one shard per port, each a single replica on 127.0.0.1."""
    shards = "".join(
        f"<shard><replica><host>127.0.0.1</host><port>{port}</port></replica></shard>" for port in shard_ports
    )
    return f"<{name}>{shards}</{name}>"


def _die_with_parent() -> None:
    # the server must not outlive a pytest worker killed -9: PR_SET_PDEATHSIG (1) = SIGKILL
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


class ClickHouseServer:
    """One clickhouse-server child process with its own directory and loopback ports."""

    def __init__(self, binary: str = CLICKHOUSE_SERVER) -> None:
        self.binary = binary
        self.dir: Path | None = None
        self.tcp_port = 0
        self.http_port = 0
        self.proc: subprocess.Popen | None = None
        self.started_s: float | None = None  # seconds from exec to the first answered SELECT 1

    def __repr__(self) -> str:
        state = "stopped" if self.proc is None else f"pid {self.proc.pid}"
        return f"ClickHouseServer(127.0.0.1:{self.tcp_port}, http {self.http_port}, {state}, dir={self.dir})"

    # ------------------------------------------------------------ lifecycle

    def configure(self, tcp_port: int, http_port: int, remote_servers: str = "") -> None:
        """Write config.xml and users.xml into a fresh temporary directory (replacing an earlier one)."""
        self._remove_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="rwch", dir="/tmp"))
        self.tcp_port, self.http_port = tcp_port, http_port
        for sub in ("data", "tmp", "user_files", "format_schemas"):
            (self.dir / sub).mkdir()
        (self.dir / "config.xml").write_text(
            CONFIG_XML.format(dir=self.dir, tcp_port=tcp_port, http_port=http_port, remote_servers=remote_servers)
        )
        (self.dir / "users.xml").write_text(USERS_XML)

    def spawn(self) -> None:
        """Exec the server on the configured directory (returns at once; ``wait_ready`` waits)."""
        assert self.dir is not None, "configure() first"
        out = open(self.dir / "stdout.log", "wb")  # noqa: SIM115 (the child holds it; closed below)
        try:
            self.proc = subprocess.Popen(
                [self.binary, f"--config-file={self.dir / 'config.xml'}"],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if threading.current_thread() is threading.main_thread() else None,
            )
        finally:
            out.close()
        self._spawned_at = time.monotonic()

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until ``SELECT 1`` answers; ServerError (with the error log's tail) if the server exits or the
        deadline passes. A bind race raises ``PortTaken`` so that the caller retries on other ports."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while True:
            code = self.proc.poll()
            if code is not None:
                self.proc = None
                tail = self.log_tail()
                if _BIND_RACE in tail:
                    raise PortTaken(f"127.0.0.1:{self.tcp_port}/{self.http_port} taken: {tail[-300:]}")
                raise ServerError(f"clickhouse-server exited with {code} before answering; its logs end:\n{tail}")
            try:
                # the port must be the server's own (a squatter's socket would accept and never answer)
                if self._listens() and self.execute("SELECT 1", connect_timeout=2, send_receive_timeout=10) == [(1,)]:
                    self.started_s = time.monotonic() - self._spawned_at
                    return
            except Exception as e:  # noqa: BLE001 (not listening yet: refused, reset, EOF, timeout)
                last = e
            if time.monotonic() > deadline:
                tail = self.log_tail()  # before stop(), which removes the directory with the logs
                self.stop()
                raise ServerError(
                    f"clickhouse-server did not answer SELECT 1 within {timeout_s:.0f} s (last error {last!r}); "
                    f"its logs end:\n{tail}"
                )
            time.sleep(0.05)

    def _listens(self) -> bool:
        import psutil

        conns = psutil.Process(self.proc.pid).net_connections("tcp")
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == self.tcp_port for c in conns)

    def start(self, remote_servers: str = "", retries: int = BIND_RETRIES) -> ClickHouseServer:
        """Configure on free ports, spawn and wait until it answers; retried on a port race."""
        for attempt in range(retries):
            self.configure(free_port(), free_port(), remote_servers)
            self.spawn()
            try:
                self.wait_ready()
                return self
            except PortTaken:
                if attempt == retries - 1:
                    raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """SIGTERM, SIGKILL after STOP_TIMEOUT_S; then the directory goes. Safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(STOP_TIMEOUT_S)
        self._remove_dir()

    # ------------------------------------------------------------ outages (tests/clickhouse/test_store_down*.py)

    def kill(self) -> None:
        """SIGKILL the server and reap it; its directory, data and ports stay for ``restart``."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT_S)

    def restart(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the server again on the SAME directory (its data) and ports, after ``kill``; waits until it
        answers. A port taken meanwhile is a ServerError (the store URL names the port: no retry elsewhere)."""
        assert self.dir is not None and self.proc is None, "restart() follows kill() on a configured server"
        self.spawn()
        self.wait_ready(timeout_s)

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets (the kernel completes connects) but answers nothing ("slow")."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    def _remove_dir(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    # ------------------------------------------------------------ use

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def client(self, database: str = "default", **kwargs: Any) -> Any:
        """A clickhouse-driver Client on this server (imported here: collection must not need the driver)."""
        from clickhouse_driver import Client

        kwargs.setdefault("connect_timeout", 5)
        kwargs.setdefault("send_receive_timeout", 60)
        return Client("127.0.0.1", port=self.tcp_port, database=database, **kwargs)

    def execute(self, sql: str, params: Any = None, database: str = "default", **kwargs: Any) -> Any:
        c = self.client(database, **kwargs)
        try:
            return c.execute(sql, params)
        finally:
            c.disconnect()

    def url(self, database: str, query: str = "") -> str:
        return f"clickhouse://127.0.0.1:{self.tcp_port}/{database}{query}"

    def password_url(self, database: str) -> str:
        """The store URL as the user with a password (``PASSWORD_USER``)."""
        return f"clickhouse://{PASSWORD_USER}:{PASSWORD}@127.0.0.1:{self.tcp_port}/{database}"

    def log_tail(self, chars: int = 3000) -> str:
        if self.dir is None:
            return "(no directory)"
        parts = []
        for name in ("server.err.log", "stdout.log"):
            with contextlib.suppress(OSError):
                text = (self.dir / name).read_text(errors="replace")
                if text.strip():
                    parts.append(f"--- {name}\n{text[-chars:]}")
        return "\n".join(parts) or "(logs empty)"


class ClickHouseCluster:
    """Two servers forming the 2-shard cluster ``rw2`` (each server's ``remote_servers`` lists both)."""

    def __init__(self, binary: str = CLICKHOUSE_SERVER, name: str = CLUSTER_NAME) -> None:
        self.name = name
        self.servers = [ClickHouseServer(binary), ClickHouseServer(binary)]

    def __repr__(self) -> str:
        return f"ClickHouseCluster({self.name}, shards={self.servers})"

    def start(self, retries: int = BIND_RETRIES) -> ClickHouseCluster:
        # both configs name both tcp ports, so a port race restarts the pair on fresh ports
        for attempt in range(retries):
            ports = [(free_port(), free_port()) for _ in self.servers]
            xml = cluster_xml(self.name, [tcp for tcp, _ in ports])
            try:
                for server, (tcp, http) in zip(self.servers, ports, strict=True):
                    server.configure(tcp, http, xml)
                    server.spawn()
                for server in self.servers:
                    server.wait_ready()
                return self
            except PortTaken:
                self.stop()
                if attempt == retries - 1:
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def create_database(self, database: str) -> None:
        for server in self.servers:
            server.execute(f"CREATE DATABASE IF NOT EXISTS {database}")

    def drop_database(self, database: str) -> None:
        for server in self.servers:
            if server.proc is not None:
                server.execute(f"DROP DATABASE IF EXISTS {database}")

    def url(self, database: str) -> str:
        return self.servers[0].url(database, f"?cluster={self.name}")


def random_database() -> str:
    return f"t_{secrets.token_hex(6)}"
