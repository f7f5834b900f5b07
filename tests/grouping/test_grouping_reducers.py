"""Unit tests of grouping.reducers with hand-computed values and numpy as the reference."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from grouping import (
    FINAL_FIELDS,
    GroupingError,
    Partial,
    finalize,
    merge,
    merge_all,
    reduce_points,
)


def _one_step(ranks: list[int], values: list[float], step: int = 0) -> Partial:
    return reduce_points(np.full(len(ranks), step), np.array(ranks), np.array(values))


def _row(p: Partial, expected: int | None = None) -> dict[str, object]:
    """The single finalised row of a one-step partial, as Python scalars."""
    out = finalize(p, len(p) and int(p.count[0]) if expected is None else expected)
    assert all(len(v) == 1 for v in out.values())
    return {k: v[0].item() for k, v in out.items()}


def _same(x: float, y: float) -> bool:
    return (math.isnan(x) and math.isnan(y)) or x == y


def test_four_ranks_hand_computed() -> None:
    """Ranks 0..3 with values 1..4 give mean 2.5, population std sqrt(1.25), min at rank 0,
    max at rank 3, and finalize returns exactly the documented keys."""
    p = _one_step([0, 1, 2, 3], [1, 2, 3, 4])
    out = finalize(p, 4)
    assert tuple(out) == FINAL_FIELDS
    row = _row(p, 4)
    assert row == {
        "step": 0,
        "count": 4,
        "expected": 4,
        "mean": 2.5,
        "min": 1.0,
        "max": 4.0,
        "std": 1.118033988749895,
        "min_rank": 0,
        "max_rank": 3,
        "nan_count": 0,
        "nan_rank": -1,
    }
    assert out["count"].dtype == np.int64 and out["min_rank"].dtype == np.int64
    assert out["mean"].dtype == np.float64


def test_chan_merge_of_two_halves_is_exact_here() -> None:
    """Merging {0: 1, 1: 2} with {2: 3, 3: 4} gives the same row as reducing all four at once
    (delta = 2, m2 = 0.5 + 0.5 + 4·2·2/4 = 5)."""
    a, b = _one_step([0, 1], [1, 2]), _one_step([2, 3], [3, 4])
    m = merge(a, b)
    assert m.m2[0] == 5.0
    assert _row(m) == _row(_one_step([0, 1, 2, 3], [1, 2, 3, 4]))


def test_rank_order_not_arrival_order_decides_ties() -> None:
    """Equal extremes go to the lowest rank (numpy's first occurrence over rank-ordered
    values), whatever order the points arrived in."""
    p = _one_step([3, 2, 1, 0], [5, 1, 1, 5])  # by rank: [5, 1, 1, 5]
    row = _row(p)
    assert (row["min"], row["min_rank"], row["max"], row["max_rank"]) == (1.0, 1, 5.0, 0)


def test_ties_across_partials_go_to_lowest_rank() -> None:
    """A tie between two partials picks the lower rank, in both merge orders."""
    a = _one_step([2, 3], [1, 9])
    b = _one_step([0, 1], [5, 1])
    for m in (merge(a, b), merge(b, a)):
        row = _row(m)
        assert (row["min"], row["min_rank"], row["max"], row["max_rank"]) == (1.0, 1, 9.0, 3)
        assert row["count"] == 4 and row["mean"] == 4.0


def test_nan_rank_is_counted_and_the_others_summarised() -> None:
    """NaN values do not enter mean/min/max/std: the row summarises the finite values (like
    np.nanmean & co), counts every rank that reported, and names the lowest NaN rank."""
    values = [1.0, math.nan, 0.0, math.nan]
    row = _row(_one_step([0, 1, 2, 3], values))
    assert row["count"] == 4 and row["nan_count"] == 2 and row["nan_rank"] == 1
    assert (row["mean"], row["min"], row["max"]) == (0.5, 0.0, 1.0)
    assert row["std"] == float(np.nanstd(values)) == 0.5
    assert row["min_rank"] == int(np.nanargmin(values)) == 2
    assert row["max_rank"] == int(np.nanargmax(values)) == 0


def test_one_rank_diverging_keeps_the_healthy_band() -> None:
    """Eight ranks, rank 5 turns NaN at step 3 and +inf at step 6: from step 3 on every row is
    numpy's nan-reduction over the seven others, nan_count 1, nan_rank 5, count 8, whether
    reduced at once or merged from two nodes of four ranks."""
    steps = np.arange(10)
    table = np.array([np.sin(steps + r) + r for r in range(8)])
    table[5, 3:] = math.nan
    table[5, 6:] = math.inf
    step = np.tile(steps, 8)
    rank = np.repeat(np.arange(8), 10)
    whole = finalize(reduce_points(step, rank, table.ravel()), 8)
    node = [reduce_points(step[rank // 4 == i], rank[rank // 4 == i], table.ravel()[rank // 4 == i]) for i in (0, 1)]
    healthy = np.delete(table, 5, axis=0)
    for out in (whole, finalize(merge(node[1], node[0]), 8)):
        assert out["count"].tolist() == [8] * 10
        assert out["nan_count"].tolist() == [0, 0, 0] + [1] * 7
        assert out["nan_rank"].tolist() == [-1, -1, -1] + [5] * 7
        np.testing.assert_allclose(out["mean"][3:], healthy[:, 3:].mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(out["std"][3:], healthy[:, 3:].std(axis=0), rtol=1e-12)
        np.testing.assert_array_equal(out["min"][3:], healthy[:, 3:].min(axis=0))
        np.testing.assert_array_equal(out["max"][:3], table[:, :3].max(axis=0))
        ranks7 = np.delete(np.arange(8), 5)
        np.testing.assert_array_equal(out["max_rank"][3:], ranks7[healthy[:, 3:].argmax(axis=0)])


@pytest.mark.parametrize("nan_ranks", [(1, 3), (3, 1)])
def test_nan_across_partials_picks_lowest_nan_rank(nan_ranks: tuple[int, int]) -> None:
    """When both partials hold a NaN the lower NaN rank is nan_rank, in both merge orders; the
    extremes are the finite ones whatever rank holds a NaN; a partial with no finite value
    leaves the other's extremes."""
    ra, rb = nan_ranks
    a = _one_step([ra, 0], [math.nan, -100.0])
    b = _one_step([rb, 2], [math.nan, 100.0])
    for m in (merge(a, b), merge(b, a)):
        row = _row(m)
        assert row["nan_rank"] == 1 and row["nan_count"] == 2 and row["count"] == 4
        assert (row["min_rank"], row["max_rank"], row["mean"]) == (0, 2, 0.0)
    c = _one_step([0], [-5.0])
    d = _one_step([4], [math.nan])
    for m in (merge(c, d), merge(d, c)):
        row = _row(m)
        assert (row["min_rank"], row["max_rank"], row["nan_rank"], row["min"], row["std"]) == (0, 0, 4, -5.0, 0.0)
    none = _row(merge(d, _one_step([2], [-math.inf])))
    assert (none["min_rank"], none["max_rank"], none["nan_rank"], none["nan_count"]) == (-1, -1, 2, 2)
    assert all(math.isnan(none[k]) for k in ("mean", "min", "max", "std"))


@pytest.mark.parametrize(
    "values",
    [
        [math.inf, -math.inf],
        [math.inf],
        [-math.inf],
        [math.inf, 1.0],
        [1.0, -math.inf, 3.0],
        [math.inf, math.inf],
        [7.5],
        [1e308, 1e308],
        [1e200, -1e200],
    ],
)
def test_infinities_and_overflow_follow_numpy(values: list[float]) -> None:
    """±Inf count as non-finite (nan_count, nan_rank) and the rest gives numpy's mean/std over the
    finite values, overflow included (the same ±inf; NaN with ranks -1 when nothing is finite),
    both reduced at once and merged from single-rank partials."""
    ranks = list(range(len(values)))
    finite = [v for v in values if math.isfinite(v)]
    where = [r for r, v in zip(ranks, values) if math.isfinite(v)]
    with np.errstate(all="ignore"):
        ref = {
            "mean": float(np.mean(finite)) if finite else math.nan,
            "std": float(np.std(finite)) if finite else math.nan,
            "min": float(np.min(finite)) if finite else math.nan,
            "max": float(np.max(finite)) if finite else math.nan,
            "min_rank": where[int(np.argmin(finite))] if finite else -1,
            "max_rank": where[int(np.argmax(finite))] if finite else -1,
            "nan_count": len(values) - len(finite),
            "nan_rank": min(set(ranks) - set(where), default=-1),
        }
    whole = _one_step(ranks, values)
    split = merge_all(_one_step([r], [v]) for r, v in zip(ranks, values))
    for p in (whole, split):
        row = _row(p)
        for k, v in ref.items():
            assert _same(row[k], v), (k, row[k], v)


def test_single_rank_has_zero_std() -> None:
    """One finite value: count 1, std exactly 0, min = max = mean = the value, both ranks it."""
    row = _row(_one_step([5], [3.25]), expected=8)
    assert row == {
        "step": 0,
        "count": 1,
        "expected": 8,
        "mean": 3.25,
        "min": 3.25,
        "max": 3.25,
        "std": 0.0,
        "min_rank": 5,
        "max_rank": 5,
        "nan_count": 0,
        "nan_rank": -1,
    }


def test_empty_inputs() -> None:
    """No points give an empty partial that is the identity of merge and finalises to empty
    arrays under every key."""
    p = reduce_points(np.array([], np.int64), np.array([], np.int64), np.array([]))
    assert len(p) == 0 and p.nbytes == 0
    assert repr(p) == "Partial(empty)"
    q = _one_step([0, 1], [1, 2])
    assert merge(p, q) is q and merge(q, p) is q
    assert len(merge_all([])) == 0 and len(merge_all([p, Partial.empty()])) == 0
    out = finalize(p, 4)
    assert tuple(out) == FINAL_FIELDS and all(len(v) == 0 for v in out.values())


def test_last_arrival_wins_for_repeated_step_and_rank() -> None:
    """A repeated (step, rank) counts once, with the value that arrived last."""
    p = reduce_points([0, 0, 1, 0, 0], [0, 1, 0, 0, 1], [1.0, 2.0, 3.0, 10.0, math.nan])
    p2 = reduce_points([0, 0, 0], [0, 1, 1], [10.0, math.nan, 20.0])
    out, out2 = finalize(p, 2), finalize(p2, 2)
    assert out["step"].tolist() == [0, 1] and out["count"].tolist() == [2, 1]
    assert out["mean"][0] == 10.0 and out["nan_rank"][0] == 1 and out["min_rank"][0] == 0
    assert out2["mean"].tolist() == [15.0] and out2["max_rank"].tolist() == [1] and out2["nan_count"].tolist() == [0]


def test_several_steps_in_any_arrival_order() -> None:
    """Points of several steps arriving shuffled reduce to one row per step in step order."""
    rng = np.random.default_rng(7)
    step = np.repeat(np.arange(5), 4)
    rank = np.tile(np.arange(4), 5)
    value = rng.integers(-3, 4, size=20).astype(float)
    perm = rng.permutation(20)
    out = finalize(reduce_points(step[perm], rank[perm], value[perm]), 4)
    assert out["step"].tolist() == list(range(5))
    grid = value.reshape(5, 4)
    np.testing.assert_array_equal(out["min"], grid.min(axis=1))
    np.testing.assert_array_equal(out["max_rank"], grid.argmax(axis=1))
    np.testing.assert_allclose(out["std"], grid.std(axis=1), rtol=1e-12)


@pytest.mark.parametrize(
    ("offset", "far"),
    [
        (0, 10_000),  # (step, rank, arrival) packs into one int64
        (-(2**40), 2**56),  # (step, rank) packs, with the arrival index it would not
        (2**58, 2**62),  # (step, rank) does not pack: lexsort
        (2**62, -(2**62)),
    ],
)
def test_every_ordering_path_gives_the_same_rows(offset: int, far: int) -> None:
    """Reduction is the same on every sort path: already ordered, ordered with repeats, few
    ascending runs, shuffled, and (step, rank) ranges too wide to pack into one int64."""
    rng = np.random.default_rng(abs(offset) % 1000)
    n = 400
    step = rng.integers(0, 30, n)
    rank = rng.integers(0, 6, n)
    value = rng.integers(-5, 6, n).astype(float)
    cases = {
        "shuffled": (step, rank, value),
        "ordered": tuple(a[np.lexsort((rank, step))] for a in (step, rank, value)),
        "runs": tuple(a[np.argsort(rank, kind="stable")] for a in (step, rank, value)),
    }
    for name, (s, r, v) in cases.items():
        base = finalize(reduce_points(s, r, v), 6)
        wide_step = np.r_[s + offset, np.int64(far + offset)]
        wide = finalize(reduce_points(wide_step, np.r_[r, 0], np.r_[v, 1.0]), 6)
        same = wide["step"] != far + offset  # drop the far point's own row
        for k in base:
            want = base[k] + offset if k == "step" else base[k]
            np.testing.assert_array_equal(wide[k][same], want, err_msg=f"{name} {k}")


def test_merge_of_partially_overlapping_steps() -> None:
    """Steps on one side only are copied; shared steps are combined; the union stays sorted."""
    a = reduce_points([0, 1, 3, 3], [0, 0, 0, 1], [1.0, 2.0, 3.0, 5.0])
    b = reduce_points([1, 2, 3, 7], [2, 2, 2, 2], [4.0, 6.0, -1.0, 8.0])
    for m in (merge(a, b), merge(b, a)):
        out = finalize(m, 3)
        assert out["step"].tolist() == [0, 1, 2, 3, 7]
        assert out["count"].tolist() == [1, 2, 1, 3, 1]
        assert out["mean"].tolist() == [1.0, 3.0, 6.0, 7.0 / 3.0, 8.0]
        assert out["min_rank"].tolist() == [0, 0, 2, 2, 2]
        assert out["max_rank"].tolist() == [0, 2, 2, 1, 2]
        np.testing.assert_allclose(out["std"][3], np.std([3.0, 5.0, -1.0]), rtol=1e-12)


def test_merge_all_matches_pairwise_merges() -> None:
    """merge_all over many partials equals a left fold of merge (exact fields exactly)."""
    rng = np.random.default_rng(3)
    parts = [reduce_points(rng.integers(0, 20, 30), np.full(30, r), rng.normal(size=30)) for r in range(9)]
    folded = parts[0]
    for p in parts[1:]:
        folded = merge(folded, p)
    tree = merge_all(iter(parts))
    for name in ("step", "count", "min", "max", "min_rank", "max_rank", "nan_count", "nan_rank"):
        np.testing.assert_array_equal(getattr(tree, name), getattr(folded, name))
    np.testing.assert_allclose(tree.sum, folded.sum, rtol=1e-12)
    np.testing.assert_allclose(tree.m2, folded.m2, rtol=1e-12)


def test_no_runtime_warnings_on_nan_inf_and_overflow() -> None:
    """Reducing, merging and finalising NaN, ±Inf and overflowing values emits no warnings."""
    values = [math.nan, math.inf, -math.inf, 1e308, 1e308, 0.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parts = [_one_step([r], [v]) for r, v in enumerate(values)]
        parts += [_one_step([10, 11], [math.inf, -math.inf]), _one_step([12, 13], [1e308, 1e308])]
        merged = merge_all(parts)
        finalize(merged, 14)
        finalize(merge(parts[3], parts[4]), 2)


def test_expected_scalar_or_per_step() -> None:
    """expected broadcasts a scalar, accepts one value per step, and rejects a wrong length."""
    p = reduce_points([0, 1, 1], [0, 0, 1], [1.0, 2.0, 3.0])
    assert finalize(p, 2)["expected"].tolist() == [2, 2]
    assert finalize(p, np.array([1, 2]))["expected"].tolist() == [1, 2]
    with pytest.raises(GroupingError):
        finalize(p, np.array([1, 2, 3]))


def test_partial_dict_round_trip_and_take() -> None:
    """to_dict/from_dict round-trip in FIELDS order; take selects rows by index or mask."""
    p = reduce_points([0, 0, 1, 2], [0, 1, 0, 1], [1.0, 3.0, 2.0, math.nan])
    assert Partial.FIELDS == (
        "step",
        "count",
        "sum",
        "m2",
        "min",
        "max",
        "min_rank",
        "max_rank",
        "nan_count",
        "nan_rank",
    )
    d = p.to_dict()
    assert tuple(d) == Partial.FIELDS
    wire = {k: v.tolist() for k, v in d.items()}  # e.g. after msgpack
    q = Partial.from_dict(wire)
    for name in Partial.FIELDS:
        np.testing.assert_array_equal(getattr(q, name), getattr(p, name))
        assert getattr(q, name).dtype == getattr(p, name).dtype
    assert p.take(np.array([0, 2])).step.tolist() == [0, 2]
    assert p.take(np.array([False, True, False])).count.tolist() == [1]
    assert p.nbytes == 8 * 10 * len(p)
    assert "steps=3" in repr(p) and "points=4" in repr(p)


@pytest.mark.parametrize(
    "bad",
    [
        {"step": [1, 0]},
        {"step": [0, 0]},
        {"count": [0, 1]},
        {"min": [1.0]},
        {"nan_count": [2, 0]},
        {"nan_count": [-1, 0]},
        {"nan_rank": [0, -1]},
        {"nan_count": [1, 0], "nan_rank": [-1, -1]},
    ],
)
def test_from_dict_rejects_what_merge_cannot_use(bad: dict[str, list[float]]) -> None:
    """from_dict rejects unsorted or repeated steps, zero counts, mismatched lengths, nan_count
    outside 0..count and a nan_rank that disagrees with nan_count."""
    d = {k: v.tolist() for k, v in reduce_points([0, 1], [0, 0], [1.0, 2.0]).to_dict().items()}
    d.update(bad)
    with pytest.raises(GroupingError):
        Partial.from_dict(d)
    with pytest.raises(GroupingError):
        Partial.from_dict({"step": [0]})


def test_input_kinds_and_validation() -> None:
    """int32 ranks and bool/int values are accepted; mismatched lengths, 2-D arrays and
    non-integer steps raise GroupingError (a ValueError)."""
    p = reduce_points(np.array([0, 0]), np.array([1, 0], np.int32), np.array([True, False]))
    assert _row(p)["max_rank"] == 1 and _row(p)["mean"] == 0.5
    assert issubclass(GroupingError, ValueError)
    with pytest.raises(GroupingError):
        reduce_points([0, 1], [0], [1.0, 2.0])
    with pytest.raises(GroupingError):
        reduce_points(np.zeros((2, 2), np.int64), np.zeros((2, 2), np.int64), np.zeros((2, 2)))
    with pytest.raises(GroupingError):
        reduce_points([0.5], [0], [1.0])
    with pytest.raises(GroupingError):
        reduce_points([0], [0], ["x"])
