"""Tests of grouping.window.GroupWindow: holding open points and sealing prefixes of steps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grouping import GroupingError, GroupWindow, Partial, finalize, merge_all, reduce_points


def _assert_same_partial(got: Partial, want: Partial) -> None:
    for name in Partial.FIELDS:
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)


def _window_with_two_ranks() -> GroupWindow:
    w = GroupWindow()
    w.add("loss", 0, np.arange(10), np.arange(10) * 1.0, now=0.0)
    w.add("loss", 1, np.arange(10), np.arange(10) * 2.0, now=1.0)
    w.add("lr", 0, np.array([3, 12]), np.array([0.1, 0.2]), now=2.0)
    return w


def test_take_through_seals_a_prefix_and_leaves_the_rest() -> None:
    """take_through(b) returns reductions of exactly the points with step <= b; the remaining
    points stay, with their values and ranks, and are returned by a later take."""
    w = _window_with_two_ranks()
    sealed = w.take_through(4)
    assert sorted(sealed) == ["loss", "lr"]
    out = finalize(sealed["loss"], 2)
    assert out["step"].tolist() == [0, 1, 2, 3, 4]
    assert out["mean"].tolist() == [1.5 * s for s in range(5)]
    assert out["max_rank"].tolist() == [0, 1, 1, 1, 1]
    assert sealed["lr"].step.tolist() == [3]
    assert w.n_points == 5 + 5 + 1 and w.min_step == 5 and w.max_step == 12
    rest = w.take_all()
    assert finalize(rest["loss"], 2)["step"].tolist() == [5, 6, 7, 8, 9]
    assert finalize(rest["loss"], 2)["mean"].tolist() == [1.5 * s for s in range(5, 10)]
    assert rest["lr"].step.tolist() == [12] and rest["lr"].sum.tolist() == [0.2]


def test_keys_without_sealed_points_are_omitted() -> None:
    """Keys whose held steps are all above the bound are not in take_through's result and are
    left untouched; a bound below everything returns an empty dict."""
    w = GroupWindow()
    w.add("a", 0, np.array([1, 2]), np.array([1.0, 2.0]), now=0.0)
    w.add("b", 0, np.array([5, 6]), np.array([1.0, 2.0]), now=0.0)
    assert w.take_through(0) == {}
    assert list(w.take_through(3)) == ["a"]
    assert w.keys == ["b"] and w.n_points == 2


def test_last_arrival_wins_across_chunks() -> None:
    """A later chunk's value for the same (step, rank) replaces the earlier one, including
    when the earlier chunk was only partly sealed before."""
    w = GroupWindow()
    w.add("x", 0, np.array([3, 1, 5]), np.array([1.0, 1.0, 1.0]), now=0.0)
    w.add("x", 1, np.array([3]), np.array([4.0]), now=0.5)
    sealed_1 = w.take_through(1)["x"]
    assert sealed_1.step.tolist() == [1]
    w.add("x", 0, np.array([3, 5]), np.array([7.0, 9.0]), now=1.0)
    w.add("x", 0, np.array([5]), np.array([11.0]), now=2.0)
    out = finalize(w.take_all()["x"], 2)
    assert out["step"].tolist() == [3, 5]
    assert out["count"].tolist() == [2, 1]
    assert out["mean"].tolist() == [5.5, 11.0]
    assert out["max_rank"].tolist() == [0, 0]


def test_expired_through() -> None:
    """expired_through gives the largest step among chunks that arrived at or before
    now - timeout (the boundary counts), None when no chunk is that old; a partly taken
    chunk keeps its original arrival time."""
    w = GroupWindow()
    assert w.expired_through(100.0, 1.0) is None
    w.add("a", 0, np.array([1, 8, 2]), np.ones(3), now=10.0)
    w.add("b", 1, np.array([20, 21]), np.ones(2), now=15.0)
    w.add("a", 1, np.array([3]), np.ones(1), now=20.0)
    assert w.expired_through(12.0, 5.0) is None
    assert w.expired_through(15.0, 5.0) == 8
    assert w.expired_through(19.0, 4.0) == 21
    assert w.expired_through(30.0, 5.0) == 21
    w.take_through(2)
    assert w.expired_through(15.0, 5.0) == 8  # remaining point 8 still arrived at t=10


def _random_window(seed: int) -> GroupWindow:
    """The same window for the same seed: two keys, four ranks, steps in any order."""
    rng = np.random.default_rng(seed)
    w = GroupWindow()
    for rank in range(4):
        steps = rng.integers(0, 100, size=50)
        w.add("k", rank, steps, rng.normal(size=50), now=float(rank))
        w.add("j", rank, steps[:10] + 50, rng.normal(size=10), now=float(rank))
    return w


def test_bound_for_budget_brings_bytes_under_the_budget() -> None:
    """bound_for_budget is None within budget; otherwise take_through(bound) brings nbytes to
    at most the budget and no smaller bound would (a budget below zero seals everything)."""
    w = _random_window(5)
    assert w.nbytes == 16 * w.n_points == 16 * 240
    assert w.bound_for_budget(w.nbytes) is None
    for budget in (w.nbytes - 1, 2000, 17, 16, 0, -5):
        bound = w.bound_for_budget(budget)
        assert bound is not None
        trial = _random_window(5)
        trial.take_through(bound)
        assert trial.nbytes <= max(budget, 0)
        smaller = _random_window(5)
        smaller.take_through(bound - 1)
        assert smaller.nbytes > budget


def test_take_all_empties_the_window() -> None:
    """take_all returns every key and leaves no points, no bytes, no keys and no step range."""
    w = _window_with_two_ranks()
    assert "points=22" in repr(w) and "steps=0..12" in repr(w)
    sealed = w.take_all()
    assert sorted(sealed) == ["loss", "lr"]
    assert (w.n_points, w.nbytes, w.keys, w.min_step, w.max_step) == (0, 0, [], None, None)
    assert w.take_all() == {} and w.bound_for_budget(0) is None
    assert repr(w) == "GroupWindow(keys=0, chunks=0, points=0, nbytes=0)"


def test_add_copies_and_validates() -> None:
    """add keeps its own copy of the arrays, ignores empty chunks and rejects mismatched
    lengths and non-integer steps."""
    w = GroupWindow()
    steps, values = np.array([1, 2]), np.array([1.0, 2.0])
    w.add("x", 0, steps, values, now=0.0)
    steps[:] = 99
    values[:] = -1.0
    w.add("x", 0, [], [], now=0.0)
    assert w.n_points == 2
    assert w.take_all()["x"].sum.tolist() == [1.0, 2.0]
    with pytest.raises(GroupingError):
        w.add("x", 0, np.array([1, 2]), np.array([1.0]), now=0.0)
    with pytest.raises(GroupingError):
        w.add("x", 0, np.array([1.5]), np.array([1.0]), now=0.0)


chunks = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.integers(0, 5),
        st.lists(st.tuples(st.integers(0, 30), st.integers(-4, 4).map(float)), min_size=1, max_size=12),
    ),
    max_size=12,
)


@settings(max_examples=100, deadline=None, database=None)
@given(chunks=chunks, bounds=st.lists(st.integers(-1, 32), max_size=4))
def test_sealing_in_several_takes_equals_one_reduction(chunks, bounds) -> None:
    """Sealing with increasing bounds, then take_all, loses and duplicates nothing: per key
    the sealed partials (disjoint step ranges) merge to reduce_points of all its points."""
    w = GroupWindow()
    everything: dict[str, list[tuple[int, int, float]]] = {}
    for t, (key, rank, pts) in enumerate(chunks):
        steps, values = zip(*pts)
        w.add(key, rank, np.array(steps), np.array(values), now=float(t))
        everything.setdefault(key, []).extend((s, rank, v) for s, v in pts)
    sealed: dict[str, list[Partial]] = {}
    for bound in [*sorted(bounds), None]:
        before = w.n_points
        taken = w.take_all() if bound is None else w.take_through(bound)
        for key, p in taken.items():
            if bound is not None:
                assert int(p.step[-1]) <= bound
            sealed.setdefault(key, []).append(p)
        assert w.n_points <= before
        if bound is not None and w.min_step is not None:
            assert w.min_step > bound
    assert w.n_points == 0 and sorted(sealed) == sorted(everything)
    for key, pts in everything.items():
        s, r, v = (np.array(x) for x in zip(*pts))
        _assert_same_partial(merge_all(sealed[key]), reduce_points(s, r, v))


def test_take_keys_through_seals_at_most_max_keys_per_call():
    """Five keys with points at steps 0 and 5: take_keys_through(2, max_keys=2) takes k0 and k1 and says
    the take is incomplete; the next two calls take k2, k3, then k4 and say it is complete; the points
    at step 5 stay. max_keys=None takes everything at once, as take_through does."""
    w = GroupWindow()
    for k in range(5):
        w.add(f"k{k}", 0, np.array([0, 5]), np.array([float(k), 9.0]), 0.0)
    got, complete = w.take_keys_through(2, max_keys=2)
    assert (list(got), complete) == (["k0", "k1"], False)
    assert (got["k1"].step.tolist(), got["k1"].sum.tolist()) == ([0], [1.0])
    got, complete = w.take_keys_through(2, max_keys=2)
    assert (list(got), complete) == (["k2", "k3"], False)
    got, complete = w.take_keys_through(2, max_keys=2)
    assert (list(got), complete) == (["k4"], True)
    assert w.n_points == 5 and w.min_step == 5
    got, complete = w.take_keys_through(9)
    assert (sorted(got), complete, w.n_points) == ([f"k{k}" for k in range(5)], True, 0)
