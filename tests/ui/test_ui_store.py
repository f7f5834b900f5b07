"""The read methods the UI added to the store: incremental reads (chunks after an id) merged with what
was read before equal one full read, late revisions included, in SQLiteReader and MemoryStore alike."""

from __future__ import annotations

import numpy as np
import pytest

from agent.store import MemoryStore, SQLiteStore
from agent.store.base import GROUP_FIELDS
from rankwise._ui.data import ReaderPool, SeriesCache

RUN = {"run_key": "k", "local_rank": 0, "node": "n", "pid": 1}


def rows(steps: list[int], base: float) -> dict[str, np.ndarray]:
    s = np.array(steps, np.int64)
    out = {f: np.full(len(s), base) for f in GROUP_FIELDS}
    out["step"] = s
    for f in ("count", "expected", "min_rank", "max_rank"):
        out[f] = np.full(len(s), 2, np.int64)
    out["mean"] = base + s
    return out


def register(store) -> tuple[int, dict[int, int]]:
    ids = {}
    for rank in (0, 1):
        g, r, _ = store.register("p", "g", 2, dict(RUN, name=f"rank-{rank}", rank=rank), 0.0)
        ids[rank] = r.id
    return g.id, ids


def commit(store, gid: int, ids: dict[int, int], items: list) -> None:
    """One transaction of (rank, key, steps, values) history chunks and ("group", key, steps, base, revision)
    group-row chunks."""
    with store.transaction() as txn:
        for item in items:
            if item[0] == "group":
                _, key, steps, base, revision = item
                txn.add_group_rows(gid, key, rows(steps, base), revision)
            else:
                rank, key, steps, values = item
                txn.add_history(ids[rank], key, np.array(steps, np.int64), values, False)


COMMITS = [
    [
        (0, "loss", [0, 1, 2], np.array([1.0, 2.0, 3.0])),
        (1, "loss", [0, 1], np.array([5.0, 6.0])),
        (0, "_timestamp", [0, 1, 2], np.array([10.0, 11.0, 12.0])),
        (0, "text", [0], ["a"]),
        ("group", "loss", [0, 1], 100.0, False),
    ],
    [
        (1, "loss", [2, 3], np.array([7.0, 8.0])),
        (0, "loss", [1], np.array([20.0])),  # late update of step 1
        (0, "_timestamp", [1, 3], np.array([99.0, 13.0])),  # a late row keeps its first time
        ("group", "loss", [2, 3], 200.0, False),
        ("group", "loss", [1], 300.0, True),
    ],
    [(0, "loss", [5], np.array([9.0])), ("group", "acc", [0], 1.0, False)],
]


@pytest.fixture(params=["sqlite", "memory"])
def store(request, tmp_path):
    s = SQLiteStore(tmp_path / "s.sqlite") if request.param == "sqlite" else MemoryStore()
    yield s
    s.close()


def test_incremental_reads_equal_a_full_read(store):
    """After every commit, the UI's cache (which reads only the chunks after the last id it saw and merges
    them in) holds exactly what a full read gives: later chunks win per step, a revision of a group row
    wins, a late row keeps its first _timestamp."""
    gid, ids = register(store)
    reader = store.reader()
    cache = SeriesCache(ReaderPool(store.reader, size=1))
    for items in COMMITS:
        commit(store, gid, ids, items)
        got = cache.group_rows(gid, "loss")
        full = reader.group_history(gid, "loss")
        for f in GROUP_FIELDS:
            assert got[f].tolist() == full[f].tolist(), f
        for key in ("loss", "_timestamp"):
            per_run = cache.rank_rows(gid, key)
            for rid in ids.values():
                want = reader.run_history(rid, [key]).get(key)
                assert (per_run.get(rid) is None) == (want is None)
                if want is not None:
                    assert per_run[rid][0].tolist() == want[0].tolist()
                    assert per_run[rid][1].tolist() == np.asarray(want[1], float).tolist()
    assert cache.rank_rows(gid, "loss")[ids[0]][1].tolist() == [1.0, 20.0, 3.0, 9.0]
    assert cache.rank_rows(gid, "_timestamp")[ids[0]][1].tolist() == [10.0, 11.0, 12.0, 13.0]
    assert cache.group_rows(gid, "loss")["mean"].tolist() == [100.0, 301.0, 202.0, 203.0]


def test_chunks_after_the_last_id_are_only_the_new_ones(store):
    """group_history_since / group_rank_history return the id of the last chunk read, and nothing new
    (the same id) when asked again: what lets a live view poll cheaply."""
    gid, ids = register(store)
    commit(store, gid, ids, COMMITS[0])
    reader = store.reader()
    last_g, first_rows = reader.group_history_since(gid, "loss")
    last_r, first_runs = reader.group_rank_history(gid, "loss")
    assert first_rows["step"].tolist() == [0, 1] and sorted(first_runs) == sorted(ids.values())
    assert reader.group_history_since(gid, "loss", last_g)[0] == last_g
    assert len(reader.group_history_since(gid, "loss", last_g)[1]["step"]) == 0
    assert reader.group_rank_history(gid, "loss", last_r) == (last_r, {})
    commit(store, gid, ids, COMMITS[1])
    newer_g, rows_ = reader.group_history_since(gid, "loss", last_g)
    assert newer_g > last_g and rows_["step"].tolist() == [1, 2, 3] and rows_["mean"].tolist() == [301.0, 202.0, 203.0]
    newer_r, runs = reader.group_rank_history(gid, "loss", last_r)
    assert newer_r > last_r
    assert runs[ids[0]][0].tolist() == [1] and runs[ids[1]][0].tolist() == [2, 3]
    assert reader.group_rank_history(gid, "text")[1] == {}  # non-numeric chunks are skipped


def test_key_stats_count_first_rows_not_revisions(store):
    """group_key_stats: rows sealed once per step (a revision is not a new row), first and last step."""
    gid, ids = register(store)
    for items in COMMITS:
        commit(store, gid, ids, items)
    assert store.reader().group_key_stats(gid) == {"loss": (4, 0, 3), "acc": (1, 0, 0)}


def test_unknown_key_reads_nothing(store):
    """A key never written: no rows, and the id seen stays where it was."""
    gid, ids = register(store)
    for items in COMMITS:
        commit(store, gid, ids, items)
    last, rows_ = store.reader().group_history_since(gid, "nope", 7)
    assert last == 7 and all(len(v) == 0 for v in rows_.values())
    assert store.reader().group_rank_history(gid, "nope", 7) == (7, {})
