"""Coalescing over the row budget: token bucket arithmetic, span layout, and per-span
statistics checked against numpy over the raw values."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.ratelimit import RowBudget, coalesce_column, pack_spans, span_starts, unpack_spans


def test_budget_passes_batches_that_fit_and_refills():
    """Within the budget every row is kept; the bucket refills at rows_per_s."""
    b = RowBudget(rows_per_s=100, burst_s=1.0, now=0.0)
    assert b.allow(60, now=0.0) == 60
    assert b.allow(60, now=0.0) == 40  # 40 tokens left
    assert b.allow(10, now=0.0) == 1  # empty: at least one row per batch
    assert b.allow(50, now=0.5) == 49  # refilled 50, minus the overdraft of 1
    assert b.allow(1000, now=100.0) == 100  # capped at the burst


def test_span_starts_cover_rows_evenly():
    """Spans are consecutive, cover every row once, and differ in size by at most one."""
    for n, k in [(10, 3), (10, 10), (10, 20), (1, 1), (1000, 7)]:
        starts = span_starts(n, k)
        sizes = np.diff(np.r_[starts, n])
        assert starts[0] == 0 and sizes.sum() == n and sizes.min() >= 1
        assert sizes.max() - sizes.min() <= 1
        assert len(starts) == min(n, k)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 200),
    k=st.integers(1, 50),
    present=st.lists(st.booleans(), min_size=200, max_size=200),
    data=st.lists(st.floats(-1e6, 1e6), min_size=200, max_size=200),
)
def test_coalesce_matches_numpy_per_span(n, k, present, data):
    """For a key present in some rows, each span's count/last/mean/min/max equals numpy over the
    key's values in that span, and counts add up to the number of values."""
    rows = np.flatnonzero(np.array(present[:n]))
    if len(rows) == 0:
        return
    steps = rows * 3 + 7  # any increasing steps
    values = np.array(data[: len(rows)])
    starts = span_starts(n, k)
    out = coalesce_column(rows, steps, values, starts)
    assert out["count"].sum() == len(rows)
    span_of = np.searchsorted(starts, rows, side="right") - 1
    for i, span in enumerate(np.unique(span_of)):
        sel = values[span_of == span]
        sel_steps = steps[span_of == span]
        assert out["first_step"][i] == sel_steps[0] and out["step"][i] == sel_steps[-1]
        assert out["count"][i] == len(sel) and out["last"][i] == sel[-1]
        assert out["min"][i] == sel.min() and out["max"][i] == sel.max()
        assert np.isclose(out["mean"][i], sel.mean(), rtol=1e-12, atol=1e-9)


def test_pack_round_trip():
    """Packed span columns decode to the same arrays."""
    out = coalesce_column(np.arange(10), np.arange(10), np.arange(10.0), span_starts(10, 3))
    back = unpack_spans(pack_spans(out), len(out["count"]))
    for f in back:
        assert np.array_equal(back[f], out[f])
