"""``Chart``: what ``rankwise.plot.*`` and ``rankwise.plots.*`` return.

A chart is computed data for a known kind of plot, not an image: the UI draws it.
The builders in ``rankwise.plot`` validate and copy their inputs on the caller's thread and
hand a ``compute`` function to the chart; it runs on the I/O thread in ``_to_wire`` (or when
``chart.data`` is read).

Wire: ``{"_type": "chart", "kind": kind, "title": str, "data": {...}}``; the ``data`` of every
kind is documented in docs/media.md and in ``rankwise.plot``. Only JSON-safe values: finite
floats, ints, strings, None (an undefined number such as the AUC of a class without
negatives is None).
"""

from __future__ import annotations

from collections.abc import Callable

from client.errors import InvalidArgumentError
from client.media._base import Media

KINDS = ("pr_curve", "roc_curve", "confusion_matrix", "line", "scatter", "bar", "histogram", "line_series", "heatmap")


class Chart(Media):
    """A chart of ``kind`` whose ``data`` is computed lazily (once) by ``compute``."""

    _type = "chart"

    def __init__(
        self, kind: str, data: dict | None = None, title: str = "", compute: Callable[[], dict] | None = None
    ) -> None:
        if kind not in KINDS:
            raise InvalidArgumentError(f"kind={kind!r} must be one of {KINDS}")
        if (data is None) == (compute is None):
            raise InvalidArgumentError("Chart needs exactly one of data= or compute=")
        self.kind = kind
        self.title = "" if title is None else str(title)
        self.caption = None
        self._data = data
        self._compute = compute

    @property
    def data(self) -> dict:
        """The chart's data (computed now if it was not yet)."""
        wire = self._to_wire()
        if "error" in wire:
            raise InvalidArgumentError(f"{self.kind} chart could not be computed: {wire['error']}")
        return wire["data"]

    def _nbytes_hint(self) -> int:
        return 4096

    def _encode(self) -> dict:
        data = self._data if self._data is not None else self._compute()  # type: ignore[misc]
        return {"_type": "chart", "kind": self.kind, "title": self.title, "data": data}

    def _release(self) -> None:
        self._compute = None

    def __repr__(self) -> str:
        return f"<rankwise.Chart {self.kind} title={self.title!r}>"
