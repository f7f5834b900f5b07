"""Where rankwise keeps data (``RANKWISE_DIR``) and runtime files (``RANKWISE_RUNTIME_DIR``).

Runtime files are the agent's socket, lock and endpoint file. They live in a
directory private to the user (mode 0700) so that no other user can connect to
or impersonate the agent.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from client.errors import InvalidArgumentError

# sockaddr_un.sun_path is 108 bytes on Linux including the terminating NUL.
IPC_PATH_MAX = 107

AGENT_SOCKET = "agent.sock"
AGENT_LOCK = "agent.lock"
AGENT_INFO = "agent.json"
SPAWN_LOCK = "spawn.lock"
STORE_FILE = "store.sqlite"


def data_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The data directory: ``RANKWISE_DIR``, else ``$XDG_DATA_HOME/rankwise``, else ``~/.local/share/rankwise``."""
    if env.get("RANKWISE_DIR"):
        return Path(env["RANKWISE_DIR"]).expanduser()
    base = env.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "rankwise"


def runtime_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The runtime directory: ``RANKWISE_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/rankwise``, else ``/tmp/rankwise-$UID``."""
    if env.get("RANKWISE_RUNTIME_DIR"):
        return Path(env["RANKWISE_RUNTIME_DIR"]).expanduser()
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "rankwise"
    return Path("/tmp") / f"rankwise-{os.getuid()}"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` with mode 0700 if missing; refuse one owned by another user or open to others."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.getuid():
        raise InvalidArgumentError(
            f"runtime directory {path} belongs to uid {st.st_uid}, not to you ({os.getuid()}); "
            "set RANKWISE_RUNTIME_DIR to a directory of your own"
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def ensure_data_dir(path: Path) -> Path:
    """Create the data directory (mode 0700: run data is private by default)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


# The agent's umask: every file it creates (store, WAL/SHM, media, spool, log, agent.json) is 0600 and every
# folder 0700, whatever the umask of the shell or batch job that started it.
AGENT_UMASK = 0o077


def open_to_others(path: Path) -> str | None:
    """A warning when the data directory ``path`` lets other users in (group/other bits set), else None.
    Files the agent creates are 0600 in any case; older files, or files other tools put there, are not."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if not mode & 0o077:
        return None
    return (
        f"data directory {path} is open to other users (mode {mode:04o}): they can list it and read any "
        f"file in it not created by the agent; run chmod 700 {path}"
    )


def ipc_endpoint(runtime: Path) -> str | None:
    """The agent's ipc endpoint in ``runtime``, or None when the path is too long for a socket."""
    sock = str(runtime / AGENT_SOCKET)
    if len(sock.encode()) > IPC_PATH_MAX:
        return None
    return "ipc://" + sock
