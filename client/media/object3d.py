"""``Object3D``: wandb's ``wandb.Object3D(data_or_path, caption=None, **kwargs)``.

Meshes and scenes: a path, or an open file object in text or binary mode (wandb's own example
is ``Object3D(open("sample.obj"))``), of an OBJ, glTF, GLB, STL or Babylon file. The format
comes from ``file_type=`` if given, else the file name, else the content:

* ``glb``: starts with the magic ``glTF``;
* ``stl``: binary (84 + 50·n bytes with n at offset 80) or ASCII (``solid ... facet``);
* ``gltf``: a JSON object with an ``"asset"`` member;
* ``obj``: text with vertex/face/group lines (``v``, ``vn``, ``vt``, ``f``, ``o``, ``g``, ``mtllib``).

A file object with a ``name`` that exists on disk is re-read from that path in binary mode:
a GLB opened in text mode (``open("sample.glb")``) cannot be read as text, and wandb does
the same. Files are sent byte for byte.

Point clouds: numpy arrays N×3 (x y z), N×4 (x y z category) or N×6 (x y z r g b), a
``.pts.json`` file of such rows, or wandb's scene dict ``{"type": "lidar/beta", "points":
array, "boxes": [...], "vectors": [...]}``. Sent as raw little-endian float32, row-major:

    {"_type": "object3d", "format": "f32", "layout": "xyz"|"xyzc"|"xyzrgb", "shape": [N, C],
     "sha256", "size", "bytes", "caption", "scene": {"type", "boxes", "vectors"} (scene dicts only)}

Files: ``{"_type": "object3d", "format": "obj"|"gltf"|"glb"|"stl"|"babylon", "sha256",
"size", "bytes", "caption"}``.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import numpy as np

from client.errors import InvalidArgumentError
from client.media._arrays import array_copy, check_numeric
from client.media._base import MAX_MEDIA_BYTES, Media, check_caption, extension, payload, plain_data, read_path

FILE_TYPES = ("obj", "gltf", "glb", "stl", "babylon")
SUPPORTED_TYPES = FILE_TYPES + ("pts.json",)
LAYOUTS = {3: "xyz", 4: "xyzc", 6: "xyzrgb"}
MAX_POINTS = MAX_MEDIA_BYTES // 24  # N×6 float32 fits one media item
_OBJ_KEYWORDS = (b"v", b"vn", b"vt", b"f", b"o", b"g", b"mtllib", b"usemtl", b"s", b"l")


def sniff_3d(data: bytes) -> str | None:
    """The 3-D file format of ``data`` from its content, or None."""
    if data[:4] == b"glTF":
        return "glb"
    if len(data) >= 84 and 84 + 50 * struct.unpack("<I", data[80:84])[0] == len(data):
        return "stl"
    head = data[:4096].lstrip()
    if head[:5].lower() == b"solid" and b"facet" in data[:65536]:
        return "stl"
    if head[:1] == b"{":
        return "gltf" if b'"asset"' in data[:65536] else None
    lines = [ln.split(None, 1) for ln in head.splitlines()[:200]]
    words = [ln[0] for ln in lines if ln and not ln[0].startswith(b"#")]
    if words and all(w in _OBJ_KEYWORDS for w in words[: min(len(words), 20)]):
        return "obj"
    return None


def _file_type_of(name: str) -> str | None:
    lower = name.lower()
    if lower.endswith(".pts.json"):
        return "pts.json"
    ext = extension(lower)
    return ext if ext in FILE_TYPES else None


def points_from_array(data: Any, arg: str) -> np.ndarray:
    arr = array_copy(data, arg)
    check_numeric(arr, arg)
    if arr.ndim != 2 or arr.shape[1] not in LAYOUTS:
        raise InvalidArgumentError(f"{arg}: a point cloud must be N×3, N×4 or N×6, got shape {arr.shape}")
    if arr.shape[0] > MAX_POINTS:
        raise InvalidArgumentError(f"{arg}: {arr.shape[0]} points is more than the limit of {MAX_POINTS}")
    return arr


class Object3D(Media):
    """A 3-D mesh/scene file, or a point cloud (sent as float32)."""

    _type = "object3d"
    SUPPORTED_TYPES = SUPPORTED_TYPES

    def __init__(self, data_or_path: Any, caption: str | None = None, **kwargs: Any) -> None:
        self.caption = check_caption(caption)
        file_type = kwargs.pop("file_type", None)
        if kwargs:
            raise TypeError(f"Object3D() got unexpected keyword arguments {sorted(kwargs)}")
        if file_type is not None:
            file_type = str(file_type).lower().lstrip(".")
            if file_type not in SUPPORTED_TYPES:
                raise InvalidArgumentError(f"file_type={file_type!r} must be one of {SUPPORTED_TYPES}")
        self._file: bytes | None = None
        self._points: np.ndarray | None = None
        self._scene: dict | None = None
        self.format: str
        if isinstance(data_or_path, dict):
            self._init_scene(data_or_path)
        elif isinstance(data_or_path, (str, os.PathLike)):
            raw = read_path(data_or_path, "data_or_path")
            self._init_file(raw, file_type or _file_type_of(os.fspath(data_or_path)))
        elif hasattr(data_or_path, "read"):
            name = getattr(data_or_path, "name", None)
            if isinstance(name, str) and os.path.isfile(name):
                raw = read_path(name, "data_or_path")  # binary, whatever mode the caller opened it in
            else:
                content = data_or_path.read()
                raw = content.encode("utf-8") if isinstance(content, str) else bytes(content)
                if len(raw) > MAX_MEDIA_BYTES:
                    raise InvalidArgumentError(
                        f"data_or_path: {len(raw)} bytes is more than the {MAX_MEDIA_BYTES >> 20} MiB limit"
                    )
            self._init_file(raw, file_type or (_file_type_of(name) if isinstance(name, str) else None))
        else:
            self._points = points_from_array(data_or_path, "data_or_path")
            self.format = "f32"

    def _init_file(self, raw: bytes, file_type: str | None) -> None:
        fmt = file_type or sniff_3d(raw)
        if fmt is None:
            raise InvalidArgumentError(
                "data_or_path: cannot tell the 3-D format from the name or content; "
                f"pass file_type= (one of {SUPPORTED_TYPES})"
            )
        if fmt == "pts.json":
            try:
                rows = json.loads(raw)
            except ValueError as exc:
                raise InvalidArgumentError(f"data_or_path: not a valid .pts.json file ({exc})") from None
            self._points = points_from_array(rows, "data_or_path")
            self.format = "f32"
            return
        self._file = raw
        self.format = fmt

    def _init_scene(self, scene: dict) -> None:
        kind = scene.get("type")
        if kind != "lidar/beta":
            raise InvalidArgumentError(f"data_or_path: scene dicts must have type 'lidar/beta', got {kind!r}")
        points = scene.get("points")
        self._points = (
            points_from_array(points, "data_or_path['points']") if points is not None else np.zeros((0, 3), np.float32)
        )
        self._scene = {
            "type": kind,
            "boxes": plain_data(scene.get("boxes", []), "data_or_path['boxes']"),
            "vectors": plain_data(scene.get("vectors", []), "data_or_path['vectors']"),
        }
        self.format = "f32"

    @classmethod
    def from_file(cls, data_or_path: Any, file_type: str | None = None) -> Object3D:
        return cls(data_or_path, file_type=file_type)

    @classmethod
    def from_numpy(cls, data: Any) -> Object3D:
        return cls(data)

    @classmethod
    def from_point_cloud(
        cls, points: Any, boxes: Any = None, vectors: Any = None, point_cloud_type: str = "lidar/beta"
    ) -> Object3D:
        return cls({"type": point_cloud_type, "points": points, "boxes": boxes or [], "vectors": vectors or []})

    def _nbytes_hint(self) -> int:
        if self._file is not None:
            return len(self._file) + 256
        if self._points is not None:
            return self._points.shape[0] * self._points.shape[1] * 4 + 256
        return 256

    def _encode(self) -> dict:
        if self._file is not None:
            return payload("object3d", self.format, self._file, self.caption)
        pts = self._points
        assert pts is not None
        n, c = pts.shape
        data = np.ascontiguousarray(pts, dtype="<f4").tobytes()
        return payload("object3d", "f32", data, self.caption, layout=LAYOUTS[c], shape=[n, c], scene=self._scene)

    def _release(self) -> None:
        self._file = self._points = None
