"""The request handler of ``rankwise ui`` (rankwise/_ui/server.py): the Host and token checks, then
one of the app's pages, its static files, a media file (with byte ranges) or the JSON API
(rankwise/_ui/api.py); a group's live event stream is rankwise/_ui/events.py. Only GET and HEAD: the UI
and its API are read-only.

Errors: /api paths answer JSON (``{"error", "status"}``); any other unknown path gets the HTML page
static/notfound.html (status 404, the app's look, a link home). JSON and static text are gzipped when the
request accepts it (rankwise/_ui/compress.py), with ``Vary: Accept-Encoding``; media and the event stream
never are.
"""

from __future__ import annotations

import html
import json
import mimetypes
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from rankwise._ui import api
from rankwise._ui.auth import host_allowed, login_redirect, token_ok
from rankwise._ui.compress import MIN_BYTES, accepts_gzip, compressible, gzip_body
from rankwise._ui.events import stream_events
from rankwise._ui.media import media_file
from rankwise.errors import ApiError

if TYPE_CHECKING:
    from rankwise._ui.server import UIServer

STATIC = Path(__file__).resolve().parent / "static"
_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".md": "text/markdown",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".txt": "text/plain",
}
# the app's pages (static/app.js `route`): first path segment -> allowed numbers of segments. /g/P alone is
# served too: the app sends it on to /p/P. Any other path is the HTML 404 page.
_PAGES = {
    "": (0,),  # /
    "p": (2,),  # /p/<project>
    "g": (2, 3, 5),  # /g/<project>, /g/<project>/<group>, /g/<project>/<group>/rank/<r>
    "compare": (1,),  # /compare?g=<project>/<group>&g=...
}
_COMPUTE = object()  # _send: gzip the body here (JSON) rather than take a precompressed one (static files)


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


class Handler(BaseHTTPRequestHandler):
    """The requests of one connection (a thread each: :class:`UIServer`), answered from ``server.data``."""

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

    def _send(self, status: int, body: bytes, ctype: str, cache: str = "no-cache", gz: Any = _COMPUTE) -> None:
        """One whole response. Text and JSON go gzipped when the request accepts it and the body is not tiny;
        ``gz``: the body gzipped already (None: not worth it), else it is compressed here."""
        vary = compressible(ctype)
        if vary and accepts_gzip(self.headers.get("Accept-Encoding")):
            if gz is _COMPUTE:
                gz = gzip_body(body) if len(body) >= MIN_BYTES else None
        else:
            gz = None
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if gz is not None:
            body = gz
            self.send_header("Content-Encoding", "gzip")
        if vary:
            self.send_header("Vary", "Accept-Encoding")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        body = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
        self._send(status, body, "application/json")

    def reply_error(self, status: int, message: str) -> None:
        self._json(status, {"error": message, "status": status})

    def not_found_page(self, path: str) -> None:
        """The HTML 404 page (static/notfound.html) naming ``path``, with a link home."""
        template = (STATIC / "notfound.html").read_text(encoding="utf-8")
        body = template.replace("{{path}}", html.escape(path)).encode()
        self._send(404, body, "text/html; charset=utf-8")

    # ------------------------------------------------------------ dispatch

    def do_GET(self) -> None:
        try:
            self._get()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a bug must not kill the server; say what broke
            self.close_connection = True
            try:
                self.reply_error(500, f"{type(exc).__name__}: {exc}")
            except OSError:
                pass
            if not self.server.quiet:
                raise

    do_HEAD = do_GET

    def _refuse_method(self) -> None:
        self.reply_error(405, f"method {self.command} not allowed: the UI and its API are read-only (GET)")

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
            self.reply_error(
                403,
                "this server answers only requests addressed to localhost or a loopback address "
                f"(names passed with rankwise ui --allow-host: {allowed})",
            )
            return
        url = urlsplit(self.path)
        query_token = (parse_qs(url.query).get("token") or [None])[0]
        if not self._token_ok(query_token):
            self.reply_error(
                403,
                "this server needs its token: open the address with ?token=... that rankwise ui "
                "printed (or send 'Authorization: token ...')",
            )
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
                stream_events(self, segments[2], segments[4], query)
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
        if len(segments) in _PAGES.get((segments[:1] or [""])[0], ()) and segments[3:4] in ([], ["rank"]):
            self._static(["index.html"])
            return
        self.not_found_page(url.path)

    def _static(self, parts: list[str]) -> None:
        path = STATIC.joinpath(*parts).resolve() if parts else STATIC
        if STATIC not in path.parents or not path.is_file() or path.suffix not in _TYPES:
            self.not_found_page("/static/" + "/".join(parts))
            return
        ctype = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if ctype.startswith("text/"):
            ctype += "; charset=utf-8"
        cache = "max-age=86400" if "vendor" in parts[:1] else "no-cache"
        raw, gz = self.server.static_cache.get(path, ctype)
        self._send(200, raw, ctype, cache, gz=gz)

    def _media(self, parts: list[str]) -> None:
        """A content-addressed media file: its MIME type, cached for good (content never changes under its
        name), byte ranges for audio and video seeking. Logged HTML is served under a sandbox policy, so even
        opened directly it runs in an opaque origin and cannot read this server's API."""
        try:
            path, ctype, sha = media_file(self.server.data.media_root, parts)
        except ApiError as exc:
            self.reply_error(exc.status, exc.message)
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
