"""Rate limiting by coalescing: over its budget a run's consecutive rows merge into spans.

Training code may log thousands of rows a second; storing and charting all of
them buys nothing. Each run has a token bucket of ``rows_per_s`` (burst
``burst_s`` seconds' worth). A batch of ``n`` committed rows that fits is kept
row for row. A batch that does not fit is split into as many consecutive spans
as the bucket allows (at least one), and each span becomes one row per key
holding the *last* value, the mean, min, max and the count of values over its
steps, stored with the span's first and last step. Counts add up to the rows
logged, spikes survive in min/max, and the latest value is exact.

Keys can opt out (``define_metric(key, rate_limit=False)``): their values are
kept row for row even inside coalesced spans. Group rows are computed from the
raw values before coalescing, so group aggregates are exact at every step.

Pure functions and a small class; time is passed in.
"""

from __future__ import annotations

import numpy as np

DEFAULT_ROWS_PER_S = 1000.0
DEFAULT_BURST_S = 2.0

# layout of a coalesced column (``enc == "span"``): one array per field, each m long
SPAN_FIELDS = ("first_step", "count", "last", "mean", "min", "max")
_SPAN_DTYPES = {"first_step": "<i8", "count": "<i8"}


class RowBudget:
    """Token bucket of rows for one run."""

    __slots__ = ("rate", "capacity", "tokens", "updated")

    def __init__(self, rows_per_s: float = DEFAULT_ROWS_PER_S, burst_s: float = DEFAULT_BURST_S, now: float = 0.0):
        if rows_per_s <= 0:
            raise ValueError(f"rows_per_s={rows_per_s!r} must be > 0")
        self.rate = float(rows_per_s)
        self.capacity = max(1.0, rows_per_s * burst_s)
        self.tokens = self.capacity
        self.updated = now

    def __repr__(self) -> str:
        return f"<RowBudget {self.rate:g} rows/s tokens={self.tokens:.0f}/{self.capacity:.0f}>"

    def allow(self, n: int, now: float) -> int:
        """How many rows a batch of ``n`` may become (1 ≤ result ≤ n); consumes that many tokens."""
        if n <= 0:
            return 0
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now
        allowed = n if self.tokens >= n else max(1, int(self.tokens))
        self.tokens -= allowed
        return allowed


def span_starts(n: int, spans: int) -> np.ndarray:
    """Row indices where each of ``spans`` consecutive, near-equal spans of ``n`` rows begins."""
    spans = max(1, min(n, spans))
    return (np.arange(spans, dtype=np.int64) * n) // spans


def coalesce_column(
    rows: np.ndarray, steps: np.ndarray, values: np.ndarray, starts: np.ndarray
) -> dict[str, np.ndarray]:
    """Reduce one numeric column into spans.

    ``rows`` are the batch row indices where the key has a value (sorted), ``steps`` and
    ``values`` the matching steps and values, ``starts`` the span starts over batch rows.
    Returns ``step`` (the last step of each span that has values of this key) and the
    ``SPAN_FIELDS`` arrays.
    """
    span_of = np.searchsorted(starts, rows, side="right") - 1
    bounds = np.flatnonzero(np.r_[True, span_of[1:] != span_of[:-1]])
    vals = values.astype(np.float64, copy=False)
    ends = np.r_[bounds[1:], len(vals)] - 1
    count = np.diff(np.r_[bounds, len(vals)])
    return {
        "step": steps[ends],
        "first_step": steps[bounds],
        "count": count.astype(np.int64),
        "last": vals[ends],
        "mean": np.add.reduceat(vals, bounds) / count,
        "min": np.minimum.reduceat(vals, bounds),
        "max": np.maximum.reduceat(vals, bounds),
    }


def pack_spans(spans: dict[str, np.ndarray]) -> bytes:
    return b"".join(np.ascontiguousarray(spans[f], dtype=_SPAN_DTYPES.get(f, "<f8")).tobytes() for f in SPAN_FIELDS)


def unpack_spans(blob: bytes, m: int) -> dict[str, np.ndarray]:
    out = {}
    pos = 0
    for f in SPAN_FIELDS:
        dtype = np.dtype(_SPAN_DTYPES.get(f, "<f8"))
        out[f] = np.frombuffer(blob, dtype=dtype, count=m, offset=pos)
        pos += m * dtype.itemsize
    return out
