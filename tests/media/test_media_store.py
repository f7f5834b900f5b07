"""agent.media: the content-addressed MediaStore (layout, idempotency, dedup, atomic writes)
and externalize(), which turns decoded history values with inline bytes into references."""

from __future__ import annotations

import hashlib
import os
import threading

import numpy as np
import pytest
from mediautil import close, offline_run, sent_rows

from agent.media import MediaError, MediaStore, externalize, iter_refs, mime_type, relative_path
from rankwise import Audio, Image, Table


def files_under(root) -> list[str]:
    out = []
    for dirpath, _, names in os.walk(root):
        out += [os.path.relpath(os.path.join(dirpath, n), root) for n in names]
    return sorted(out)


def test_put_layout_and_open(tmp_path):
    """put() returns the SHA-256 hex digest and stores media/<first two hex>/<sha>.<ext>;
    path/open/get/has find it; a second put of the same bytes leaves the file untouched."""
    store = MediaStore(tmp_path)
    data = b"\x89PNG fake"
    sha = store.put(data, "png")
    assert sha == hashlib.sha256(data).hexdigest()
    assert files_under(tmp_path) == [f"media/{sha[:2]}/{sha}.png"]
    assert store.path(sha, "png") == tmp_path / "media" / sha[:2] / f"{sha}.png"
    assert store.has(sha, "png") and not store.has(sha, "jpg")
    with store.open(sha, "png") as f:
        assert f.read() == data
    inode = os.stat(store.path(sha, "png")).st_ino
    assert store.put(data, "png") == sha and os.stat(store.path(sha, "png")).st_ino == inode
    assert store.get(sha, "png") == data and relative_path(sha, "png") == f"media/{sha[:2]}/{sha}.png"


def test_eight_concurrent_writers_of_the_same_bytes_leave_one_file(tmp_path):
    """Eight threads (ranks) putting the same bytes at once: one file, no temporary left over."""
    store = MediaStore(tmp_path)
    data = os.urandom(1 << 20)
    barrier = threading.Barrier(8)
    shas = []

    def rank() -> None:
        barrier.wait()
        shas.append(store.put(data, "bin"))

    threads = [threading.Thread(target=rank) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sha = hashlib.sha256(data).hexdigest()
    assert shas == [sha] * 8
    assert files_under(tmp_path) == [f"media/{sha[:2]}/{sha}.bin"]
    assert store.get(sha, "bin") == data


def test_a_torn_file_is_replaced(tmp_path):
    """A file of the right name but wrong size (a crash of a non-atomic writer) is rewritten."""
    store = MediaStore(tmp_path, fsync=False)
    data = b"0123456789"
    sha = hashlib.sha256(data).hexdigest()
    p = store.path(sha, "txt")
    p.parent.mkdir(parents=True)
    p.write_bytes(b"0123")
    assert store.put(data, "txt") == sha and p.read_bytes() == data


@pytest.mark.parametrize(
    "sha, ext", [("ab" * 32, "../x"), ("ab" * 32, "PNG"), ("zz" * 32, "png"), ("ab", "png"), ("ab" * 32, "")]
)
def test_names_are_validated(tmp_path, sha, ext):
    """Only 64 lower-case hex digits and short lower-case extensions form names (no traversal)."""
    with pytest.raises(MediaError):
        MediaStore(tmp_path).path(sha, ext)


def test_externalize_values_sent_by_eight_ranks(tmp_path):
    """Eight ranks log the same image, a list of images and a table with an image cell: after
    externalize every value is a reference without bytes, equal across ranks, and the store
    holds one file per distinct content."""
    store = MediaStore(tmp_path)
    same = np.arange(16, dtype=np.uint8).reshape(4, 4)
    refs = []
    for rank in range(8):
        run = offline_run(rank=rank, world_size=8)
        run.log(
            {
                "img": Image(same, caption="same"),
                "list": [Image(same), Image(same.T.copy())],
                "tab": Table(columns=["a", "im"], data=[[rank, Image(same)]]),
                "snd": Audio(np.zeros(8), sample_rate=8),
                "n": rank,
            }
        )
        (row,) = sent_rows(run)
        close(run)
        refs.append({k: externalize(v, store) for k, v in row.items()})
    png_same = Image(same)._to_wire()
    png_t = Image(same.T.copy())._to_wire()
    wav = Audio(np.zeros(8), sample_rate=8)._to_wire()
    expected_files = sorted(relative_path(w["sha256"], w["format"]) for w in (png_same, png_t, wav))
    assert files_under(tmp_path) == expected_files
    first = refs[0]
    assert first["img"] == {
        "_type": "image",
        "format": "png",
        "sha256": png_same["sha256"],
        "size": png_same["size"],
        "caption": "same",
        "width": 4,
        "height": 4,
        "path": relative_path(png_same["sha256"], "png"),
    }
    assert [r["path"] for r in first["list"]] == [
        relative_path(png_same["sha256"], "png"),
        relative_path(png_t["sha256"], "png"),
    ]
    assert first["tab"]["data"][0][1]["path"] == first["img"]["path"] and first["tab"]["data"][0][0] == 0
    for r in refs:
        assert r["img"] == first["img"] and r["list"] == first["list"] and r["snd"] == first["snd"]
        assert "bytes" not in repr(r)
    assert sorted(set(iter_refs(first))) == sorted({(w["sha256"], w["format"]) for w in (png_same, png_t, wav)})
    assert externalize(first, store) == first  # references pass through unchanged


def test_externalize_keeps_masks_and_plain_values(tmp_path):
    """Nested media dicts (an image's masks) are externalized too; plain values and lists pass through."""
    store = MediaStore(tmp_path)
    w = Image(np.zeros((2, 2), np.uint8), masks={"m": {"mask_data": np.ones((2, 2), np.uint8)}})._to_wire()
    ref = externalize(w, store)
    assert "bytes" not in ref["masks"]["m"] and store.has(ref["masks"]["m"]["sha256"], "png")
    assert externalize([1, "a", None, [2.5]], store) == [1, "a", None, [2.5]]
    assert externalize({"_type": "histogram", "bins": [0, 1], "values": [3]}, store) == {
        "_type": "histogram",
        "bins": [0, 1],
        "values": [3],
    }


@pytest.mark.parametrize(
    "value, fragment",
    [
        ({"_type": "image", "format": "png", "bytes": b"x", "sha256": "0" * 64}, "claims sha256"),
        ({"_type": "image", "format": "../png", "bytes": b"x"}, "format"),
        ({"_type": "image", "bytes": b"x"}, "format None"),
        ({"_type": "image", "format": "png", "bytes": "text"}, "'bytes' of type str"),
    ],
)
def test_externalize_refuses_malformed_media(tmp_path, value, fragment):
    """A wrong claimed hash, a bad format or non-bytes content raise MediaError (a ValueError)."""
    with pytest.raises(MediaError, match=fragment):
        externalize([value], MediaStore(tmp_path))


def test_mime_types():
    """Formats map to HTTP content types; unknown ones are octet streams."""
    assert (
        mime_type("png") == "image/png"
        and mime_type("glb") == "model/gltf-binary"
        and mime_type("xyz") == "application/octet-stream"
    )


def test_byte_less_references_get_their_path_once_stored(tmp_path):
    """A media dict with sha256 + format but no bytes (a summary referring to the history's
    bytes) gets a path when the content is in the store, and stays without one otherwise."""
    from client.values import strip_bytes

    store = MediaStore(tmp_path)
    full = Image(np.zeros((2, 2), np.uint8))._to_wire()
    stub = strip_bytes({"summary": full})["summary"]
    assert "bytes" not in stub and stub["sha256"] == full["sha256"]
    assert "path" not in externalize(stub, store)
    ref = externalize(full, store)
    assert externalize(stub, store) == ref
