"""fsync by path: the durability points of the spool, the media store and the root's store.

A file's data, or a directory's entries (a new file is durable only once its
directory is), reach the disk. An fd opened here never belongs to a file
SQLite locks (closing it would drop the process's POSIX locks on that file):
callers pass the WAL, segment files, media files and directories.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path | str, strict: bool = False) -> bool:
    """fsync ``path``; False when it does not exist. Other errors raise OSError when ``strict``, else
    they are ignored (a best-effort sync whose caller has a later, checked one)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        if strict:
            raise
        return False
    try:
        os.fsync(fd)
    except OSError:
        if strict:
            raise
        return False
    finally:
        os.close(fd)
    return True
