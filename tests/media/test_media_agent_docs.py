"""Every example of wandb's ``Run.log`` documentation (shared/reference/wandb-run-log.md), run verbatim with
``import rankwise as wandb`` by a real rank process through the real agent, then read back: the stored values
through ``rankwise.Api`` (references, and the files they name byte for byte), and through the web UI's JSON API
and media URLs. Expected bytes are computed here by encoding the same objects again (the encoders are
deterministic), and checked independently where a reference decoder exists (PNG pixels, GIF frames, files
logged by path)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import struct
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mediautil import decode_png

import rankwise
import rankwise as wandb
from grouping.histogram import merge_histograms
from support.processes import RankwiseEnv, run_ranks

pytest.importorskip("PIL.Image")  # the documented PIL image and GIF video examples need Pillow

SCRIPT = r"""
import os
import numpy as np
import rankwise as wandb

os.chdir(os.environ["SAMPLES"])  # where sample.obj / .gltf / .glb and clip.gif are
wandb.init(project="docs")

# Basic usage
wandb.log({'accuracy': 0.9, 'epoch': 5})

# Incremental logging
wandb.log({'loss': 0.2}, commit=False)
# Somewhere else when I'm ready to report this step:
wandb.log({'accuracy': 0.8})

# Histogram: an array, then a sequence
numpy_array_or_sequence = np.random.default_rng(0).normal(size=300)
wandb.log({"gradients": wandb.Histogram(numpy_array_or_sequence)})
numpy_array_or_sequence = numpy_array_or_sequence.tolist()
wandb.log({"gradients": wandb.Histogram(numpy_array_or_sequence)})

# Image: an array, then a PIL image
numpy_array_or_pil = np.random.default_rng(1).integers(0, 256, (6, 5, 3), dtype=np.uint8)
wandb.log({"examples": [wandb.Image(numpy_array_or_pil, caption="Label")]})
from PIL import Image as PILImage
numpy_array_or_pil = PILImage.fromarray(numpy_array_or_pil)
wandb.log({"examples": [wandb.Image(numpy_array_or_pil, caption="Label")]})

# Video: frames, then a gif file
frames = np.zeros((4, 3, 8, 8), np.uint8)
frames[:, 1] = np.arange(4)[:, None, None] * 60
numpy_array_or_video_path = frames
wandb.log({"video": wandb.Video(numpy_array_or_video_path, fps=4,
format="gif")})
numpy_array_or_video_path = "clip.gif"
wandb.log({"video": wandb.Video(numpy_array_or_video_path, fps=4,
format="gif")})

# Matplotlib Plot (when matplotlib is installed)
try:
    import matplotlib
except ImportError:
    plt = None
else:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
if plt is not None:
    plt.figure(figsize=(3, 2), dpi=40)
    plt.plot([1, 2, 3], [3, 1, 2])
    wandb.log({"chart": plt})

# PR Curve
y_test = [0, 1, 1, 0, 1]
y_probas = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.6, 0.4], [0.1, 0.9]]
labels = ["neg", "pos"]
wandb.log({'pr': wandb.plots.precision_recall(y_test, y_probas, labels)})

# 3D Object
wandb.log({"generated_samples":
[wandb.Object3D(open("sample.obj")),
wandb.Object3D(open("sample.gltf")),
wandb.Object3D(open("sample.glb"))]})

wandb.finish()
"""


def glb_bytes() -> bytes:
    """A minimal valid GLB: 12-byte header and one JSON chunk (padded to 4 bytes)."""
    doc = json.dumps({"asset": {"version": "2.0"}}).encode()
    doc += b" " * (-len(doc) % 4)
    return b"glTF" + struct.pack("<II", 2, 12 + 8 + len(doc)) + struct.pack("<I", len(doc)) + b"JSON" + doc


def frames() -> np.ndarray:
    f = np.zeros((4, 3, 8, 8), np.uint8)
    f[:, 1] = np.arange(4)[:, None, None] * 60  # green ramps up frame by frame
    return f


SAMPLES = {
    "sample.obj": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n",
    "sample.gltf": json.dumps({"asset": {"version": "2.0"}, "scenes": [{}]}).encode(),
    "sample.glb": glb_bytes(),
}


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """The documented examples logged by one rank process through its agent; yields (env, samples dir)."""
    import shutil
    import tempfile

    from support.processes import stop_agent

    samples = tmp_path_factory.mktemp("samples")
    for name, data in SAMPLES.items():
        (samples / name).write_bytes(data)
    (samples / "clip.gif").write_bytes(wandb.Video(frames(), fps=4, format="gif")._to_wire()["bytes"])
    env = RankwiseEnv(tempfile.mkdtemp(prefix="rwdd", dir="/tmp"), tempfile.mkdtemp(prefix="rwdr", dir="/tmp"))
    try:
        run_ranks(
            env,
            SCRIPT,
            1,
            "docs-e2e",
            SAMPLES=str(samples),
            RANKWISE_DIR=env.data,
            RANKWISE_RUNTIME_DIR=env.runtime,
            RANKWISE_AGENT_IDLE_TIMEOUT="60",
        )
        yield env, samples
    finally:
        stop_agent(env)
        shutil.rmtree(env.data, ignore_errors=True)
        shutil.rmtree(env.runtime, ignore_errors=True)


@pytest.fixture
def api(logged):
    a = rankwise.Api(logged[0].store)
    yield a
    a.close()


@pytest.fixture
def run(api):
    return api.group("docs", "docs-e2e").run(rank=0)


@contextlib.contextmanager
def served(store: Path) -> Iterator[Any]:
    """A ``rankwise ui`` server over ``store`` on a free port, in a thread."""
    from rankwise._ui.server import make_server

    server = make_server(store, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def get(server: Any, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(server.url + path, timeout=30) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def stored(api, ref: dict) -> bytes:
    with api.open_media(ref) as f:
        return f.read()


def expect_ref(api, ref: dict, wire: dict) -> None:
    """A stored reference is the client's wire value without its bytes, plus the path of a file holding
    exactly those bytes (named by their SHA-256)."""
    data = wire["bytes"]
    sha = hashlib.sha256(data).hexdigest()
    assert ref == {**{k: v for k, v in wire.items() if k != "bytes"}, "path": f"media/{sha[:2]}/{sha}.{wire['format']}"}
    assert (ref["sha256"], ref["size"]) == (sha, len(data))
    assert stored(api, ref) == data
    assert api.media_path(ref) == api.media_root / ref["path"]


def test_basic_and_incremental_rows(run):
    """Basic usage is row 0 with accuracy and epoch; commit=False then log() is row 1 holding both keys."""
    rows = run.history(keys=["accuracy", "epoch", "loss"])
    assert [{k: r.get(k) for k in ("_step", "accuracy", "epoch", "loss")} for r in rows] == [
        {"_step": 0, "accuracy": 0.9, "epoch": 5, "loss": None},
        {"_step": 1, "accuracy": 0.8, "epoch": None, "loss": 0.2},
    ]


def test_histograms_stored_inline(run, api):
    """Histogram of an array and of the same values as a list: both stored inline as numpy's 64-bin
    histogram; the group histogram of a one-rank group is that histogram."""
    values = np.random.default_rng(0).normal(size=300)
    counts, edges = np.histogram(values, bins=64)
    want = {"_type": "histogram", "bins": edges.tolist(), "values": counts.tolist()}
    got = run.media("gradients")
    assert got == [(2, want), (3, want)]
    g = api.group("docs", "docs-e2e")
    assert g.histograms("gradients") == [(2, {**want, "ranks": [0]}), (3, {**want, "ranks": [0]})]


def test_images_reference_files_byte_exact(run, api):
    """The image examples (array and PIL) are lists of one reference each: the caption, size, and a PNG
    file whose bytes are the client's encoding and whose pixels are the array."""
    px = np.random.default_rng(1).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    got = run.media("examples")
    assert [s for s, _ in got] == [4, 5]
    wire = wandb.Image(px, caption="Label")._to_wire()
    for _, value in got:
        (ref,) = value
        assert (ref["_type"], ref["caption"], ref["width"], ref["height"]) == ("image", "Label", 5, 6)
        expect_ref(api, ref, wire)
        np.testing.assert_array_equal(decode_png(stored(api, ref)), px)
    assert got[0][1] == got[1][1]  # same pixels, same file


def test_videos_reference_gif_files(run, api, logged):
    """Video from frames: a GIF of 4 frames at 250 ms with the frames' colours; from a .gif path: that file
    byte for byte."""
    from PIL import Image as PILImage

    got = dict(run.media("video"))
    assert sorted(got) == [6, 7]
    expect_ref(api, got[6], wandb.Video(frames(), fps=4, format="gif")._to_wire())
    im = PILImage.open(io.BytesIO(stored(api, got[6])))
    assert im.n_frames == 4 and im.size == (8, 8) and im.info["duration"] == 250
    greens = []
    for i in range(4):
        im.seek(i)
        greens.append(int(np.asarray(im.convert("RGB"))[0, 0, 1]))
    assert greens == [0, 60, 120, 180]
    assert stored(api, got[7]) == (logged[1] / "clip.gif").read_bytes()
    assert (got[7]["_type"], got[7]["format"]) == ("video", "gif")


def test_matplotlib_chart_is_a_png_image(run, api):
    """{"chart": plt} stores a PNG image of the figure's pixel size (needs matplotlib in the rank)."""
    pytest.importorskip("matplotlib")
    ((_, ref),) = run.media("chart")
    assert (ref["_type"], ref["format"], ref["width"], ref["height"]) == ("image", "png", 120, 80)
    assert decode_png(stored(api, ref)).shape[:2] == (80, 120)


def test_pr_curve_stored_as_chart(run):
    """plots.precision_recall is stored inline as the chart the client computed (AP of 'pos' is 11/12)."""
    ((_, chart),) = run.media("pr")
    want = wandb.plots.precision_recall(
        [0, 1, 1, 0, 1], [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.6, 0.4], [0.1, 0.9]], ["neg", "pos"]
    )._to_wire()
    assert chart == want
    pos = chart["data"]["classes"][1]
    assert pos["average_precision"] == pytest.approx(11 / 12, rel=1e-15)


def test_3d_objects_files_byte_exact(run, api):
    """The three Object3D(open(...)) examples: references to files holding the sample files byte for byte."""
    ((_, objs),) = run.media("generated_samples")
    assert [(o["_type"], o["format"]) for o in objs] == [("object3d", "obj"), ("object3d", "gltf"), ("object3d", "glb")]
    assert [stored(api, o) for o in objs] == list(SAMPLES.values())
    for o in objs:
        assert o["sha256"] == hashlib.sha256(stored(api, o)).hexdigest()


def test_every_example_through_the_ui_api(logged, api):
    """The UI's JSON API lists every media key with its type and returns, per step, the stored value with a
    url; each url serves the file byte for byte with its MIME type; the histogram endpoint returns the
    group histograms of the Api."""
    g = api.group("docs", "docs-e2e")
    run = g.run(rank=0)
    types = {
        "examples": "image",
        "generated_samples": "object3d",
        "gradients": "histogram",
        "pr": "chart",
        "video": "video",
    }
    mime = {
        "png": "image/png",
        "gif": "image/gif",
        "obj": "model/obj",
        "gltf": "model/gltf+json",
        "glb": "model/gltf-binary",
    }
    base = "api/projects/docs/groups/docs-e2e"
    with served(logged[0].store) as server:
        status, detail = get(server, base)
        assert status == 200
        listed = {m["key"]: m["type"] for m in detail["media"]}
        assert {k: listed[k] for k in types} == types
        assert not {"accuracy", "epoch", "loss"} & set(listed)
        files = 0
        for key in ("examples", "video", "generated_samples", "pr"):
            for step, value in run.media(key):
                status, body = get(server, f"{base}/media?key={key}&step={step}")
                assert status == 200 and body["type"] == types[key]
                (entry,) = body["ranks"]
                assert (entry["rank"], entry["step"]) == (0, step)
                refs = value if isinstance(value, list) else [value]
                got = entry["value"] if isinstance(entry["value"], list) else [entry["value"]]
                for ref, shown in zip(refs, got, strict=True):
                    if "path" not in ref:
                        assert shown == ref
                        continue
                    assert shown == {**ref, "url": "/" + ref["path"]}
                    with urllib.request.urlopen(server.url + shown["url"].lstrip("/")) as res:
                        assert res.read() == stored(api, ref)
                        assert res.headers["Content-Type"].split(";")[0] == mime[ref["format"]]
                    files += 1
        assert files == 2 + 2 + 3
        status, body = get(server, f"{base}/histograms?key=gradients")
        assert status == 200 and body["steps"] == 2
        want = g.histograms("gradients")
        assert [(c["step"], c["bins"], c["values"], c["ranks"]) for c in body["columns"]] == [
            (s, h["bins"], h["values"], h["ranks"]) for s, h in want
        ]
        assert want[0][1]["values"] == merge_histograms([run.media("gradients")[0][1]])["values"]


def test_agent_kept_media_out_of_the_database(logged):
    """The store's database (and its WAL) holds no media bytes: the PNG/GIF/GLB payloads are only in the
    media directory, one file per distinct content."""
    store = Path(logged[0].store)
    blob = b"".join(p.read_bytes() for p in store.parent.glob(store.name + "*"))
    media = sorted(p for p in (Path(logged[0].data) / "media").rglob("*") if p.is_file())
    charts = 1 if importlib.util.find_spec("matplotlib") else 0
    # one PNG (the same pixels twice), one GIF (clip.gif is the same encoding of the same frames), obj/gltf/glb
    assert len(media) == 1 + 1 + 3 + charts
    for p in media:
        if p.suffix != ".obj":  # the three-line OBJ is short enough to appear by chance in other text
            assert p.read_bytes() not in blob
