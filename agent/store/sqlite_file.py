"""The SQLite store's file under the running agent: still the one it opened? And a lost one moved aside.

SQLite keeps writing to the inode it opened: a store file deleted, replaced or overwritten under the agent
would take rows (and the ACKs that follow them) into an unlinked or damaged file. :class:`StoreFile` holds a
descriptor of the file the store opened and compares it with what is at the path now
(:meth:`StoreFile.check`, before and after every transaction of :class:`agent.store.sqlite.SQLiteStore`); a
lost or damaged store is moved aside (``store.sqlite.corrupt-<UTC time>``, with its -wal and -shm), never
deleted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from agent.errors import StoreError, StoreLost

HEADER = b"SQLite format 3\x00"
SUFFIXES = ("", "-wal", "-shm")  # the database, its write-ahead log and its shared-memory index


class StoreFile:
    """The identity (device, inode) of the store file, pinned by an open descriptor while the store is open."""

    def __init__(self, path: Path):
        self.path = path
        self.fd = -1
        self.ident = (0, 0)
        self.moved_aside: list[str] = []  # what move_aside moved, in order

    def __repr__(self) -> str:
        state = f"dev={self.ident[0]} ino={self.ident[1]}" if self.fd >= 0 else "closed"
        return f"<StoreFile {self.path} {state} moved_aside={len(self.moved_aside)}>"

    def pin(self) -> None:
        """The file now at ``path`` (just opened by the store's connection) is the store's."""
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.ident = (st.st_dev, st.st_ino)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def check(self) -> None:
        """Raise :class:`StoreLost` if the file at ``path`` is no longer this store's, or not SQLite's."""
        if self.fd < 0:
            raise StoreLost(f"store {self.path} could not be started afresh after it was lost")
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise StoreLost(f"store {self.path} was deleted while the agent was writing it") from None
        except OSError as exc:
            raise StoreError(f"cannot stat store {self.path}: {exc}") from exc
        if (st.st_dev, st.st_ino) != self.ident:
            raise StoreLost(f"store {self.path} was replaced by another file while the agent was writing it")
        head = os.pread(self.fd, len(HEADER), 0)
        if head and head != HEADER:
            raise StoreLost(f"store {self.path} is damaged: its first bytes are not an SQLite header")

    def remove(self) -> None:
        """Delete the files at ``path`` (what a failed fresh start created is nobody's data)."""
        for suffix in SUFFIXES:
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)

    def move_aside(self) -> str | None:
        """Move the files at ``path`` to ``<name>.corrupt-<UTC time>[-n]``; returns the main file's new path
        (None: there was none)."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        name = f"{self.path.name}.corrupt-{stamp}"
        n = 1
        while any(self.path.with_name(name + s).exists() for s in SUFFIXES):
            n += 1
            name = f"{self.path.name}.corrupt-{stamp}-{n}"
        moved = None
        for suffix in SUFFIXES:  # an old -wal must never meet the fresh file
            try:
                os.replace(self.path.with_name(self.path.name + suffix), self.path.with_name(name + suffix))
            except FileNotFoundError:
                continue
            if not suffix:
                moved = str(self.path.with_name(name))
        if moved:
            self.moved_aside.append(moved)
        return moved
