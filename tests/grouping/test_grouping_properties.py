"""Property tests: partials reduced per disjoint rank set and merged in any order and tree
shape finalise to numpy's nan-reductions over the finite values of all points, with the
non-finite ones counted (tests/support/grouprows.py ``nan_aware_row`` is the reference)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grouping import FINAL_FIELDS, Partial, finalize, merge, merge_all, reduce_points
from support.grouprows import nan_aware_row

N_RANKS = 16
MAX_STEP = 50
EXACT = ("step", "count", "expected", "min", "max", "min_rank", "max_rank", "nan_count", "nan_rank")
FLOATS = ("mean", "min", "max", "std")
# too_slow: data generation competes with the rest of the suite on a 2-core CI machine
SETTINGS = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
LIGHT = settings(SETTINGS, max_examples=100)

SPECIAL = [math.nan, math.inf, -math.inf, 0.0, -0.0]
# Small dyadic values: sums are exact in any order (so means are too) and ties are frequent.
GRID_VALUES = st.one_of(
    st.sampled_from(SPECIAL),
    st.integers(-8, 8).map(float),
    st.integers(-32, 32).map(lambda i: i / 4),
)
FINITE_VALUES = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


def points(values: st.SearchStrategy[float], max_size: int = 120) -> st.SearchStrategy:
    """Arrival-ordered (step, rank, value) lists over steps 0..MAX_STEP; half the steps fall
    on 0..3 so many ranks share a step and repeats of a (step, rank) (last-wins) are common."""
    steps = st.one_of(st.integers(0, 3), st.integers(0, MAX_STEP))
    return st.lists(
        st.tuples(steps, st.integers(0, N_RANKS - 1), values),
        max_size=max_size,
    )


def arrays(pts: list[tuple[int, int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not pts:
        return np.array([], np.int64), np.array([], np.int64), np.array([], np.float64)
    s, r, v = zip(*pts)
    return np.array(s, np.int64), np.array(r, np.int64), np.array(v, np.float64)


def numpy_rows(pts: list[tuple[int, int, float]]) -> dict[str, np.ndarray]:
    """The reference: last value per (step, rank), then numpy's nan-reductions over the finite
    rank-ordered values (``nan_aware_row``)."""
    last: dict[tuple[int, int], float] = {}
    for s, r, v in pts:
        last[(s, r)] = v
    rows: dict[str, list] = {k: [] for k in FINAL_FIELDS}
    for s in sorted({s for s, _ in last}):
        ranks = sorted(r for t, r in last if t == s)
        row = nan_aware_row(ranks, [last[(s, r)] for r in ranks])
        rows["step"].append(s)
        rows["expected"].append(N_RANKS)
        for k, x in zip(("count", "mean", "min", "max", "std", "min_rank", "max_rank", "nan_count", "nan_rank"), row):
            rows[k].append(x)
    return {k: np.array(v, dtype=np.float64 if k in FLOATS else np.int64) for k, v in rows.items()}


def split_by_rank(pts, owner: list[int], n_parts: int) -> list[Partial]:
    """Reduce each disjoint rank set's points (arrival order kept) into its own partial."""
    return [reduce_points(*arrays([p for p in pts if owner[p[1]] == i])) for i in range(n_parts)]


def merge_randomly(parts: list[Partial], data: st.DataObject) -> Partial:
    """Merge in a random order and random tree shape, with random argument order."""
    parts = list(parts)
    while len(parts) > 1:
        a = parts.pop(data.draw(st.integers(0, len(parts) - 1)))
        b = parts.pop(data.draw(st.integers(0, len(parts) - 1)))
        parts.insert(data.draw(st.integers(0, len(parts))), merge(a, b))
    return parts[0]


def assert_rows(got: dict[str, np.ndarray], want: dict[str, np.ndarray], rtol: float) -> None:
    assert tuple(got) == tuple(want)
    for k in EXACT:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k, strict=True)
    for k in ("mean", "std"):
        assert got[k].dtype == want[k].dtype == np.float64
        np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=0, equal_nan=True, err_msg=k)


partitions = st.integers(1, 6).flatmap(
    lambda k: st.tuples(st.just(k), st.lists(st.integers(0, k - 1), min_size=N_RANKS, max_size=N_RANKS))
)


@SETTINGS
@given(pts=points(GRID_VALUES), split=partitions, data=st.data())
def test_any_split_and_merge_tree_equals_numpy(pts, split, data) -> None:
    """Points split by disjoint rank sets, reduced, and merged in a random order and tree
    shape finalise to numpy's nan-reductions over the deduplicated rank-ordered finite values:
    count, nan_count, nan_rank, min, max and their ranks exactly; mean and std to rtol 1e-12
    with NaN in the same places (steps whose values are all non-finite)."""
    n_parts, owner = split
    want = numpy_rows(pts)
    parts = split_by_rank(pts, owner, n_parts)
    assert_rows(finalize(merge_randomly(parts, data), N_RANKS), want, rtol=1e-12)
    assert_rows(finalize(merge_all(parts), N_RANKS), want, rtol=1e-12)
    assert_rows(finalize(reduce_points(*arrays(pts)), N_RANKS), want, rtol=1e-12)


@LIGHT
@given(pts=points(st.one_of(st.sampled_from(SPECIAL), FINITE_VALUES)), split=partitions, data=st.data())
def test_general_floats_match_numpy_to_rounding(pts, split, data) -> None:
    """With arbitrary finite floats (cancellation possible) the exact fields stay exact and
    mean / variance agree with numpy within a floating-point error bound scaled by the data
    (summation order differs, so no fixed rtol can hold near a zero mean or variance)."""
    n_parts, owner = split
    want = numpy_rows(pts)
    got = finalize(merge_randomly(split_by_rank(pts, owner, n_parts), data), N_RANKS)
    for k in EXACT:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k, strict=True)
    finite = [abs(v) for _, _, v in pts if math.isfinite(v)]
    scale = max(finite, default=1.0)
    eps = np.finfo(np.float64).eps
    np.testing.assert_allclose(got["mean"], want["mean"], rtol=1e-12, atol=4 * N_RANKS * eps * scale, equal_nan=True)
    np.testing.assert_allclose(
        got["std"] ** 2, want["std"] ** 2, rtol=1e-12, atol=16 * N_RANKS * eps * scale**2, equal_nan=True
    )


three_disjoint = st.tuples(points(GRID_VALUES), st.lists(st.integers(0, 2), min_size=N_RANKS, max_size=N_RANKS))


@LIGHT
@given(case=three_disjoint)
def test_merge_is_commutative_and_associative(case) -> None:
    """merge(a, b) equals merge(b, a) bit for bit in every field (NaN where NaN, the same
    signed zeros); (a·b)·c equals a·(b·c) exactly in count/min/max/ranks and to rtol 1e-12
    in sum and m2."""
    pts, owner = case
    a, b, c = split_by_rank(pts, owner, 3)
    ab, ba = merge(a, b), merge(b, a)
    for name in Partial.FIELDS:
        x, y = getattr(ab, name), getattr(ba, name)
        np.testing.assert_array_equal(x, y, err_msg=name, strict=True)
        if x.dtype.kind == "f":  # the same signed zeros (a NaN's sign bit is not a value)
            assert (np.signbit(x) == np.signbit(y))[~np.isnan(x)].all(), name
    left, right = merge(ab, c), merge(a, merge(b, c))
    for name in ("step", "count", "min", "max", "min_rank", "max_rank", "nan_count", "nan_rank"):
        np.testing.assert_array_equal(getattr(left, name), getattr(right, name), err_msg=name)
    for name in ("sum", "m2"):
        np.testing.assert_allclose(getattr(left, name), getattr(right, name), rtol=1e-12, equal_nan=True, err_msg=name)


# Mostly non-finite: steps where every value is NaN/±Inf, or all but one, are frequent.
MOSTLY_BAD = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf]), st.integers(-4, 4).map(float))


@SETTINGS
@given(pts=points(MOSTLY_BAD), split=partitions, data=st.data())
def test_mostly_non_finite_values_through_the_wire_equal_numpy(pts, split, data) -> None:
    """Node partials dominated by NaN/±Inf, sent through to_dict/from_dict as a root receives
    them (lists, as after msgpack) and merged in a random tree, equal the NaN-aware reference
    in every field; a step with no finite value has mean/min/max/std NaN and ranks -1."""
    n_parts, owner = split
    want = numpy_rows(pts)
    wired = [
        Partial.from_dict({k: v.tolist() for k, v in p.to_dict().items()}) for p in split_by_rank(pts, owner, n_parts)
    ]
    got = finalize(merge_randomly(wired, data), N_RANKS)
    assert_rows(got, want, rtol=1e-12)
    none_finite = got["nan_count"] == got["count"]
    assert (got["min_rank"][none_finite] == -1).all() and np.isnan(got["mean"][none_finite]).all()
    assert ((got["nan_rank"] >= 0) == (got["nan_count"] > 0)).all()


@SETTINGS
@given(pts=points(GRID_VALUES), split=partitions, data=st.data())
def test_non_finite_points_change_only_the_counting_fields(pts, split, data) -> None:
    """Dropping every NaN/±Inf point (after last-wins) leaves mean, min, max, std and their ranks
    unchanged: the non-finite ranks show only in count, nan_count and nan_rank, and
    count - nan_count is the count of the finite-only rows."""
    last: dict[tuple[int, int], float] = {}
    for s, r, v in pts:
        last[(s, r)] = v
    clean = [(s, r, v) for (s, r), v in last.items() if math.isfinite(v)]
    n_parts, owner = split
    got = finalize(merge_randomly(split_by_rank(pts, owner, n_parts), data), N_RANKS)
    ref = finalize(merge_all(split_by_rank(clean, owner, n_parts)), N_RANKS)
    has_finite = np.isin(got["step"], ref["step"])
    assert got["step"][has_finite].tolist() == ref["step"].tolist()
    assert (got["count"] - got["nan_count"])[has_finite].tolist() == ref["count"].tolist()
    for k in ("min", "max", "min_rank", "max_rank"):
        np.testing.assert_array_equal(got[k][has_finite], ref[k], err_msg=k)
    for k in ("mean", "std"):
        np.testing.assert_allclose(got[k][has_finite], ref[k], rtol=1e-12, atol=0, err_msg=k)
    assert (got["nan_count"][~has_finite] == got["count"][~has_finite]).all()
    assert (ref["nan_count"] == 0).all() and (ref["nan_rank"] == -1).all()
