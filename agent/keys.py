"""CurveZMQ between node agents and the root: keys, the root's allow-list, and who was refused.

``rankwise keygen NAME`` writes ``NAME.key`` (public) and ``NAME.key_secret``
(public + secret, mode 0600) with :func:`zmq.auth.create_certificates`. The
root runs with its secret (``--curve-secret root.key_secret``) and a directory
of the public keys of the nodes it accepts (``--allow DIR``: copy each node's
``NAME.key`` there); a node runs with its own secret and the root's public key
(``--curve-secret node.key_secret --root-key root.key``). Traffic is encrypted
and authenticated both ways.

No key, no entry: the root answers ZeroMQ's authentication requests (ZAP)
itself, in its loop, allowing only CURVE handshakes whose client key is in the
allow-list (re-read when the directory changes, so adding a node needs no
restart). A peer without Curve fails the handshake before ZAP is asked; a
socket monitor counts those. Both are in ``rankwise status`` (``refused``).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

from agent.nonblocking import queued
from client.errors import InvalidArgumentError

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = "rankwise"


def keygen(directory: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """Create ``NAME.key`` and ``NAME.key_secret`` in ``directory``; refuses to overwrite."""
    import zmq.auth

    d = Path(directory).expanduser()
    d.mkdir(parents=True, exist_ok=True)
    for suffix in (".key", ".key_secret"):
        if (d / (name + suffix)).exists():
            raise InvalidArgumentError(f"{d / (name + suffix)} exists; pick another name or remove it first")
    old = os.umask(0o077)  # the secret is never readable by others, not even between its creation and a chmod
    try:
        public, secret = zmq.auth.create_certificates(str(d), name)
    finally:
        os.umask(old)
    os.chmod(secret, 0o600)
    os.chmod(public, 0o644)  # the public half is meant to be copied around
    return Path(public), Path(secret)


def load_secret(path: str | os.PathLike, what: str = "--curve-secret") -> tuple[bytes, bytes]:
    """(public, secret) from a ``.key_secret`` file."""
    import zmq.auth

    try:
        public, secret = zmq.auth.load_certificate(os.path.expanduser(str(path)))
    except (OSError, ValueError) as exc:
        raise InvalidArgumentError(
            f"{what} {path}: cannot read a Curve key ({exc}); create one with rankwise keygen"
        ) from None
    if not secret:
        raise InvalidArgumentError(f"{what} {path} holds only a public key; pass the .key_secret file")
    return public, secret


def load_public(path: str | os.PathLike, what: str = "--root-key") -> bytes:
    import zmq.auth

    try:
        public, _ = zmq.auth.load_certificate(os.path.expanduser(str(path)))
    except (OSError, ValueError) as exc:
        raise InvalidArgumentError(f"{what} {path}: cannot read a Curve public key ({exc})") from None
    return public


class AllowList:
    """Public keys (z85) of the ``*.key`` files in a directory, re-read when the directory changes."""

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory).expanduser()
        if not self.dir.is_dir():
            raise InvalidArgumentError(f"--allow {self.dir} is not a directory of node public keys (*.key)")
        self._mtime = -1.0
        self.keys: set[bytes] = set()
        self.refresh()

    def refresh(self) -> None:
        import zmq.auth

        try:
            mtime = self.dir.stat().st_mtime
        except OSError:
            return
        if mtime == self._mtime:
            return
        self._mtime = mtime
        keys = set()
        for path in self.dir.glob("*.key"):
            try:
                public, _ = zmq.auth.load_certificate(str(path))
            except (OSError, ValueError):
                continue
            keys.add(public)
        self.keys = keys

    def __contains__(self, key: bytes) -> bool:
        self.refresh()
        return key in self.keys

    def __repr__(self) -> str:
        return f"<AllowList {self.dir} keys={len(self.keys)}>"


class ZapHandler:
    """Answers ZAP requests on the agent's own context, from the agent's loop (no thread)."""

    def __init__(self, ctx: Any, allow: AllowList):
        import zmq

        self.allow = allow
        self.sock = ctx.socket(zmq.REP)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(ZAP_ENDPOINT)
        self.allowed = 0
        self.refused = 0

    def __repr__(self) -> str:
        return f"<ZapHandler {self.allow!r} allowed={self.allowed} refused={self.refused}>"

    def handle(self) -> None:
        from zmq.utils import z85

        for msg in queued(self.sock.recv_multipart):
            version, request_id = (msg + [b"", b""])[:2]
            ok = False
            user = b""
            if len(msg) >= 7 and msg[5] == b"CURVE" and len(msg[6]) == 32:
                key = z85.encode(msg[6])
                ok = key in self.allow
                user = key
            if ok:
                self.allowed += 1
            else:
                self.refused += 1
            status = (b"200", b"OK") if ok else (b"400", b"not on the allow-list")
            self.sock.send_multipart([b"1.0", request_id, *status, user, b""])

    def close(self) -> None:
        self.sock.close(linger=0)


def curve_server(sock: Any, public: bytes, secret: bytes) -> None:
    import zmq

    sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True


def curve_client(sock: Any, public: bytes, secret: bytes, server: bytes) -> None:
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = server


def _disconnect(fd: int) -> None:
    """connect(fd, AF_UNSPEC): Linux resets a TCP connection (tcp_disconnect) and the socket's owner sees an
    error on its next read. Python's socket.connect cannot pass an AF_UNSPEC address, hence libc."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    addr = struct.pack("H14s", 0, b"")  # sa_family AF_UNSPEC
    libc.connect(fd, ctypes.c_char_p(addr), len(addr))


class HandshakeMonitor:
    """A listening socket's monitor: counts failed handshakes (peers without Curve, or with a bad key) and
    the open connections. Past ``max_connections`` (0: no limit) a newly accepted connection is shut down at
    once and counted as refused ``connection_limit``: each connection can pin one partial frame of up to
    ZMQ_MAXMSGSIZE in memory, so the limit bounds that memory (connections × frame limit)."""

    def __init__(self, sock: Any, max_connections: int = 0):
        import zmq

        events = (
            zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH
            | zmq.EVENT_ACCEPTED
            | zmq.EVENT_DISCONNECTED
        )
        self.sock = sock.get_monitor_socket(events)
        self.max_connections = max_connections
        self.failed: dict[str, int] = {}
        self.open: set[int] = set()  # fds of the accepted connections still open
        self.peak = 0
        self.port: int | None = None  # the listening port (set after bind): a fd to shut must be on it

    def __repr__(self) -> str:
        return f"<HandshakeMonitor open={len(self.open)}/{self.max_connections or 'any'} failed={self.failed}>"

    def handle(self) -> None:
        import zmq
        from zmq.utils.monitor import recv_monitor_message

        names = {
            zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake",
            zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "protocol",
            zmq.EVENT_HANDSHAKE_FAILED_AUTH: "auth",
        }
        for event in queued(lambda flags: recv_monitor_message(self.sock, flags)):
            kind, fd = event.get("event"), event.get("value")
            if kind == zmq.EVENT_ACCEPTED:
                if self.max_connections and len(self.open) >= self.max_connections:
                    self._shut(fd)
                    self.failed["connection_limit"] = self.failed.get("connection_limit", 0) + 1
                else:
                    self.open.add(fd)
                    self.peak = max(self.peak, len(self.open))
                continue
            if kind == zmq.EVENT_DISCONNECTED:
                self.open.discard(fd)  # libzmq reports it before closing the fd: no reuse in between
                continue
            cause = names.get(kind, "other")
            self.failed[cause] = self.failed.get(cause, 0) + 1

    def _shut(self, fd: int) -> None:
        """Shut the accepted TCP connection ``fd`` down (ZeroMQ then drops it). ZeroMQ has no call to close one
        connection of a socket; shutdown(2) on the fd makes its reader see the end of the stream. The fd is
        checked to be a connection to our port first (if it was closed and reused meanwhile, leave it)."""
        import socket

        try:
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            return
        try:
            if self.port is None or s.getsockname()[1] == self.port:
                # SO_LINGER 0 then a disconnect (connect to AF_UNSPEC): the connection is reset at once, both
                # ways; shutdown(2) alone leaves Linux queueing what the peer sends, and ZeroMQ reading it
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                _disconnect(s.fileno())
                s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            s.close()

    def status(self) -> dict[str, Any]:
        return {"connections": len(self.open), "peak_connections": self.peak, "max_connections": self.max_connections}

    def close(self) -> None:
        self.sock.close(linger=0)
