"""rankwise.plot / rankwise.plots: PR and ROC curves, average precision, AUC and confusion
matrices against hand-computed values and a brute-force reference; class mapping rules;
argument validation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rankwise import Table, plot, plots

# Five samples, two classes. Scores of class 1 are S; class 0's column is 1 - S.
Y = [0, 1, 1, 0, 1]
S = [0.1, 0.8, 0.4, 0.4, 0.9]
PROBAS = [[1 - s, s] for s in S]


def curve(chart, label):
    (c,) = [c for c in chart.data["classes"] if c["label"] == label]
    return c


def test_pr_curve_by_hand():
    """Class 1 (positives 0.9, 0.8, 0.4; negatives 0.4, 0.1): thresholds 0.9, 0.8, 0.4 (a tie
    of a positive and a negative), 0.1 give TP/FP 1/0, 2/0, 3/1, 3/2, so precision
    1, 1, 0.75, 0.6 and recall 1/3, 2/3, 1, 1 after the start point (0, 1); AP = 1/3 + 1/3 +
    0.75/3 = 11/12. Class 0 likewise with scores 1 - S: AP = 0.5 + 0.5·2/3 = 5/6."""
    chart = plot.pr_curve(Y, PROBAS, labels=["neg", "pos"])
    assert chart.kind == "pr_curve" and chart.title == "Precision-Recall Curve"
    c1 = curve(chart, "pos")
    assert c1["thresholds"] == [None, 0.9, 0.8, 0.4, 0.1]
    assert c1["precision"] == [1.0, 1.0, 1.0, 0.75, 0.6]
    assert c1["recall"] == [0.0, 1 / 3, 2 / 3, 1.0, 1.0]
    assert c1["average_precision"] == pytest.approx(11 / 12, rel=1e-15) and c1["positives"] == 3
    c0 = curve(chart, "neg")
    assert c0["thresholds"] == [None, 1 - 0.1, 1 - 0.4, 1 - 0.8, 1 - 0.9]
    assert c0["precision"] == [1.0, 1.0, 2 / 3, 0.5, 0.4]
    assert c0["recall"] == [0.0, 0.5, 1.0, 1.0, 1.0]
    assert c0["average_precision"] == pytest.approx(5 / 6, rel=1e-15)


def test_roc_curve_by_hand():
    """Class 1: tpr 0, 1/3, 2/3, 1, 1 and fpr 0, 0, 0, 1/2, 1; AUC by trapezoids = 11/12, which
    is also the Mann-Whitney count (5.5 of 6 positive/negative pairs ordered, the tie counting
    half). Class 0: tpr 0, 1/2, 1, 1, 1, fpr 0, 0, 1/3, 2/3, 1; AUC 11/12."""
    chart = plot.roc_curve(Y, PROBAS)
    c1 = curve(chart, "1")
    assert c1["tpr"] == [0.0, 1 / 3, 2 / 3, 1.0, 1.0] and c1["fpr"] == [0.0, 0.0, 0.0, 0.5, 1.0]
    assert c1["thresholds"] == [None, 0.9, 0.8, 0.4, 0.1]
    assert c1["auc"] == pytest.approx(11 / 12, rel=1e-15) and (c1["positives"], c1["negatives"]) == (3, 2)
    c0 = curve(chart, "0")
    assert c0["tpr"] == [0.0, 0.5, 1.0, 1.0, 1.0] and c0["fpr"] == [0.0, 0.0, 1 / 3, 2 / 3, 1.0]
    assert c0["auc"] == pytest.approx(11 / 12, rel=1e-15)
    assert chart.data["x_label"] == "fpr" and chart.data["y_label"] == "tpr"


def brute_force(pos, score):
    """Definition-based reference: at each distinct threshold t (descending), TP/FP over score ≥ t."""
    pos, score = np.asarray(pos, bool), np.asarray(score, float)
    ths = sorted(set(score.tolist()), reverse=True)
    tp = [int((pos & (score >= t)).sum()) for t in ths]
    fp = [int((~pos & (score >= t)).sum()) for t in ths]
    P, N = int(pos.sum()), int((~pos).sum())
    recall = [0.0] + [x / P for x in tp]
    precision = [1.0] + [a / (a + b) for a, b in zip(tp, fp)]
    ap = sum((recall[i] - recall[i - 1]) * precision[i] for i in range(1, len(recall)))
    tpr = [0.0] + [x / P for x in tp]
    fpr = [0.0] + [x / N for x in fp]
    auc = sum((fpr[i] - fpr[i - 1]) * (tpr[i] + tpr[i - 1]) / 2 for i in range(1, len(fpr)))
    return dict(recall=recall, precision=precision, ap=ap, tpr=tpr, fpr=fpr, auc=auc, th=[None] + ths)


def test_multiclass_curves_and_micro_average_match_the_definition():
    """Three classes with quantised scores (many ties): every per-class curve and the micro
    average (all N·K one-vs-rest decisions) equal the brute-force definition."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 60)
    p = np.round(rng.random((60, 3)), 1)
    pr = plots.precision_recall(y, p, ["a", "b", "c"])
    roc = plots.ROC(y, p, ["a", "b", "c"], plot_macro=False)
    onehot = y[:, None] == np.arange(3)[None, :]
    for k, name in enumerate(["a", "b", "c", "micro-average"]):
        pos, sc = (y == k, p[:, k]) if k < 3 else (onehot.ravel(), p.ravel())
        ref = brute_force(pos, sc)
        c = curve(pr, name)
        assert c["recall"] == pytest.approx(ref["recall"], rel=1e-12) and c["precision"] == pytest.approx(
            ref["precision"], rel=1e-12
        )
        assert c["thresholds"] == ref["th"] and c["average_precision"] == pytest.approx(ref["ap"], rel=1e-12)
        r = curve(roc, name)
        assert r["tpr"] == pytest.approx(ref["tpr"], rel=1e-12) and r["fpr"] == pytest.approx(ref["fpr"], rel=1e-12)
        assert r["auc"] == pytest.approx(ref["auc"], rel=1e-12)
    assert [c["label"] for c in roc.data["classes"]] == ["a", "b", "c", "micro-average"]


def test_auc_equals_the_mann_whitney_statistic():
    """For random scores, the trapezoidal AUC equals the fraction of (positive, negative) pairs
    ordered correctly, ties counting one half."""
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 80)
    s = np.round(rng.random(80), 2)
    pos, neg = s[y == 1], s[y == 0]
    mw = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg)) / (len(pos) * len(neg))
    assert curve(plot.roc_curve(y, s), "1")["auc"] == pytest.approx(mw, rel=1e-12)


def test_macro_average_roc():
    """macro-average: the mean over classes of the tpr at the union of their fpr values, each
    class taking the top of its vertical steps and interpolating linearly in between; the
    curve starts at (0, 0). Class 1 (scores .7 .6 | .3 .2) and class 0 (.8 .7 | .4 .3) are both
    perfect: fpr 0 reaches tpr 1, so the macro curve is (0,0), (0,1), (.5,1), (1,1), AUC 1.
    With class 1 imperfect (scores .7 .3 | .6 .2: tpr ½ at fpr 0, 1 at fpr ½) the mean of
    (0,1),(½,1),(1,1) and (0,½),(½,1),(1,1) is (0,¾),(½,1),(1,1): AUC ¼·(¾+1) + ½ = 15/16."""
    y = [0, 1, 1, 0]
    chart = plots.ROC(y, [[1 - v, v] for v in [0.2, 0.7, 0.6, 0.3]], plot_micro=False)
    macro = curve(chart, "macro-average")
    assert (macro["fpr"], macro["tpr"], macro["auc"]) == ([0.0, 0.0, 0.5, 1.0], [0.0, 1.0, 1.0, 1.0], 1.0)
    p = [[0.9, 0.2], [0.1, 0.7], [0.2, 0.3], [0.8, 0.6]]  # class 0: .9 .8 | .1 .2 (perfect); class 1: .7 .3 | .6 .2
    macro = curve(plots.ROC(y, p, plot_micro=False), "macro-average")
    assert macro["fpr"] == [0.0, 0.0, 0.5, 1.0] and macro["tpr"] == [0.0, 0.75, 1.0, 1.0]
    assert macro["auc"] == pytest.approx(15 / 16, rel=1e-15)


def test_binary_scores_string_classes_and_classes_to_plot():
    """1-D scores are the positive class's (one curve, class 1); string y_true maps through
    labels, or through the sorted distinct values without labels; classes_to_plot selects by
    value or name."""
    one_d = plot.pr_curve(Y, S)
    assert [c["label"] for c in one_d.data["classes"]] == ["1"]
    assert curve(one_d, "1")["precision"] == [1.0, 1.0, 1.0, 0.75, 0.6]
    names = ["cat" if v == 0 else "dog" for v in Y]
    a = plot.pr_curve(names, PROBAS, labels=["cat", "dog"])
    b = plot.pr_curve(names, PROBAS)
    assert a.data == b.data
    assert curve(a, "dog")["average_precision"] == pytest.approx(11 / 12)
    only = plot.roc_curve(Y, PROBAS, labels=["cat", "dog"], classes_to_plot=["dog"])
    assert [c["label"] for c in only.data["classes"]] == ["dog"]
    assert [c["label"] for c in plot.roc_curve(Y, PROBAS, classes_to_plot=[0]).data["classes"]] == ["0"]


def test_a_class_absent_from_y_true_keeps_its_column():
    """Class k is column k even when no sample has class 1 (wandb's np.unique indexing would
    shift the columns); that class has no positives: AP and AUC are None."""
    chart = plot.roc_curve([0, 2, 2, 0], [[0.8, 0.1, 0.1], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]])
    assert curve(chart, "1")["auc"] is None and curve(chart, "1")["positives"] == 0
    assert curve(chart, "2")["auc"] == 1.0 and curve(chart, "0")["auc"] == 1.0
    assert curve(plot.pr_curve([0, 0], [[0.4, 0.6], [0.9, 0.1]]), "1")["average_precision"] is None


def test_long_curves_are_thinned_but_scores_use_every_point(monkeypatch):
    """A curve longer than MAX_CURVE_POINTS keeps that many points, including both ends; AUC
    and AP come from the full curve."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 500)
    s = rng.random(500)
    full = curve(plot.roc_curve(y, s), "1")
    monkeypatch.setattr(plot, "MAX_CURVE_POINTS", 50)
    thin = curve(plot.roc_curve(y, s), "1")
    assert len(thin["fpr"]) == len(thin["tpr"]) == len(thin["thresholds"]) == 50
    assert thin["fpr"][0] == full["fpr"][0] and thin["fpr"][-1] == full["fpr"][-1] and thin["thresholds"][0] is None
    assert set(thin["fpr"]) <= set(full["fpr"]) and thin["auc"] == full["auc"]


def test_confusion_matrix_by_hand():
    """Rows are the actual class, columns the predicted one: y_true 0,1,2,2,1 against predictions
    0,2,2,2,1 give [[1,0,0],[0,1,1],[0,0,2]]; probs give the same through argmax."""
    y = [0, 1, 2, 2, 1]
    preds = [0, 2, 2, 2, 1]
    m = plot.confusion_matrix(y_true=y, preds=preds, class_names=["a", "b", "c"])
    assert m.data == {"labels": ["a", "b", "c"], "matrix": [[1, 0, 0], [0, 1, 1], [0, 0, 2]]}
    probs = np.eye(3)[preds] * 0.8 + 0.05
    assert plot.confusion_matrix(probs, y, class_names=["a", "b", "c"]).data == m.data
    assert plot.confusion_matrix(y_true=y, preds=preds).data == {"labels": ["0", "1", "2"], "matrix": m.data["matrix"]}
    s = plot.confusion_matrix(y_true=["x", "y"], preds=["y", "y"])
    assert s.data == {"labels": ["x", "y"], "matrix": [[0, 1], [0, 1]]}
    named = plot.confusion_matrix(y_true=["b", "a"], preds=["b", "b"], class_names=["a", "b", "c"])
    assert named.data["matrix"] == [[0, 1, 0], [0, 1, 0], [0, 0, 0]]


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda: plot.pr_curve([], []), "y_true must be a non-empty"),
        (lambda: plot.pr_curve([0, 1], [[0.1, 0.9]]), "y_probas must be N or N×K"),
        (lambda: plot.pr_curve([0, 1], [[0.1, np.nan], [0.2, 0.8]]), "finite"),
        (lambda: plot.pr_curve([0, 3], PROBAS[:2]), "outside 0..1"),
        (lambda: plot.pr_curve([0, 1], PROBAS[:2], labels=["a"]), "labels has 1 names"),
        (lambda: plot.pr_curve(["a", "b", "c"], PROBAS[:3]), "3 distinct classes"),
        (lambda: plot.pr_curve(["a", "z"], PROBAS[:2], labels=["a", "b"]), "not in labels"),
        (lambda: plot.roc_curve([0, 1], PROBAS[:2], classes_to_plot=["q"]), "classes_to_plot"),
        (lambda: plot.pr_curve([0, 1], [[0.1], [0.2, 0.3]]), "y_probas cannot be read"),
        (lambda: plot.confusion_matrix(y_true=[0]), "exactly one of probs"),
        (lambda: plot.confusion_matrix([[0.1, 0.9]], [0], preds=[1]), "exactly one of probs"),
        (lambda: plot.confusion_matrix(y_true=[0, 1], preds=[0]), "one prediction per y_true"),
        (
            lambda: plot.confusion_matrix(y_true=[0, 5], preds=[0, 1], class_names=["a", "b"]),
            "y_true holds a class outside",
        ),
        (lambda: plot.confusion_matrix([[0.5, 0.5]], [0], class_names=["a", "b", "c"]), "probs has 2 columns"),
        (lambda: plot.line(Table(columns=["x"]), "x", "nope"), "y='nope' is not a column"),
        (lambda: plot.bar([1, 2], "a", "b"), "table must be a rankwise.Table"),
        (lambda: plot.line_series([1, 2], [[1]]), "series 0: 2 x values for 1 y values"),
        (lambda: plots.heatmap(["a"], ["b", "c"], [[1, 2]]), r"expected \(len\(y_labels\), len\(x_labels\)\)"),
    ],
)
def test_validation_at_the_call(call, fragment):
    """Bad shapes, labels, classes and columns raise ValueError naming the argument, at the call."""
    with pytest.raises(ValueError, match=fragment):
        call()


def test_table_charts_and_line_series_and_heatmap():
    """line/scatter/bar/histogram take Table columns; line_series shares xs; heatmap keeps rows per y label."""
    t = Table(columns=["step", "loss", "run"], data=[[0, 1.0, "a"], [1, 0.5, "a"], [0, 2.0, "b"]])
    assert plot.line(t, "step", "loss", stroke="run").data["stroke"] == ["a", "a", "b"]
    assert plot.scatter(t, "step", "loss").data == {
        "x": [0, 1, 0],
        "y": [1.0, 0.5, 2.0],
        "x_label": "step",
        "y_label": "loss",
    }
    assert plot.bar(t, "run", "loss", title="b").data == {
        "labels": ["a", "a", "b"],
        "values": [1.0, 0.5, 2.0],
        "label_name": "run",
        "value_name": "loss",
    }
    assert plot.histogram(t, "loss").data == {"values": [1.0, 0.5, 2.0], "value_name": "loss"}
    ls = plot.line_series([0, 1, 2], [[1, 2, 3], [4, 5, 6]], keys=["u", "v"], xname="epoch")
    assert ls.data == {
        "xs": [[0.0, 1.0, 2.0]] * 2,
        "ys": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]],
        "keys": ["u", "v"],
        "xname": "epoch",
    }
    hm = plots.heatmap(["x1", "x2"], ["y1"], [[1, float("nan")]], show_text=True)
    assert hm.data == {"x_labels": ["x1", "x2"], "y_labels": ["y1"], "matrix": [[1.0, None]], "show_text": True}


def test_inputs_are_copied_at_the_call_and_computed_later():
    """The builders copy their inputs: changing the caller's arrays afterwards does not change
    the chart, which is computed when first read (on the I/O thread when logged)."""
    y = np.array(Y)
    p = np.array(PROBAS)
    chart = plot.pr_curve(y, p)
    y[:] = 0
    p[:] = 0.5
    assert chart._wire is None
    assert curve(chart, "1")["average_precision"] == pytest.approx(11 / 12)
