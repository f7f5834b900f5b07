"""fsync by path: the durability points of the spool, the media store and the root's store; and
files written whole under a temporary name, then renamed into place (``atomic_file``).

A file's data, or a directory's entries (a new file is durable only once its
directory is), reach the disk. An fd opened here never belongs to a file
SQLite locks (closing it would drop the process's POSIX locks on that file):
callers pass the WAL, segment files, media files and directories.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


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


class Staged:
    """The temporary file of :func:`atomic_file`: write to ``file``; set ``final`` to the path it should
    replace (left None: the file is removed, e.g. content already stored under its name)."""

    __slots__ = ("file", "final", "path")

    def __init__(self, file: IO[Any], path: str):
        self.file = file
        self.path = path
        self.final: Path | str | None = None

    def __repr__(self) -> str:
        return f"<Staged {self.path} -> {self.final}>"


@contextmanager
def atomic_file(directory: Path | str, suffix: str, mode: str = "wb", sync: bool = True) -> Iterator[Staged]:
    """A file written in ``directory`` under a temporary name (``mkstemp``: mode 0600) and renamed to
    ``staged.final`` when the block ends, so a reader never sees it torn. With ``sync`` its data is fsynced
    before the rename and the directory after it. When the block raises, or sets no ``final``, the
    temporary file is removed."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    try:
        with os.fdopen(fd, mode) as f:
            staged = Staged(f, tmp)
            yield staged
            if sync and staged.final is not None:
                f.flush()
                os.fsync(f.fileno())
        if staged.final is None:
            os.unlink(tmp)
            return
        os.replace(tmp, staged.final)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if sync:
        fsync_path(Path(staged.final).parent)
