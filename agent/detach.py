"""``rankwise agent --detach``: the agent as a daemon, and the one byte that tells its spawner how it started.

The spawning process (a client's ``init()``, client/spawn.py, or a shell) runs ``python -m agent --detach``
and must learn whether the agent it started serves, lost the race to another agent, or could not start, and
why: the parent forks, waits on a pipe for the child's status byte (and the reason of a failure: the
child's stderr is gone) and exits with it. The exit statuses are agent/main.py's.
"""

from __future__ import annotations

import os
import sys


def signal_ready(fd: int | None, code: bytes, message: str = "") -> None:
    """Tell the waiting ``--detach`` parent the exit status (one byte) and why, when it failed."""
    if fd is not None:
        try:
            os.write(fd, code + message.encode(errors="replace")[:4000])
            os.close(fd)
        except OSError:
            pass


def detach_and_wait() -> int | None:
    """Fork; the parent waits until the child is serving (or lost the race) and exits with its code. The child
    (a new session, standard streams on /dev/null) gets the pipe's write end for :func:`signal_ready`."""
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        with os.fdopen(r, "rb") as pipe:
            reply = pipe.read()  # status byte, then the reason of a failure (the child's stderr is gone)
        if reply[1:]:
            sys.stderr.write(reply[1:].decode(errors="replace") + "\n")
            sys.stderr.flush()
        os._exit(int(reply[:1]) if reply[:1].isdigit() else 1)
    os.close(r)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    return w
