"""What the next commit writes, accumulated between commits (:class:`NextCommit`).

The agent's loop drains many messages, folds them into this, then hands it to
its sink (agent/sinks/base.py: one store transaction, or one spool record) and
only then acknowledges the batches it contains. History is kept per (run, key,
late) as a list of arrays and concatenated at commit, so a commit writes one
chunk per run and key however many batches fed it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from agent.alerts.alert import Alert
from agent.store.base import GroupRecord, RunRecord, Txn
from agent.store.system_chunks import join_columns

LINK_PREFIX = "agent:"  # writer-table name of a node agent's record sequence at a root


# What a node agent sends upstream besides partials and marks: one op per HELLO, client batch and crash, in
# the order it saw them. The spool record (agent/record.py) holds each as ``[kind, run index, *fields]``.
class HelloOp(NamedTuple):
    """A HELLO that registered a writer (``resumed``: its run was resumed)."""

    run_id: int
    body: dict
    resumed: bool
    kind = "h"


class BatchOp(NamedTuple):
    """A client batch, raw as the client sent it (the root applies it whole)."""

    run_id: int
    frame: bytes
    kind = "b"


class CrashOp(NamedTuple):
    """A run whose process was seen gone, and why."""

    run_id: int
    why: str
    kind = "c"


class SystemOp(NamedTuple):
    """System samples of a node agent's rank (``host`` False) or of its machine while it ran the run's group
    (``host`` True; the run names the group): float64 columns with ``_timestamp`` (agent/system/)."""

    run_id: int
    host: bool
    columns: dict
    kind = "s"


class NextCommit:
    """History chunks, group rows, records and acknowledgements of the next commit."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.history: dict[tuple[int, str, bool, bool], tuple[list[np.ndarray], list[Any]]] = {}
        self.group_rows: list[tuple[int, str, dict[str, np.ndarray], bool]] = []
        self.runs: dict[int, RunRecord] = {}
        self.groups: dict[int, GroupRecord] = {}
        self.writers: dict[str, tuple[int, int]] = {}
        self.recompute: dict[tuple[int, str], list[np.ndarray]] = {}
        self.drops: dict[str, int] = {}
        self.acks: dict[str, tuple[bytes, int]] = {}  # writer -> (peer identity, seq)
        self.points = 0
        self.nbytes = 0  # wire bytes of the client batches folded in: the agent's budget of uncommitted work
        # group rows sealed for the first time from stored per-rank values (steps whose partials cannot
        # be trusted at a root: agent/rootgroups.py), like ``recompute`` but not revisions
        self.fresh: dict[tuple[int, str], list[np.ndarray]] = {}
        # at a root: node agent -> last record seq applied (stored in the same transaction)
        self.links: dict[str, int] = {}
        # at a node agent: what goes upstream in the next spool record (agent/node.py)
        self.ops: list[HelloOp | BatchOp | CrashOp | SystemOp] = []
        self.partials: list[tuple] = []  # (group id, key, ranks, Partial)
        self.op_bytes = 0
        self.alerts: list[Alert] = []  # raised by detectors since the last commit (agent/alerts/book.py)
        # system samples since the last commit (agent/system/sampler.py): (group id, run id or None for host
        # rows, node) -> column chunks, joined into one chunk per commit at write
        self.system: dict[tuple[int, int | None, str], list[dict[str, np.ndarray]]] = {}

    def __bool__(self) -> bool:
        return bool(
            self.history
            or self.group_rows
            or self.runs
            or self.groups
            or self.writers
            or self.drops
            or self.fresh
            or self.links
            or self.ops
            or self.partials
            or self.recompute
            or self.alerts
            or self.system
        )

    def __repr__(self) -> str:
        return (
            f"<NextCommit chunks={len(self.history)} points={self.points} bytes={self.nbytes} "
            f"group_rows={len(self.group_rows)} "
            f"runs={len(self.runs)} acks={len(self.acks)} alerts={len(self.alerts)} system={len(self.system)}>"
        )

    def add_history(self, run_id: int, key: str, steps: np.ndarray, values: Any, late: bool) -> None:
        slot = (run_id, key, late, type(values) is dict)  # coalesced spans are chunks of their own
        entry = self.history.get(slot)
        if entry is None:
            entry = self.history[slot] = ([], [])
        entry[0].append(steps)
        entry[1].append(values)
        self.points += len(steps)

    def write(self, txn: Txn) -> None:
        """Everything but recomputation of late group rows (agent/groups.py ``recompute_rows``, same txn)."""
        # on-time chunks before late ones: a late update of step s always follows the row s it changes, and
        # later chunks win per step. Slots keep the order they were first filled in, so without the sort a
        # commit that drained a batch holding only a late update (its row s committed before) and then one
        # holding the next on-time rows and their late updates wrote the late chunk first: the on-time
        # value won over the late one at that step (seen as a lost overwrite when batch boundaries fell
        # inside a block of calls). An on-time row never shares a step with an earlier late update.
        for (run_id, key, late, _), (steps, values) in sorted(self.history.items(), key=_late_last):
            s = steps[0] if len(steps) == 1 else np.concatenate(steps)
            if all(isinstance(v, dict) for v in values):  # coalesced spans: field by field
                v = values[0] if len(values) == 1 else {f: np.concatenate([p[f] for p in values]) for f in values[0]}
            elif all(isinstance(v, np.ndarray) for v in values):
                v: Any = values[0] if len(values) == 1 else np.concatenate(values)
            else:
                v = [x for part in values for x in (part.tolist() if isinstance(part, np.ndarray) else part)]
            txn.add_history(run_id, key, s, v, late)
        for group_id, key, rows, revision in self.group_rows:
            txn.add_group_rows(group_id, key, rows, revision)
        self.write_registry(txn)
        for agent, seq in self.links.items():  # a root: node agent records applied, with their contents
            txn.put_writer(LINK_PREFIX + agent, 0, seq)
        for cause, n in self.drops.items():
            txn.count_drop(cause, n)
        for alert in self.alerts:
            txn.add_alert(alert)
        for (group_id, run_id, node), chunks in self.system.items():
            txn.add_system(group_id, run_id, node, join_columns(chunks))

    def add_system(self, group_id: int, run_id: int | None, node: str, columns: dict[str, np.ndarray]) -> None:
        """System samples of one rank (``run_id``) or host (None) for the next commit (agent/system/)."""
        self.system.setdefault((group_id, run_id, node), []).append(columns)

    def write_registry(self, txn: Txn) -> None:
        """Runs, groups and writers' seqs: all a node agent's catalog keeps (agent/sinks/spool.py)."""
        for run in self.runs.values():
            txn.put_run(run)
        for group in self.groups.values():
            txn.put_group(group)
        for writer, (run_id, seq) in self.writers.items():
            txn.put_writer(writer, run_id, seq)


def _late_last(item: tuple) -> bool:
    return item[0][2]
