"""Who may read through ``rankwise ui``: the Host check against DNS rebinding and the token.

A server bound to loopback answers only requests whose ``Host`` is ``localhost``,
a literal loopback address (127.0.0.0/8, ``[::1]``), with an optional port, or a
name given with ``--allow-host``: a page of another site that rebinds its own
name (``127.evil.com``, ``127.0.0.1.nip.io``) to 127.0.0.1 still sends that name.

The token (192 random bits, new at every start) is accepted from the query
(``?token=``), an ``Authorization: token T`` / ``Bearer T`` header or the
server's cookie (named after its port: cookies are per host, not per port),
always compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, quote, urlencode


def new_token() -> str:
    """A fresh UI token: 192 random bits, URL-safe (32 characters)."""
    return secrets.token_urlsafe(24)


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` resolves to is a loopback address (a server bound there is local)."""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return all(loopback_ip(info[4][0]) for info in infos)


def loopback_ip(name: str) -> bool:
    """A literal loopback address (127.0.0.0/8, ::1); a name such as ``127.0.0.1.nip.io`` is not one."""
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str | None:
    """The name of a ``Host`` header (lower case, without its port: ``[::1]:80`` → ``::1``), None when the
    header is malformed (a port that is not a number, a bracket without an IPv6 address)."""
    host = header.strip().lower()
    if host.startswith("["):
        name, sep, rest = host[1:].partition("]")
        if not sep or (rest and not (rest.startswith(":") and rest[1:].isdigit())) or ":" not in name:
            return None
        return name
    name, sep, port = host.partition(":")
    if sep and not port.isdigit():
        return None
    return name or None


def host_allowed(header: str, allowed: frozenset[str] = frozenset()) -> bool:
    """The Host check of a server bound to loopback: ``localhost``, a literal loopback IP (v4 or v6), with
    an optional port, or a name in ``allowed`` (``--allow-host``)."""
    name = host_name(header)
    return name is not None and (name == "localhost" or loopback_ip(name) or name in allowed)


def token_ok(token: str | None, cookie_name: str, headers: Mapping[str, Any], query_token: str | None) -> bool:
    """Whether a request carries ``token`` (None: no token needed) in the query, the Authorization header or
    the cookie ``cookie_name``."""
    if token is None:
        return True
    offered = [query_token or ""]
    scheme, _, value = (headers.get("Authorization") or "").partition(" ")
    if scheme.lower() in ("token", "bearer"):
        offered.append(value.strip())
    for part in (headers.get("Cookie") or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == cookie_name:
            offered.append(value)
    return any(hmac.compare_digest(o.encode(), token.encode()) for o in offered if o)


def login_redirect(path: str, query: str) -> str:
    """Where a page opened with ``?token=`` goes once the cookie is set: the same address without the token,
    and never ``//host/...`` (a redirect there would leave this server)."""
    rest = [(k, v) for k, vs in parse_qs(query, keep_blank_values=True).items() for v in vs if k != "token"]
    return quote("/" + path.lstrip("/"), safe="/%") + (f"?{urlencode(rest)}" if rest else "")
