"""Stores: where the root agent keeps everything. See :mod:`agent.store.base`."""

from agent.store.base import GROUP_FIELDS, GroupRecord, Reader, RunRecord, Store, Txn
from agent.store.memory import MemoryStore
from agent.store.sqlite import SQLiteStore
from agent.store.sqlite_reader import SQLiteReader

__all__ = [
    "GROUP_FIELDS",
    "GroupRecord",
    "MemoryStore",
    "Reader",
    "RunRecord",
    "SQLiteReader",
    "SQLiteStore",
    "Store",
    "Txn",
]
