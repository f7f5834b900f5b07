"""grouping.histogram.merge_histograms: exact sums for matching edges; for differing edges,
uniform re-binning onto a common grid with the total mass preserved exactly (integer counts)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grouping.errors import GroupingError
from grouping.histogram import merge_histograms, rebin
from rankwise import Histogram


def test_matching_edges_sum_exactly():
    """Same edges: counts add element-wise in int64, exactly, even beyond 2^53."""
    big = 2**60
    a = {"_type": "histogram", "bins": [0.0, 0.5, 1.0], "values": [big, 1]}
    b = {"bins": [0.0, 0.5, 1.0], "values": [3, 2]}
    c = ([1, 1], np.array([0.0, 0.5, 1.0]))  # np.histogram's (values, edges) order
    assert merge_histograms([a, b, c]) == {"_type": "histogram", "bins": [0.0, 0.5, 1.0], "values": [big + 4, 4]}


def test_matching_edges_of_many_ranks_equal_one_histogram_of_all_data():
    """Eight ranks binning their data on the same fixed edges merge to the histogram of the
    concatenated data."""
    rng = np.random.default_rng(0)
    edges = np.linspace(-4, 4, 33)
    parts = [rng.normal(size=100 + r) for r in range(8)]
    hs = [Histogram(np_histogram=np.histogram(p, bins=edges))._to_wire() for p in parts]
    counts, _ = np.histogram(np.concatenate(parts), bins=edges)
    assert merge_histograms(hs) == {"_type": "histogram", "bins": edges.tolist(), "values": counts.tolist()}


def test_differing_edges_by_hand():
    """[0,1):2 [1,2):4 and [1,3):6 → edges 0, 1.5, 3 (2 bins = the most any input has). Spread
    uniformly: bin 0 gets 2 + 4·½ + 6·¼ = 5.5, bin 1 gets 4·½ + 6·¾ = 6.5 (floats); integer
    counts round by largest remainder: 5 + 6 = 11, the missing unit goes to the lower of the
    two tied .5 fractions → 6, 6 (total 12 exactly)."""
    a = {"bins": [0, 1, 2], "values": [2, 4]}
    b = {"bins": [1, 3], "values": [6]}
    assert merge_histograms([a, b]) == {"_type": "histogram", "bins": [0.0, 1.5, 3.0], "values": [6, 6]}
    af = {"bins": [0, 1, 2], "values": [2.0, 4.0]}
    assert merge_histograms([af, b])["values"] == [5.5, 6.5]
    assert merge_histograms([a, b], num_bins=3) == {
        "_type": "histogram",
        "bins": [0.0, 1.0, 2.0, 3.0],
        "values": [2, 7, 3],
    }


def test_rebin_spreads_mass_uniformly_within_source_bins():
    """rebin: a bin [0, 4) of mass 8 puts 2 in each unit sub-interval; mass outside the new
    range cannot occur because the new edges cover the source."""
    assert rebin(np.array([0.0, 4.0]), np.array([8]), np.array([-1.0, 0.0, 1.0, 3.5, 5.0])).tolist() == [
        0.0,
        2.0,
        5.0,
        1.0,
    ]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-1e3, 1e3, allow_nan=False),
            st.lists(st.floats(0.01, 50, allow_nan=False), min_size=1, max_size=8),
            st.lists(st.integers(0, 10**6), min_size=8, max_size=8),
        ),
        min_size=1,
        max_size=6,
    ),
    st.integers(1, 40),
)
def test_differing_edges_preserve_the_total_exactly(specs, num_bins):
    """Any integer histograms with any edges: the merged total equals the sum of the totals
    exactly, every bin is within 1 of the exact uniform spread, and the result spans all inputs."""
    hs = []
    for start, widths, counts in specs:
        edges = start + np.concatenate([[0.0], np.cumsum(widths)])
        hs.append({"bins": edges.tolist(), "values": counts[: len(widths)]})
    out = merge_histograms(hs, num_bins=num_bins)
    total = sum(sum(h["values"]) for h in hs)
    assert sum(out["values"]) == total and all(isinstance(v, int) and v >= 0 for v in out["values"])
    assert out["bins"][0] == min(h["bins"][0] for h in hs) and out["bins"][-1] == max(h["bins"][-1] for h in hs)
    if len({tuple(h["bins"]) for h in hs}) > 1:
        exact = sum(rebin(np.array(h["bins"]), np.array(h["values"]), np.array(out["bins"])) for h in hs)
        assert np.all(np.abs(np.array(out["values"]) - exact) < 1 + 1e-6 * max(total, 1))


def test_histograms_of_different_ranks_data_merge_with_mass_preserved():
    """rankwise.Histogram of each rank's data (data-dependent edges) merges to 64 bins spanning
    every rank, total = number of finite values logged."""
    rng = np.random.default_rng(1)
    hs = [Histogram(rng.normal(loc=r, size=500))._to_wire() for r in range(4)]
    out = merge_histograms(hs)
    assert len(out["values"]) == 64 and sum(out["values"]) == 2000
    assert out["bins"][0] == min(h["bins"][0] for h in hs) and out["bins"][-1] == max(h["bins"][-1] for h in hs)


@pytest.mark.parametrize(
    "hists, kwargs, fragment",
    [
        ([], {}, "at least one"),
        ([{"bins": [0, 1]}], {}, "needs 'bins'"),
        ([{"bins": [0, 1, 2], "values": [1]}], {}, "need n\\+1 edges"),
        ([{"bins": [0, 2, 1], "values": [1, 1]}], {}, "strictly increasing"),
        ([{"bins": [0, float("nan")], "values": [1]}], {}, "finite"),
        ([{"bins": [0, 1], "values": [-1]}], {}, "≥ 0"),
        ([{"bins": [0, 1], "values": [float("inf")]}], {}, "values must be finite"),
        ([{"bins": [0, 1], "values": ["a"]}], {}, "must be numbers"),
        ([{"bins": [0, 1], "values": [1]}, {"bins": [0, 2], "values": [1]}], {"num_bins": 0}, "num_bins"),
        ([42], {}, "expected a dict"),
    ],
)
def test_malformed_input_raises_grouping_error(hists, kwargs, fragment):
    """Missing keys, wrong lengths, unsorted or non-finite edges, negative or non-numeric values
    raise GroupingError (a ValueError)."""
    with pytest.raises(GroupingError, match=fragment):
        merge_histograms(hists, **kwargs)
