"""The system stream in both stores (SQLite and memory, same semantics): chunks joined key by key with NaN
where a sample had no value, ordered by time; host rows per node and group; one chunk per commit; a store
written before the system table existed reads as empty."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from agent.nextcommit import NextCommit
from agent.store.memory import MemoryStore
from agent.store.sqlite import SQLiteStore

RUN = {"name": "rank-0", "run_key": "k0", "rank": 0, "local_rank": 0, "node": "n1", "pid": 1}


def _stores(tmp_path):
    return {"memory": MemoryStore(), "sqlite": SQLiteStore(tmp_path / "store.sqlite")}


def _cols(t, **keys):
    return {"_timestamp": np.array(t, float), **{k.replace("_", ".", 1): np.array(v, float) for k, v in keys.items()}}


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_rank_and_host_chunks_read_back_joined(tmp_path, kind):
    """Two commits of rank samples with different keys join into one set of columns ordered by time (NaN
    where a sample lacked a key); host rows come back per node for their group only."""
    store = _stores(tmp_path)[kind]
    g, r, _ = store.register("p", "g", 2, RUN, 1.0)
    g2, r2, _ = store.register("p", "other", 1, dict(RUN, run_key="k9"), 1.0)
    with store.transaction() as txn:
        txn.add_system(g.id, r.id, "n1", _cols([20.0, 30.0], proc_rss_bytes=[2.0, 3.0]))
        txn.add_system(g.id, None, "n1", _cols([20.0], host_load1=[0.5]))
        txn.add_system(g.id, None, "n2", _cols([21.0], host_load1=[1.5]))
        txn.add_system(g2.id, None, "n1", _cols([20.0], host_load1=[9.0]))
    with store.transaction() as txn:
        txn.add_system(g.id, r.id, "n1", _cols([10.0], proc_rss_bytes=[1.0], proc_cpu_percent=[50.0]))
    reader = store.reader()
    got = reader.run_system(r.id)
    assert got["_timestamp"].tolist() == [10.0, 20.0, 30.0]
    assert got["proc.rss_bytes"].tolist() == [1.0, 2.0, 3.0]
    cpu = got["proc.cpu_percent"]
    assert cpu[0] == 50.0 and np.isnan(cpu[1:]).all()
    assert reader.run_system(r2.id) == {}
    hosts = reader.group_system(g.id)
    assert list(hosts) == ["n1", "n2"]
    assert hosts["n1"]["host.load1"].tolist() == [0.5] and hosts["n2"]["host.load1"].tolist() == [1.5]
    assert reader.group_system(g2.id)["n1"]["host.load1"].tolist() == [9.0]
    with pytest.raises(ValueError, match="_timestamp"), store.transaction() as txn:
        txn.add_system(g.id, r.id, "n1", {"proc.rss_bytes": np.array([1.0])})
    with pytest.raises(ValueError, match="proc.x"), store.transaction() as txn:
        txn.add_system(g.id, r.id, "n1", {"_timestamp": np.array([1.0]), "proc.x": np.array([1.0, 2.0])})


def test_samples_of_one_commit_are_one_chunk(tmp_path):
    """Three ticks' samples of a rank and its host in the next commit: the commit is due on samples alone,
    and writes one chunk per rank and one per node."""
    store = SQLiteStore(tmp_path / "store.sqlite")
    g, r, _ = store.register("p", "g", 1, RUN, 1.0)
    nc = NextCommit()
    assert not nc
    for t in (1.0, 2.0, 3.0):
        nc.add_system(g.id, r.id, "n1", _cols([t], proc_rss_bytes=[t * 10]))
        nc.add_system(g.id, None, "n1", _cols([t], host_load1=[t]))
    assert nc
    with store.transaction() as txn:
        nc.write(txn)
    con = sqlite3.connect(tmp_path / "store.sqlite")
    assert con.execute("SELECT run_id, n, t_min, t_max FROM system ORDER BY id").fetchall() == [
        (r.id, 3, 1.0, 3.0),
        (None, 3, 1.0, 3.0),
    ]
    assert store.reader().run_system(r.id)["proc.rss_bytes"].tolist() == [10.0, 20.0, 30.0]


def test_store_without_the_system_table_reads_empty(tmp_path):
    """A store an older agent wrote (no system table) is read without error: no samples."""
    store = SQLiteStore(tmp_path / "store.sqlite")
    g, r, _ = store.register("p", "g", 1, RUN, 1.0)
    store.close()
    con = sqlite3.connect(tmp_path / "store.sqlite")
    con.execute("DROP TABLE system")
    con.commit()
    con.close()
    from agent.store.sqlite_reader import SQLiteReader

    reader = SQLiteReader(tmp_path / "store.sqlite")
    assert reader.run_system(r.id) == {} and reader.group_system(g.id) == {}


def test_once_per_time_keeps_the_first_row_of_each_timestamp():
    """``once_per_time`` over joined columns: a sample stored twice (equal ``_timestamp``, as a replayed ClickHouse
    commit leaves it) reads once, the first written; columns with distinct times, or none, are returned as they are."""
    from agent.store.system_chunks import join_columns, once_per_time

    twice = join_columns([_cols([1.0, 2.0], proc_rss=[10, 20]), _cols([2.0, 3.0], proc_rss=[21, 30])])
    assert twice["_timestamp"].tolist() == [1.0, 2.0, 2.0, 3.0]
    got = once_per_time(twice)
    assert got["_timestamp"].tolist() == [1.0, 2.0, 3.0] and got["proc.rss"].tolist() == [10.0, 20.0, 30.0]
    unique = _cols([1.0, 2.0], proc_rss=[1, 2])
    assert once_per_time(unique) is unique and once_per_time({}) == {}
