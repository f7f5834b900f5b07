"""The UI's series reduction (pure numpy) against brute force: per bucket, the extremes in the order they
occur, NaN ignored; bucket means; other series placed on a series' buckets; step times."""

from __future__ import annotations

import numpy as np
import pytest

from rankwise._ui import series as S


def brute_buckets(x: np.ndarray, edges: np.ndarray) -> dict[int, np.ndarray]:
    n = len(edges) - 1
    lo, hi = edges[0], edges[-1]
    out: dict[int, list[int]] = {}
    for i, v in enumerate(x):
        if lo <= v <= hi:
            b = min(n - 1, max(0, int(np.floor((v - lo) * (n / (hi - lo))))))
            out.setdefault(b, []).append(i)
    return {b: np.array(ix) for b, ix in out.items()}


@pytest.mark.parametrize("seed", range(6))
def test_extremes_per_bucket_match_brute_force(seed):
    """Random sorted x (with repeats), values with NaNs and ±inf: every non-empty bucket gives its lowest
    and highest finite-or-inf value (NaN ignored, NaN when all are) ordered by first occurrence."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    x = np.sort(rng.integers(0, 5000, n)).astype(np.float64)
    v = rng.normal(size=n)
    v[rng.random(n) < 0.05] = np.nan
    v[rng.random(n) < 0.01] = np.inf
    if seed == 0:
        v[: n // 2] = np.nan  # whole buckets of NaN
    lo, hi = float(rng.uniform(-100, 2000)), float(rng.uniform(2500, 6000))
    width = int(rng.integers(1, 400))
    edges = S.bucket_edges(lo, hi, width)
    seg = S.segments(x, edges)
    expected = brute_buckets(x, edges)
    assert seg.bucket.tolist() == sorted(expected)
    first, second = S.extremes(v, seg)
    for k, b in enumerate(seg.bucket.tolist()):
        ix = expected[b]
        assert (seg.start[k], seg.stop[k]) == (ix[0], ix[-1] + 1)
        vals = v[ix]
        if np.isnan(vals).all():
            assert np.isnan(first[k]) and np.isnan(second[k])
            continue
        i_min, i_max = int(np.nanargmin(vals)), int(np.nanargmax(vals))
        want = (vals[i_min], vals[i_max]) if i_min <= i_max else (vals[i_max], vals[i_min])
        assert (first[k], second[k]) == want
        assert S.bucket_min(v, seg)[k] == np.nanmin(vals) and S.bucket_max(v, seg)[k] == np.nanmax(vals)


def test_a_single_spike_survives_any_width():
    """One step of 1e6 among a million zeros is in the reduced series at every width."""
    x = np.arange(1_000_000, dtype=np.float64)
    v = np.zeros(len(x))
    v[654_321] = 1e6
    for width in (1, 7, 100, 1000, 4000):
        seg = S.segments(x, S.bucket_edges(0, len(x) - 1, width))
        first, second = S.extremes(v, seg)
        assert max(first.max(), second.max()) == 1e6


def test_place_puts_another_series_on_the_buckets_rows():
    """A rank's series lands on the two rows of the buckets that have group rows; NaN where it has none."""
    edges = S.bucket_edges(0, 9, 3)  # buckets [0,3) [3,6) [6,9]
    rows_bucket = np.array([0, 2])
    rx = np.array([1.0, 2.0, 4.0, 7.0, 8.0])
    rv = np.array([5.0, -1.0, 9.0, 3.0, 4.0])
    out = S.place(rows_bucket, rx, rv, edges)
    assert out.tolist() == [5.0, -1.0, 3.0, 4.0]  # bucket 1 (x=4) has no rows: dropped
    assert np.isnan(S.place(np.array([1]), rx[:2], rv[:2], edges)).all()


def test_bucket_means_ignore_non_finite_values():
    """Heat-map cells: mean of the finite values per bucket; NaN for buckets without any."""
    x = np.array([0.0, 1.0, 2.0, 5.0, 6.0])
    v = np.array([1.0, np.nan, 3.0, np.inf, 4.0])
    out = S.bucket_means(x, v, S.bucket_edges(0, 6, 3))  # [0,2) [2,4) [4,6]
    assert out[0] == 1.0 and out[1] == 3.0 and out[2] == 4.0
    assert np.isnan(S.bucket_means(x, v, S.bucket_edges(100, 200, 2))).all()


def test_step_durations_and_latest_commit_per_step():
    """Seconds per step divide by the steps in between; a step is complete at its latest rank's commit."""
    steps, dt = S.step_durations(np.array([0, 1, 3, 13]), np.array([10.0, 10.5, 11.5, 16.5]))
    assert steps.tolist() == [1, 3, 13] and dt.tolist() == [0.5, 0.5, 0.5]
    s, t = S.per_step_max(
        [np.array([0, 1, 2]), np.array([1, 2, 4])], [np.array([1.0, 5.0, 2.0]), np.array([3.0, 1.0, 7.0])]
    )
    assert s.tolist() == [0, 1, 2, 4] and t.tolist() == [1.0, 5.0, 2.0, 7.0]
