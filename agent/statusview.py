"""What ``rankwise status`` shows of an agent: its counters, runs, budgets and store state, as one dict.

Every key is read by users and tests (rankwise/_cli.py, benchmarks/agent_throughput.py): keep them. The
sink and the parts add their own (a node agent's ``role``/``upstream``, a root's ``links``).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from agent.memory import resident

if TYPE_CHECKING:
    from agent.ingest import Ingest

MAX_RUNNING_SHOWN = 200


def status_view(ingest: Ingest) -> dict[str, Any]:
    states: dict[str, int] = {}
    for run in ingest.runs.values():
        states[run.record.state] = states.get(run.record.state, 0) + 1
    snap = ingest.counters.snapshot()
    snap.update(
        pid=os.getpid(),
        node=ingest.node,
        uptime_s=time.time() - ingest.started,
        store=ingest.cfg.store_label,
        runs=states,
        groups=len(ingest.groups),
        writers=len(ingest.writers),
        window_bytes=ingest.window_bytes(),
        pending_points=ingest.next_commit.points,
        pending_bytes_max=ingest.next_commit_bytes_max,
        **resident(),
        **ingest.health.status(ingest.uncommitted_bytes()),
        running=[
            {
                "project": run.group.record.project,
                "group": run.group.record.name,
                "name": run.record.name,
                "rank": run.record.rank,
                "step": run.record.step,
                "rows": run.record.rows,
                "pid": run.record.pid,
                "lag_s": max(0.0, time.time() - run.last_seen),
            }
            for run in ingest.runs.values()
            if run.running
        ][:MAX_RUNNING_SHOWN],
    )
    return snap
