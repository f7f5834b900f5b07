"""The public reads of system samples over a SQLite store written by hand with known values:
``RunView.system()`` rows (and ``pandas=True``), ``Group.system()``, and ``Group.system_history`` against numpy
over the ranks per interval bucket (a rank without the key, a rank with two samples in one bucket)."""

from __future__ import annotations

import numpy as np
import pytest

import rankwise
from agent.store.sqlite import SQLiteStore
from rankwise.errors import InvalidArgumentError


def _run(rank: int) -> dict:
    return {"name": f"rank-{rank}", "run_key": f"k{rank}", "rank": rank, "local_rank": rank, "node": "n1", "pid": 1}


def _write(path) -> None:
    store = SQLiteStore(path)
    runs = [store.register("p", "g", 3, _run(rank), 1.0)[1] for rank in range(3)]
    gid = runs[0].group_id
    with store.transaction() as txn:
        # rank 0 and 1 sampled at the same ticks; rank 2 has no cpu key; rank 1 sampled twice in bucket 11
        t = np.array([10.0, 12.0, 14.0])
        txn.add_system(gid, runs[0].id, "n1", {"_timestamp": t, "proc.cpu": np.array([1.0, 2.0, 3.0])})
        txn.add_system(
            gid,
            runs[1].id,
            "n1",
            {"_timestamp": np.array([10.0, 12.0, 12.5, 14.0]), "proc.cpu": np.array([5.0, 6.0, 7.0, 8.0])},
        )
        txn.add_system(gid, runs[2].id, "n1", {"_timestamp": t, "proc.rss": np.array([9.0, 9.0, 9.0])})
        txn.add_system(gid, None, "n1", {"_timestamp": t, "host.load1": np.array([0.1, 0.2, 0.3])})
        txn.add_system(gid, None, "n2", {"_timestamp": t + 0.5, "host.load1": np.array([1.0, 2.0, 3.0])})
    store.close()


def test_views(tmp_path):
    """Rows by time without the keys a sample lacks; the node view; group rows per 2 s bucket equal numpy over
    the ranks that have the key (count 2 of 3 expected), the later of two samples of a rank in a bucket
    winning; the default interval is the median spacing (2 s); a non-positive interval is refused."""
    _write(tmp_path / "store.sqlite")
    g = rankwise.Api(str(tmp_path / "store.sqlite")).group("p", "g")
    r1 = g.run(rank=1)
    assert r1.system() == [
        {"_timestamp": 10.0, "proc.cpu": 5.0},
        {"_timestamp": 12.0, "proc.cpu": 6.0},
        {"_timestamp": 12.5, "proc.cpu": 7.0},
        {"_timestamp": 14.0, "proc.cpu": 8.0},
    ]
    df = g.run(rank=2).system(pandas=True)
    assert list(df.columns) == ["_timestamp", "proc.rss"] and df["proc.rss"].tolist() == [9.0] * 3
    nodes = g.system()
    assert list(nodes) == ["n1", "n2"] and nodes["n2"]["host.load1"].tolist() == [1.0, 2.0, 3.0]

    rows = g.system_history("proc.cpu")
    assert rows["step"].tolist() == [5, 6, 7] and rows["interval"].tolist() == [2.0] * 3
    assert rows["_timestamp"].tolist() == [10.0, 12.0, 14.0]
    per_bucket = np.array([[1.0, 5.0], [2.0, 7.0], [3.0, 8.0]])  # rank 1's 12.5 s sample wins bucket 6
    assert rows["count"].tolist() == [2, 2, 2] and rows["expected"].tolist() == [3, 3, 3]
    assert rows["mean"].tolist() == per_bucket.mean(axis=1).tolist()
    assert rows["std"].tolist() == per_bucket.std(axis=1).tolist()
    assert rows["min"].tolist() == [1.0, 2.0, 3.0] and rows["min_rank"].tolist() == [0, 0, 0]
    assert rows["max"].tolist() == [5.0, 7.0, 8.0] and rows["max_rank"].tolist() == [1, 1, 1]
    fine = g.system_history("proc.cpu", interval=0.5)  # every sample its own bucket
    assert fine["step"].tolist() == [20, 24, 25, 28] and fine["count"].tolist() == [2, 2, 1, 2]
    assert len(g.system_history("proc.none")["step"]) == 0
    with pytest.raises(InvalidArgumentError, match="interval"):
        g.system_history("proc.cpu", interval=0)
