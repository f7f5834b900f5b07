"""``Histogram``: wandb's ``wandb.Histogram(sequence=None, np_histogram=None, num_bins=64)``.

Wire: ``{"_type": "histogram", "bins": [edges...], "values": [counts...]}`` with
``len(bins) == len(values) + 1``. From a sequence the counts are ints computed by
``numpy.histogram`` on the I/O thread from the copy taken at construction; non-finite
values (NaN, ±inf) cannot be placed in a bin and are left out (a histogram of only non-finite
values is empty: edges [0, 1], one zero count, as numpy gives for no data). From
``np_histogram=(values, edges)`` both lists are sent as given (values may be floats, e.g.
densities). Logging a numpy array or torch tensor of more than 32 elements makes one of
these with ``num_bins=32``, as wandb does. Ranks' histograms at a step merge with
``grouping.histogram.merge_histograms``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from client.errors import InvalidArgumentError
from client.media._arrays import array_copy, check_numeric
from client.media._base import Media

MAX_BINS = 512


def _check_bins(num_bins: Any) -> int:
    if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)):
        raise InvalidArgumentError(f"num_bins must be an int from 1 to {MAX_BINS}, got {num_bins!r}")
    if not 1 <= int(num_bins) <= MAX_BINS:
        raise InvalidArgumentError(f"num_bins={num_bins} is out of range: it must be from 1 to {MAX_BINS}")
    return int(num_bins)


class Histogram(Media):
    """A histogram of a sequence (binned on the I/O thread) or of ``np.histogram``'s output."""

    _type = "histogram"
    MAX_LENGTH = MAX_BINS

    def __init__(self, sequence: Any = None, np_histogram: Any = None, num_bins: int = 64) -> None:
        self.num_bins = _check_bins(num_bins)
        self._data: np.ndarray | None = None
        self._given: tuple[list, list] | None = None
        if np_histogram is not None:
            if sequence is not None:
                raise InvalidArgumentError("Histogram: pass either sequence or np_histogram, not both")
            self._given = self._check_np_histogram(np_histogram)
        elif sequence is not None:
            data = array_copy(sequence, "sequence").ravel()
            check_numeric(data, "sequence")
            self._data = data
        else:
            raise InvalidArgumentError("Histogram needs sequence=... or np_histogram=(values, bin_edges)")

    @classmethod
    def _from_owned(cls, data: np.ndarray, num_bins: int = 32) -> Histogram:
        """From an array the caller already copied (``log()``'s automatic conversion): no second copy."""
        self = cls.__new__(cls)
        self.num_bins = num_bins
        self._given = None
        self._data = data.ravel()
        return self

    @staticmethod
    def _check_np_histogram(h: Any) -> tuple[list, list]:
        try:
            values, edges = h
        except (TypeError, ValueError):
            raise InvalidArgumentError(
                "np_histogram must be a (values, bin_edges) pair as np.histogram returns"
            ) from None
        v = array_copy(values, "np_histogram values").ravel()
        e = array_copy(edges, "np_histogram bin_edges").ravel()
        check_numeric(v, "np_histogram values")
        check_numeric(e, "np_histogram bin_edges")
        if len(e) != len(v) + 1:
            raise InvalidArgumentError(
                f"np_histogram: {len(e)} bin edges for {len(v)} values; there must be one edge more than values"
            )
        if len(v) > MAX_BINS:
            raise InvalidArgumentError(f"np_histogram has {len(v)} bins; the maximum is {MAX_BINS} (num_bins limit)")
        if len(v) == 0:
            raise InvalidArgumentError("np_histogram has no bins")
        ef = e.astype(np.float64)
        if not np.isfinite(ef).all() or not (np.diff(ef) > 0).all():
            raise InvalidArgumentError("np_histogram bin_edges must be finite and strictly increasing")
        return v.tolist(), ef.tolist()

    def _nbytes_hint(self) -> int:
        return 64 + 18 * (self.num_bins if self._given is None else len(self._given[0]))

    def _encode(self) -> dict:
        if self._given is not None:
            values, bins = self._given
        else:
            data = self._data
            assert data is not None
            if data.dtype.kind == "b":
                data = data.astype(np.uint8)
            if data.dtype.kind == "f" and not np.isfinite(data).all():
                data = data[np.isfinite(data)]
            counts, edges = np.histogram(data, bins=self.num_bins)
            values, bins = counts.tolist(), edges.astype(np.float64).tolist()
        return {"_type": "histogram", "bins": bins, "values": values}

    def _release(self) -> None:
        self._data = None
        self._given = None

    @property
    def histogram(self) -> list:
        """The counts (wandb's attribute name); computes the wire form if needed."""
        return self._to_wire().get("values", [])

    @property
    def bins(self) -> list:
        return self._to_wire().get("bins", [])
