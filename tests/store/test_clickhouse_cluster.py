"""The ClickHouse store on a 2-shard cluster (``?cluster=rw2``, tests/support/chserver.py): local tables on
both shards, Distributed tables over them sharded by run, and reads through them exact — a commit written
twice read once."""

from __future__ import annotations

import numpy as np

from agent.store.clickhouse import ClickHouseStore

RUN = {"run_key": "k", "local_rank": 0, "node": "n0", "pid": 1}
RANKS = 8


def test_a_group_spread_over_two_shards_reads_back_exactly(clickhouse_cluster, clickhouse_cluster_servers):
    """8 ranks × 50 steps: each shard holds some runs' history (all of a run's rows on one shard), every
    read through the Distributed tables gives each step once with its value, also after a commit is
    written a second time; run records and the writer's seq are read back from the shard holding them."""
    store = ClickHouseStore(clickhouse_cluster)
    try:
        ids = []
        for rank in range(RANKS):
            g, r, _ = store.register("p", "g", RANKS, dict(RUN, name=f"rank-{rank}", rank=rank), 1.0)
            ids.append(r.id)
        steps = np.arange(50)
        for attempt in range(2):  # the second: the same commit again (a replay)
            with store.transaction() as txn:
                for rank, rid in enumerate(ids):
                    txn.add_history(rid, "loss", steps, steps * 1.0 + 100 * rank, False)
                txn.put_writer("w", ids[0], 7 + attempt)
        db = store.url.database
        per_shard = [
            dict(s.execute(f"SELECT run_id, count() FROM {db}.history_local GROUP BY run_id"))
            for s in clickhouse_cluster_servers.servers
        ]
        assert all(per_shard), per_shard  # both shards hold runs
        assert sorted(r for shard in per_shard for r in shard) == sorted(ids)  # a run on one shard only
        assert all(n == 100 for shard in per_shard for n in shard.values())  # two writes of 50 rows
        reader = store.reader()
        _, runs = reader.group_rank_history(g.id, "loss")
        assert {r: (s.tolist(), v.tolist()) for r, (s, v) in runs.items()} == {
            rid: (list(range(50)), [s + 100.0 * rank for s in range(50)]) for rank, rid in enumerate(ids)
        }
        assert [(r.rank, r.id) for r in reader.runs(g.id)] == list(enumerate(ids))
        assert store.writer_seq("w") == 8
        reader.close()
    finally:
        store.close()
