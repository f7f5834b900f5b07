"""A forwarding node agent: the single agent's dispatch, de-duplication and group windows over the spool sink.

The same validation, de-duplication and group windows as a single agent, but its commits go to the
write-ahead spool and on to the root (agent/sinks/spool.py); its groups seal into partials over its
own ranks (agent/groups.py ``NodeGroupState``); HELLOs of runs it does not know wait for the root's
view of them (agent/hellos.py). Its store is a small catalog (``node.sqlite``: runs, groups,
writers, no history) that a restarted node agent knows its runs and writers' seqs by.
"""

from __future__ import annotations

from agent.config import AgentConfig
from agent.ingest import Ingest
from agent.plugged import plug
from agent.runs import PidWatch
from agent.sinks.spool import SpoolSink
from agent.spool import Spool
from agent.store.base import Store


def node_ingest(
    catalog: Store, cfg: AgentConfig, spool: Spool, node: str | None = None, pids: PidWatch | None = None
) -> Ingest:
    """A node agent's core; the daemon sets its ``upstream`` (agent/roles.py)."""
    ingest = Ingest(catalog, cfg, node=node, pids=pids, media=None, sink=SpoolSink(spool))
    plug(ingest, "node")
    return ingest
