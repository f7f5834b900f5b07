"""Group-row chunks written before nan_count/nan_rank existed (an existing store opened by a newer rankwise)
read back with nan_count 0 and nan_rank -1 beside newer chunks, through the store reader, ``rankwise.Api``
and the UI's incremental reads; a newer revision of an old step replaces it."""

from __future__ import annotations

import numpy as np

import agent.store.sqlite_txn as sqlite_txn
import rankwise
from agent.store import SQLiteStore
from agent.store.sqlite_reader import SQLiteReader
from grouping import finalize, reduce_points
from rankwise._ui.data import UIData

RUN = {"run_key": "k", "local_rank": 0, "node": "n", "pid": 1}
# GROUP_FIELDS as group-row chunks were written before NaN-aware rows
OLD_FIELDS = ("step", "count", "expected", "mean", "min", "max", "std", "min_rank", "max_rank")


def _rows(steps: list[int], values: list[list[float]]) -> dict[str, np.ndarray]:
    """finalize() of two ranks' values ``values[rank][i]`` at ``steps``."""
    s = np.array(steps * 2)
    r = np.repeat([0, 1], len(steps))
    return finalize(reduce_points(s, r, np.array(values[0] + values[1])), 2)


def test_old_chunks_read_as_no_non_finite_rank(tmp_path, monkeypatch):
    """Chunk 1 (old format, steps 0..4) and chunk 2 (new format, steps 3..6, rank 1 NaN at 5): steps 0..2
    come from the old chunk with nan_count 0 / nan_rank -1 and its values, 3..6 from the new chunk (later
    wins) with rank 1 counted at step 5; the Api and the UI's cached incremental read give the same."""
    store = SQLiteStore(tmp_path / "s.sqlite")
    g, _, _ = store.register("p", "g", 2, dict(RUN, name="rank-0", rank=0), 0.0)
    store.register("p", "g", 2, dict(RUN, name="rank-1", rank=1), 0.0)
    old = _rows([0, 1, 2, 3, 4], [[1.0, 2.0, 3.0, 4.0, 5.0], [3.0, 2.0, 1.0, 0.0, -1.0]])
    with monkeypatch.context() as m:
        m.setattr(sqlite_txn, "GROUP_FIELDS", OLD_FIELDS)  # the writer as it was
        with store.transaction() as txn:
            txn.add_group_rows(g.id, "loss", old, False)
    new = _rows([3, 4, 5, 6], [[4.5, 5.5, 6.5, 7.5], [0.5, 1.5, np.nan, 2.5]])
    with store.transaction() as txn:
        txn.add_group_rows(g.id, "loss", new, True)
    store.close()

    reader = SQLiteReader(tmp_path / "s.sqlite")
    got = reader.group_history(g.id, "loss")
    assert got["step"].tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert got["nan_count"].tolist() == [0, 0, 0, 0, 0, 1, 0]
    assert got["nan_rank"].tolist() == [-1, -1, -1, -1, -1, 1, -1]
    assert got["nan_count"].dtype == got["nan_rank"].dtype == np.int64
    assert got["mean"].tolist() == [2.0, 2.0, 2.0, 2.5, 3.5, 6.5, 5.0]
    assert got["min_rank"].tolist() == [0, 0, 1, 1, 1, 0, 1]
    assert got["count"].tolist() == [2] * 7
    reader.close()
    api = rankwise.Api(tmp_path / "s.sqlite")
    h = api.group("p", "g").history("loss")
    api.close()
    for f in got:
        assert np.array_equal(h[f], got[f], equal_nan=True), f
    data = UIData(tmp_path / "s.sqlite")
    try:
        cached = data.cache.group_rows(g.id, "loss")
        for f in got:
            assert np.array_equal(cached[f], got[f], equal_nan=True), f
    finally:
        data.close()


def test_finite_chunks_leave_the_nan_fields_out(tmp_path):
    """A chunk of rows without a non-finite value is written without nan_count/nan_rank (16 bytes a row less)
    and reads back as 0 / -1; a chunk with one keeps both fields, exactly."""
    import msgpack

    store = SQLiteStore(tmp_path / "s.sqlite")
    g, _, _ = store.register("p", "g", 2, dict(RUN, name="rank-0", rank=0), 0.0)
    store.register("p", "g", 2, dict(RUN, name="rank-1", rank=1), 0.0)
    with store.transaction() as txn:
        txn.add_group_rows(g.id, "fine", _rows([0, 1], [[1.0, 2.0], [3.0, 4.0]]), False)
        txn.add_group_rows(g.id, "sick", _rows([0, 1], [[1.0, np.inf], [3.0, 4.0]]), False)
    blobs = dict(store.con.execute("SELECT k.name, r.data FROM group_rows r JOIN keys k ON k.id = r.key_id").fetchall())
    store.close()
    assert set(msgpack.unpackb(blobs["fine"])) == set(OLD_FIELDS)
    assert {"nan_count", "nan_rank"} <= set(msgpack.unpackb(blobs["sick"]))
    reader = SQLiteReader(tmp_path / "s.sqlite")
    fine, sick = reader.group_history(g.id, "fine"), reader.group_history(g.id, "sick")
    reader.close()
    assert fine["nan_count"].tolist() == [0, 0] and fine["nan_rank"].tolist() == [-1, -1]
    assert fine["mean"].tolist() == [2.0, 3.0]
    assert sick["nan_count"].tolist() == [0, 1] and sick["nan_rank"].tolist() == [-1, 0]
    assert sick["mean"].tolist() == [2.0, 4.0]
