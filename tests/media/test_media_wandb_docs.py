"""Every example of wandb's ``Run.log`` documentation (shared/reference/wandb-run-log.md), run
verbatim with ``import rankwise as wandb`` against an offline run, checking the rows it would send."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
from mediautil import close, decode_png, offline_run, sent_rows

import rankwise as wandb
from client import state


@pytest.fixture
def run(monkeypatch):
    """An offline run installed as the current run, so module-level wandb.log() reaches it."""
    r = offline_run()
    monkeypatch.setattr(state, "_current", r)
    yield r
    close(r)


def test_basic_usage(run):
    """wandb.log({'accuracy': 0.9, 'epoch': 5}) commits one row at step 0."""
    wandb.log({"accuracy": 0.9, "epoch": 5})
    assert sent_rows(run) == [{"_step": 0, "_late": False, "accuracy": 0.9, "epoch": 5}]


def test_incremental_logging(run):
    """log(..., commit=False) then log(...) is one row holding both keys."""
    wandb.log({"loss": 0.2}, commit=False)
    # Somewhere else when I'm ready to report this step:
    wandb.log({"accuracy": 0.8})
    assert sent_rows(run) == [{"_step": 0, "_late": False, "loss": 0.2, "accuracy": 0.8}]


@pytest.mark.parametrize("kind", ["array", "sequence"])
def test_histogram(run, kind):
    """wandb.Histogram of an array or a list: numpy's 64-bin histogram of the values."""
    values = np.random.default_rng(0).normal(size=300)
    numpy_array_or_sequence = values if kind == "array" else values.tolist()
    wandb.log({"gradients": wandb.Histogram(numpy_array_or_sequence)})
    counts, edges = np.histogram(values, bins=64)
    (row,) = sent_rows(run)
    assert row["gradients"] == {"_type": "histogram", "bins": edges.tolist(), "values": counts.tolist()}


@pytest.mark.parametrize("kind", ["array", "pil"])
def test_image(run, kind):
    """A list of one wandb.Image (numpy array or PIL image) with a caption: a PNG of the pixels."""
    px = np.random.default_rng(1).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    if kind == "pil":
        PILImage = pytest.importorskip("PIL.Image")
        numpy_array_or_pil = PILImage.fromarray(px)
    else:
        numpy_array_or_pil = px
    wandb.log({"examples": [wandb.Image(numpy_array_or_pil, caption="Label")]})
    (row,) = sent_rows(run)
    (img,) = row["examples"]
    assert (img["_type"], img["format"], img["caption"], img["width"], img["height"]) == ("image", "png", "Label", 5, 6)
    np.testing.assert_array_equal(decode_png(img["bytes"]), px)


@pytest.mark.parametrize("kind", ["array", "path"])
def test_video(run, kind, tmp_path):
    """wandb.Video(array T×C×H×W or a .gif path, fps=4, format="gif"): a GIF of T frames."""
    PILImage = pytest.importorskip("PIL.Image")
    frames = np.zeros((4, 3, 8, 8), np.uint8)
    frames[:, 1] = np.arange(4)[:, None, None] * 60  # green ramps up frame by frame
    if kind == "path":
        gif = wandb.Video(frames, fps=4, format="gif")._to_wire()["bytes"]
        (tmp_path / "clip.gif").write_bytes(gif)
        numpy_array_or_video_path = str(tmp_path / "clip.gif")
    else:
        numpy_array_or_video_path = frames
    wandb.log({"video": wandb.Video(numpy_array_or_video_path, fps=4, format="gif")})
    (row,) = sent_rows(run)
    v = row["video"]
    assert (v["_type"], v["format"]) == ("video", "gif")
    im = PILImage.open(io.BytesIO(v["bytes"]))
    assert im.n_frames == 4 and im.size == (8, 8) and im.info["duration"] == 250
    greens = []
    for i in range(4):
        im.seek(i)
        greens.append(int(np.asarray(im.convert("RGB"))[0, 0, 1]))
    assert greens == [0, 60, 120, 180]


def test_matplotlib_plot(run):
    """wandb.log({"chart": plt}) logs the current figure as a PNG image of its pixel size."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.figure(figsize=(3, 2), dpi=40)
    plt.plot([1, 2, 3], [3, 1, 2])
    wandb.log({"chart": plt})
    plt.close("all")
    (row,) = sent_rows(run)
    assert (row["chart"]["_type"], row["chart"]["width"], row["chart"]["height"]) == ("image", 120, 80)
    assert decode_png(row["chart"]["bytes"]).shape[:2] == (80, 120)


def test_pr_curve(run):
    """wandb.plots.precision_recall(y_test, y_probas, labels): per-class curves plus the micro
    average, with the hand-computed values of the positive class (AP 11/12)."""
    y_test = [0, 1, 1, 0, 1]
    y_probas = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.6, 0.4], [0.1, 0.9]]
    labels = ["neg", "pos"]
    wandb.log({"pr": wandb.plots.precision_recall(y_test, y_probas, labels)})
    (row,) = sent_rows(run)
    chart = row["pr"]
    assert (chart["_type"], chart["kind"]) == ("chart", "pr_curve")
    assert [c["label"] for c in chart["data"]["classes"]] == ["neg", "pos", "micro-average"]
    pos = chart["data"]["classes"][1]
    assert pos["precision"] == [1.0, 1.0, 1.0, 0.75, 0.6] and pos["recall"] == [0.0, 1 / 3, 2 / 3, 1.0, 1.0]
    assert pos["average_precision"] == pytest.approx(11 / 12, rel=1e-15)


def glb_bytes() -> bytes:
    """A minimal valid GLB: 12-byte header and one JSON chunk (padded to 4 bytes)."""
    doc = json.dumps({"asset": {"version": "2.0"}}).encode()
    doc += b" " * (-len(doc) % 4)
    return b"glTF" + struct.pack("<II", 2, 12 + 8 + len(doc)) + struct.pack("<I", len(doc)) + b"JSON" + doc


def test_3d_object(run, tmp_path, monkeypatch):
    """Object3D(open("sample.obj")), (open("sample.gltf")), (open("sample.glb")): text-mode file
    objects as in the docs, each sent byte for byte with its format (the GLB re-read in binary)."""
    files = {
        "sample.obj": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n",
        "sample.gltf": json.dumps({"asset": {"version": "2.0"}, "scenes": [{}]}).encode(),
        "sample.glb": glb_bytes(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    monkeypatch.chdir(tmp_path)
    wandb.log(
        {
            "generated_samples": [
                wandb.Object3D(open("sample.obj")),
                wandb.Object3D(open("sample.gltf")),
                wandb.Object3D(open("sample.glb")),
            ]
        }
    )
    (row,) = sent_rows(run)
    got = row["generated_samples"]
    assert [(o["_type"], o["format"]) for o in got] == [("object3d", "obj"), ("object3d", "gltf"), ("object3d", "glb")]
    assert [o["bytes"] for o in got] == list(files.values())


def test_log_before_init_raises_wandb_error():
    """The documented Raises: wandb.Error if called before wandb.init; ValueError for invalid data."""
    state.reset()
    with pytest.raises(wandb.Error):
        wandb.log({"examples": [wandb.Image(np.zeros((2, 2)), caption="Label")]})


def test_invalid_data_raises_value_error(run):
    """Invalid media arguments raise ValueError at the call (here: a 5-channel image)."""
    with pytest.raises(ValueError):
        wandb.log({"examples": [wandb.Image(np.zeros((2, 2, 5)))]})
