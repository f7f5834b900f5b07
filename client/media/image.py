"""``Image``: wandb's ``wandb.Image(data_or_path, mode=None, caption=None, grouping=None,
classes=None, boxes=None, masks=None, file_type=None)``.

Accepted ``data_or_path``:

* numpy arrays H×W (gray), H×W×1, H×W×2 (gray+alpha), H×W×3 (RGB), H×W×4 (RGBA); leading
  axes of length 1 are dropped (1×H×W×3). Channels-first numpy arrays are refused with a hint
  (transpose them): guessing the layout of a 3×H×3 array is a bug waiting to happen.
  torch tensors are channels-first (C×H×W, as wandb reads them) or H×W.
  dtype: uint8 as is, bool, other ints clipped, floats in [0, 1] scaled by 255, other floats
  read on the 0–255 scale (see ``client.media._arrays.to_uint8`` for the exact rule);
* a PIL image (any mode; converted by PIL when it is not L, LA, RGB or RGBA);
* a path to an image file: PNG, JPEG, GIF, BMP and WebP bytes are sent as they are (other
  formats are converted to PNG, which needs PIL);
* a matplotlib figure / Axes / ``pyplot`` (rendered to PNG now, see ``figures``);
* another ``Image`` (a copy).

``mode`` converts an array to L, LA, RGB or RGBA (PIL names; any PIL mode for PIL images).
``file_type`` is "png" (default) or "jpg"/"jpeg"/"bmp" (those need PIL).

Encoding happens in ``_to_wire`` (I/O thread): with PIL when it is installed (its C encoder is
faster), else with the small zlib encoder in ``client.media._png``.

Wire::

    {"_type": "image", "format": "png", "sha256": hex, "size": n, "bytes": b"...",
     "width": W, "height": H, "caption": str|None,
     "grouping": int, "classes": [...], "boxes": {...},            # only when given
     "masks": {name: {"_type": "image-mask", "format": "png", ..., "class_labels": {...}}}}
"""

from __future__ import annotations

import io
import os
import sys
from typing import Any

import numpy as np

from client.errors import InvalidArgumentError
from client.media._arrays import array_copy, check_numeric, is_torch, to_uint8
from client.media._base import (
    MAX_MEDIA_BYTES,
    Media,
    check_caption,
    have_module,
    media_extra_error,
    payload,
    plain_data,
    read_path,
)
from client.media._png import encode_png
from client.media._sniff import image_format, image_size
from client.media.figures import is_matplotlib, render_png

#: formats a browser shows directly; files in these formats are sent byte for byte
PASSTHROUGH_FORMATS = ("png", "jpg", "gif", "bmp", "webp")
ARRAY_MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
_CHANNEL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
FILE_TYPES = ("png", "jpg", "jpeg", "bmp")
MAX_PIXELS = 1 << 26  # 64 Mpx: far beyond what compresses to MAX_MEDIA_BYTES


def _pil_image_class() -> Any:
    mod = sys.modules.get("PIL.Image")  # a PIL image can only exist if PIL is imported already
    return getattr(mod, "Image", None)


def pixels_from_array(data: Any, arg: str = "data_or_path") -> np.ndarray:
    """A private H×W×C copy (C in 1..4) of an image array; raises ValueError naming ``arg``."""
    torch = is_torch(data)
    arr = array_copy(data, arg)
    check_numeric(arr, arg)
    if torch and arr.ndim == 3:
        arr = np.ascontiguousarray(arr.transpose(1, 2, 0))  # C×H×W → H×W×C
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise InvalidArgumentError(f"{arg}: an image array must be H×W or H×W×C, got shape {arr.shape}")
    if arr.shape[2] not in _CHANNEL_MODES:
        hint = ""
        if arr.shape[0] in (1, 3, 4):
            hint = " (channels first? use arr.transpose(1, 2, 0))"
        raise InvalidArgumentError(f"{arg}: shape {arr.shape} has {arr.shape[2]} channels; expected 1, 2, 3 or 4{hint}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidArgumentError(f"{arg}: an image needs at least one pixel, got shape {arr.shape}")
    if arr.shape[0] * arr.shape[1] > MAX_PIXELS:
        raise InvalidArgumentError(
            f"{arg}: {arr.shape[1]}×{arr.shape[0]} pixels is more than the limit of {MAX_PIXELS}"
        )
    return arr


def convert_mode(pixels: np.ndarray, mode: str) -> np.ndarray:
    """uint8 H×W×C pixels to ``mode`` (L, LA, RGB, RGBA). RGB → L uses PIL's ITU-R 601-2 luma
    (L = (299 R + 587 G + 114 B) / 1000); added alpha is opaque (255)."""
    want = ARRAY_MODES[mode]
    have = pixels.shape[2]
    if have == want:
        return pixels
    color = pixels[:, :, :3] if have >= 3 else np.repeat(pixels[:, :, :1], 3, axis=2)
    alpha = pixels[:, :, have - 1 : have] if have in (2, 4) else np.full(pixels.shape[:2] + (1,), 255, np.uint8)
    if want in (1, 2):
        if have >= 3:
            c = color.astype(np.uint32)
            gray = ((c[:, :, 0] * 299 + c[:, :, 1] * 587 + c[:, :, 2] * 114 + 500) // 1000).astype(np.uint8)[:, :, None]
        else:
            gray = pixels[:, :, :1]
        return gray if want == 1 else np.concatenate([gray, alpha], axis=2)
    return color if want == 3 else np.concatenate([color, alpha], axis=2)


def encode_pixels(pixels: np.ndarray, file_type: str = "png") -> tuple[bytes, str]:
    """uint8 H×W×C pixels → (file bytes, format). PIL when installed, else the zlib PNG encoder."""
    fmt = "jpg" if file_type == "jpeg" else file_type
    if fmt == "png" and not have_module("PIL"):
        return encode_png(pixels), "png"
    from PIL import Image as PILImage

    img = PILImage.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels, _CHANNEL_MODES[pixels.shape[2]])
    if fmt == "jpg" and img.mode in ("LA", "RGBA"):  # JPEG has no alpha channel
        img = img.convert(img.mode[:-1])
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, format="PNG", compress_level=6)
    else:
        img.save(buf, format={"jpg": "JPEG", "bmp": "BMP"}[fmt])
    return buf.getvalue(), fmt


def _mask_payload(name: str, mask: Any) -> dict:
    arg = f"masks[{name!r}]"
    if not isinstance(mask, dict):
        raise InvalidArgumentError(f"{arg} must be a dict with 'mask_data' (H×W class ids) and optional 'class_labels'")
    if "mask_data" not in mask:
        raise InvalidArgumentError(f"{arg}: only 'mask_data' (an H×W array of class ids 0..255) is supported")
    data = array_copy(mask["mask_data"], f"{arg}['mask_data']")
    if data.ndim != 2 or data.dtype.kind not in "biu":
        raise InvalidArgumentError(f"{arg}['mask_data'] must be a 2-D integer array, got {data.dtype} {data.shape}")
    if data.size and (data.min() < 0 or data.max() > 255):
        raise InvalidArgumentError(f"{arg}['mask_data'] class ids must be 0..255")
    labels = plain_data(mask.get("class_labels"), f"{arg}['class_labels']")
    return {"data": data.astype(np.uint8), "class_labels": labels}


class Image(Media):
    """An image: array, PIL image, file path or matplotlib figure; encoded on the I/O thread."""

    _type = "image"

    def __init__(
        self,
        data_or_path: Any,
        mode: str | None = None,
        caption: str | None = None,
        grouping: int | None = None,
        classes: Any = None,
        boxes: dict | None = None,
        masks: dict | None = None,
        file_type: str | None = None,
    ) -> None:
        self.caption = check_caption(caption)
        self._pixels: np.ndarray | None = None  # uint8-convertible H×W×C copy
        self._pil: Any = None  # a PIL image copy
        self._file: bytes | None = None  # file bytes (path, rendered figure)
        self._file_format: str | None = None
        self.width: int | None = None
        self.height: int | None = None
        self._mode = mode
        self._file_type = self._check_file_type(file_type)
        self._meta: dict[str, Any] = {}
        if grouping is not None:
            if isinstance(grouping, bool) or not isinstance(grouping, int):
                raise InvalidArgumentError(f"grouping must be an int, got {grouping!r}")
            self._meta["grouping"] = grouping
        if classes is not None:
            self._meta["classes"] = plain_data(getattr(classes, "_class_set", classes), "classes")
        if boxes is not None:
            if not isinstance(boxes, dict):
                raise InvalidArgumentError("boxes must be a dict: name → {'box_data': [...], 'class_labels': {...}}")
            self._meta["boxes"] = plain_data(boxes, "boxes")
        self._masks = None
        if masks is not None:
            if not isinstance(masks, dict):
                raise InvalidArgumentError("masks must be a dict: name → {'mask_data': array, 'class_labels': {...}}")
            self._masks = {str(k): _mask_payload(str(k), v) for k, v in masks.items()}
        self._init_source(data_or_path, mode)

    @staticmethod
    def _check_file_type(file_type: str | None) -> str:
        if file_type is None:
            return "png"
        ft = str(file_type).lower()
        if ft not in FILE_TYPES:
            raise InvalidArgumentError(f"file_type={file_type!r} must be one of {FILE_TYPES}")
        if ft != "png" and not have_module("PIL"):
            raise media_extra_error(f"Image(file_type={file_type!r})", "Pillow")
        return ft

    def _init_source(self, data: Any, mode: str | None) -> None:
        pil_class = _pil_image_class()
        if isinstance(data, Image):
            # the source is immutable once built: share its copies, never copy them again
            for attr in ("_pixels", "_pil", "_file", "_file_format", "width", "height", "_wire"):
                setattr(self, attr, getattr(data, attr))
            self._mode = mode if mode is not None else data._mode
            self._masks = self._masks if self._masks is not None else data._masks
            if self.caption is None:
                self.caption = data.caption
            self._meta = {**data._meta, **self._meta}
            if self._wire is not None:  # already encoded: re-label the copy
                self._wire = dict(self._wire, caption=self.caption, **self._meta)
            return
        if isinstance(data, (str, os.PathLike)):
            raw = read_path(data, "data_or_path")
            fmt = image_format(raw)
            if mode is not None or fmt not in PASSTHROUGH_FORMATS:
                if not have_module("PIL"):
                    what = f"Image of a {fmt or os.path.splitext(str(data))[1] or 'unknown'} file"
                    raise media_extra_error(what + (f" with mode={mode!r}" if mode else ""), "Pillow")
                self._pil = self._open_with_pil(raw, "data_or_path")
                if mode is not None:
                    self._pil = self._pil.convert(mode)
                self.width, self.height = self._pil.size
            else:
                self._file, self._file_format = raw, fmt
                size = image_size(raw)
                if size:
                    self.width, self.height = size
            return
        if is_matplotlib(data):
            self._file, self._file_format = render_png(data), "png"
            self.width, self.height = image_size(self._file) or (None, None)
            return
        if pil_class is not None and isinstance(data, pil_class):
            self._pil = data.copy()
            self.width, self.height = self._pil.size
            if mode is not None:
                self._pil = self._pil.convert(mode)
            return
        if mode is not None and mode not in ARRAY_MODES:
            raise InvalidArgumentError(f"mode={mode!r}: arrays can be converted to {tuple(ARRAY_MODES)}")
        self._pixels = pixels_from_array(data)
        self.height, self.width = self._pixels.shape[:2]

    @staticmethod
    def _open_with_pil(raw: bytes, arg: str) -> Any:
        from PIL import Image as PILImage

        try:
            img = PILImage.open(io.BytesIO(raw))
            img.load()
        except Exception as exc:
            raise InvalidArgumentError(f"{arg}: not an image PIL can read ({exc})") from None
        return img

    @classmethod
    def _from_encoded(cls, data: bytes, fmt: str, caption: str | None = None) -> Image:
        """An Image of already-encoded file bytes (a rendered figure)."""
        self = cls.__new__(cls)
        self.caption = check_caption(caption)
        self._pixels = self._pil = None
        self._file, self._file_format = data, fmt
        self.width, self.height = image_size(data) or (None, None)
        self._mode = None
        self._file_type = "png"
        self._meta = {}
        self._masks = None
        return self

    def _nbytes_hint(self) -> int:
        if self._file is not None:
            return len(self._file) + 256
        if self._pixels is not None:
            return min(self._pixels.size, MAX_MEDIA_BYTES) + 256
        if self.width and self.height:
            return min(self.width * self.height * 4, MAX_MEDIA_BYTES) + 256
        return 256

    def _encode(self) -> dict:
        meta = dict(self._meta)
        if self._masks:
            masks = {}
            for name, m in self._masks.items():
                data, fmt = encode_pixels(m["data"][:, :, None], "png")
                masks[name] = payload("image-mask", fmt, data, None, class_labels=m["class_labels"])
            meta["masks"] = masks
        if self._file is not None:
            data, fmt = self._file, self._file_format or "png"
        elif self._pil is not None:
            img = self._pil
            if img.mode not in ARRAY_MODES:
                img = img.convert("RGBA" if "A" in img.mode or "transparency" in img.info else "RGB")
            pixels = np.asarray(img)
            if pixels.ndim == 2:
                pixels = pixels[:, :, None]
            data, fmt = encode_pixels(pixels, self._file_type)
            self.width, self.height = img.size
        else:
            pixels = self._pixels
            assert pixels is not None
            pixels = to_uint8(pixels)
            if self._mode is not None:
                pixels = convert_mode(pixels, self._mode)
            data, fmt = encode_pixels(pixels, self._file_type)
        return payload("image", fmt, data, self.caption, width=self.width, height=self.height, **meta)

    def _release(self) -> None:
        self._pixels = self._pil = self._file = None
        self._masks = None
