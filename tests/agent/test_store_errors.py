"""The SQLite store's exception boundary (agent/store/sqlite_errors.py): what leaves the store is a StoreError
class chosen by SQLite's result code, sqlite3's exception chained as the cause, and store_problem reads the
kind and sqlite3's own words from it."""

from __future__ import annotations

import errno
import sqlite3

import numpy as np
import pytest

from agent.errors import StoreError, StoreFull, StoreLost
from agent.store.base import DISK_FULL, LOST, store_problem
from agent.store.sqlite import SQLiteStore
from agent.store.sqlite_errors import map_exceptions
from agent.store.sqlite_reader import SQLiteReader
from agent.storehealth import is_store_error

RUN = {"name": "r", "run_key": "k", "rank": 0, "local_rank": 0, "node": "n", "pid": 1}


def test_a_full_disk_leaves_a_commit_as_store_full_with_sqlites_words(tmp_path):
    """SQLITE_FULL inside a transaction: StoreFull naming the store, the sqlite3 error as its cause, read as
    "disk full" with sqlite3's own message; the store takes commits again once there is room."""
    store = SQLiteStore(tmp_path / "store.sqlite")
    _, run, _ = store.register("p", "g", 1, RUN, 1.0)
    pages = store.con.execute("PRAGMA page_count").fetchone()[0]
    store.con.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StoreFull) as caught, store.transaction() as txn:
        txn.add_history(run.id, "loss", np.arange(20000), np.arange(20000.0), False)
    exc = caught.value
    assert isinstance(exc.__cause__, sqlite3.OperationalError) and str(store.path) in str(exc)
    assert store_problem(exc) == (DISK_FULL, str(exc.__cause__)) and is_store_error(exc)
    store.con.execute("PRAGMA max_page_count = 1073741823")
    with store.transaction() as txn:
        txn.add_history(run.id, "loss", np.arange(3), np.arange(3.0), False)
    store.close()


def test_a_file_that_is_not_a_database_reads_as_a_lost_store(tmp_path):
    """A reader over garbage: StoreLost (SQLITE_NOTADB), still a StoreError for the callers that catch one."""
    path = tmp_path / "store.sqlite"
    path.write_bytes(b"x" * 8192)
    with pytest.raises(StoreLost) as caught:
        SQLiteReader(path).groups()
    assert isinstance(caught.value, StoreError) and isinstance(caught.value.__cause__, sqlite3.DatabaseError)
    assert store_problem(caught.value)[0] == LOST


def test_other_sqlite_errors_are_a_store_unavailable_and_os_errors_pass_unless_asked():
    """Any other sqlite3 error becomes a plain StoreError ("store unavailable", retried); an OSError passes
    through untouched unless the block is a file of the store (os_errors=True), where a full disk stays one."""
    with pytest.raises(StoreError) as caught, map_exceptions("reading S failed"):
        raise sqlite3.OperationalError("database is locked")
    assert type(caught.value) is StoreError and str(caught.value) == "reading S failed: database is locked"
    assert store_problem(caught.value) == ("store unavailable", "reading S failed: database is locked")
    with pytest.raises(OSError), map_exceptions("write to S failed"):
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(StoreError) as caught, map_exceptions("cannot sync S", os_errors=True):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert store_problem(caught.value)[0] == DISK_FULL
