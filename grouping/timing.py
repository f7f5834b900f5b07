"""Which per-rank timing shows a straggler: pure rules shared by the web UI's straggler panel
(rankwise/_ui/charts.py) and the agent's straggler detector (agent/alerts/detectors/straggler.py).

A rank's step time is either the interval between its commits (its ``_timestamp`` per step) or a key it
logs whose name says it is a duration (:data:`TIMING`). In synchronous data parallelism every rank waits
for the slowest at each all-reduce, so commit intervals are equal and only a compute/data-time key tells
the slow rank apart: :func:`pick_timing` picks whichever separates the ranks most (:func:`unevenness`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

import numpy as np

STEP_TIME = "_timestamp"  # the name the commit-interval timing goes by

# keys that look like a duration: step_time_ms, compute_ms, data/wait_s, fwd.latency, dt ...
TIMING = re.compile(
    r"(^|[._/-])(time|times|duration|latency|wait|waiting|compute|elapsed|dt)([._/-]|$)|[._/-](ms|us|s|sec|secs)$",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=1 << 16)  # the agent asks for every chunk of every commit
def is_timing_key(name: str) -> bool:
    """Does the key's name say it is a duration?"""
    return bool(TIMING.search(name))


def median(a: np.ndarray) -> float | None:
    """The median of ``a`` (None when empty): the mean of the two middle values of an even count."""
    if len(a) == 0:
        return None
    lo, hi = (len(a) - 1) // 2, len(a) // 2
    part = np.partition(a, [lo, hi])
    return float((part[lo] + part[hi]) / 2)


def unevenness_of(means: Iterable[float]) -> float:
    """How far the largest per-rank mean is above the median rank's (1.0: all alike; 0.0: fewer than two)."""
    m = [x for x in means if x == x]
    if len(m) < 2:
        return 0.0
    typical = median(np.array(m))
    return max(m) / typical if typical and typical > 0 else 0.0


def unevenness(per_run: Mapping[object, tuple[np.ndarray, np.ndarray]]) -> float:
    """:func:`unevenness_of` the finite mean of each run's values (``{run: (steps, values)}``)."""
    means = []
    for _, v in per_run.values():
        fin = v[np.isfinite(v)]
        if len(fin):
            means.append(float(fin.mean()))
    return unevenness_of(means)


def pick_timing(step_time_unevenness: float, candidates: Mapping[str, float]) -> str:
    """:data:`STEP_TIME` unless a timing key (``{name: unevenness}``) separates the ranks more (the first
    such key of the highest score wins)."""
    best, best_score = STEP_TIME, step_time_unevenness
    for name, score in candidates.items():
        if score > best_score:
            best, best_score = name, score
    return best
