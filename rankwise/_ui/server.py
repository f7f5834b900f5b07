"""``rankwise ui``: a read-only web server over the store (standard library only).

Pages (one small single-page app, ``static/``) and the JSON API (:mod:`api`) on
one port. Live views use server-sent events: ``/api/.../events`` checks the
group twice a second with one cheap query and sends ``update`` when the agent
committed something for it. The store is only read (a WAL reader on a
read-only connection), so the agent never waits for the UI.

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

import json
import mimetypes
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from agent.errors import StoreError
from rankwise._api import NotFound
from rankwise._tail import SETTLE_S, caught_up
from rankwise._ui import api
from rankwise._ui.auth import host_allowed, is_loopback, login_redirect, new_token, token_ok
from rankwise._ui.data import StoreMissing, UIData
from rankwise._ui.media import media_file
from rankwise._ui.params import ApiError, Params

STATIC = Path(__file__).resolve().parent / "static"
DEFAULT_PORT = 8765
EVENT_POLL_S = 0.5
EVENT_HEARTBEAT_S = 15.0
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".md": "text/markdown",
          ".png": "image/png", ".svg": "image/svg+xml", ".txt": "text/plain"}  # fmt: skip
_PAGES = ("", "p", "g")  # first path segment of an app page
MAX_CONNECTIONS = 64  # served at once; a browser tab holds at most 6 (Chromium's per-host limit)
IDLE_TIMEOUT_S = 60.0  # a connection silent this long while the server waits for its request is closed
_BUSY_BODY = b"too many connections to rankwise ui\n"
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n"
         b"Content-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))  # fmt: skip


def _byte_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """The one byte range of a ``Range: bytes=a-b`` header as (first, last), None to send everything (no
    header, several ranges or another unit), "unsatisfiable" for a range past the end."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    a, _, b = header[6:].strip().partition("-")
    try:
        if a == "":
            n = int(b)
            if n <= 0:
                return "unsatisfiable"
            return max(0, size - n), size - 1
        first = int(a)
        last = size - 1 if b == "" else min(int(b), size - 1)
    except ValueError:
        return None
    if first >= size or last < first:
        return "unsatisfiable"
    return first, last


def group_url(project: str, group: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
              token: str | None = None) -> str:  # fmt: skip
    """The address of a group's page on a ``rankwise ui`` server at ``host:port`` (with the server's token,
    when given: the address then works in a browser that has not opened the server yet)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    query = f"?{urlencode({'token': token})}" if token else ""
    return f"http://{host}:{port}/g/{quote(project, safe='')}/{quote(group, safe='')}{query}"


class UIServer(ThreadingHTTPServer):
    """One thread per connection, at most ``MAX_CONNECTIONS`` at once (daemon threads: an open event stream
    never holds up shutdown). ``token`` None: no authentication."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], data: UIData, quiet: bool = True, token: str | None = None,
                 allow_hosts: tuple[str, ...] = (), max_connections: int = MAX_CONNECTIONS,
                 idle_timeout_s: float = IDLE_TIMEOUT_S):  # fmt: skip
        self.data = data
        self.idle_timeout_s = idle_timeout_s
        self.quiet = quiet
        self.token = token
        self.allow_hosts = frozenset(h.strip().lower().strip("[]") for h in allow_hosts)
        self.max_connections = max_connections
        self.slots = threading.BoundedSemaphore(max_connections)
        self.refused_busy = 0  # connections answered 503 because max_connections were being served
        self.stopping = threading.Event()
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


class Handler(BaseHTTPRequestHandler):
    server: UIServer
    protocol_version = "HTTP/1.1"  # keep-alive: the page fetches many series
    disable_nagle_algorithm = True  # headers and body are two writes: without this, 40 ms delayed-ACK stalls
    server_version = "rankwise-ui"

    def setup(self) -> None:
        # a socket timeout: a silent client (slowloris, an idle keep-alive) gives its slot back
        self.timeout = self.server.idle_timeout_s
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)

    # ------------------------------------------------------------ replies

    def _send(self, status: int, body: bytes, ctype: str, cache: str = "no-cache") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        body = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
        self._send(status, body, "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message, "status": status})

    # ------------------------------------------------------------ dispatch

    def do_GET(self) -> None:
        try:
            self._get()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a bug must not kill the server; say what broke
            self.close_connection = True
            try:
                self._error(500, f"{type(exc).__name__}: {exc}")
            except OSError:
                pass
            if not self.server.quiet:
                raise

    do_HEAD = do_GET

    def _refuse_method(self) -> None:
        self._error(405, f"method {self.command} not allowed: the UI and its API are read-only (GET)")

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse_method

    def _host_ok(self) -> bool:
        return not self.server.loopback_only or host_allowed(self.headers.get("Host") or "", self.server.allow_hosts)

    def _token_ok(self, query_token: str | None) -> bool:
        return token_ok(self.server.token, self.server.cookie_name, self.headers, query_token)

    def _login(self, url: Any) -> None:
        """A page opened with the token: set the cookie, redirect to the address without the token (it stays
        out of the history and the address bar)."""
        self.send_response(303)
        self.send_header("Location", login_redirect(url.path, url.query))
        self.send_header("Set-Cookie", f"{self.server.cookie_name}={self.server.token}; Path=/; HttpOnly; SameSite=Lax")
        self.send_header("Content-Length", "0")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()

    def _get(self) -> None:
        if not self._host_ok():
            allowed = ", ".join(sorted(self.server.allow_hosts)) or "none"
            self._error(403, "this server answers only requests addressed to localhost or a loopback address "
                             f"(names passed with rankwise ui --allow-host: {allowed})")  # fmt: skip
            return
        url = urlsplit(self.path)
        query_token = (parse_qs(url.query).get("token") or [None])[0]
        if not self._token_ok(query_token):
            self._error(403, "this server needs its token: open the address with ?token=... that rankwise ui "
                             "printed (or send 'Authorization: token ...')")  # fmt: skip
            return
        if query_token and self.server.token and not url.path.startswith(("/api/", "/media/", "/static/")):
            self._login(url)
            return
        raw = [s for s in url.path.split("/") if s]
        segments = [unquote(s) for s in raw]
        if segments[:1] == ["api"]:
            query = parse_qs(url.query, keep_blank_values=True)
            query.pop("token", None)  # authentication, not a parameter of the call
            if len(segments) == 6 and segments[5] == "events" and segments[1:2] == ["projects"]:
                self._events(segments[2], segments[4], query)
                return
            status, body = api.call(self.server.data, segments, query)
            self._json(status, body)
            return
        if segments[:1] == ["static"]:
            self._static(segments[1:])
            return
        if segments[:1] == ["media"]:
            self._media(segments[1:])
            return
        if (segments[:1] or [""])[0] in _PAGES and len(segments) <= 3:
            self._static(["index.html"])
            return
        self._error(404, f"no page {url.path}")

    def _static(self, parts: list[str]) -> None:
        path = STATIC.joinpath(*parts).resolve() if parts else STATIC
        if STATIC not in path.parents or not path.is_file() or path.suffix not in _TYPES:
            self._error(404, f"no static file {'/'.join(parts)}")
            return
        ctype = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if ctype.startswith("text/"):
            ctype += "; charset=utf-8"
        cache = "max-age=86400" if "vendor" in parts[:1] else "no-cache"
        self._send(200, path.read_bytes(), ctype, cache)

    def _media(self, parts: list[str]) -> None:
        """A content-addressed media file: its MIME type, cached for good (content never changes under its
        name), byte ranges for audio and video seeking. Logged HTML is served under a sandbox policy, so even
        opened directly it runs in an opaque origin and cannot read this server's API."""
        try:
            path, ctype, sha = media_file(self.server.data.path.parent, parts)
        except ApiError as exc:
            self._error(exc.status, exc.message)
            return
        etag = f'"{sha}"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = path.stat().st_size
        first, last = 0, size - 1
        status = 200
        rng = _byte_range(self.headers.get("Range"), size)
        if rng == "unsatisfiable":
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if rng is not None:
            first, last = rng
            status = 206
        with open(path, "rb") as f:
            f.seek(first)
            body = f.read(last - first + 1)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "public, max-age=31536000, immutable")
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("X-Content-Type-Options", "nosniff")
        html = ctype.startswith("text/html")
        self.send_header("Content-Security-Policy", "sandbox allow-scripts" if html else "sandbox")
        if status == 206:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # ------------------------------------------------------------ live updates

    def _events(self, project: str, name: str, query: dict[str, list[str]]) -> None:
        """Server-sent events: ``update`` (the group summary) whenever the agent committed something for the
        group, a comment line as heartbeat, and ``end`` once no rank is running any more."""
        data = self.server.data
        try:
            Params(query, ())
            g = data.group(project, name)
        except ApiError as exc:
            self._error(exc.status, exc.message)
            return
        except StoreMissing as exc:
            self._error(503, str(exc))
            return
        except NotFound as exc:
            self._error(404, str(exc))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.wfile.write(b"retry: 2000\n\n")
        self.wfile.flush()
        last_sig: tuple | None = None
        last_write = time.monotonic()
        done_at: float | None = None
        while not self.server.stopping.is_set():
            try:
                g = data.group(project, name)
                runs = data.runs(g)
            except StoreError:  # the store briefly unreadable (busy, being created): try again
                self.server.stopping.wait(EVENT_POLL_S)
                continue
            sig = api.signature(g, runs)
            if sig != last_sig:
                summary = api.group_summary(data, g, runs)
                payload = json.dumps(summary, separators=(",", ":"), allow_nan=False)
                self.wfile.write(f"event: update\ndata: {payload}\n\n".encode())
                self.wfile.flush()
                last_sig, last_write = sig, time.monotonic()
            if runs and all(r.state != "running" for r in runs):
                # the agent seals the last steps on its tick after the last rank finished: end once those
                # rows are there (or after a bound: keys that stop early never catch up)
                done_at = done_at or time.monotonic()
                if caught_up(g.sealed_through, runs) or time.monotonic() - done_at > SETTLE_S:
                    self.wfile.write(b"event: end\ndata: {}\n\n")
                    self.wfile.flush()
                    return
            else:
                done_at = None
            if time.monotonic() - last_write > EVENT_HEARTBEAT_S:
                self.wfile.write(b": heartbeat\n\n")
                self.wfile.flush()
                last_write = time.monotonic()
            self.server.stopping.wait(EVENT_POLL_S)


def make_server(store: str | Path | None = None, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                quiet: bool = True, token: str | None = None, allow_hosts: tuple[str, ...] = (),
                max_connections: int = MAX_CONNECTIONS, idle_timeout_s: float = IDLE_TIMEOUT_S) -> UIServer:  # fmt: skip
    """A bound server (port 0 picks a free one); call ``serve_forever()`` on it, ``shutdown()`` from another
    thread. ``token``: the token requests must carry (``new_token()``; None: none, as for a library caller
    that serves only itself); ``rankwise ui`` always generates one unless ``--no-token``."""
    data = UIData(store)
    try:
        data.open()  # now, so the first page does not wait for the connection and the imports
    except StoreMissing:
        pass  # opened on the first request after a run has created it
    return UIServer((host, port), data, quiet=quiet, token=token, allow_hosts=allow_hosts,
                    max_connections=max_connections, idle_timeout_s=idle_timeout_s)  # fmt: skip


def serve(store: str | Path | None, host: str, port: int, out: Any = None, token: bool = True,
          allow_hosts: tuple[str, ...] = ()) -> int:  # fmt: skip
    """``rankwise ui``: serve until Ctrl-C."""
    out = out or sys.stdout
    try:
        server = make_server(store, host, port, quiet=True, token=new_token() if token else None,
                             allow_hosts=allow_hosts)  # fmt: skip
    except OSError as exc:
        hint = "; pass --port 0 to pick a free one" if port else ""
        print(f"rankwise ui: cannot listen on {host}:{port}: {exc.strerror or exc}{hint}", file=sys.stderr)
        return 1
    data = server.data
    print(f"rankwise ui: serving {data.path} at {server.login_url}  (read-only; Ctrl-C to stop)", file=out, flush=True)
    if not token:
        print("rankwise ui: warning: --no-token: every user of this machine can read the store through this port",
              file=sys.stderr, flush=True)  # fmt: skip
    if not server.loopback_only:
        print(f"rankwise ui: warning: {host} is reachable from other machines"
              + ("; the token is sent in clear over HTTP" if token else "; there is no authentication"),
              file=sys.stderr, flush=True)  # fmt: skip
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.stopping.set()
        server.server_close()
    return 0
