"""Each media type: constructor validation (ValueError naming the argument), the private copy
taken at construction, and a ``_to_wire()`` whose output decodes to what was given."""

from __future__ import annotations

import hashlib
import io
import json
import wave

import msgpack
import numpy as np
import pytest
from mediautil import FakeTensor, decode_png

import rankwise
from client.media import _base
from client.media._arrays import to_uint8
from rankwise import Audio, Histogram, Html, Image, Object3D, Plotly, Table, Video


def wire(value):
    """The wire form after a msgpack round trip, as the agent decodes it."""
    return msgpack.unpackb(msgpack.packb(value._to_wire(), use_bin_type=True), raw=False)


def check_payload(w: dict, type_: str, fmt: str) -> bytes:
    """A byte-carrying wire dict: type, format, size and sha256 agree with its bytes."""
    assert w["_type"] == type_ and w["format"] == fmt
    assert w["size"] == len(w["bytes"]) and w["sha256"] == hashlib.sha256(w["bytes"]).hexdigest()
    return w["bytes"]


def pil():
    return pytest.importorskip("PIL.Image")


def png_pixels(data: bytes) -> np.ndarray:
    """Pixels of a PNG, by Pillow when installed and by the reference decoder otherwise."""
    try:
        from PIL import Image as PILImage
    except ImportError:
        px = decode_png(data)
        return px[:, :, 0] if px.shape[2] == 1 else px
    return np.asarray(PILImage.open(io.BytesIO(data)))


# ---------------------------------------------------------------- Histogram


def test_histogram_from_a_sequence_matches_numpy():
    """Histogram(seq, num_bins) sends numpy's edges and integer counts for the copied data."""
    data = np.random.default_rng(0).normal(size=1000)
    h = Histogram(data, num_bins=20)
    data[:] = 0  # the caller reuses its buffer: the logged histogram is of the copy
    counts, edges = np.histogram(np.random.default_rng(0).normal(size=1000), bins=20)
    assert wire(h) == {"_type": "histogram", "bins": edges.tolist(), "values": counts.tolist()}
    assert h.histogram == counts.tolist() and h.bins == edges.tolist()


def test_histogram_from_np_histogram_and_of_lists_tensors_bools_and_nonfinite():
    """np_histogram pairs are sent as given; lists, torch tensors and bools are binned; NaN and
    inf are left out of the counts."""
    assert wire(Histogram(np_histogram=([1, 2.5], [0, 1, 3]))) == {
        "_type": "histogram",
        "bins": [0.0, 1.0, 3.0],
        "values": [1, 2.5],
    }
    assert wire(Histogram([1, 2, 2, 3], num_bins=2))["values"] == [1, 3]
    assert wire(Histogram(FakeTensor([1.0, 2.0, 2.0, 3.0]), num_bins=2))["values"] == [1, 3]
    assert wire(Histogram(np.array([True, False, True]), num_bins=2))["values"] == [1, 2]
    w = wire(Histogram([1.0, float("nan"), 3.0, float("inf")], num_bins=2))
    assert w["values"] == [1, 1] and w["bins"] == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"sequence": [1], "num_bins": 513}, "num_bins=513 is out of range"),
        ({"sequence": [1], "num_bins": 0}, "num_bins=0 is out of range"),
        ({"sequence": [1], "num_bins": 2.5}, "num_bins must be an int"),
        ({}, "needs sequence"),
        ({"sequence": [1], "np_histogram": ([1], [0, 1])}, "not both"),
        ({"np_histogram": ([1, 2], [0, 1])}, "one edge more"),
        ({"np_histogram": ([1, 2], [0, 2, 1])}, "strictly increasing"),
        ({"np_histogram": [1, 2, 3]}, "np_histogram must be a"),
        ({"sequence": ["a", "b"]}, "sequence must hold numbers"),
    ],
)
def test_histogram_validation_names_the_argument(kwargs, fragment):
    """Bad num_bins (beyond 512 too), missing or doubled inputs and bad np_histogram raise ValueError."""
    with pytest.raises(ValueError, match=fragment):
        Histogram(**kwargs)


def test_histogram_accepts_512_bins():
    """num_bins=512 is the maximum and is accepted."""
    assert len(wire(Histogram(np.arange(1000), num_bins=512))["values"]) == 512


# ---------------------------------------------------------------- Image


def test_image_from_uint8_array_and_the_caller_copy():
    """An H×W×3 uint8 array is sent as a PNG of exactly those pixels, with size and caption;
    changing the array after construction does not change the logged image."""
    px = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    keep = px.copy()
    im = Image(px, caption="Label")
    px[:] = 0
    w = wire(im)
    data = check_payload(w, "image", "png")
    assert (w["width"], w["height"], w["caption"]) == (7, 5, "Label")
    np.testing.assert_array_equal(png_pixels(data), keep)


@pytest.mark.parametrize(
    "array, expected",
    [
        (np.array([[0.0, 0.5, 1.0]]), [[0, 128, 255]]),  # unit scale: ×255, rounded
        (np.array([[-3.0, 0.2, 7.6, 300.0]]), [[0, 0, 8, 255]]),  # 0–255 scale: rounded, clipped
        (np.array([[np.nan, np.inf, -np.inf, 0.5]]), [[0, 255, 0, 128]]),  # non-finite; rest in [0, 1]
        (np.array([[-5, 7, 300]], dtype=np.int32), [[0, 7, 255]]),  # ints clipped
        (np.array([[True, False]]), [[255, 0]]),
        (np.array([[3, 250]], dtype=np.uint8), [[3, 250]]),
    ],
)
def test_pixel_conversion_rule(array, expected):
    """to_uint8: floats in [0,1] scale by 255, other floats are read on 0–255 and clipped,
    ints are clipped, bools are 0/255, NaN → 0, ±inf → 255/0."""
    assert to_uint8(array).tolist() == expected
    np.testing.assert_array_equal(png_pixels(wire(Image(array))["bytes"]), np.array(expected, dtype=np.uint8))


def test_image_layouts_gray_rgba_leading_axes_and_torch_channels_first():
    """H×W is gray, H×W×1 too, H×W×4 keeps alpha, 1×H×W×3 drops the leading axis, and a torch
    C×H×W tensor is transposed to H×W×C (wandb reads torch images channels first)."""
    rgb = np.random.default_rng(2).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    gray = rgb[:, :, 0]
    np.testing.assert_array_equal(png_pixels(wire(Image(gray))["bytes"]), gray)
    np.testing.assert_array_equal(png_pixels(wire(Image(gray[:, :, None]))["bytes"]), gray)
    rgba = np.dstack([rgb, gray])
    np.testing.assert_array_equal(png_pixels(wire(Image(rgba))["bytes"]), rgba)
    np.testing.assert_array_equal(png_pixels(wire(Image(rgb[None]))["bytes"]), rgb)
    w = wire(Image(FakeTensor(rgb.transpose(2, 0, 1).copy())))
    assert (w["width"], w["height"]) == (6, 4)
    np.testing.assert_array_equal(png_pixels(w["bytes"]), rgb)


def test_image_mode_conversion():
    """mode='L' turns RGB into luma by (299 R + 587 G + 114 B) / 1000; mode='RGBA' adds opaque alpha."""
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [10, 20, 30]]], dtype=np.uint8)
    luma = [[76, 150, 18]]  # (299·255+500)//1000, (587·255+500)//1000, (2990+11740+3420+500)//1000
    assert png_pixels(wire(Image(rgb, mode="L"))["bytes"]).tolist() == luma
    rgba = png_pixels(wire(Image(rgb, mode="RGBA"))["bytes"])
    assert rgba[:, :, 3].tolist() == [[255, 255, 255]] and rgba[:, :, :3].tolist() == rgb.tolist()


@pytest.mark.parametrize(
    "data, kwargs, fragment",
    [
        (np.zeros((3, 8, 8)), {}, "channels first"),
        (np.zeros((8, 8, 5)), {}, "expected 1, 2, 3 or 4"),
        (np.zeros((2, 2, 2, 2, 3)), {}, "H×W or H×W×C"),
        (np.zeros(5), {}, "H×W or H×W×C"),
        (np.zeros((0, 4)), {}, "at least one pixel"),
        (np.array([["a", "b"]]), {}, "data_or_path must hold numbers"),
        (np.zeros((2, 2)), {"mode": "CMYK"}, "mode='CMYK'"),
        (np.zeros((2, 2)), {"caption": object()}, "caption must be a string"),
        (np.zeros((2, 2)), {"file_type": "tiff"}, "file_type='tiff'"),
        (np.zeros((2, 2)), {"grouping": "x"}, "grouping must be an int"),
        ("/nonexistent/file.png", {}, "cannot read the file"),
        (object(), {}, "data_or_path"),
    ],
)
def test_image_validation_names_the_argument(data, kwargs, fragment):
    """Bad shapes, dtypes, modes, captions, file types and unreadable paths raise ValueError."""
    with pytest.raises(ValueError, match=fragment):
        Image(data, **kwargs)


def test_image_from_png_and_jpeg_files_sends_the_bytes_as_they_are(tmp_path):
    """A PNG or JPEG file is sent byte for byte with its size read from the header; the file may
    be deleted right after construction."""
    png = Image(np.zeros((3, 9), np.uint8))._to_wire()["bytes"]
    p = tmp_path / "x.png"
    p.write_bytes(png)
    im = Image(str(p), caption="file")
    p.unlink()
    w = wire(im)
    assert check_payload(w, "image", "png") == png and (w["width"], w["height"]) == (9, 3)
    # a minimal baseline JPEG header: SOI, an APP0 segment, then SOF0 with height 17, width 33
    jpeg = (
        b"\xff\xd8"
        + b"\xff\xe0\x00\x04\x00\x00"
        + b"\xff\xc0\x00\x0b\x08\x00\x11\x00\x21\x01\x01\x11\x00"
        + b"\xff\xd9"
    )
    j = tmp_path / "y.jpg"
    j.write_bytes(jpeg)
    w = wire(Image(j))
    assert check_payload(w, "image", "jpg") == jpeg and (w["width"], w["height"]) == (33, 17)


def test_image_of_an_image_copies_and_relabels():
    """Image(Image(...), caption=...) shares the pixels and takes the new caption."""
    a = Image(np.zeros((2, 2), np.uint8), caption="a")
    b = Image(a, caption="b")
    assert wire(b)["caption"] == "b" and wire(a)["caption"] == "a"
    assert wire(a)["sha256"] == wire(b)["sha256"]


def test_image_boxes_classes_and_masks():
    """boxes/classes are sent as plain data (int keys become strings); masks become PNGs of
    their class ids, each a media dict of its own."""
    mask = np.array([[0, 1], [2, 1]], dtype=np.int64)
    boxes = {
        "pred": {
            "box_data": [{"position": {"minX": 0.1, "maxX": 0.5, "minY": 0, "maxY": 1}, "class_id": np.int64(1)}],
            "class_labels": {1: "cat"},
        }
    }
    w = wire(
        Image(
            np.zeros((2, 2), np.uint8),
            boxes=boxes,
            masks={"gt": {"mask_data": mask, "class_labels": {1: "a", 2: "b"}}},
            classes=[{"id": 1, "name": "cat"}],
        )
    )
    assert w["boxes"] == {
        "pred": {
            "box_data": [{"position": {"minX": 0.1, "maxX": 0.5, "minY": 0, "maxY": 1}, "class_id": 1}],
            "class_labels": {"1": "cat"},
        }
    }
    assert w["classes"] == [{"id": 1, "name": "cat"}]
    m = w["masks"]["gt"]
    assert m["class_labels"] == {"1": "a", "2": "b"}
    np.testing.assert_array_equal(png_pixels(check_payload(m, "image-mask", "png")), mask)
    with pytest.raises(ValueError, match=r"masks\['gt'\]\['mask_data'\] class ids"):
        Image(np.zeros((2, 2)), masks={"gt": {"mask_data": np.array([[300]])}})


def test_image_from_pil_and_jpeg_output():
    """A PIL image is copied at construction (later edits are not logged); file_type='jpg' sends a JPEG."""
    PILImage = pil()
    img = PILImage.new("RGB", (4, 3), (10, 20, 30))
    im = Image(img)
    img.paste((0, 0, 0), (0, 0, 4, 3))
    px = png_pixels(wire(im)["bytes"])
    assert px.shape == (3, 4, 3) and px.reshape(-1, 3).tolist() == [[10, 20, 30]] * 12
    w = wire(Image(np.zeros((8, 8, 3), np.uint8), file_type="jpg"))
    assert check_payload(w, "image", "jpg")[:3] == b"\xff\xd8\xff"
    assert wire(Image(PILImage.new("P", (2, 2))))["format"] == "png"  # palette images converted


def test_without_pillow_png_still_works_and_jpeg_names_the_extra(monkeypatch):
    """Without Pillow, arrays are encoded by the zlib encoder; file_type='jpg' raises naming rankwise[media]."""
    from client.media import image as image_mod

    monkeypatch.setattr(image_mod, "have_module", lambda name: False)
    px = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(decode_png(wire(Image(px))["bytes"])[:, :, 0], px)
    with pytest.raises(ImportError, match=r"rankwise\[media\]"):
        Image(px, file_type="jpg")


# ---------------------------------------------------------------- Video


def gif_frames(data: bytes) -> list[np.ndarray]:
    PILImage = pil()
    im = PILImage.open(io.BytesIO(data))
    frames = []
    for i in range(im.n_frames):
        im.seek(i)
        frames.append(np.asarray(im.convert("RGB")))
    return frames


def test_video_gif_from_tchw_and_thwc():
    """A T×C×H×W array (wandb's layout) and the same frames as T×H×W×C encode to the same GIF
    with T frames of H×W, fps and duration 1000/fps ms."""
    pil()
    t, c, h, w = 3, 3, 8, 10
    frames = np.zeros((t, c, h, w), np.uint8)
    for i in range(t):
        frames[i, i] = 255  # frame i is pure red, green, blue
    a, b = Video(frames, fps=5, format="gif"), Video(frames.transpose(0, 2, 3, 1).copy(), fps=5)
    wa, wb = wire(a), wire(b)
    assert check_payload(wa, "video", "gif") == wb["bytes"]
    assert (wa["frames"], wa["width"], wa["height"], wa["fps"]) == (3, 10, 8, 5)
    decoded = gif_frames(wa["bytes"])
    assert len(decoded) == 3
    for i, f in enumerate(decoded):
        expected = np.zeros(3, np.uint8)
        expected[i] = 255
        assert f.shape == (8, 10, 3) and (f == expected).all()
    from PIL import Image as PILImage

    assert PILImage.open(io.BytesIO(wa["bytes"])).info["duration"] == 200


def test_video_batch_is_tiled_into_a_grid():
    """B×T×C×H×W with B=3 is padded to 4 clips and tiled 2×2: frames of 2H×2W."""
    pil()
    w = wire(Video(np.full((3, 2, 1, 4, 5), 200, np.uint8)))
    assert (w["frames"], w["width"], w["height"]) == (2, 10, 8)
    f = gif_frames(w["bytes"])[0][:, :, 0]
    assert (f[:4, :] == 200).all() and (f[4:, :5] == 200).all() and (f[4:, 5:] == 0).all()


def test_video_from_a_path_or_binary_file_is_sent_as_is(tmp_path):
    """A video file (by path or file object) is sent byte for byte; its format is its extension."""
    p = tmp_path / "clip.mp4"
    p.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    assert check_payload(wire(Video(str(p))), "video", "mp4") == p.read_bytes()
    with open(p, "rb") as f:
        assert wire(Video(f))["bytes"] == p.read_bytes()
    assert wire(Video(io.BytesIO(b"GIF89a..."), format="gif"))["format"] == "gif"


@pytest.mark.parametrize(
    "data, kwargs, fragment",
    [
        (np.zeros((2, 5, 4, 5)), {}, "T×C×H×W"),
        (np.zeros((4, 4, 3)), {}, "4 dimensions"),
        (np.zeros((2, 3, 4, 4)), {"fps": 0}, "fps must be"),
        (np.zeros((2, 3, 4, 4)), {"format": "webm"}, "format='webm'"),
        (np.zeros((0, 3, 4, 4)), {}, "at least one frame"),
        ("clip.avi", {}, "cannot read the file"),
        (io.BytesIO(b"x"), {}, "needs format="),
        (io.StringIO("x"), {"format": "gif"}, "binary mode"),
    ],
)
def test_video_validation_names_the_argument(data, kwargs, fragment):
    """Bad shapes, fps, formats and file objects raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=fragment):
        Video(data, **kwargs)


def test_video_without_its_encoder_names_the_extra(monkeypatch):
    """A GIF from an array without Pillow (or MP4 without imageio-ffmpeg) raises ImportError naming rankwise[media]."""
    from client.media import video as video_mod

    monkeypatch.setattr(video_mod, "have_module", lambda name: False)
    with pytest.raises(ImportError, match=r"Pillow.*rankwise\[media\]"):
        Video(np.zeros((2, 3, 4, 4)), format="gif")
    with pytest.raises(ImportError, match=r"imageio-ffmpeg.*rankwise\[media\]"):
        Video(np.zeros((2, 3, 4, 4)), format="mp4")


def test_video_mp4_with_imageio_ffmpeg():
    """format='mp4' encodes an H.264 MP4 (odd sizes padded) when imageio-ffmpeg is installed."""
    pytest.importorskip("imageio_ffmpeg")
    w = wire(Video(np.random.default_rng(0).integers(0, 256, (4, 3, 9, 11), dtype=np.uint8), fps=8, format="mp4"))
    data = check_payload(w, "video", "mp4")
    assert data[4:8] == b"ftyp" and (w["frames"], w["width"], w["height"]) == (4, 11, 9)


# ---------------------------------------------------------------- Audio


def read_wav(data: bytes) -> tuple[int, int, int, np.ndarray]:
    with wave.open(io.BytesIO(data), "rb") as w:
        rate, ch, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        raw = w.readframes(w.getnframes())
    dtype = {1: np.uint8, 2: "<i2", 4: "<i4"}[width]
    return rate, ch, width, np.frombuffer(raw, dtype=dtype).reshape(-1, ch)


def test_audio_float_mono_is_16_bit_wav():
    """Float samples are clipped to [-1, 1] and written as round(x·32767) 16-bit PCM."""
    samples = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0, np.nan])
    w = wire(Audio(samples, sample_rate=8000, caption="beep"))
    rate, ch, width, pcm = read_wav(check_payload(w, "audio", "wav"))
    assert (rate, ch, width) == (8000, 1, 2)
    assert pcm[:, 0].tolist() == [0, 16384, -16384, 32767, -32767, 32767, 0]
    assert (w["sample_rate"], w["channels"], w["caption"]) == (8000, 1, "beep")
    assert w["duration"] == 7 / 8000


def test_audio_stereo_layouts_and_integer_pcm():
    """frames×2 and 2×frames (channels first) give the same stereo WAV; int16 is written as is."""
    left = np.arange(100, dtype=np.int16)
    st = np.stack([left, -left], axis=1)
    a, b = wire(Audio(st, sample_rate=44100)), wire(Audio(st.T.copy(), sample_rate=44100))
    assert a["bytes"] == b["bytes"]
    rate, ch, width, pcm = read_wav(a["bytes"])
    assert (rate, ch, width) == (44100, 2, 2) and (pcm == st).all()


@pytest.mark.parametrize(
    "data, kwargs, fragment",
    [
        (np.zeros(10), {}, "sample_rate is required"),
        (np.zeros(10), {"sample_rate": 0}, "sample_rate=0"),
        (np.zeros(10), {"sample_rate": 44.1}, "sample_rate must be an int"),
        (np.zeros((2, 2, 2)), {"sample_rate": 10}, "1-D"),
        (np.zeros((100, 9)), {"sample_rate": 10}, "9 channels"),
        (np.zeros(4, dtype=np.int64), {"sample_rate": 10}, "int16, int32 or uint8"),
        ("sound.xyz", {}, "audio files must be"),
    ],
)
def test_audio_validation_names_the_argument(data, kwargs, fragment):
    """Missing/bad sample_rate, bad shapes and dtypes and unknown file types raise ValueError."""
    with pytest.raises(ValueError, match=fragment):
        Audio(data, **kwargs)


def test_audio_wav_file_metadata_is_read(tmp_path):
    """A WAV file is sent as is, with sample rate, channels and duration read from its header."""
    data = wire(Audio(np.zeros((50, 2)), sample_rate=1000))["bytes"]
    p = tmp_path / "a.wav"
    p.write_bytes(data)
    w = wire(Audio(p))
    assert w["bytes"] == data and (w["sample_rate"], w["channels"], w["duration"]) == (1000, 2, 0.05)


# ---------------------------------------------------------------- Table


def test_table_wire_with_media_cells_and_conversions():
    """Cells are converted like log() values (numpy scalars → Python), media cells carry their
    own wire dicts, and add_column appends a column."""
    t = Table(columns=["id", "score", "img"])
    t.add_data(1, np.float32(0.5), Image(np.zeros((2, 2), np.uint8)))
    t.add_data(2, None, None)
    t.add_column("tag", ["a", "b"])
    w = wire(t)
    assert w["columns"] == ["id", "score", "img", "tag"]
    assert [r[:2] + r[3:] for r in w["data"]] == [[1, 0.5, "a"], [2, None, "b"]]
    assert w["data"][0][2]["_type"] == "image" and w["data"][1][2] is None
    assert t.get_column("id") == [1, 2]


def test_table_from_data_rows_array_and_defaults():
    """data= lists and 2-D arrays, rows= (old name), and wandb's default columns for 3-wide rows."""
    assert wire(Table(columns=["a", "b"], data=np.array([[1, 2], [3, 4]])))["data"] == [[1, 2], [3, 4]]
    assert wire(Table(rows=[[1, 2, 3]]))["columns"] == ["Input", "Output", "Expected"]


def test_table_from_a_dataframe():
    """dataframe= takes the columns and rows of a pandas DataFrame."""
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"x": [1, 2], "y": ["a", "b"]})
    assert wire(Table(dataframe=df)) == {"_type": "table", "columns": ["x", "y"], "data": [[1, "a"], [2, "b"]]}


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda: Table(columns=["a"]).add_data(1, 2), "2 values but the table has 1 columns"),
        (lambda: Table(columns=["a", "a"]), "unique"),
        (lambda: Table(columns="ab"), "columns must be a list"),
        (lambda: Table(columns=["a"], data=[[object()]]), r"Table row 0 column 'a'"),
        (lambda: Table(columns=["a"], data=5), "data must be a list"),
        (lambda: Table(columns=["a"], data=[[1]], rows=[[1]]), "not both"),
        (lambda: Table(columns=["a"]).add_column("a", []), "already exists"),
        (lambda: Table(columns=["a"], data=[[1]]).add_column("b", [1, 2]), "2 values for a table of 1 rows"),
    ],
)
def test_table_validation(call, fragment):
    """Row widths, duplicate/ill-typed columns and unsupported cells raise ValueError at the call."""
    with pytest.raises(ValueError, match=fragment):
        call()


def test_table_row_limit_raises_instead_of_truncating(monkeypatch):
    """Adding a row beyond MAX_ROWS raises naming data (nothing is dropped silently)."""
    from client.media import table as table_mod

    monkeypatch.setattr(table_mod, "MAX_ROWS", 2)
    t = Table(columns=["a"], data=[[1], [2]])
    with pytest.raises(ValueError, match="at most 2 rows"):
        t.add_data(3)


# ---------------------------------------------------------------- Object3D


OBJ = "# a triangle\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"
GLTF = '{"asset": {"version": "2.0"}, "scenes": [{"nodes": []}], "scene": 0}'
GLB = b"glTF" + (2).to_bytes(4, "little") + (12).to_bytes(4, "little")
STL_ASCII = (
    "solid t\nfacet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nvertex 0 1 0\nendloop\nendfacet\nendsolid t\n"
)
STL_BINARY = b"\0" * 80 + (1).to_bytes(4, "little") + b"\0" * 50


@pytest.mark.parametrize(
    "name, content, fmt",
    [
        ("m.obj", OBJ, "obj"),
        ("m.gltf", GLTF, "gltf"),
        ("m.glb", GLB, "glb"),
        ("m.stl", STL_ASCII, "stl"),
        ("b.stl", STL_BINARY, "stl"),
    ],
)
def test_object3d_files_by_path_and_open_file_in_either_mode(tmp_path, name, content, fmt):
    """OBJ/glTF/GLB/STL files are sent byte for byte from a path, a file opened in binary mode,
    and a file opened in text mode (re-read in binary from its name: a GLB cannot be read as text)."""
    p = tmp_path / name
    raw = content.encode() if isinstance(content, str) else content
    p.write_bytes(raw)
    assert check_payload(wire(Object3D(str(p))), "object3d", fmt) == raw
    with open(p, "rb") as fb, open(p) as ft:
        assert wire(Object3D(fb))["bytes"] == raw and wire(Object3D(ft))["bytes"] == raw


@pytest.mark.parametrize(
    "content, fmt",
    [(OBJ, "obj"), (GLTF, "gltf"), (GLB, "glb"), (STL_ASCII, "stl"), (STL_BINARY, "stl")],
)
def test_object3d_format_is_sniffed_from_content_without_a_name(content, fmt):
    """StringIO/BytesIO without a name: the format is recognised from the content."""
    f = io.StringIO(content) if isinstance(content, str) else io.BytesIO(content)
    w = wire(Object3D(f))
    assert w["format"] == fmt and w["bytes"] == (content.encode() if isinstance(content, str) else content)


@pytest.mark.parametrize("columns, layout", [(3, "xyz"), (4, "xyzc"), (6, "xyzrgb")])
def test_object3d_point_clouds_are_float32(columns, layout):
    """N×3/4/6 arrays are sent as little-endian float32 rows with their shape and layout."""
    pts = np.random.default_rng(columns).random((5, columns))
    w = wire(Object3D(pts, caption="cloud"))
    data = check_payload(w, "object3d", "f32")
    assert (w["layout"], w["shape"], w["caption"]) == (layout, [5, columns], "cloud")
    np.testing.assert_array_equal(np.frombuffer(data, "<f4").reshape(5, columns), pts.astype(np.float32))


def test_object3d_scene_dict_and_pts_json(tmp_path):
    """wandb's lidar/beta scene dict keeps boxes/vectors as data; a .pts.json file becomes points."""
    scene = {"type": "lidar/beta", "points": np.zeros((2, 3)), "boxes": [{"corners": [[0, 0, 0]], "color": [1, 2, 3]}]}
    w = wire(Object3D(scene))
    assert w["scene"] == {"type": "lidar/beta", "boxes": [{"corners": [[0, 0, 0]], "color": [1, 2, 3]}], "vectors": []}
    assert w["shape"] == [2, 3]
    p = tmp_path / "c.pts.json"
    p.write_text(json.dumps([[1, 2, 3, 4], [5, 6, 7, 8]]))
    w = wire(Object3D(str(p)))
    assert w["layout"] == "xyzc" and np.frombuffer(w["bytes"], "<f4").tolist() == [1, 2, 3, 4, 5, 6, 7, 8]


@pytest.mark.parametrize(
    "data, kwargs, fragment",
    [
        (np.zeros((4, 5)), {}, "N×3, N×4 or N×6"),
        (np.zeros(3), {}, "N×3, N×4 or N×6"),
        (io.StringIO("hello world"), {}, "cannot tell the 3-D format"),
        (io.BytesIO(b"x"), {"file_type": "fbx"}, "file_type='fbx'"),
        ({"type": "scene/v2"}, {}, "lidar/beta"),
        ("missing.obj", {}, "cannot read the file"),
    ],
)
def test_object3d_validation(data, kwargs, fragment):
    """Bad point cloud shapes, unrecognisable content, unknown file types and scene types raise ValueError."""
    with pytest.raises(ValueError, match=fragment):
        Object3D(data, **kwargs)


# ---------------------------------------------------------------- Html, Plotly


def test_html_literal_inject_and_passthrough(tmp_path):
    """inject=True puts the style block at the start of <head>; inject=False sends the text
    unchanged; a path to an .html file is read; a file object too."""
    doc = "<html><head><title>t</title></head><body>x</body></html>"
    w = wire(Html(doc))
    text = check_payload(w, "html", "html").decode()
    assert text.startswith('<html><head><base target="_blank"><style>') and text.endswith(
        "<title>t</title></head><body>x</body></html>"
    )
    assert wire(Html(doc, inject=False))["bytes"] == doc.encode()
    assert wire(Html("<b>é</b>", inject=False))["bytes"] == "<b>é</b>".encode()
    p = tmp_path / "page.html"
    p.write_text("<p>file</p>")
    assert wire(Html(str(p), inject=False))["bytes"] == b"<p>file</p>"
    assert wire(Html(str(p), inject=False, data_is_not_path=True))["bytes"] == str(p).encode()
    assert wire(Html(io.StringIO("<i>io</i>"), inject=False))["bytes"] == b"<i>io</i>"
    with pytest.raises(ValueError, match="data must be HTML"):
        Html(42)
    with pytest.raises(ValueError, match="'missing.html': no such file"):
        Html("missing.html")


def test_plotly_dict_and_figure():
    """A plotly figure dict (numpy arrays inside) is sent as its JSON; a matplotlib object is refused."""
    w = Plotly({"data": [{"type": "scatter", "x": np.array([1, 2]), "y": [3, 4]}], "layout": {}})._to_wire()
    assert w["_type"] == "plotly" and json.loads(w["json"])["data"][0]["x"] == [1, 2]
    with pytest.raises(ValueError, match="needs a plotly figure"):
        Plotly(42)


# ---------------------------------------------------------------- never raise on the I/O thread


def test_an_encoding_failure_becomes_an_error_value_once():
    """_to_wire never raises: a failing encoder gives {"_type", "error", "caption"} (logged once)
    and is not retried; the source copy is released."""
    calls = []

    class Broken(_base.Media):
        _type = "image"

        def _encode(self):
            calls.append(1)
            raise RuntimeError("disk on fire")

    b = Broken()
    assert b._to_wire() == {"_type": "image", "error": "RuntimeError: disk on fire", "caption": None}
    assert b._to_wire() is b._to_wire() and calls == [1]


def test_encoded_media_drop_their_source_copy():
    """After _to_wire, the pixel copy is released (memory is held only as encoded bytes) and
    encoding is not repeated."""
    im = Image(np.zeros((16, 16), np.uint8))
    first = im._to_wire()
    assert im._pixels is None and im._to_wire() is first


def test_public_names_are_exported_lazily():
    """rankwise exposes the media types, plot and plots, without importing numpy at import time."""
    import subprocess
    import sys

    code = (
        "import sys, rankwise; assert 'numpy' not in sys.modules; "
        "rankwise.Image; rankwise.plots.precision_recall; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
    for name in ("Audio", "Histogram", "Html", "Image", "Object3D", "Plotly", "Table", "Video", "plot", "plots"):
        assert getattr(rankwise, name) is not None and name in rankwise.__all__


def test_image_file_with_mode_or_an_unusual_format_is_converted_by_pil(tmp_path):
    """A file with mode= (or in a format browsers do not show, e.g. TIFF) is converted by Pillow
    to a PNG in that mode."""
    PILImage = pil()
    p = tmp_path / "x.tiff"
    PILImage.new("RGB", (3, 2), (200, 100, 50)).save(p)
    w = wire(Image(str(p), mode="L"))
    assert (w["format"], w["width"], w["height"]) == ("png", 3, 2)
    assert png_pixels(w["bytes"]).tolist() == [[124] * 3] * 2  # PIL's luma of (200, 100, 50)
    assert png_pixels(wire(Image(str(p)))["bytes"]).reshape(-1, 3).tolist() == [[200, 100, 50]] * 6
