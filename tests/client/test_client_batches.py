"""Columnar batches: what the assembler encodes round-trips through ``client.wire.decode_batch``
(blocks of rows sharing a key set, typed columns), and big batches split at ``batch_max_rows``
with the pending row, summary and control ops in the last batch only."""

from __future__ import annotations

import numpy as np
import pytest

from client import settings as settings_mod
from client import wire
from support.offline import close, drain_batches, finish_offline, offline_run, rows_after, rows_of


@pytest.fixture
def run():
    r = offline_run()
    yield r
    close(r)


def test_rows_with_different_key_sets_round_trip_as_blocks(run):
    """Rows {a,b}, {a}, {b,c}, {}, {b,a}: one block per distinct key set with its row indices;
    decoding gives back exactly the rows logged."""
    logged = [{"a": 1.0, "b": 2.0}, {"a": 3.0}, {"b": 4.0, "c": 5.0}, {}, {"b": 6.0, "a": 7.0}]
    for d in logged:
        run.log(d)
    (batch,) = drain_batches(run)
    assert batch.n == 5 and batch.step.tolist() == [0, 1, 2, 3, 4] and batch.late is None
    cols = [(c.key, None if c.rows is None else c.rows.tolist(), c.values.tolist()) for c in batch.columns]
    assert sorted(cols) == sorted(
        [
            ("a", [0, 4], [1.0, 7.0]),
            ("b", [0, 4], [2.0, 6.0]),
            ("a", [1], [3.0]),
            ("b", [2], [4.0]),
            ("c", [2], [5.0]),
        ]
    )
    assert rows_of([batch]) == [dict({"_step": i, "_late": False}, **d) for i, d in enumerate(logged)]


def test_a_key_set_shared_by_every_row_has_no_row_index(run):
    """When every row has the same keys the block carries no index (rows=None)."""
    for i in range(3):
        run.log({"x": float(i), "y": i})
    (batch,) = drain_batches(run)
    assert [(c.key, c.rows) for c in batch.columns] == [("x", None), ("y", None)]


def test_columns_keep_their_types(run):
    """int columns travel as i8 and come back as ints, float as f8, bool as b1 (Python bools),
    str/None/lists as msgpack lists; ints mixed with floats in one column become floats."""
    for i in range(3):
        run.log({"i": i - 1, "f": i / 4, "b": i % 2 == 0, "s": f"s{i}", "o": [i, None] if i else None, "m": i or 0.5})
    (batch,) = drain_batches(run)
    by_key = {c.key: c for c in batch.columns}
    assert by_key["i"].values.dtype == np.dtype("<i8")
    assert by_key["f"].values.dtype == np.dtype("<f8")
    assert by_key["b"].values.dtype == np.dtype("?")
    assert by_key["m"].values.dtype == np.dtype("<f8")
    assert not by_key["s"].numeric and not by_key["o"].numeric
    rows = rows_of([batch])
    got = [{k: (type(v).__name__, v) for k, v in r.items() if not k.startswith("_")} for r in rows]
    assert got == [
        {
            "i": ("int", -1),
            "f": ("float", 0.0),
            "b": ("bool", True),
            "s": ("str", "s0"),
            "o": ("NoneType", None),
            "m": ("float", 0.5),
        },
        {
            "i": ("int", 0),
            "f": ("float", 0.25),
            "b": ("bool", False),
            "s": ("str", "s1"),
            "o": ("list", [1, None]),
            "m": ("float", 1.0),
        },
        {
            "i": ("int", 1),
            "f": ("float", 0.5),
            "b": ("bool", True),
            "s": ("str", "s2"),
            "o": ("list", [2, None]),
            "m": ("float", 2.0),
        },
    ]


def test_late_flags_travel_only_when_there_are_late_rows(run):
    """A batch without late rows has late=None; with one, a bool array marks exactly those rows."""
    run.log({"a": 1})
    run.log({"a": 2})
    (b1,) = drain_batches(run)
    assert b1.late is None
    run.log({"a": 3}, step=0)
    run.log({"a": 4})
    (b2,) = drain_batches(run)
    assert b2.late.tolist() == [True, False] and b2.step.tolist() == [0, 2]


def test_big_batches_split_with_pending_summary_and_control_in_the_last_only():
    """250 rows with batch_max_rows=100: batches of 100, 100, 50 with consecutive seqs and steps;
    only the last carries the pending row, the summary and the control ops (config, summary_set)."""
    run = offline_run(batch_max_rows=100)
    try:
        for i in range(250):
            run.log({"x": float(i), "k": i % 3})
        run.log({"p": 1.0}, commit=False)
        run.config.update({"lr": 0.5})
        run.summary["best"] = 7
        batches = drain_batches(run)
    finally:
        close(run)
    assert [b.n for b in batches] == [100, 100, 50]
    assert [b.seq for b in batches] == [1, 2, 3]
    assert np.concatenate([b.step for b in batches]).tolist() == list(range(250))
    for b in batches[:-1]:
        assert b.open_row is None and b.summary is None and b.control == []
    last = batches[-1]
    assert last.open_row[0] == 250 and last.open_row[2] == {"p": 1.0}
    assert last.summary == {"x": 249.0, "k": 249 % 3, "best": 7}
    assert last.control == [("config", {"lr": 0.5})]  # a hand-set summary travels in the summary map
    assert all(b.writer == run._writer.id for b in batches)
    assert rows_of(batches) == [{"_step": i, "_late": False, "x": float(i), "k": i % 3} for i in range(250)]


def test_a_batch_ends_where_define_metric_was_called(run):
    """Rows before a define_metric are encoded in their own batch (so they are summarised by the
    rules they were logged under), even when fewer than batch_max_rows."""
    for i in range(3):
        run.log({"x": float(i)})
    run.define_metric("x", summary="max")
    run.log({"x": -1.0})
    run.log({"x": -2.0})
    batches = drain_batches(run)
    assert [b.n for b in batches] == [3, 2]
    assert batches[0].control == [] and [c[0] for c in batches[1].control] == ["define"]
    assert run.summary["x"] == -1.0


def test_batch_without_rows_carries_only_pending_and_control(run):
    """A pending row alone, or a finish alone, is a batch with n=0 and no row arrays."""
    run.log({"a": 1}, commit=False)
    (b,) = drain_batches(run)
    assert b.n == 0 and b.columns == [] and b.open_row[2] == {"a": 1}
    finish_offline(run)
    (b,) = drain_batches(run)
    assert b.n == 1 and b.open_row is None and b.control[0][0] == "finish"


def test_nothing_logged_means_no_batch(run):
    """No ops, no batch: the writer does not send empty frames."""
    assert drain_batches(run) == []


def test_settings_and_wire_agree_on_the_largest_batch():
    """settings.MAX_BATCH_ROWS (what batch_max_rows may be) is the limit the decoder enforces."""
    assert settings_mod.MAX_BATCH_ROWS == wire.MAX_BATCH_ROWS


def test_many_rows_round_trip_exactly(run):
    """2000 rows of random floats, ints and a key present in every other row decode exactly."""
    rng = np.random.default_rng(7)
    vals = rng.normal(size=2000)
    ints = rng.integers(-(2**40), 2**40, size=2000)
    for i in range(2000):
        d = {"v": float(vals[i]), "n": int(ints[i])}
        if i % 2:
            d["odd"] = i
        run.log(d)
    rows = rows_after(run)
    assert [r["v"] for r in rows] == vals.tolist()
    assert [r["n"] for r in rows] == ints.tolist()
    assert [r.get("odd") for r in rows] == [i if i % 2 else None for i in range(2000)]
