"""The UI's read side: groups and runs through :class:`rankwise.Api`, series through a cache that
follows a running group by reading only the chunks written since its last read.

The store is opened read-only (a SQLite WAL reader: the agent's writes never
wait for it). It is opened on first use, so ``rankwise ui`` can start before
the first run has created the store.
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import StoreEmpty
from agent.store.base import GROUP_FIELDS, GroupRecord, RunRecord, last_wins, merge_since
from agent.store.sqlite_reader import SQLiteReader
from rankwise._api import Api
from rankwise._stores import chosen_store, is_store_url, media_root_of, store_path
from rankwise._ui import series as S
from rankwise._views import Group
from rankwise.errors import NotFound, StoreMissing

MMAP_BYTES = 1 << 40  # map the whole store however large it grows (address space, not memory)
MEMO_ENTRIES = 256  # media key lists and step lists kept (small: steps only, no values)


@dataclass
class _Entry:
    last: int  # id of the last chunk read
    value: Any
    nbytes: int


def _nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, tuple):
        return sum(_nbytes(v) for v in value)
    return 64


class ReaderPool:
    """Up to ``size`` readers (own connections) handed out one per fetch, so the charts a page asks for
    at once are read and decoded in parallel (SQLite and numpy release the GIL for the bulk of it)."""

    def __init__(self, open_reader: Callable[[], Any], size: int = 3):
        self._open = open_reader
        self._size = size
        self._made: list[Any] = []
        self._free: queue.LifoQueue = queue.LifoQueue()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<ReaderPool {len(self._made)}/{self._size} open>"

    @contextmanager
    def get(self) -> Iterator[Any]:
        try:
            reader = self._free.get_nowait()
        except queue.Empty:
            with self._lock:
                make = len(self._made) < self._size
                if make:
                    reader = self._open()
                    self._made.append(reader)
            if not make:
                reader = self._free.get()
        try:
            yield reader
        finally:
            self._free.put(reader)

    def close(self) -> None:
        with self._lock:
            for reader in self._made:
                reader.close()
            self._made = []


class SeriesCache:
    """Decoded series per (group, key), least recently used dropped past ``max_bytes``.

    Each read first asks the store for chunks newer than the cached ones (one indexed query that
    returns nothing when the group is idle) and merges them in, so a finished group is decoded
    once and a running one costs only its new points. Different keys are fetched in parallel."""

    def __init__(self, readers: ReaderPool, max_bytes: int = 512 << 20):
        self.readers = readers
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._bytes = 0
        self._derived: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._lock = threading.Lock()  # the dicts
        self._key_locks: dict[tuple, threading.Lock] = {}  # one fetch per key at a time

    def __repr__(self) -> str:
        return f"<SeriesCache entries={len(self._entries)} bytes={self._bytes} {self.readers!r}>"

    def _get(self, key: tuple, fetch: Callable[[Any, int], tuple[int, Any]], merge: Callable[[Any, Any], Any]) -> Any:
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                entry = self._entries.get(key)
            after = entry.last if entry else 0
            with self.readers.get() as reader:
                last, new = fetch(reader, after)
            if entry is not None and last == after:
                value = entry.value
            else:
                value = new if entry is None else merge(entry.value, new)
            with self._lock:
                old = self._entries.pop(key, None)
                self._bytes -= old.nbytes if old else 0
                entry = self._entries[key] = _Entry(last, value, _nbytes(value))
                self._bytes += entry.nbytes
                while self._bytes > self.max_bytes and len(self._entries) > 1:
                    _, dropped = self._entries.popitem(last=False)
                    self._bytes -= dropped.nbytes
            return value

    def group_rows(self, gid: int, key: str) -> dict[str, np.ndarray]:
        """All group rows of ``key`` (``GROUP_FIELDS`` arrays by step)."""

        def merge(old: dict, new: dict) -> dict:
            steps = np.concatenate([old["step"], new["step"]])
            _, idx = last_wins([steps], [np.arange(len(steps))])  # newer revisions win
            return {f: np.concatenate([old[f], new[f]])[idx] for f in GROUP_FIELDS}

        return self._get(("g", gid, key), lambda r, after: r.group_history_since(gid, key, after), merge)

    def rank_rows(self, gid: int, key: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per run id: (steps, values) of ``key``."""
        first = key in ("_timestamp", "_runtime")

        def merge(old: dict, new: dict) -> dict:
            out = dict(old)
            for rid, sv in new.items():
                out[rid] = merge_since(old.get(rid), sv, first=first)
            return out

        return self._get(("r", gid, key), lambda r, after: r.group_rank_history(gid, key, after), merge)

    def derived(self, name: str, gid: int, source: Any, compute: Any) -> Any:
        """``compute(source)``, memoised while ``source`` (a value this cache returned) is unchanged: the
        cache replaces a value whenever new chunks arrive, so identity says whether it is still current."""
        with self._lock:
            memo = self._derived.get((name, gid))
        if memo is not None and memo[0] is source:
            return memo[1]
        value = compute(source)
        with self._lock:
            self._derived[(name, gid)] = (source, value)
        return value

    def step_times(self, gid: int) -> tuple[np.ndarray, np.ndarray]:
        """When each step was complete on every rank: (steps, the latest rank's commit time)."""
        return self.derived(
            "step_times",
            gid,
            self.rank_rows(gid, "_timestamp"),
            lambda runs: S.per_step_max([s for s, _ in runs.values()], [v for _, v in runs.values()]),
        )

    def step_durations(self, gid: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per run id: (step, seconds per step) from its commit times."""
        return self.derived(
            "durations",
            gid,
            self.rank_rows(gid, "_timestamp"),
            lambda runs: {rid: S.step_durations(s, v) for rid, (s, v) in runs.items()},
        )


class UIData:
    """What the handlers need: the Api (opened lazily) for groups and runs, and the series cache with its
    own pool of readers for the bulk reads."""

    def __init__(self, store: str | Path | None):
        self.store = chosen_store(store)
        self._api: Api | None = None
        self._cache: SeriesCache | None = None
        self._lock = threading.Lock()
        self._memos: OrderedDict[tuple, tuple[tuple, Any]] = OrderedDict()

    def __repr__(self) -> str:
        return f"<UIData store={self.label} open={self._api is not None}>"

    @property
    def path(self) -> Path:
        return store_path(self.store)

    @property
    def url(self) -> str | None:
        """The store URL when ``--store`` names a ClickHouse store (docs/scale.md), else None."""
        return str(self.store) if is_store_url(self.store) else None

    @property
    def label(self) -> str:
        """The store as messages show it (a URL without its password)."""
        from agent.store.open import redact

        return redact(self.url) if self.url else str(self.path)

    @property
    def media_root(self) -> Path:
        """Where the media files the UI serves live (beside a SQLite store; ``$RANKWISE_DIR`` for a URL)."""
        return media_root_of(self.store)

    def open(self) -> Api:
        """The Api over the store, opened on first use (StoreMissing until a run has created the file)."""
        with self._lock:
            if self._api is None:
                if self.url is None and not self.path.exists():
                    raise StoreMissing(f"no store at {self.path} yet: it appears with the first run logged there")
                try:
                    self._api = Api(self.url or self.path)
                except StoreEmpty:  # a ClickHouse database without tables yet: as a SQLite file not yet there
                    raise StoreMissing(
                        f"no store in {self.label} yet: its tables appear with the first run logged there"
                    ) from None
                if self.url is None:
                    self._api._reader.use_mmap(MMAP_BYTES)
                self._cache = SeriesCache(ReaderPool(self._open_reader))
                with self._cache.readers.get():
                    pass  # one reader open before the first page asks
            return self._api

    def _open_reader(self) -> SQLiteReader:
        if self.url is not None:
            from agent.store.open import open_reader

            return open_reader(self.url)
        reader = SQLiteReader(self.path)
        reader.use_mmap(MMAP_BYTES)
        return reader

    api = property(open)

    @property
    def cache(self) -> SeriesCache:
        self.open()
        assert self._cache is not None
        return self._cache

    def group(self, project: str, name: str) -> GroupRecord:
        reader = self.api._reader
        record = reader.group(project, name)
        if record is None:
            if project not in reader.projects():
                raise NotFound(f"no project {project!r}")
            raise NotFound(f"no group {name!r} in project {project!r}")
        return record

    def groups(self, project: str) -> list[GroupRecord]:
        reader = self.api._reader
        if project not in reader.projects():
            raise NotFound(f"no project {project!r}")
        return reader.groups(project)

    def runs(self, record: GroupRecord) -> list[RunRecord]:
        return self.api._reader.runs(record.id)

    def state(self, record: GroupRecord) -> str:
        return Group(self.api, record).state  # one rule for the CLI, the Api and the UI

    # media views: what they read is kept until the agent commits something for the group

    def _memo(self, name: tuple, g: GroupRecord, runs: list[RunRecord], compute: Callable[[], Any]) -> Any:
        sig = (g.updated, g.sealed_through, tuple((r.id, r.updated, r.step, r.state) for r in runs))
        with self._lock:
            hit = self._memos.get(name)
            if hit is not None and hit[0] == sig:
                self._memos.move_to_end(name)
                return hit[1]
        value = compute()
        with self._lock:
            self._memos[name] = (sig, value)
            while len(self._memos) > MEMO_ENTRIES:
                self._memos.popitem(last=False)
        return value

    def media_keys(self, g: GroupRecord, runs: list[RunRecord]) -> list[dict[str, Any]]:
        """The group's keys with media values (``Group.media_keys``)."""
        return self._memo(("media_keys", g.id), g, runs, lambda: Group(self.api, g).media_keys())

    def value_steps(self, g: GroupRecord, runs: list[RunRecord], key: str) -> dict[int, np.ndarray]:
        """Run id → the steps with a value of ``key`` (no value decoded)."""

        def read() -> dict[int, np.ndarray]:
            with self.cache.readers.get() as reader:
                return reader.group_value_steps(g.id, key)

        return self._memo(("steps", g.id, key), g, runs, read)

    def close(self) -> None:
        with self._lock:
            if self._api is not None:
                self._api.close()
                self._api = None
            if self._cache is not None:
                self._cache.readers.close()
                self._cache = None
