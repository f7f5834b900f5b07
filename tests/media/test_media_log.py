"""Media through ``log()``: what a run would send (decoded by the agent-side decoder), the
automatic conversion of arrays and figures, and the caller-side rules (copy at the call,
snapshot of tables, errors at the call site, nothing raised on the I/O thread)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from mediautil import FakeTensor, close, decode_png, drain_batches, offline_run, sent_rows

from client.errors import InvalidValueError
from client.media import _base
from client.values import nbytes_hint
from rankwise import Audio, Histogram, Html, Image, Object3D, Table, plot


@pytest.fixture
def run():
    r = offline_run()
    yield r
    close(r)


def test_media_arrive_in_object_columns_as_their_wire_dicts(run):
    """Images, a list of images, nested dicts of media and a table arrive as the wire dicts;
    scalars logged alongside stay numeric."""
    px = np.arange(12, dtype=np.uint8).reshape(3, 4)
    run.log(
        {
            "loss": 0.5,
            "img": Image(px, caption="c"),
            "examples": [Image(px), Image(px.T.copy())],
            "val": {"hist": Histogram([1, 2, 3], num_bins=3), "page": Html("<p>x</p>", inject=False)},
            "tab": Table(columns=["i", "im"], data=[[1, Image(px)]]),
        }
    )
    (row,) = sent_rows(run)
    assert row["loss"] == 0.5
    img = row["img"]
    assert {k: img[k] for k in ("_type", "format", "width", "height", "caption", "size")} == {
        "_type": "image",
        "format": "png",
        "width": 4,
        "height": 3,
        "caption": "c",
        "size": len(img["bytes"]),
    }
    assert img["sha256"] == hashlib.sha256(img["bytes"]).hexdigest()
    np.testing.assert_array_equal(decode_png(img["bytes"])[:, :, 0], px)
    assert [e["_type"] for e in row["examples"]] == ["image", "image"]
    assert [(e["width"], e["height"]) for e in row["examples"]] == [(4, 3), (3, 4)]
    assert row["val.hist"] == {"_type": "histogram", "bins": [1.0, 1 + 2 / 3, 1 + 4 / 3, 3.0], "values": [1, 1, 1]}
    assert row["val.page"]["bytes"] == b"<p>x</p>"
    assert row["tab"]["columns"] == ["i", "im"] and row["tab"]["data"][0][0] == 1
    assert row["tab"]["data"][0][1]["bytes"] == img["bytes"]


def test_media_at_several_steps_and_commit_false(run):
    """Media merge into the pending row like any value (commit=False) and each step keeps its own."""
    run.log({"a": Image(np.zeros((2, 2), np.uint8))}, commit=False)
    run.log({"b": Audio(np.zeros(4), sample_rate=10)})
    run.log({"a": Image(np.ones((2, 2), np.uint8) * 255)})
    rows = sent_rows(run)
    assert [(r["_step"], sorted(k for k in r if not k.startswith("_"))) for r in rows] == [(0, ["a", "b"]), (1, ["a"])]
    assert rows[0]["a"]["sha256"] != rows[1]["a"]["sha256"]


def test_arrays_become_lists_or_32_bin_histograms(run):
    """As in wandb: arrays of 2..32 elements are logged as (nested) lists, larger numeric arrays
    as a 32-bin histogram of a copy taken at the call; torch tensors alike."""
    big = np.arange(100, dtype=np.float64)
    run.log(
        {
            "small": np.array([1, 2, 3]),
            "matrix": np.eye(2),
            "big": big,
            "t_small": FakeTensor([0.5, 1.5]),
            "t_big": FakeTensor(np.arange(40)),
            "strs": np.array(["a", "b"]),
            "empty": np.array([]),
        }
    )
    big[:] = -1  # after the call: not what was logged
    (row,) = sent_rows(run)
    assert row["small"] == [1, 2, 3] and row["matrix"] == [[1.0, 0.0], [0.0, 1.0]] and row["t_small"] == [0.5, 1.5]
    assert row["strs"] == ["a", "b"] and row["empty"] == []
    counts, edges = np.histogram(np.arange(100, dtype=np.float64), bins=32)
    assert row["big"] == {"_type": "histogram", "bins": edges.tolist(), "values": counts.tolist()}
    counts, edges = np.histogram(np.arange(40), bins=32)
    assert row["t_big"] == {"_type": "histogram", "bins": edges.tolist(), "values": counts.tolist()}


@pytest.mark.parametrize(
    "value, fragment",
    [
        (np.array([1 + 2j, 3j]), "numpy.ndarray.*dtype complex128"),
        (np.array(["x"] * 33), "at most 32 strings"),
        (np.array([[1, 2]], dtype=object), "dtype object"),
        ([np.array([1, 2])], "nested lists"),
    ],
)
def test_unsupported_arrays_raise_at_the_call(run, value, fragment):
    """Complex arrays, long string arrays, 2-D object arrays and lists of arrays raise
    InvalidValueError naming the key; nothing is logged."""
    with pytest.raises(InvalidValueError, match=f"'k'.*{fragment}"):
        run.log({"k": value})
    assert all(b.n == 0 for b in drain_batches(run))


def test_a_table_is_logged_as_it_was_at_the_call(run):
    """log() snapshots a table: rows added later appear only in later log() calls."""
    t = Table(columns=["x"])
    t.add_data(1)
    run.log({"t": t})
    t.add_data(2)
    run.log({"t": t})
    assert [r["t"]["data"] for r in sent_rows(run)] == [[[1]], [[1], [2]]]


def test_the_same_image_logged_twice_is_encoded_once(run, monkeypatch):
    """A media object logged at several steps is encoded once; every row carries the same bytes."""
    calls = []
    real = Image._encode

    def counting(self):
        calls.append(1)
        return real(self)

    monkeypatch.setattr(Image, "_encode", counting)
    im = Image(np.zeros((3, 3), np.uint8))
    run.log({"im": im})
    run.log({"im": im})
    rows = sent_rows(run)
    assert calls == [1] and rows[0]["im"] == rows[1]["im"]


def test_an_encoding_failure_does_not_stop_the_writer(run):
    """A media value whose encoder fails arrives as an error value; rows before and after arrive."""

    class Broken(_base.Media):
        _type = "video"

        def _encode(self):
            raise OSError("encoder crashed")

    run.log({"x": 1.0})
    run.log({"v": Broken(), "x": 2.0})
    run.log({"x": 3.0})
    rows = sent_rows(run)
    assert [r["x"] for r in rows] == [1.0, 2.0, 3.0]
    assert rows[1]["v"] == {"_type": "video", "error": "OSError: encoder crashed", "caption": None}


def test_the_summary_holds_the_last_media_value(run):
    """The run summary's "last" of a media key refers to the newest value (same sha256, type
    and format; its bytes travel in the history column)."""
    run.log({"im": Image(np.zeros((1, 1), np.uint8))})
    run.log({"im": Image(np.full((1, 1), 9, np.uint8))})
    batches = drain_batches(run)
    summary = {}
    for b in batches:
        summary.update(b.summary or {})
    newest = Image(np.full((1, 1), 9, np.uint8))._to_wire()
    assert {k: summary["im"][k] for k in ("_type", "format", "sha256", "size")} == {
        k: newest[k] for k in ("_type", "format", "sha256", "size")
    }


def test_charts_and_point_clouds_through_a_run(run):
    """Charts and Object3D point clouds arrive as their wire dicts."""
    t = Table(columns=["x", "y"], data=[[1, 2.0], [2, 4.0]])
    run.log({"line": plot.line(t, "x", "y", title="t"), "pc": Object3D(np.zeros((2, 3)))})
    (row,) = sent_rows(run)
    assert row["line"] == {
        "_type": "chart",
        "kind": "line",
        "title": "t",
        "data": {"x": [1, 2], "y": [2.0, 4.0], "stroke": None, "x_label": "x", "y_label": "y"},
    }
    assert row["pc"]["shape"] == [2, 3] and row["pc"]["bytes"] == b"\0" * 24


def test_a_plain_module_is_still_refused(run):
    """Only matplotlib's pyplot is accepted among modules; another module raises naming the key."""
    import json

    with pytest.raises(InvalidValueError, match="'m'.*builtins.module"):
        run.log({"m": json})


def test_matplotlib_figures_and_pyplot_are_logged_as_png_images(run):
    """{"chart": plt} logs the current figure, a Figure logs itself: PNG images of the figure's
    pixel size, rendered at the call (a later plt.clf() does not change them)."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2, 1), dpi=50)
    plt.plot([0, 1], [1, 0])
    run.log({"chart": plt, "fig": fig, "img": Image(fig, caption="c")})
    plt.clf()
    (row,) = sent_rows(run)
    for key in ("chart", "fig", "img"):
        v = row[key]
        assert (v["_type"], v["format"], v["width"], v["height"]) == ("image", "png", 100, 50)
        px = decode_png(v["bytes"])
        assert px.shape[:2] == (50, 100) and len(np.unique(px.reshape(-1, px.shape[2]), axis=0)) > 2  # a line was drawn
    assert row["img"]["caption"] == "c"
    plt.close("all")


def test_plotly_figures_are_logged_as_plotly_json(run):
    """A plotly figure logs as {"_type": "plotly", "json": ...}, snapshotted at the call."""
    go = pytest.importorskip("plotly.graph_objects")
    import json

    fig = go.Figure(data=[go.Bar(x=["a", "b"], y=[1, 2])])
    run.log({"p": fig})
    fig.data[0].y = [5, 6]
    (row,) = sent_rows(run)
    assert row["p"]["_type"] == "plotly" and json.loads(row["p"]["json"])["data"][0]["y"] == [1, 2]


def test_size_hints_for_byte_bounded_batches():
    """nbytes_hint gives the encoded-size estimate of media before encoding (for batch cutting)."""
    assert nbytes_hint(Image(np.zeros((100, 100, 3), np.uint8))) == 30000 + 256
    assert nbytes_hint([Audio(np.zeros(1000), sample_rate=8000), 1.0]) == 8 + 2000 + 256 + 9
    assert nbytes_hint(Table(columns=["a"], data=[[1], [2]])) == 64 + 16 + 2 * 9  # cells: as logged values
    assert nbytes_hint(Table(columns=["a"], data=[["héllo"]])) == 64 + 16 + 8 + 6  # strings: UTF-8 bytes


def test_flatten_marks_rows_that_hold_media():
    """flatten() returns a MediaRow (a dict) with the estimated size of its values that are not plain
    numbers (media, lists, strings: they bound batches by bytes), a plain dict otherwise; strip_bytes
    drops bytes recursively."""
    from client.values import MediaRow, flatten, strip_bytes

    plain = flatten({"a": 1.0, "b": {"c": 2, "d": True}})
    assert type(plain) is dict and plain == {"a": 1.0, "b.c": 2, "b.d": True}
    text = flatten({"a": 1.0, "s": "x" * 100, "l": [1, 2]})
    assert type(text) is MediaRow and text.nbytes == (8 + 100) + (8 + 2 * 9)
    im = Image(np.zeros((10, 10), np.uint8))
    row = flatten({"a": 1.0, "v": {"im": im}, "l": [im, im]})
    assert type(row) is MediaRow and row == {"a": 1.0, "v.im": im, "l": [im, im]}
    assert row.nbytes == 356 + (8 + 2 * 356)
    t = Table(columns=["x"], data=[[Image(np.zeros((1, 1), np.uint8))]])._to_wire()
    stripped = strip_bytes({"t": t, "n": 1})
    assert "bytes" not in repr(stripped) and stripped["t"]["data"][0][0]["sha256"] == t["data"][0][0]["sha256"]
