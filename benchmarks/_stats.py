"""Distributions of measured durations: observed values at the percentiles, never interpolated
(a p99.9 is a call that really took that long)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def dist_ns(samples: np.ndarray) -> dict[str, Any]:
    """Distribution of per-call durations in ns: observed values (no interpolation) at the percentiles."""
    a = np.asarray(samples, dtype=np.int64)
    if len(a) == 0:
        return {"n": 0}
    q = np.percentile(a, [50, 90, 99, 99.9, 99.99], method="higher")
    return {
        "n": int(len(a)),
        "mean_ns": float(a.mean()),
        "p50_ns": int(q[0]),
        "p90_ns": int(q[1]),
        "p99_ns": int(q[2]),
        "p999_ns": int(q[3]),
        "p9999_ns": int(q[4]),
        "max_ns": int(a.max()),
        "min_ns": int(a.min()),
        "over_10us": int((a > 10_000).sum()),
        "over_100us": int((a > 100_000).sum()),
        "over_1ms": int((a > 1_000_000).sum()),
        "time_over_100us_ms": float(a[a > 100_000].sum() / 1e6),
    }


def summary(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    if len(a) == 0:
        return {"n": 0}
    return {
        "n": int(len(a)),
        "min": float(a.min()),
        "median": float(np.median(a)),
        "mean": float(a.mean()),
        "p99": float(np.percentile(a, 99, method="higher")),
        "max": float(a.max()),
    }
