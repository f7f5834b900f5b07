"""Charts with wandb's ``wandb.plot`` signatures, computed with numpy (no scikit-learn).

Each function validates and copies its inputs on the caller's thread (``rankwise.InvalidArgumentError``,
a ``ValueError``, naming the argument) and returns a :class:`~client.media.chart.Chart`; the numbers are
computed on the writer's I/O thread (or when ``chart.data`` is read). Wire::

    {"_type": "chart", "kind": kind, "title": str, "data": {...}}

Classification inputs (``pr_curve``, ``roc_curve``): ``y_true`` holds N class values,
``y_probas`` is N×K scores (column k belongs to class k), or N scores of the positive class
of a binary problem. Classes:

* integer (or bool) ``y_true``: class k is the value k, 0 ≤ k < K; its name is
  ``labels[k]`` when ``labels`` (K names) is given, else ``str(k)``;
* string ``y_true`` with ``labels``: class k is the value ``labels[k]``;
* string ``y_true`` without ``labels``: class k is the k-th of the sorted distinct values
  (there must be K of them). This is wandb's rule; the first two are exact where wandb's
  ``np.unique`` indexing breaks when a class is absent from ``y_true``.

``classes_to_plot`` selects classes by value or name (default: all; for 1-D binary scores,
the positive class). Each curve is one-vs-rest: positives are the samples of the class, the
score is its column.

Curves are exact (every distinct threshold, as scikit-learn's ``precision_recall_curve`` /
``roc_curve(drop_intermediate=False)``), listed from the highest threshold down, starting
with the point where nothing is predicted positive (threshold ``None``: +∞). A curve of more
than ``MAX_CURVE_POINTS`` points is thinned to that many, evenly by index, always keeping the
first and last points; the average precision and AUC are computed from the full curve.
``interp_size`` is accepted for wandb compatibility and not used: the exact curve is sent.

* ``pr_curve`` data: ``{"x_label": "recall", "y_label": "precision", "classes": [{"label",
  "recall", "precision", "thresholds", "average_precision", "positives"}]}``; precision at a
  threshold t is TP/(TP+FP) over samples with score ≥ t, recall TP/P; the start point is
  (recall 0, precision 1). ``average_precision`` = Σ (Rₙ − Rₙ₋₁)·Pₙ (scikit-learn's
  definition); None when the class has no positive sample (recall is then 0 everywhere).
* ``roc_curve`` data: ``{"x_label": "fpr", "y_label": "tpr", "classes": [{"label", "fpr",
  "tpr", "thresholds", "auc", "positives", "negatives"}]}``; start point (0, 0); ``auc`` by the
  trapezoidal rule, None without positives or negatives (fpr or tpr undefined: 0 everywhere).
* ``confusion_matrix`` data: ``{"labels": [K names], "matrix": K×K ints}``, rows = actual class,
  columns = predicted class.
* ``line``/``scatter``: ``{"x": [...], "y": [...], "x_label", "y_label"}`` (+ ``"stroke"``:
  [...] or None for ``line``); ``bar``: ``{"labels", "values", "label_name", "value_name"}``;
  ``histogram``: ``{"values": [...], "value_name"}`` (raw values, the UI bins them);
  ``line_series``: ``{"xs": [[...] per series], "ys": [[...]], "keys": [...], "xname"}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from client.media.chart import Chart
from client.media.table import Table
from rankwise.errors import InvalidArgumentError

MAX_CURVE_POINTS = 1000

__all__ = [
    "Chart",
    "bar",
    "confusion_matrix",
    "histogram",
    "line",
    "line_series",
    "pr_curve",
    "roc_curve",
    "scatter",
]


# ---------------------------------------------------------------- inputs


def _arr(x: Any, arg: str, dtype: Any = None) -> np.ndarray:
    """A private copy of ``x`` as an array; ragged or non-numeric input raises naming ``arg``."""
    try:
        return np.array([] if x is None else x, dtype=dtype, copy=True)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{arg} cannot be read as an array: {exc}") from None


def _is_integral(arr: np.ndarray) -> bool:
    if arr.dtype.kind in "biu":
        return True
    if arr.dtype.kind == "f":
        return bool(np.isfinite(arr).all() and (arr == np.round(arr)).all())
    return False


class _Classes:
    """Validated classification inputs: class index per sample, N×K scores, K names."""

    def __init__(self, y_true: Any, y_probas: Any, labels: Any, classes_to_plot: Any) -> None:
        y = _arr(y_true, "y_true")
        if y.ndim != 1 or y.size == 0:
            raise InvalidArgumentError(f"y_true must be a non-empty 1-D sequence of class values, got shape {y.shape}")
        p = _arr(y_probas, "y_probas", np.float64)
        if p.ndim not in (1, 2) or p.shape[0] != y.shape[0]:
            raise InvalidArgumentError(
                f"y_probas must be N or N×K scores for the N={y.shape[0]} samples of y_true, got shape {p.shape}"
            )
        if not np.isfinite(p).all():
            raise InvalidArgumentError("y_probas must be finite (no NaN or inf)")
        self.binary = p.ndim == 1
        if self.binary:
            p = np.stack([1.0 - p, p], axis=1)
        k = p.shape[1]
        if k < 1:
            raise InvalidArgumentError("y_probas needs at least one column")
        names: list[str]
        if labels is not None:
            labels = [str(v) for v in labels]
            if len(labels) != k:
                raise InvalidArgumentError(f"labels has {len(labels)} names but y_probas has {k} class columns")
            names = labels
        if _is_integral(y):
            idx = y.astype(np.int64)
            if idx.min() < 0 or idx.max() >= k:
                raise InvalidArgumentError(
                    f"y_true holds class {int(idx.min() if idx.min() < 0 else idx.max())}, "
                    f"outside 0..{k - 1} (the columns of y_probas)"
                )
            if labels is None:
                names = [str(i) for i in range(k)]
        else:
            values = y.astype(str)
            if labels is None:
                names = sorted(set(values.tolist()))
                if len(names) != k:
                    raise InvalidArgumentError(
                        f"y_true has {len(names)} distinct classes but y_probas has {k} columns; "
                        "pass labels= to map them"
                    )
            lookup = {n: i for i, n in enumerate(names)}
            missing = sorted(set(values.tolist()) - set(lookup))
            if missing:
                raise InvalidArgumentError(f"y_true holds {missing[:3]} which are not in labels {names}")
            idx = np.array([lookup[v] for v in values.tolist()], dtype=np.int64)
        self.idx, self.scores, self.names = idx, p, names
        if classes_to_plot is None:
            self.plot = [1] if self.binary else list(range(k))
        else:
            self.plot = []
            for c in classes_to_plot:
                if isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= int(c) < k:
                    i = int(c)
                elif str(c) in names:
                    i = names.index(str(c))
                else:
                    raise InvalidArgumentError(
                        f"classes_to_plot: {c!r} is neither a class index below {k} nor one of {names}"
                    )
                if i not in self.plot:
                    self.plot.append(i)


def _table_column(table: Any, name: Any, arg: str) -> list:
    if not isinstance(table, Table):
        raise InvalidArgumentError(f"table must be a rankwise.Table, got {type(table).__name__}")
    if name not in table.columns:
        raise InvalidArgumentError(f"{arg}={name!r} is not a column of the table; columns are {table.columns}")
    i = table.columns.index(name)
    return [r[i] for r in table.data]


# ---------------------------------------------------------------- curves


def _counts(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives at every distinct threshold, highest first: TP(t), FP(t) count
    the samples with score ≥ t."""
    order = np.argsort(-score, kind="mergesort")
    s = score[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # last sample of each distinct score
    tps = np.cumsum(positive[order], dtype=np.int64)[last]
    fps = last + 1 - tps
    return tps, fps, s[last]


def _thin(n: int) -> np.ndarray | None:
    if n <= MAX_CURVE_POINTS:
        return None
    return np.unique(np.round(np.linspace(0, n - 1, MAX_CURVE_POINTS)).astype(np.int64))


def _points(arrays: dict[str, np.ndarray], thresholds: np.ndarray) -> dict[str, list]:
    keep = _thin(len(thresholds) + 1)
    out: dict[str, list] = {}
    for key, a in arrays.items():
        out[key] = (a if keep is None else a[keep]).tolist()
    th: list = [None] + thresholds.tolist()
    out["thresholds"] = th if keep is None else [th[i] for i in keep.tolist()]
    return out


def pr_points(positive: np.ndarray, score: np.ndarray) -> dict:
    """One class's exact precision-recall curve and average precision."""
    tps, fps, th = _counts(positive.astype(bool), score)
    pos = int(tps[-1])
    precision = np.r_[1.0, tps / (tps + fps)]
    recall = np.r_[0.0, tps / pos] if pos else np.zeros(len(tps) + 1)
    ap = float(np.sum(np.diff(recall) * precision[1:])) if pos else None
    out = _points({"recall": recall, "precision": precision}, th)
    out.update(average_precision=ap, positives=pos)
    return out


def _roc_arrays(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    tps, fps, th = _counts(positive.astype(bool), score)
    pos, neg = int(tps[-1]), int(fps[-1])
    tpr = np.r_[0.0, tps / pos] if pos else np.zeros(len(tps) + 1)
    fpr = np.r_[0.0, fps / neg] if neg else np.zeros(len(fps) + 1)
    return fpr, tpr, th, pos, neg


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def roc_points(positive: np.ndarray, score: np.ndarray) -> dict:
    """One class's exact ROC curve and AUC (trapezoidal rule)."""
    fpr, tpr, th, pos, neg = _roc_arrays(positive, score)
    out = _points({"fpr": fpr, "tpr": tpr}, th)
    out.update(auc=_trapezoid(fpr, tpr) if pos and neg else None, positives=pos, negatives=neg)
    return out


def _step_tops(fpr: np.ndarray, tpr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct fpr values (ascending) with the highest tpr reached at each (tpr is non-decreasing)."""
    last = np.r_[np.nonzero(np.diff(fpr))[0], fpr.size - 1]
    return fpr[last], tpr[last]


def _onehot(c: _Classes) -> np.ndarray:
    return c.idx[:, None] == np.arange(c.scores.shape[1])[None, :]


def _pr_data(c: _Classes, micro: bool = False) -> dict:
    classes = [dict(label=c.names[i], **pr_points(c.idx == i, c.scores[:, i])) for i in c.plot]
    if micro and not c.binary and c.scores.shape[1] > 1:
        classes.append(dict(label="micro-average", **pr_points(_onehot(c).ravel(), c.scores.ravel())))
    return {"x_label": "recall", "y_label": "precision", "classes": classes}


def _roc_data(c: _Classes, micro: bool = False, macro: bool = False) -> dict:
    classes = [dict(label=c.names[i], **roc_points(c.idx == i, c.scores[:, i])) for i in c.plot]
    multi = not c.binary and c.scores.shape[1] > 1
    if micro and multi:
        classes.append(dict(label="micro-average", **roc_points(_onehot(c).ravel(), c.scores.ravel())))
    if macro and multi:
        curves = [_roc_arrays(c.idx == i, c.scores[:, i]) for i in range(c.scores.shape[1])]
        curves = [cv for cv in curves if cv[3] and cv[4]]  # classes with positives and negatives
        if curves:
            # the mean of the per-class tpr at the union of all fpr values: each class's curve
            # keeps the highest tpr at each distinct fpr (the top of a vertical step: np.interp
            # is undefined on repeated x) and is interpolated linearly in between
            grid = np.unique(np.concatenate([cv[0] for cv in curves]))
            tpr = np.mean([np.interp(grid, *_step_tops(cv[0], cv[1])) for cv in curves], axis=0)
            if tpr[0] > 0:  # start the drawn curve at (0, 0) like every other curve
                grid, tpr = np.r_[0.0, grid], np.r_[0.0, tpr]
            keep = _thin(len(grid))
            g, t = (grid, tpr) if keep is None else (grid[keep], tpr[keep])
            classes.append(
                {
                    "label": "macro-average",
                    "fpr": g.tolist(),
                    "tpr": t.tolist(),
                    "thresholds": [None] * len(g),
                    "auc": _trapezoid(grid, tpr),
                }
            )
    return {"x_label": "fpr", "y_label": "tpr", "classes": classes}


# ---------------------------------------------------------------- public builders


def pr_curve(
    y_true: Any = None,
    y_probas: Any = None,
    labels: Sequence[str] | None = None,
    classes_to_plot: Sequence[Any] | None = None,
    interp_size: int = 21,
    title: str = "Precision-Recall Curve",
    split_table: bool = False,
) -> Chart:
    """Precision-recall curve per class (one-vs-rest) with average precision."""
    c = _Classes(y_true, y_probas, labels, classes_to_plot)
    return Chart("pr_curve", title=title, compute=lambda: _pr_data(c))


def roc_curve(
    y_true: Any = None,
    y_probas: Any = None,
    labels: Sequence[str] | None = None,
    classes_to_plot: Sequence[Any] | None = None,
    title: str = "ROC Curve",
    split_table: bool = False,
) -> Chart:
    """ROC curve per class (one-vs-rest) with AUC."""
    c = _Classes(y_true, y_probas, labels, classes_to_plot)
    return Chart("roc_curve", title=title, compute=lambda: _roc_data(c))


def confusion_matrix(
    probs: Any = None,
    y_true: Any = None,
    preds: Any = None,
    class_names: Sequence[str] | None = None,
    title: str = "Confusion Matrix Curve",
    split_table: bool = False,
) -> Chart:
    """Counts of (actual, predicted) class pairs; predictions from ``preds`` or argmax of ``probs``.

    With ``class_names`` (K names), classes are the indices 0..K-1 (or the names themselves);
    without, they are the sorted distinct values of ``y_true`` and ``preds`` together, named
    ``str(value)``."""
    if (probs is None) == (preds is None):
        raise InvalidArgumentError(
            "confusion_matrix needs exactly one of probs= (N×K scores) or preds= (N predicted classes)"
        )
    y = _arr(y_true, "y_true")
    if y.ndim != 1 or y.size == 0:
        raise InvalidArgumentError(f"y_true must be a non-empty 1-D sequence of classes, got shape {y.shape}")
    if probs is not None:
        p = _arr(probs, "probs", np.float64)
        if p.ndim != 2 or p.shape[0] != y.size:
            raise InvalidArgumentError(
                f"probs must be N×K scores for the N={y.size} samples of y_true, got shape {p.shape}"
            )
        if class_names is not None and p.shape[1] != len(class_names):
            raise InvalidArgumentError(f"probs has {p.shape[1]} columns but class_names has {len(class_names)} names")
        pred = np.argmax(p, axis=1)
    else:
        pred = _arr(preds, "preds")
        if pred.shape != y.shape:
            raise InvalidArgumentError(
                f"preds has shape {pred.shape}; it needs one prediction per y_true value ({y.size})"
            )
    if class_names is not None:
        names = [str(n) for n in class_names]
        k = len(names)

        def index(a: np.ndarray, arg: str) -> np.ndarray:
            if _is_integral(a):
                i = a.astype(np.int64)
                if i.size and (i.min() < 0 or i.max() >= k):
                    raise InvalidArgumentError(f"{arg} holds a class outside 0..{k - 1} (class_names has {k} names)")
                return i
            lookup = {n: j for j, n in enumerate(names)}
            vals = a.astype(str).tolist()
            bad = sorted(set(vals) - set(lookup))
            if bad:
                raise InvalidArgumentError(f"{arg} holds {bad[:3]} which are not in class_names")
            return np.array([lookup[v] for v in vals], dtype=np.int64)

        yi, pi = index(y, "y_true"), index(pred, "probs" if probs is not None else "preds")
    else:
        if _is_integral(y) and _is_integral(pred):
            both = np.concatenate([y.astype(np.int64), pred.astype(np.int64)])
        else:
            both = np.concatenate([y.astype(str), pred.astype(str)])
        values, inverse = np.unique(both, return_inverse=True)
        names = [str(v) for v in values.tolist()]
        k = len(names)
        yi, pi = inverse[: y.size], inverse[y.size :]

    def compute() -> dict:
        m = np.zeros((k, k), dtype=np.int64)
        np.add.at(m, (yi, pi), 1)
        return {"labels": names, "matrix": m.tolist()}

    return Chart("confusion_matrix", title=title, compute=compute)


def line(table: Table, x: str, y: str, stroke: str | None = None, title: str = "", split_table: bool = False) -> Chart:
    """A line chart of two columns of a Table (``stroke``: a column splitting the lines)."""
    xs, ys = _table_column(table, x, "x"), _table_column(table, y, "y")
    st = _table_column(table, stroke, "stroke") if stroke is not None else None
    return Chart("line", title=title, data={"x": xs, "y": ys, "stroke": st, "x_label": x, "y_label": y})


def scatter(table: Table, x: str, y: str, title: str = "", split_table: bool = False) -> Chart:
    """A scatter plot of two columns of a Table."""
    xs, ys = _table_column(table, x, "x"), _table_column(table, y, "y")
    return Chart("scatter", title=title, data={"x": xs, "y": ys, "x_label": x, "y_label": y})


def bar(table: Table, label: str, value: str, title: str = "", split_table: bool = False) -> Chart:
    """A bar chart: one bar per row, named by the ``label`` column, of height ``value``."""
    labels, values = _table_column(table, label, "label"), _table_column(table, value, "value")
    return Chart(
        "bar", title=title, data={"labels": labels, "values": values, "label_name": label, "value_name": value}
    )


def histogram(table: Table, value: str, title: str = "", split_table: bool = False) -> Chart:
    """A histogram of one column of a Table (raw values; the UI bins them)."""
    return Chart("histogram", title=title, data={"values": _table_column(table, value, "value"), "value_name": value})


def line_series(
    xs: Any, ys: Any, keys: Sequence[str] | None = None, title: str = "", xname: str = "x", split_table: bool = False
) -> Chart:
    """Several lines: ``ys`` is a list of series; ``xs`` one shared x sequence or one per series."""
    series = [np.asarray(s, dtype=np.float64).ravel().tolist() for s in ys]
    if not series:
        raise InvalidArgumentError("ys must hold at least one series")
    xs_list = list(xs)
    if xs_list and isinstance(xs_list[0], (list, tuple, np.ndarray)):
        xss = [np.asarray(s, dtype=np.float64).ravel().tolist() for s in xs_list]
        if len(xss) != len(series):
            raise InvalidArgumentError(f"xs has {len(xss)} series but ys has {len(series)}")
    else:
        shared = np.asarray(xs_list, dtype=np.float64).ravel().tolist()
        xss = [shared] * len(series)
    for i, (a, b) in enumerate(zip(xss, series)):
        if len(a) != len(b):
            raise InvalidArgumentError(f"series {i}: {len(a)} x values for {len(b)} y values")
    names = [str(k) for k in keys] if keys is not None else [f"key_{i}" for i in range(len(series))]
    if len(names) != len(series):
        raise InvalidArgumentError(f"keys has {len(names)} names for {len(series)} series")
    return Chart("line_series", title=title, data={"xs": xss, "ys": series, "keys": names, "xname": xname})
