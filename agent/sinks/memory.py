"""The in-memory sink for tests: the store sink over a :class:`agent.store.memory.MemoryStore`, keeping every
commit in plain Python structures a test reads without a store or a reader.

    store = MemoryStore()
    sink = MemorySink()
    ingest = Ingest(store, cfg, node="n1", pids=PidWatch(started=fake), sink=sink, clock=clock)
    ...
    sink.rows[(run_id, "loss")]          # [(steps, values, late), ...] in commit order
    sink.group_rows[(group_id, "loss")]  # [(rows, revision), ...] as sealed at tick time
    sink.acks                            # [(writer, seq), ...] acknowledged by the commits
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.groups import GroupState
from agent.sinks.store import StoreSink

if TYPE_CHECKING:
    from agent.nextcommit import NextCommit


class MemorySink(StoreSink):
    def __init__(self, resets_on_loss: bool = True, group_class: type[GroupState] = GroupState):
        super().__init__(resets_on_loss, group_class)
        self.commits = 0
        self.rows: dict[tuple[int, str], list[tuple[Any, Any, bool]]] = {}
        self.group_rows: dict[tuple[int, str], list[tuple[dict, bool]]] = {}
        self.acks: list[tuple[str, int]] = []
        self.drops: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<MemorySink commits={self.commits} chunks={sum(map(len, self.rows.values()))} acks={len(self.acks)}>"

    def write(self, nc: NextCommit, now: float) -> bool:
        written = super().write(nc, now)
        # what the store sink wrote, kept as it was handed over (recomputed rows: read them from the store)
        self.commits += 1
        for (run_id, key, late, _), (steps, values) in nc.history.items():
            self.rows.setdefault((run_id, key), []).extend((s, v, late) for s, v in zip(steps, values))
        for group_id, key, rows, revision in nc.group_rows:
            self.group_rows.setdefault((group_id, key), []).append((rows, revision))
        self.acks.extend((writer, seq) for writer, (_, seq) in nc.acks.items())
        for cause, n in nc.drops.items():
            self.drops[cause] = self.drops.get(cause, 0) + n
        return written

    def wal_full(self) -> bool:
        return False

    def checkpoint(self) -> bool:
        return False
