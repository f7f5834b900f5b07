"""Same-user keys for a root listening on loopback without configured Curve keys.

A root started with ``--listen tcp://127.0.0.1:PORT`` and no ``--curve-secret``
used to accept plain TCP from anyone on the machine: another user could write
into it, or listen on the port first and receive a node agent's data. Now such
a root is a CurveZMQ server with a key pair of its own, kept in a directory only
its user can read (``RANKWISE_LINK_DIR``, default ``~/.local/state/rankwise/links``,
mode 0700; one file per host and port, mode 0600). A node agent of the same
user, told ``--upstream tcp://127.0.0.1:PORT`` without keys, reads the root's
public key there and connects with Curve (a fresh key pair of its own). The
root's public key is the shared secret: a peer that does not know it cannot
complete the handshake, so another user can neither connect nor impersonate
the root. The root reuses its key pair when restarted on the same port, so node
agents waiting for it reconnect as they are.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import stat
from collections.abc import Mapping
from pathlib import Path

from client import paths


def loopback_endpoint(endpoint: str | None) -> tuple[str, int] | None:
    """(host, port) of a ``tcp://`` endpoint on a loopback address (or ``localhost``), else None."""
    if not endpoint or not endpoint.startswith("tcp://"):
        return None
    host, _, port = endpoint[len("tcp://") :].rpartition(":")
    host = host.strip("[]")
    try:
        if not (host == "localhost" or ipaddress.ip_address(host).is_loopback):
            return None
        return host, int(port)
    except ValueError:
        return None


def link_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Where same-user link keys live: ``RANKWISE_LINK_DIR``, else ``$XDG_STATE_HOME/rankwise/links``, else
    ``~/.local/state/rankwise/links``. Not the runtime or data directory: a root and the node agents on its
    machine have directories of their own, and may be started from shells with different environments."""
    if env.get("RANKWISE_LINK_DIR"):
        return Path(env["RANKWISE_LINK_DIR"]).expanduser()
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "rankwise" / "links"


def key_file(port: int, env: Mapping[str, str] = os.environ) -> Path:
    host = "".join(c if c.isalnum() or c in "._-" else "_" for c in socket.gethostname()) or "host"
    return link_dir(env) / f"{host}-{port}.json"


def _private(path: Path) -> bool:
    """``path`` exists, is ours and nobody else can read it (nor the folder it is in)."""
    try:
        st, dst = path.stat(), path.parent.stat()
    except OSError:
        return False
    uid = os.getuid()
    return (
        st.st_uid == dst.st_uid == uid
        and not stat.S_IMODE(st.st_mode) & 0o077
        and not stat.S_IMODE(dst.st_mode) & 0o077
    )


def read(port: int, env: Mapping[str, str] = os.environ) -> tuple[bytes, bytes] | None:
    """(public, secret) of the root listening on ``port`` of this machine, if one of ours published them."""
    path = key_file(port, env)
    if not _private(path):
        return None
    try:
        body = json.loads(path.read_text())
        public, secret = body["public"].encode(), body["secret"].encode()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return (public, secret) if len(public) == len(secret) == 40 else None


def root_pair(port: int, env: Mapping[str, str] = os.environ) -> tuple[bytes, bytes]:
    """The key pair a root on ``port`` uses: the one published for that port (a restart on the same port keeps
    its key, so waiting node agents reconnect), else a new one (port 0: always new)."""
    import zmq

    found = read(port, env) if port else None
    return found or zmq.curve_keypair()


def publish(port: int, public: bytes, secret: bytes, env: Mapping[str, str] = os.environ) -> Path:
    """Write the root's key pair for ``port`` (folder 0700, file 0600, atomically)."""
    path = key_file(port, env)
    paths.ensure_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"public": public.decode(), "secret": secret.decode(), "pid": os.getpid()}, fh)
    os.replace(tmp, path)
    return path


def withdraw(path: Path) -> None:
    """A root stopping cleanly removes its key file if it is still its own (the next root makes a new key;
    node agents read it again while they wait). A killed root leaves it, and its successor reuses it."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass
