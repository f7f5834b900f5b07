"""What a writer did while delivering, counted: ``run.stats`` and the finish report read these.

One instance per writer (client/transport.py), shared by its parts: the link to the agent
(client/link.py), the backlog of batches (client/backlog.py), the agent lookup (client/respawn.py) and
the overload switch (client/overload.py). Written only by the writer's I/O thread (or under its lock).
Not the agent's counters (agent/status.py): those count what an agent received and stored.
"""

from __future__ import annotations


class DeliveryCounters:
    """What the writer did, for ``run.stats`` and the finish report. Written only by the I/O thread.

    ``rows_sent`` counts every row once, when its batch first goes out; ``resends`` (batches) and
    ``rows_resent`` count the replays after an agent restart or a lost connection;
    ``agent_restarts`` counts WELCOMEs from an agent instance other than the previous one's;
    ``overloads`` counts the times the op backlog passed ``max_queued_bytes`` (log() outran this thread),
    ``coalesced_rows``/``coalesced_spans`` the rows folded into spans then and the spans sent
    (client/coalesce.py), ``queued_peak_bytes`` the largest backlog seen (an estimate)."""

    __slots__ = (
        "batches_sent",
        "rows_sent",
        "resends",
        "rows_resent",
        "hellos",
        "agent_restarts",
        "spawns",
        "acked_seq",
        "refused",
        "dropped_rows",
        "spilled_batches",
        "rejected_batches",
        "io_errors",
        "overloads",
        "coalesced_rows",
        "coalesced_spans",
        "queued_peak_bytes",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def __repr__(self) -> str:
        nonzero = " ".join(f"{name}={getattr(self, name)}" for name in self.__slots__ if getattr(self, name))
        return f"<DeliveryCounters {nonzero or 'all zero'}>"

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}
