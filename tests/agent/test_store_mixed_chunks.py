"""Group rows recomputed from the store (late data, a restarted agent reopening its windows) count the
numbers of a key whose stored chunk also held a string or None (issue 9, finding 7), exactly as rows
built from live batches do; a chunk without numbers counts nothing. Both stores alike."""

from __future__ import annotations

import numpy as np
import pytest

from agent.store import MemoryStore, SQLiteStore

RUN = {"run_key": "k", "local_rank": 0, "node": "n", "pid": 1}


@pytest.fixture(params=["sqlite", "memory"])
def store(request, tmp_path):
    s = SQLiteStore(tmp_path / "s.sqlite") if request.param == "sqlite" else MemoryStore()
    yield s
    s.close()


def _group(store) -> tuple[int, dict[int, int]]:
    ids = {}
    for rank in (0, 1):
        g, r, _ = store.register("p", "g", 2, dict(RUN, name=f"rank-{rank}", rank=rank), 0.0)
        ids[rank] = r.id
    return g.id, ids


def test_rank_values_and_unsealed_points_count_the_numbers_of_mixed_chunks(store):
    """Rank 0 stored [1.5, "nan?", 3, True] at steps 0..3 (one list chunk), rank 1 a numeric chunk, and a
    key with only strings: rank_values gives rank 0's numbers at steps 0, 2, 3 (True as 1.0) beside rank
    1's, unsealed_points reopens exactly those points, and the string-only key gives nothing."""
    gid, ids = _group(store)
    with store.transaction() as txn:
        txn.add_history(ids[0], "m", np.arange(4, dtype=np.int64), [1.5, "nan?", 3, True], False)
        txn.add_history(ids[1], "m", np.arange(4, dtype=np.int64), np.array([10.0, 20.0, 30.0, 40.0]), False)
        txn.add_history(ids[0], "s", np.arange(2, dtype=np.int64), ["a", None], False)
    with store.transaction() as txn:
        steps, ranks, values = txn.rank_values(gid, "m", np.arange(4, dtype=np.int64))
        order = np.lexsort((ranks, steps))
        assert list(zip(steps[order].tolist(), ranks[order].tolist(), values[order].tolist())) == [
            (0, 0, 1.5),
            (0, 1, 10.0),
            (1, 1, 20.0),
            (2, 0, 3.0),
            (2, 1, 30.0),
            (3, 0, 1.0),
            (3, 1, 40.0),
        ]
        assert len(txn.rank_values(gid, "s", np.arange(2, dtype=np.int64))[0]) == 0
    reopened = {(key, rank): (s.tolist(), v.tolist()) for key, rank, s, v in store.unsealed_points(gid, -1)}
    assert reopened[("m", 0)] == ([0, 2, 3], [1.5, 3.0, 1.0])
    assert reopened[("m", 1)] == ([0, 1, 2, 3], [10.0, 20.0, 30.0, 40.0])
    assert not any(key == "s" for key, _ in reopened)
