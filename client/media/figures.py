"""matplotlib and plotly figures.

matplotlib: ``log({"chart": plt})`` (the pyplot module: its current figure), a ``Figure``,
or an ``Axes`` becomes an :class:`~client.media.image.Image` holding a PNG (``client.media.convert``). The PNG is
rendered **at call time, on the caller's thread**, with the Agg renderer
(``Figure.savefig(format="png")``). Rendering later on the I/O thread is not possible
correctly: matplotlib is not thread-safe (the I/O thread would draw while the training
thread mutates the same figure or pyplot's global state), and scripts routinely call
``plt.clf()`` or reuse the figure right after ``log()``, so a deferred render would draw
the wrong picture. The cost is the render itself (docs/media.md has the measurements: tens of
milliseconds for a simple line plot); it is paid only by a caller who logs a chart.
wandb converts a logged matplotlib figure to plotly when plotly is installed; rankwise always
logs the PNG, which shows what the user drew.

plotly: a figure (or its dict) becomes :class:`Plotly`: ``{"_type": "plotly", "json": str}``.
The figure is snapshotted at construction with ``to_dict()`` (a deep copy, so later edits
do not leak into the logged value) and serialised to JSON on the I/O thread.
"""

from __future__ import annotations

import io
import json
import types
from typing import Any

from client.errors import InvalidArgumentError
from client.media._base import Media


def is_matplotlib(obj: Any) -> bool:
    if isinstance(obj, types.ModuleType):
        return obj.__name__ in ("matplotlib.pyplot", "matplotlib.pylab")
    return type(obj).__module__.startswith("matplotlib.")


def is_plotly(obj: Any) -> bool:
    return type(obj).__module__.startswith("plotly.") and hasattr(obj, "to_plotly_json")


def _figure_of(obj: Any) -> Any:
    if isinstance(obj, types.ModuleType):
        return obj.gcf()
    if hasattr(obj, "savefig"):
        return obj
    fig = getattr(obj, "figure", None)
    if fig is None and hasattr(obj, "get_figure"):
        fig = obj.get_figure()
    if fig is None or not hasattr(fig, "savefig"):
        raise InvalidArgumentError(f"cannot find the figure of the matplotlib object {type(obj).__name__}")
    return fig


def render_png(obj: Any, **savefig_kwargs: Any) -> bytes:
    """Render a matplotlib figure (or pyplot, or an Axes) to PNG bytes now."""
    fig = _figure_of(obj)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", **savefig_kwargs)
    return buf.getvalue()


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):  # numpy arrays and scalars inside a figure dict
        return o.tolist()
    if hasattr(o, "isoformat"):
        return o.isoformat()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


class Plotly(Media):
    """A plotly figure (wandb's ``wandb.Plotly``); a matplotlib figure is rendered as an Image instead."""

    _type = "plotly"

    def __init__(self, val: Any) -> None:
        if isinstance(val, dict):
            import copy

            self._fig: dict | None = copy.deepcopy(val)
        elif is_plotly(val):
            self._fig = val.to_dict()
        elif is_matplotlib(val):
            raise InvalidArgumentError(
                "Plotly(val=...) got a matplotlib figure: log it directly or as rankwise.Image(fig)"
            )
        else:
            raise InvalidArgumentError(f"Plotly(val=...) needs a plotly figure or its dict, got {type(val).__name__}")

    def _encode(self) -> dict:
        fig = self._fig
        try:
            import plotly.io as pio  # handles numpy arrays, dates, NaN the way plotly.js reads them

            text = pio.to_json(fig, validate=False)
        except ImportError:
            text = json.dumps(fig, default=_json_default)
        return {"_type": "plotly", "json": text}

    def _release(self) -> None:
        self._fig = None
