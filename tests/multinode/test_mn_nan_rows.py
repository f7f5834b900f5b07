"""NaN-aware group rows through node agents and a root, in process (tests/support/mnsim.py): a diverging
rank is counted and named, the other ranks' rows go on; partials from a node agent of before nan_count and
nan_rank are still merged exactly."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from test_mn_sim import Client, _finish, _rows

from agent import record
from client.errors import ProtocolError
from grouping import Partial, reduce_points
from support.grouprows import nan_aware_row
from support.mnsim import Sim, assert_rows_equal, numpy_rows

WORLD = 8
STEPS = 40
NAN_RANK = 5
NAN_FROM = 17  # the first step at which rank 5's loss is NaN


def _table() -> np.ndarray:
    """Per-rank values (distinct, no ties), rank 5 NaN from step 17 on, +inf at step 30."""
    steps = np.arange(STEPS)
    table = np.array([np.round(np.sin(0.3 * steps + r) * 10 + r, 6) for r in range(WORLD)])
    table[NAN_RANK, NAN_FROM:] = np.nan
    table[NAN_RANK, 30] = np.inf
    return table


def _run(sim: Sim, table: np.ndarray, n_nodes: int) -> dict:
    clients = [Client(sim.nodes[r % n_nodes], r, WORLD) for r in range(WORLD)]
    for lo in range(0, STEPS, 5):
        for c in clients:
            s = np.arange(lo, lo + 5)
            c.log(s, table[c.rank, s])
        sim.cycle()
        for c in clients:
            c.absorb(c.node.replies)
    _finish(sim, clients)
    return _rows(sim)


def _assert_healthy_band(rows: dict, table: np.ndarray) -> None:
    """From NAN_FROM on, every row is numpy's nan-reductions over the seven other ranks."""
    others = np.delete(table, NAN_RANK, axis=0)
    ranks7 = np.delete(np.arange(WORLD), NAN_RANK)
    after = rows["step"] >= NAN_FROM
    assert rows["count"].tolist() == [WORLD] * STEPS
    assert rows["nan_count"].tolist() == [0] * NAN_FROM + [1] * (STEPS - NAN_FROM)
    assert rows["nan_rank"].tolist() == [-1] * NAN_FROM + [NAN_RANK] * (STEPS - NAN_FROM)
    np.testing.assert_allclose(rows["mean"][after], np.nanmean(others[:, NAN_FROM:], axis=0), rtol=1e-12)
    np.testing.assert_allclose(rows["std"][after], np.nanstd(others[:, NAN_FROM:], axis=0), rtol=1e-12)
    assert np.array_equal(rows["min"][after], np.nanmin(others[:, NAN_FROM:], axis=0))
    assert np.array_equal(rows["max"][after], np.nanmax(others[:, NAN_FROM:], axis=0))
    assert np.array_equal(rows["min_rank"][after], ranks7[np.nanargmin(others[:, NAN_FROM:], axis=0)])
    assert np.array_equal(rows["max_rank"][after], ranks7[np.nanargmax(others[:, NAN_FROM:], axis=0)])


@pytest.mark.parametrize("n_nodes", [1, 2, 3])
def test_nan_rank_through_node_partials(tmp_path, n_nodes):
    """8 ranks over 1, 2 or 3 node agents, rank 5's value NaN from step 17 (+inf at 30): the root's rows
    from step 17 are numpy's nan-reductions over the 7 others with count 8, nan_count 1, nan_rank 5; all rows
    come from merged node partials (nothing recomputed)."""
    table = _table()
    sim = Sim(tmp_path, nodes=n_nodes)
    rows = _run(sim, table, n_nodes)
    values = {r: dict(enumerate(table[r].tolist())) for r in range(WORLD)}
    assert_rows_equal(rows, numpy_rows(values), WORLD)
    _assert_healthy_band(rows, table)
    c = sim.root.counters.values
    assert c["partials"] > 0 and c.get("group_rows_recomputed", 0) == 0


def _legacy_encode(real):
    """record.encode as a node agent of before NaN-aware rows wrote it: partials without nan_count and
    nan_rank, and, where a value was not finite, the NaN sum and m2 that numpy-following reducers gave."""

    def encode(instance, node, t, runs, groups, ops, late, parts, marks):
        payload = real(instance, node, t, runs, groups, ops, late, parts, marks)
        body = msgpack.unpackb(payload, raw=False)
        for entry in body["parts"]:
            d = entry[3]
            bad = np.frombuffer(d.pop("nan_count"), "<i8") > 0
            d.pop("nan_rank")
            for f in ("sum", "m2", "min", "max"):
                a = np.frombuffer(d[f], "<f8").copy()
                a[bad] = np.nan
                d[f] = a.tobytes()
        return msgpack.packb(body, use_bin_type=True)

    return encode


def test_partials_of_an_older_node_agent_are_recomputed_where_not_finite(tmp_path, monkeypatch):
    """Node agents that send partials without nan_count/nan_rank (the old format, NaN-propagating sums and
    extremes) still give the root exact NaN-aware rows: their all-finite steps merge as nan_count 0, their
    non-finite steps are recomputed from the stored per-rank values."""
    monkeypatch.setattr(record, "encode", _legacy_encode(record.encode))
    table = _table()
    sim = Sim(tmp_path, nodes=2)
    rows = _run(sim, table, 2)
    values = {r: dict(enumerate(table[r].tolist())) for r in range(WORLD)}
    assert_rows_equal(rows, numpy_rows(values), WORLD)
    _assert_healthy_band(rows, table)
    c = sim.root.counters.values
    assert c["partials"] > 0 and c.get("group_rows_recomputed", 0) > 0


def test_legacy_partial_decodes_with_its_non_finite_steps_late():
    """decode() of a record whose partial lacks the nan fields: the partial gets nan_count 0 and nan_rank
    -1, the steps whose m2 is NaN become a late entry of that group and key; a partial with only some of
    the new fields is refused."""
    p = reduce_points([0, 0, 1, 1, 2], [0, 1, 0, 1, 0], [1.0, 2.0, 3.0, 4.0, 5.0])
    run = {
        "project": "p",
        "group": "g",
        "name": "r0",
        "rank": 0,
        "world_size": 2,
        "local_rank": 0,
        "node": "n",
        "pid": 10,
    }
    payload = record.encode("i", "n", 1.0, [run], [("p", "g", 2)], [], [], [(0, "x", np.array([0, 1]), p)], [])
    body = msgpack.unpackb(payload, raw=False)
    d = body["parts"][0][3]
    d.pop("nan_count"), d.pop("nan_rank")
    m2 = np.frombuffer(d["m2"], "<f8").copy()
    m2[1] = np.nan
    d["m2"] = m2.tobytes()
    rec = record.decode(msgpack.packb(body, use_bin_type=True))
    (_, key, _, got) = rec.parts[0]
    assert key == "x" and isinstance(got, Partial)
    assert got.nan_count.tolist() == [0, 0, 0] and got.nan_rank.tolist() == [-1, -1, -1]
    assert [(g, k, s.tolist()) for g, k, s in rec.late] == [(0, "x", [1])]
    d["nan_count"] = np.zeros(3, "<i8").tobytes()
    with pytest.raises(ProtocolError, match="partial fields"):
        record.decode(msgpack.packb(body, use_bin_type=True))


def test_reference_row_of_a_step_with_no_finite_value():
    """The shared reference (support/grouprows.py) gives NaN statistics, ranks -1 and every rank counted
    when no value is finite, and the lowest non-finite rank."""
    row = nan_aware_row([2, 4, 7], [np.inf, np.nan, -np.inf])
    assert row[0] == 3 and all(np.isnan(row[1:5])) and row[5:] == (-1, -1, 3, 2)
