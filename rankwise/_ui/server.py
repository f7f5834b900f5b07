"""``rankwise ui``: a read-only web server over the store (standard library only).

Pages (one small single-page app, ``static/``) and the JSON API (:mod:`api`) on
one port; what each request gets is decided by :mod:`handler`. Live views use
server-sent events (:mod:`events`): ``/api/.../events`` checks the group twice a
second with one cheap query and sends ``update`` when the agent committed
something for it. The store is only read (a WAL reader on a read-only
connection), so the agent never waits for the UI. This module is the server:
its connection bounds, how it is made and how ``rankwise ui`` runs it.

By default the server binds 127.0.0.1; bound to a loopback address it also
refuses requests whose Host header is not ``localhost``, a literal loopback
address or a name passed with ``--allow-host`` (a web page elsewhere cannot read
the store through DNS rebinding: ``127.evil.com`` is a name, not an address).

Authentication is a token generated at start, like Jupyter's: the printed
address carries ``?token=...``; a request with it gets a cookie (per port) and
is redirected to the address without it, so the page's links and API calls
work; any other request is answered 403. ``--no-token`` turns that off on a
single-user machine. Connections are bounded: at most ``MAX_CONNECTIONS``
served at once (one thread each; more are answered 503 and closed) and an idle
connection is closed after ``IDLE_TIMEOUT_S``.
"""

from __future__ import annotations

import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from rankwise._ui.address import DEFAULT_PORT
from rankwise._ui.auth import is_loopback, new_token
from rankwise._ui.compress import StaticCache
from rankwise._ui.data import UIData
from rankwise._ui.handler import Handler
from rankwise.errors import StoreMissing

MAX_CONNECTIONS = 64  # served at once; a browser tab holds at most 6 (Chromium's per-host limit)
IDLE_TIMEOUT_S = 60.0  # a connection silent this long while the server waits for its request is closed
_BUSY_BODY = b"too many connections to rankwise ui\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


class UIServer(ThreadingHTTPServer):
    """One thread per connection, at most ``MAX_CONNECTIONS`` at once (daemon threads: an open event stream
    never holds up shutdown). ``token`` None: no authentication."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        data: UIData,
        quiet: bool = True,
        token: str | None = None,
        allow_hosts: tuple[str, ...] = (),
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ):
        self.data = data
        self.idle_timeout_s = idle_timeout_s
        self.quiet = quiet
        self.token = token
        self.allow_hosts = frozenset(h.strip().lower().strip("[]") for h in allow_hosts)
        self.max_connections = max_connections
        self.slots = threading.BoundedSemaphore(max_connections)
        self.refused_busy = 0  # connections answered 503 because max_connections were being served
        self.stopping = threading.Event()
        self.static_cache = StaticCache()  # static files read and gzipped once (rankwise/_ui/compress.py)
        self.loopback_only = is_loopback(address[0])
        super().__init__(address, Handler)
        self.cookie_name = f"rankwise-token-{self.port}"  # cookies are per host, not per port

    def __repr__(self) -> str:
        auth = "token" if self.token else "no token"
        return f"<UIServer {self.url} {auth} {self.active}/{self.max_connections} connections {self.data!r}>"

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        host = self.server_address[0]
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}/"

    @property
    def active(self) -> int:
        """Connections being served now (each holds a slot and a thread)."""
        return self.max_connections - self.slots._value  # BoundedSemaphore keeps its count there

    @property
    def login_url(self) -> str:
        """The address to open: ``url`` with the token (``url`` itself without one)."""
        return self.url + (f"?{urlencode({'token': self.token})}" if self.token else "")

    def process_request(self, request: Any, client_address: Any) -> None:
        # bounded: a thread per connection only while a slot is free; past that, a short 503 and close
        if not self.slots.acquire(blocking=False):
            self.refused_busy += 1
            try:
                request.settimeout(1.0)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except RuntimeError:  # no thread could be started: the slot was never handed to one
            self.slots.release()
            raise
        # anything else (Ctrl-C while Thread.start() waits for the thread) leaves the slot with the thread,
        # which releases it once: releasing here too would raise ValueError in place of KeyboardInterrupt

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def shutdown(self) -> None:
        self.stopping.set()
        super().shutdown()

    def server_close(self) -> None:
        super().server_close()
        self.data.close()


def make_server(
    store: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    quiet: bool = True,
    token: str | None = None,
    allow_hosts: tuple[str, ...] = (),
    max_connections: int = MAX_CONNECTIONS,
    idle_timeout_s: float = IDLE_TIMEOUT_S,
) -> UIServer:
    """A bound server (port 0 picks a free one); call ``serve_forever()`` on it, ``shutdown()`` from another
    thread. ``token``: the token requests must carry (``new_token()``; None: none, as for a library caller
    that serves only itself); ``rankwise ui`` always generates one unless ``--no-token``."""
    data = UIData(store)
    try:
        data.open()  # now, so the first page does not wait for the connection and the imports
    except StoreMissing:
        pass  # opened on the first request after a run has created it
    return UIServer(
        (host, port),
        data,
        quiet=quiet,
        token=token,
        allow_hosts=allow_hosts,
        max_connections=max_connections,
        idle_timeout_s=idle_timeout_s,
    )


def serve(
    store: str | Path | None,
    host: str,
    port: int,
    out: Any = None,
    token: bool = True,
    allow_hosts: tuple[str, ...] = (),
) -> int:
    """``rankwise ui``: serve until Ctrl-C."""
    out = out or sys.stdout
    try:
        server = make_server(
            store, host, port, quiet=True, token=new_token() if token else None, allow_hosts=allow_hosts
        )
    except OSError as exc:
        hint = "; pass --port 0 to pick a free one" if port else ""
        print(f"rankwise ui: cannot listen on {host}:{port}: {exc.strerror or exc}{hint}", file=sys.stderr)
        return 1
    data = server.data
    print(f"rankwise ui: serving {data.label} at {server.login_url}  (read-only; Ctrl-C to stop)", file=out, flush=True)
    if not token:
        print(
            "rankwise ui: warning: --no-token: every user of this machine can read the store through this port",
            file=sys.stderr,
            flush=True,
        )
    if not server.loopback_only:
        print(
            f"rankwise ui: warning: {host} is reachable from other machines"
            + ("; the token is sent in clear over HTTP" if token else "; there is no authentication"),
            file=sys.stderr,
            flush=True,
        )
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.stopping.set()
        server.server_close()
    return 0
