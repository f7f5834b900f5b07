"""The ClickHouse store's history layout: one row per (run, key, commit chunk) in ``history_chunks`` (steps
left out when they are a range), later chunks winning per step on every read, and the ``history`` view
giving SQL one row per point, on the 18.16 server and on chdb (agent/store/clickhouse/points.py, schema.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.ratelimit import SPAN_FIELDS
from agent.store.clickhouse import ClickHouseStore
from support.chfixtures import require_package

RUN = {"run_key": "k", "local_rank": 0, "node": "n0", "pid": 1, "name": "rank-0", "rank": 0}


@pytest.fixture(params=["clickhouse", "chdb"])
def store(request, tmp_path):
    if request.param == "chdb":
        require_package("chdb")
        url = f"chdb://{tmp_path / 'c'}"
    else:
        url = request.getfixturevalue("clickhouse_url")
    s = ClickHouseStore(url)
    yield s
    s.close()


def test_the_history_view_gives_one_row_per_point(store):
    """Chunks of every encoding (floats, ints beyond 2**53 at scattered steps, bools, a list with a string
    and None, coalesced spans) read through the ``history`` view as one row per step with the number (a
    span's last value; NaN for every value of a list chunk: msgpack, which SQL cannot read)."""
    g, r, _ = store.register("p", "g", 1, RUN, 1.0)
    spans = {f: np.array([1.0, 2.0]) for f in SPAN_FIELDS}
    spans["last"] = np.array([7.5, 8.5])
    spans["first_step"], spans["count"] = np.array([30, 33], np.int64), np.array([3, 2], np.int64)
    with store.transaction() as txn:
        txn.add_history(r.id, "f", np.arange(5), np.arange(5) * 0.5, False)
        txn.add_history(r.id, "i", np.array([10, 12, 15]), np.array([1, -3, 2**60], np.int64), False)
        txn.add_history(r.id, "b", np.array([0, 1]), np.array([True, False]), False)
        txn.add_history(r.id, "m", np.array([20, 21, 22]), [1.5, "x", None], False)
        txn.add_history(r.id, "s", np.array([32, 34]), spans, False)
    key, step, value = store.conn.query(
        f"SELECT key, step, value FROM {store.schema.t('history')} WHERE run_id = {r.id} ORDER BY key, step", 3
    )
    got = [(k.decode(), int(s), float(v)) for k, s, v in zip(key, step, value, strict=True)]
    want = [("b", 0, 1.0), ("b", 1, 0.0)]
    want += [("f", s, s * 0.5) for s in range(5)]
    want += [("i", 10, 1.0), ("i", 12, -3.0), ("i", 15, float(2**60))]
    want += [("m", 20, math.nan), ("m", 21, math.nan), ("m", 22, math.nan), ("s", 32, 7.5), ("s", 34, 8.5)]
    assert [(k, s) for k, s, _ in got] == [(k, s) for k, s, _ in want]
    for (_, _, a), (_, _, b) in zip(got, want, strict=True):
        assert a == b or (math.isnan(a) and math.isnan(b))
    h = store.reader().run_history(r.id)
    assert h["i"][1].tolist() == [1, -3, 2**60] and h["i"][1].dtype == np.int64
    assert h["m"][1] == [1.5, "x", None] and h["b"][1].tolist() == [True, False]


def test_a_chunk_is_one_row_and_later_chunks_win_per_step(store):
    """Two commits of 1000 steps, the second overlapping the first by half with other values (a replay):
    two rows, neither holding steps bytes (ranges); every read gives each step once with the later value,
    META_KEYS the earlier; the incremental group read after the first chunk's version gives only the second."""
    g, r, _ = store.register("p", "g", 1, RUN, 1.0)
    with store.transaction() as txn:
        txn.add_history(r.id, "loss", np.arange(1000), np.arange(1000) * 1.0, False)
        txn.add_history(r.id, "_timestamp", np.arange(1000), np.full(1000, 1.0), False)
    with store.transaction() as txn:
        txn.add_history(r.id, "loss", np.arange(500, 1500), np.arange(500, 1500) * -1.0, False)
        txn.add_history(r.id, "_timestamp", np.arange(500, 1500), np.full(1000, 2.0), False)
    n, with_steps, first_ver = store.conn.query(
        f"SELECT count(), sum(steps != ''), min(ver) FROM {store.schema.t('history_chunks')} WHERE key = 'loss'", 3
    )
    assert (int(n[0]), int(with_steps[0])) == (2, 0)
    want = np.r_[np.arange(500) * 1.0, np.arange(500, 1500) * -1.0]
    reader = store.reader()
    steps, values = reader.run_history(r.id)["loss"]
    assert np.array_equal(steps, np.arange(1500)) and np.array_equal(values, want)
    ts = reader.run_history(r.id, ["_timestamp"])["_timestamp"][1]
    assert np.array_equal(ts, np.r_[np.full(1000, 1.0), np.full(500, 2.0)])
    _, runs = reader.group_rank_history(g.id, "loss")
    assert np.array_equal(runs[r.id][0], np.arange(1500)) and np.array_equal(runs[r.id][1], want)
    _, runs = reader.group_rank_history(g.id, "loss", after=int(first_ver[0]))
    assert np.array_equal(runs[r.id][0], np.arange(500, 1500))
    st, vals = reader.run_values(r.id, "loss", steps=[3, 700, 1499])
    assert st.tolist() == [3, 700, 1499] and list(vals) == [3.0, -700.0, -1499.0]
    assert reader.group_value_steps(g.id, "loss")[r.id].tolist() == list(range(1500))
