"""grouping.PartialWindow: the root's window of node partials — exact merges of disjoint sources, dirty
steps where a (rank, step) could be counted twice, prefix sealing, deadline and byte budget."""

from __future__ import annotations

import numpy as np
import pytest

from grouping import GroupingError, Partial, PartialWindow, reduce_points


def _part(ranks: list[int], steps, seed: int = 0) -> tuple[Partial, dict]:
    """A partial over ``ranks`` at ``steps`` and the raw points it summarises."""
    rng = np.random.default_rng(seed)
    steps = np.asarray(steps, np.int64)
    s = np.repeat(steps, len(ranks))
    r = np.tile(np.asarray(ranks, np.int64), len(steps))
    v = np.round(rng.normal(size=len(s)) * 10, 1)
    return reduce_points(s, r, v), {"s": s, "r": r, "v": v}


def _same(a: Partial, b: Partial) -> None:
    for f in ("step", "count", "min", "max", "min_rank", "max_rank"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    np.testing.assert_allclose(a.sum, b.sum, rtol=1e-12, atol=1e-9)  # sums near zero: absolute tolerance
    np.testing.assert_allclose(a.m2, b.m2, rtol=1e-9, atol=1e-9)


def test_disjoint_sources_merge_exactly():
    """Two nodes over ranks {0,1} and {2,3}, several chunks each over the same steps: the sealed partial
    equals reducing every point at once, and nothing is dirty."""
    w = PartialWindow()
    pts = []
    for j, (source, ranks) in enumerate((("a", [0, 1]), ("b", [2, 3]))):
        for i, steps in enumerate((range(0, 4), range(4, 9))):
            p, raw = _part(ranks, steps, seed=10 * j + i)
            assert len(w.add("x", source, np.array(ranks), p, now=1.0)) == 0
            pts.append(raw)
    clean, dirty = w.take_through(100)
    assert dirty == {} and w.empty and w.nbytes == 0
    _same(clean["x"], reduce_points(*(np.concatenate([p[k] for p in pts]) for k in "srv")))


def test_same_source_twice_makes_the_step_dirty():
    """A node that restarted seals steps 3..5 again: those steps become dirty (returned by add, reported
    by take_through, left out of the clean merge); the other steps stay exact."""
    w = PartialWindow()
    p1, _ = _part([0, 1], range(0, 6), 1)
    p2, _ = _part([0, 1], range(3, 8), 2)
    w.add("x", "a", np.array([0, 1]), p1, 0.0)
    assert np.array_equal(w.add("x", "a", np.array([0, 1]), p2, 0.0), [3, 4, 5])
    clean, dirty = w.take_through(10)
    assert np.array_equal(dirty["x"], [3, 4, 5])
    assert np.array_equal(clean["x"].step, [0, 1, 2, 6, 7])
    assert np.array_equal(clean["x"].count, [2] * 5)


def test_sources_sharing_a_rank_conflict_only_where_steps_overlap():
    """Rank 1 moved from node a to node b (elastic restart): steps both cover are dirty, the rest merge."""
    w = PartialWindow()
    pa, _ = _part([0, 1], range(0, 5), 3)
    pb, _ = _part([1, 2], range(3, 9), 4)
    w.add("x", "a", np.array([0, 1]), pa, 0.0)
    assert np.array_equal(w.add("x", "b", np.array([1, 2]), pb, 0.0), [3, 4])
    clean, dirty = w.take_through(10)
    assert np.array_equal(dirty["x"], [3, 4])
    assert np.array_equal(clean["x"].step, [0, 1, 2, 5, 6, 7, 8])


def test_marked_dirty_steps_ignore_later_partials_and_seal_in_prefix_order():
    """Steps marked dirty (late at a node, lost partials) stay dirty when a partial arrives for them;
    take_through returns only what is at or below the bound and keeps the rest, split chunks included."""
    w = PartialWindow()
    w.mark_dirty("x", np.array([2, 7]))
    p, _ = _part([0], range(0, 10), 5)
    w.add("x", "a", np.array([0]), p, 0.0)
    clean, dirty = w.take_through(4)
    assert np.array_equal(clean["x"].step, [0, 1, 3, 4]) and np.array_equal(dirty["x"], [2])
    assert w.min_step == 5 and w.max_step == 9
    clean, dirty = w.take_through(9)
    assert np.array_equal(clean["x"].step, [5, 6, 8, 9]) and np.array_equal(dirty["x"], [7])
    assert w.empty


def test_expiry_and_byte_budget():
    """expired_through names the newest step of chunks older than the timeout; bound_for_budget the
    smallest bound whose sealing brings the held bytes under the budget."""
    w = PartialWindow()
    for i in range(10):
        p, _ = _part([0, 1], range(i * 10, i * 10 + 10), i)
        w.add("x", "a", np.array([0, 1]), p, now=float(i))
    assert w.expired_through(now=13.0, timeout_s=10.0) == 39
    assert w.expired_through(now=5.0, timeout_s=10.0) is None
    assert w.bound_for_budget(w.nbytes) is None
    budget = w.nbytes // 3
    bound = w.bound_for_budget(budget)
    w.take_through(bound)
    assert w.nbytes <= budget
    assert w.min_step == bound + 1


def test_rejects_what_is_not_a_partial():
    """A wrong type is named in the error."""
    with pytest.raises(GroupingError, match="Partial"):
        PartialWindow().add("x", "a", np.array([0]), {"step": [1]}, 0.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(20))
def test_random_trees_merge_like_one_reduction(seed):
    """Random ranks split over 1-6 sources, each sealing random prefixes of random step sets, taken in
    random bounds: the union of everything sealed equals one reduction over all points."""
    rng = np.random.default_rng(seed)
    world = int(rng.integers(1, 12))
    n_sources = int(rng.integers(1, min(6, world) + 1))
    owner = rng.integers(0, n_sources, world)
    w = PartialWindow()
    raw = {"s": [], "r": [], "v": []}
    got = []
    for source in range(n_sources):
        ranks = np.flatnonzero(owner == source)
        if not len(ranks):
            continue
        steps = np.sort(rng.choice(60, size=int(rng.integers(1, 40)), replace=False))
        cuts = np.sort(rng.choice(np.arange(1, len(steps) + 1), size=min(3, len(steps)), replace=False))
        lo = 0
        for hi in cuts:
            chunk = steps[lo:hi]
            lo = hi
            if not len(chunk):
                continue
            s = np.repeat(chunk, len(ranks))
            r = np.tile(ranks, len(chunk))
            v = rng.normal(size=len(s))
            raw["s"].append(s), raw["r"].append(r), raw["v"].append(v)
            assert len(w.add("k", f"n{source}", ranks, reduce_points(s, r, v), 0.0)) == 0
    for bound in sorted(rng.integers(0, 70, 3)) + [100]:
        clean, dirty = w.take_through(int(bound))
        assert dirty == {}
        if "k" in clean:
            got.append(clean["k"])
    steps = np.concatenate([p.step for p in got])
    assert np.all(np.diff(steps) > 0)  # each step sealed once, in order
    whole = reduce_points(*(np.concatenate(raw[k]) for k in "srv"))
    _same(Partial(*(np.concatenate([getattr(p, f) for p in got]) for f in Partial.FIELDS)), whole)
