"""The store interface: what the agent writes and what ``rankwise.Api`` reads.

A store keeps groups, runs (with summary, config, state), per-run history as
columnar chunks (one chunk holds one key's values for a span of steps) and
group rows (per key and step: count, expected, mean, min, max, std, min_rank,
max_rank, nan_count, nan_rank; grouping/reducers.py) as chunks too. Later chunks win: a late update of a run's row, or a
new revision of a group row, is a later chunk covering the same steps.

Implementations: :mod:`agent.store.sqlite` (the embedded default) and
:mod:`agent.store.memory` (for tests). Everything one agent commit writes goes
through one :class:`Txn`, so a batch, its writer sequence number and the group
rows it sealed become durable together.
"""

from __future__ import annotations

import abc
import errno
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.alerts.alert import Alert
from agent.errors import StoreFull, StoreLost
from grouping import FINAL_FIELDS

GROUP_FIELDS = FINAL_FIELDS  # a group row's columns: what grouping's finalize() gives (grouping/reducers.py)
RUN_STATES = ("running", "finished", "failed", "crashed")
META_KEYS = ("_timestamp", "_runtime")  # stored like keys; a row's time is its first commit's
# keys rankwise writes on rows: the meta keys and, on rows that stand for a coalesced span, the span's
# first step and how many logged rows it covers (agent/ratelimit.py)
ROW_KEYS = META_KEYS + ("_first_step", "_rows")


DISK_FULL = "disk full"
LOST = "store lost"


def store_problem(exc: BaseException) -> tuple[str, str]:
    """What a failed store operation says about the store: (kind, message), kind being :data:`DISK_FULL`,
    :data:`LOST` (deleted, replaced, corrupt, not a database) or ``store unavailable`` (anything else: locked,
    read-only, I/O error). Read from the StoreError classes a store raises (the SQLite store maps sqlite3's
    exceptions to them: agent/store/sqlite_errors.py) and from a full disk's OSError anywhere in the chain. The
    message is the own words of the error that decided (sqlite3's or the OS's, not the store's wrapper)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (StoreFull, StoreLost)):
            return (DISK_FULL if isinstance(seen, StoreFull) else LOST), str(seen.__cause__ or seen)
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return DISK_FULL, str(seen)
        seen = seen.__cause__ or seen.__context__
    return "store unavailable", str(exc)


@dataclass(slots=True)
class GroupRecord:
    id: int
    project: str
    name: str
    world_size: int
    created: float
    updated: float
    sealed_through: int = -1
    late_rows: int = 0


@dataclass(slots=True)
class RunRecord:
    id: int
    group_id: int
    name: str
    run_key: str
    rank: int
    local_rank: int
    node: str
    pid: int
    state: str
    created: float
    updated: float
    exit_code: int | None = None
    finished: float | None = None
    step: int = 0  # the step the next commit gets (max committed step + 1)
    runtime: float = 0.0
    rows: int = 0
    late: int = 0
    incarnations: int = 1
    summary: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    open_row: list | None = None  # [step, t, {key: value}]: the uncommitted row (commit=False), committed on crash
    meta: dict = field(default_factory=dict)


def new_run(run_id: int, group_id: int, run: dict, now: float) -> RunRecord:
    """The record of a run registered at ``now`` from a HELLO's run fields (``Store.register``)."""
    config, meta = dict(run.get("config") or {}), dict(run.get("meta") or {})
    fields = (run["name"], run["run_key"], run["rank"], run["local_rank"], run["node"], run["pid"])
    return RunRecord(run_id, group_id, *fields, "running", now, now, config=config, meta=meta)


class Txn(abc.ABC):
    """One atomic write. Reads through a Txn see its own uncommitted writes."""

    @abc.abstractmethod
    def add_history(self, run_id: int, key: str, steps: np.ndarray, values: np.ndarray | list, late: bool) -> None:
        """One key's values at ``steps`` (int64) for a run: a numeric ndarray or a list of msgpack values."""

    @abc.abstractmethod
    def add_group_rows(self, group_id: int, key: str, rows: dict[str, np.ndarray], revision: bool) -> None:
        """Group rows of one key (``GROUP_FIELDS`` arrays); ``revision`` marks rows recomputed after sealing."""

    @abc.abstractmethod
    def put_run(self, run: RunRecord) -> None: ...

    @abc.abstractmethod
    def put_group(self, group: GroupRecord) -> None: ...

    @abc.abstractmethod
    def put_writer(self, writer: str, run_id: int, seq: int) -> None: ...

    @abc.abstractmethod
    def count_drop(self, cause: str, n: int) -> None: ...

    @abc.abstractmethod
    def add_alert(self, alert: Alert) -> None:
        """Store ``alert`` (agent/alerts/alert.py) unless one with its ``identity`` is stored already."""

    @abc.abstractmethod
    def add_system(self, group_id: int, run_id: int | None, node: str, columns: dict[str, np.ndarray]) -> None:
        """System samples (agent/system/, docs/system.md) of one rank (``run_id``) or of ``node``'s host
        (``run_id`` None) while it ran ranks of the group: float64 columns of equal length with ``_timestamp``
        (agent/store/system_chunks.py). One chunk per commit, run and node."""

    @abc.abstractmethod
    def rank_values(self, group_id: int, key: str, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(step, rank, value) of every run of the group at ``steps``, latest value per (run, step)."""


class Store(abc.ABC):
    """Write side, owned by one agent process."""

    # An engine that wants few large inserts (ClickHouse: every INSERT is a part to merge) sets these: the agent
    # then writes the next commit once it holds ``batch_points`` points, its oldest content waited
    # ``batch_wait_s``, a run ended (its finish() waits for the ACK), or the uncommitted-bytes budget is reached;
    # not on every loop turn (agent/commits.py ``Commits.due``). 0: every turn (SQLite, memory).
    batch_points: int = 0
    batch_wait_s: float = 0.0

    @abc.abstractmethod
    def register(
        self, project: str, group: str, world_size: int, run: dict[str, Any], now: float
    ) -> tuple[GroupRecord, RunRecord, bool]:
        """Find or create the group and the run (by group and name); True when the run is new."""

    @abc.abstractmethod
    def find_run(self, project: str, group: str, name: str) -> RunRecord | None: ...

    @abc.abstractmethod
    def unsealed_points(self, group_id: int, after_step: int) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
        """Numeric per-rank points of a group above ``after_step`` as (key, rank, steps, values): what an
        agent that restarted must put back into the group's open window."""

    @abc.abstractmethod
    def writer_seq(self, writer: str) -> int:
        """The last stored sequence number of a writer (0 if unknown)."""

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[Txn]: ...

    @abc.abstractmethod
    def open_runs(self) -> list[tuple[GroupRecord, RunRecord]]:
        """Runs left in state running (by an agent that stopped or crashed)."""

    @abc.abstractmethod
    def reader(self) -> Reader: ...

    def sync(self) -> None:
        """Make every committed transaction survive a power failure (a root calls it before it
        acknowledges records to node agents, which then delete them). No-op where there is no disk."""

    def reset(self, why: str) -> str | None:
        """The store was lost or damaged (:class:`agent.errors.StoreLost`): move what is left aside and start
        an empty store in its place; return where the old one went (None: nothing was left to move)."""
        raise NotImplementedError(f"{type(self).__name__} cannot start over after: {why}")

    def wal_full(self) -> bool:
        """Whether the agent's loop must checkpoint now, commits waiting or not (agent/sinks/store.py): a
        write-ahead log past its bound (agent/store/sqlite.py). False where there is none (ClickHouse)."""
        return False

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the store, when the loop is idle or ``wal_full``. No-op without one."""

    def close(self) -> None:
        pass


class Reader(abc.ABC):
    """Read side, used by ``rankwise.Api``, the CLI and the web UI."""

    @abc.abstractmethod
    def projects(self) -> list[str]: ...

    @abc.abstractmethod
    def groups(self, project: str | None = None) -> list[GroupRecord]:
        """Groups, newest first."""

    @abc.abstractmethod
    def group(self, project: str, name: str) -> GroupRecord | None: ...

    @abc.abstractmethod
    def runs(self, group_id: int) -> list[RunRecord]:
        """Runs of a group ordered by rank."""

    @abc.abstractmethod
    def run_keys(self, run_id: int) -> list[str]: ...

    @abc.abstractmethod
    def run_history(self, run_id: int, keys: list[str] | None = None) -> dict[str, tuple[np.ndarray, Any]]:
        """Per key (and ``_timestamp``/``_runtime``): (steps, values) with later chunks winning per step."""

    def run_spans(self, run_id: int, keys: list[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
        """Per key, a run's coalesced spans: ``step`` (the last step of each span), ``first_step``,
        ``count``, ``last``, ``mean``, ``min``, ``max`` (agent/ratelimit.py). Empty when nothing was
        coalesced."""
        return {}

    @abc.abstractmethod
    def group_keys(self, group_id: int) -> list[str]: ...

    @abc.abstractmethod
    def group_history(self, group_id: int, key: str) -> dict[str, np.ndarray]:
        """``GROUP_FIELDS`` arrays over steps, the latest revision of each step."""

    @abc.abstractmethod
    def drops(self) -> dict[str, int]: ...

    @abc.abstractmethod
    def alerts(self, group_id: int) -> list[dict[str, Any]]:
        """The group's alerts in the order they were raised, as ``Alert.to_dict`` gives them."""

    @abc.abstractmethod
    def alert_identities(self, group_id: int) -> set[tuple[str, int | None, str | None, str]]:
        """(kind, rank, key, token) of the group's stored alerts: ``Alert.identity`` without the group, what the
        store de-duplicates by (an agent restarted over the store does not raise them again: agent/alerts/book.py)."""

    @abc.abstractmethod
    def run_system(self, run_id: int) -> dict[str, np.ndarray]:
        """The run's system samples: float64 columns (``_timestamp``, ``proc.*``, ``gpu.*``) ordered by time,
        NaN where a sample had no value of a key; ``{}`` when there is none."""

    @abc.abstractmethod
    def group_system(self, group_id: int) -> dict[str, dict[str, np.ndarray]]:
        """Host samples (``host.*``, ``gpu.<i>.*``) of the nodes that ran the group's ranks, sampled while they
        did: node → columns as :meth:`run_system` gives them."""

    # Incremental reads for views that follow a running group (the web UI): chunk ids only grow, so a
    # caller keeps what it decoded and asks for the chunks after the last id it saw.

    @abc.abstractmethod
    def group_key_stats(self, group_id: int) -> dict[str, tuple[int, int, int]]:
        """Per key with group rows: (rows, first step, last step). Rows counts first-time group rows, not
        revisions, so it is the number of distinct steps as long as no step was sealed twice."""

    @abc.abstractmethod
    def group_history_since(self, group_id: int, key: str, after: int = 0) -> tuple[int, dict[str, np.ndarray]]:
        """Group rows of ``key`` from chunks with id > ``after`` (``GROUP_FIELDS`` arrays, the latest revision
        of each step among them) and the id of the last chunk read (``after`` when there is none)."""

    @abc.abstractmethod
    def group_rank_history(
        self, group_id: int, key: str, after: int = 0
    ) -> tuple[int, dict[int, tuple[np.ndarray, np.ndarray]]]:
        """Numeric values of ``key`` of every run of the group in one read: run id → (steps, float64 values)
        from chunks with id > ``after``, later chunks winning per step (the earliest for ``META_KEYS``, as
        :meth:`run_history` does), and the id of the last chunk read. Non-numeric chunks are skipped."""

    # Values of one key that are not plain numbers (media references, histograms, tables, charts), read by
    # step for rich-media views: ``rankwise.Api`` and the web UI ask for the steps first (no values decoded),
    # then for the values at a few steps (only the chunks holding them decoded), so a long run costs what is
    # shown. Generic versions over run_history here; the SQLite reader reads the columns it needs instead.

    def group_value_steps(self, group_id: int, key: str) -> dict[int, np.ndarray]:
        """Run id → the sorted distinct steps at which the run has a value of ``key`` (of any type)."""
        out: dict[int, np.ndarray] = {}
        for r in self.runs(group_id):
            sv = self.run_history(r.id, [key]).get(key)
            if sv is not None and len(sv[0]):
                out[r.id] = np.unique(sv[0])
        return out

    def group_values(
        self, group_id: int, key: str, steps: np.ndarray | None = None, start: int | None = None, end: int | None = None
    ) -> dict[int, tuple[np.ndarray, list]]:
        """Run id → (steps, values as a list) of ``key``, later chunks winning per step, limited to the
        steps in ``steps`` (when given) and to ``start`` ≤ step ≤ ``end``."""
        out: dict[int, tuple[np.ndarray, list]] = {}
        for r in self.runs(group_id):
            sv = self.run_values(r.id, key, steps, start, end)
            if len(sv[0]):
                out[r.id] = sv
        return out

    def run_values(
        self, run_id: int, key: str, steps: np.ndarray | None = None, start: int | None = None, end: int | None = None
    ) -> tuple[np.ndarray, list]:
        """(steps, values as a list) of one run's ``key``, with the limits of :meth:`group_values`."""
        sv = self.run_history(run_id, [key]).get(key)
        if sv is None:
            return np.empty(0, np.int64), []
        return select_steps(sv[0], sv[1], steps, start, end)

    def group_media_keys(self, group_id: int) -> dict[str, dict[str, Any]]:
        """Keys of the group with non-numeric values: ``{key: {"runs", "first", "last", "sample"}}``: how many
        runs have such values, their first and last step, and ``sample``, the value at the last step (the
        latest write of it; a later run's on a tie) — what names the key's type."""
        out: dict[str, dict[str, Any]] = {}
        for r in self.runs(group_id):
            for key, (steps, values) in self.run_history(r.id).items():
                if key in META_KEYS or isinstance(values, np.ndarray) or not len(steps):
                    continue
                e = out.setdefault(key, {"runs": 0, "first": int(steps[0]), "last": int(steps[-1]), "sample": None})
                e["runs"] += 1
                e["first"] = min(e["first"], int(steps[0]))
                if int(steps[-1]) >= e["last"]:
                    e["last"], e["sample"] = int(steps[-1]), values[-1]
        return out

    def close(self) -> None:
        pass


def select_steps(
    steps: np.ndarray, values: Any, want: np.ndarray | None, start: int | None, end: int | None
) -> tuple[np.ndarray, list]:
    """The (steps, values) of a series within [start, end] and among ``want``; values as a list."""
    keep = np.ones(len(steps), bool)
    if start is not None:
        keep &= steps >= start
    if end is not None:
        keep &= steps <= end
    if want is not None:
        keep &= np.isin(steps, np.asarray(want, np.int64))
    vals = values.tolist() if isinstance(values, np.ndarray) else list(values)
    if keep.all():
        return steps, vals
    idx = np.flatnonzero(keep)
    return steps[idx], [vals[i] for i in idx]


def merge_since(
    old: tuple[np.ndarray, np.ndarray] | None, new: tuple[np.ndarray, np.ndarray], first: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) already read followed by those of newer chunks: the newer win per step (the older with
    ``first``), as if all chunks had been read at once."""
    if old is None or len(old[0]) == 0:
        return new
    if len(new[0]) == 0:
        return old
    return last_wins([old[0], new[0]], [old[1], new[1]], first=first)


def last_wins(steps_list: list[np.ndarray], values_list: list[Any], first: bool = False) -> tuple[np.ndarray, Any]:
    """Concatenate chunks (in write order) keeping, for each step, the value of the latest chunk
    (of the earliest with ``first=True``: row times keep the original commit, not a late update's)."""
    if not steps_list:
        return np.empty(0, np.int64), np.empty(0)
    steps = np.concatenate(steps_list)
    numeric = all(isinstance(v, np.ndarray) for v in values_list)
    if numeric:
        values: Any = np.concatenate(values_list) if len(values_list) > 1 else values_list[0]
    else:
        values = [x for v in values_list for x in (v.tolist() if isinstance(v, np.ndarray) else v)]
    if len(steps) > 1 and not (len(steps_list) == 1 and np.all(np.diff(steps) > 0)):
        # stable sort by step; the last occurrence of each step is the latest write
        order = np.argsort(steps, kind="stable")
        s = steps[order]
        keep = np.ones(len(s), bool)
        if first:
            keep[1:] = s[1:] != s[:-1]
        else:
            keep[:-1] = s[1:] != s[:-1]
        idx = order[keep]
        steps = steps[idx]
        values = values[idx] if numeric else [values[i] for i in idx]
    return steps, values
