"""wandb's older ``wandb.plots`` names, so scripts written for them run unchanged:

    wandb.log({"pr": wandb.plots.precision_recall(y_test, y_probas, labels)})

They return the same :class:`~client.media.chart.Chart` values as ``rankwise.plot``:

* ``precision_recall(y_true, y_probas, labels, plot_micro=True, classes_to_plot=None)``:
  a ``pr_curve`` chart; with ``plot_micro`` and more than one class column, one more curve
  labelled ``"micro-average"`` (every (sample, class) pair as one binary decision);
* ``ROC(y_true, y_probas, labels, plot_micro=True, plot_macro=True, classes_to_plot=None)``
  (also ``roc``): a ``roc_curve`` chart, plus ``"micro-average"`` and ``"macro-average"``
  curves (macro: the mean of the per-class TPR interpolated on the union of their FPR values,
  as scikit-learn computes it; its thresholds are None);
* ``heatmap(x_labels, y_labels, matrix_values, show_text=False)``: a ``heatmap`` chart,
  data ``{"x_labels", "y_labels", "matrix": rows × columns numbers, "show_text"}`` with one
  row per y label and one column per x label;
* ``confusion_matrix``: ``rankwise.plot.confusion_matrix``.

Class and curve rules: see ``rankwise.plot``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from client.media.chart import Chart
from rankwise.errors import InvalidArgumentError
from rankwise.plot import _Classes, _pr_data, _roc_data, confusion_matrix

__all__ = ["ROC", "confusion_matrix", "heatmap", "precision_recall", "roc"]


def precision_recall(
    y_true: Any = None,
    y_probas: Any = None,
    labels: Sequence[str] | None = None,
    plot_micro: bool = True,
    classes_to_plot: Sequence[Any] | None = None,
) -> Chart:
    """Precision-recall curves per class (and micro-averaged), computed with numpy."""
    c = _Classes(y_true, y_probas, labels, classes_to_plot)
    micro = bool(plot_micro)
    return Chart("pr_curve", title="Precision-Recall Curve", compute=lambda: _pr_data(c, micro=micro))


def ROC(
    y_true: Any = None,
    y_probas: Any = None,
    labels: Sequence[str] | None = None,
    plot_micro: bool = True,
    plot_macro: bool = True,
    classes_to_plot: Sequence[Any] | None = None,
) -> Chart:
    """ROC curves per class (and micro/macro-averaged), computed with numpy."""
    c = _Classes(y_true, y_probas, labels, classes_to_plot)
    micro, macro = bool(plot_micro), bool(plot_macro)
    return Chart("roc_curve", title="ROC Curve", compute=lambda: _roc_data(c, micro=micro, macro=macro))


roc = ROC


def heatmap(x_labels: Sequence[Any], y_labels: Sequence[Any], matrix_values: Any, show_text: bool = False) -> Chart:
    """A matrix of numbers with named rows (``y_labels``) and columns (``x_labels``)."""
    xl, yl = [str(v) for v in x_labels], [str(v) for v in y_labels]
    try:
        m = np.array(matrix_values, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"matrix_values cannot be read as a matrix of numbers: {exc}") from None
    if m.shape != (len(yl), len(xl)):
        raise InvalidArgumentError(
            f"matrix_values has shape {m.shape}; expected (len(y_labels), len(x_labels)) = ({len(yl)}, {len(xl)})"
        )
    rows = [[v if np.isfinite(v) else None for v in r] for r in m.tolist()]
    return Chart(
        "heatmap", title="", data={"x_labels": xl, "y_labels": yl, "matrix": rows, "show_text": bool(show_text)}
    )
