"""``Video``: wandb's ``wandb.Video(data_or_path, caption=None, fps=4, format="gif")``.

Arrays: T×C×H×W (wandb's layout) or B×T×C×H×W (the batch is tiled into a grid per frame, as
wandb does); T×H×W×C is accepted too when it cannot be read as T×C×H×W (the channel axis is
the one of length 1, 3 or 4; axis 1 wins when both could be). Pixels follow the Image rule
(``client.media._arrays.to_uint8``). Encoded on the I/O thread:

* ``format="gif"`` (default) with Pillow (the ``rankwise[media]`` extra); frame duration
  1000/fps ms (GIF stores hundredths of a second, so e.g. 30 fps plays at 1/3 cs ≈ 33 fps);
* ``format="mp4"`` with imageio-ffmpeg (H.264, yuv420p; odd sizes are padded by one black
  row/column because yuv420p needs even sizes).

A missing encoder raises at construction, naming the extra. Paths (and ``io.BytesIO``
objects with ``format=``) are sent byte for byte: gif, mp4, webm, ogg.

Wire: ``{"_type": "video", "format": "gif"|"mp4"|"webm"|"ogg", "sha256", "size", "bytes",
"caption", "fps", "frames", "width", "height"}`` (the last four only when known: arrays).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import numpy as np

from client.errors import InvalidArgumentError
from client.media._arrays import array_copy, check_numeric, to_uint8
from client.media._base import (
    MAX_MEDIA_BYTES,
    Media,
    check_caption,
    extension,
    have_module,
    media_extra_error,
    payload,
    read_path,
)

FILE_FORMATS = ("gif", "mp4", "webm", "ogg")
ARRAY_FORMATS = ("gif", "mp4")
MAX_VOXELS = 1 << 28  # T·H·W·C of the (tiled) frames; far beyond what encodes to MAX_MEDIA_BYTES


def _tile(video: np.ndarray) -> np.ndarray:
    """B×T×C×H×W → T×H'×W'×C: the batch laid out on a grid of 2^k rows (wandb/tensorboardX layout)."""
    b, t, c, h, w = video.shape
    cols_pow = 1 << max(b - 1, 0).bit_length() if b > 1 else 1
    if cols_pow != b:  # pad the batch with black clips to a power of two
        video = np.concatenate([video, np.zeros((cols_pow - b, t, c, h, w), video.dtype)], axis=0)
        b = cols_pow
    n_rows = 1 << ((b.bit_length() - 1) // 2)
    n_cols = b // n_rows
    video = video.reshape(n_rows, n_cols, t, c, h, w).transpose(2, 0, 4, 1, 5, 3)
    return video.reshape(t, n_rows * h, n_cols * w, c)


def frames_from_array(data: Any, arg: str = "data_or_path") -> np.ndarray:
    """A T×H×W×C copy (C in 1, 3, 4) of a video array; raises ValueError naming ``arg``."""
    arr = array_copy(data, arg)
    check_numeric(arr, arg)
    if arr.ndim == 5:
        if arr.shape[2] not in (1, 3, 4):
            raise InvalidArgumentError(f"{arg}: a 5-D video must be B×T×C×H×W with C in 1, 3, 4; got shape {arr.shape}")
        arr = _tile(arr)
    elif arr.ndim == 4:
        if arr.shape[1] in (1, 3, 4):
            arr = arr.transpose(0, 2, 3, 1)  # T×C×H×W → T×H×W×C
        elif arr.shape[3] not in (1, 3, 4):
            raise InvalidArgumentError(
                f"{arg}: a video must be T×C×H×W (or T×H×W×C), C in 1, 3, 4; got shape {arr.shape}"
            )
    else:
        raise InvalidArgumentError(
            f"{arg}: a video array must have 4 dimensions (T×C×H×W) or 5 (B×T×C×H×W), not {arr.ndim}"
        )
    if min(arr.shape[:3]) == 0:
        raise InvalidArgumentError(f"{arg}: a video needs at least one frame of one pixel, got shape {arr.shape}")
    if arr.size > MAX_VOXELS:
        raise InvalidArgumentError(f"{arg}: {arr.size} values is more than the limit of {MAX_VOXELS}")
    return np.ascontiguousarray(arr)


def encode_gif(frames: np.ndarray, fps: float) -> bytes:
    import io

    from PIL import Image as PILImage

    images = []
    for f in frames:
        if f.shape[2] == 1:
            images.append(PILImage.fromarray(f[:, :, 0], "L"))
        else:
            images.append(PILImage.fromarray(np.ascontiguousarray(f[:, :, :3]), "RGB"))  # GIF has no alpha
    buf = io.BytesIO()
    images[0].save(
        buf, format="GIF", save_all=True, append_images=images[1:], duration=1000.0 / fps, loop=0, optimize=False
    )
    return buf.getvalue()


def encode_mp4(frames: np.ndarray, fps: float) -> bytes:
    import imageio_ffmpeg

    t, h, w, c = frames.shape
    rgb = frames[:, :, :, :3] if c >= 3 else np.repeat(frames, 3, axis=3)
    if h % 2 or w % 2:  # yuv420p needs even sizes
        rgb = np.pad(rgb, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    tmp = tempfile.mkdtemp(prefix="rankwise-video-")
    try:
        path = os.path.join(tmp, "v.mp4")
        writer = imageio_ffmpeg.write_frames(
            path, (rgb.shape[2], rgb.shape[1]), fps=fps, codec="libx264", pix_fmt_out="yuv420p", macro_block_size=1
        )
        writer.send(None)  # start the generator
        for frame in rgb:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        with open(path, "rb") as f:
            return f.read()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Video(Media):
    """A video from a T×C×H×W array (encoded as GIF or MP4 on the I/O thread) or a file."""

    _type = "video"

    def __init__(
        self, data_or_path: Any, caption: str | None = None, fps: int | float | None = None, format: str | None = None
    ) -> None:
        self.caption = check_caption(caption)
        if fps is None:
            fps = 4
        if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)) or not 0 < fps <= 1000:
            raise InvalidArgumentError(f"fps must be a number in (0, 1000], got {fps!r}")
        self.fps = float(fps) if not float(fps).is_integer() else int(fps)
        fmt = None if format is None else str(format).lower()
        self._frames: np.ndarray | None = None
        self._file: bytes | None = None
        if isinstance(data_or_path, (str, os.PathLike)) or hasattr(data_or_path, "read"):
            if hasattr(data_or_path, "read"):
                raw = data_or_path.read()
                if isinstance(raw, str):
                    raise InvalidArgumentError("data_or_path: open video files in binary mode ('rb')")
                guess = extension(getattr(data_or_path, "name", "") or "")
                fmt = fmt or (guess if guess in FILE_FORMATS else None)
                if fmt is None:
                    raise InvalidArgumentError("Video of a file object needs format= (one of gif, mp4, webm, ogg)")
                if len(raw) > MAX_MEDIA_BYTES:
                    raise InvalidArgumentError(
                        f"data_or_path: {len(raw)} bytes is more than the {MAX_MEDIA_BYTES >> 20} MiB limit"
                    )
            else:
                raw = read_path(data_or_path, "data_or_path")
                fmt = fmt or extension(data_or_path)
            if fmt not in FILE_FORMATS:
                raise InvalidArgumentError(f"format={fmt!r}: video files must be one of {FILE_FORMATS}")
            self._file = bytes(raw)
            self.format = fmt
            return
        fmt = fmt or "gif"
        if fmt not in ARRAY_FORMATS:
            raise InvalidArgumentError(f"format={fmt!r}: arrays can be encoded as {ARRAY_FORMATS}")
        if fmt == "gif" and not have_module("PIL"):
            raise media_extra_error("Video(format='gif') from an array", "Pillow")
        if fmt == "mp4" and not have_module("imageio_ffmpeg"):
            raise media_extra_error("Video(format='mp4') from an array", "imageio-ffmpeg")
        self.format = fmt
        self._frames = frames_from_array(data_or_path)

    def _nbytes_hint(self) -> int:
        if self._file is not None:
            return len(self._file) + 256
        if self._frames is not None:
            return min(self._frames.size, MAX_MEDIA_BYTES) + 256
        return 256

    def _encode(self) -> dict:
        if self._file is not None:
            return payload("video", self.format, self._file, self.caption)
        frames = self._frames
        assert frames is not None
        frames = to_uint8(frames)
        t, h, w, _ = frames.shape
        data = encode_gif(frames, self.fps) if self.format == "gif" else encode_mp4(frames, self.fps)
        return payload("video", self.format, data, self.caption, fps=self.fps, frames=t, width=w, height=h)

    def _release(self) -> None:
        self._frames = self._file = None
