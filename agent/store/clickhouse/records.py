"""Runs and groups as rows of the ``runs`` and ``groups`` tables: the searched fields as columns, the whole
record as one msgpack map (``rec``), versioned (``ver``): the latest version is the record."""

from __future__ import annotations

from dataclasses import fields
from typing import TypeVar

from agent.store.base import GroupRecord, RunRecord
from agent.store.clickhouse.points import pack, unpack

R = TypeVar("R", GroupRecord, RunRecord)


def pack_record(rec: GroupRecord | RunRecord) -> bytes:
    return pack({f.name: getattr(rec, f.name) for f in fields(rec)})


def unpack_record(cls: type[R], blob: bytes) -> R:
    d = unpack(blob)
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})
