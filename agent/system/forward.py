"""A node agent's system samples at the root: system ops (agent/record.py) into the root's next commit.

A node agent's spool sink (agent/sinks/spool.py) turns the samples of a commit into one op per rank and
one per group for the host rows: ``["s", run, host, columns]``; a host op names a run of the group (any of
the node's ranks of it) because a record's ops index runs. The root resolves the run as it does for any
op (agent/root.py) and stores the columns under the run, or under its group and the record's node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from agent.ingest import Ingest
    from agent.nextcommit import NextCommit
    from agent.runs import RunState


def system_ops(nc: NextCommit, ingest: Ingest) -> list[tuple[int, bool, dict[str, np.ndarray]]]:
    """The next commit's samples as (run id, host?, columns), one per rank and per group's host rows."""
    from agent.store.system_chunks import join_columns

    out = []
    for (gid, run_id, _node), chunks in nc.system.items():
        if run_id is None:
            group = ingest.groups.get(gid)
            run_id = next(iter(group.ranks.values())).record.id if group is not None and group.ranks else None
            if run_id is None:
                continue  # a group the node no longer holds: nothing names it upstream
            out.append((run_id, True, join_columns(chunks)))
        elif run_id in ingest.runs:  # (a registry cleared since the sample, a lost catalog: nothing to name)
            out.append((run_id, False, join_columns(chunks)))
    return out


def apply_system_op(ingest: Ingest, run: RunState, node: str, host: bool, columns: dict[str, np.ndarray]) -> None:
    """A system op of node ``node`` about ``run`` (the root's view of it) into the next commit."""
    gid = run.group.record.id
    ingest.counters.add("system_ops")  # ``rankwise status`` of a root: samples its node agents sent
    ingest.next_commit.add_system(gid, None if host else run.record.id, node if host else run.record.node, columns)
