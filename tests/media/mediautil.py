"""Helpers for the media tests: an offline run whose rows are decoded as the agent would see
them, a reference PNG decoder independent of the encoder, and a torch-like tensor."""

from __future__ import annotations

import os
import struct
import zlib
from typing import Any

import numpy as np

from support.offline import drain_batches, offline_run, rows_of

__all__ = ["FakeTensor", "close", "decode_png", "drain_batches", "offline_run", "png_chunks", "rows_of", "sent_rows"]


def close(run: Any) -> None:
    """Release the wake pipe of an offline run's writer (its I/O thread was never started)."""
    for fd in (run._writer._wake_r, run._writer._wake_w):
        try:
            os.close(fd)
        except OSError:
            pass


def sent_rows(run: Any) -> list[dict[str, Any]]:
    """Committed rows so far, decoded by the agent-side decoder (draining the writer)."""
    return rows_of(drain_batches(run))


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk, checking the signature, lengths and CRCs."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks = []
    i = 8
    while i < len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        kind = data[i + 4 : i + 8]
        body = data[i + 8 : i + 8 + length]
        (crc,) = struct.unpack(">I", data[i + 8 + length : i + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        i += 12 + length
    assert i == len(data)
    return chunks


def decode_png(data: bytes) -> np.ndarray:
    """A plain-Python PNG decoder (8-bit, non-interlaced, colour types 0/2/4/6, all five
    filters) written from the specification, to check the encoder without trusting it."""
    chunks = png_chunks(data)
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    w, h, depth, ctype, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, comp, filt, interlace) == (8, 0, 0, 0)
    channels = {0: 1, 4: 2, 2: 3, 6: 4}[ctype]
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = w * channels
    assert len(raw) == h * (stride + 1)
    out: list[list[int]] = []
    prev = [0] * stride
    for y in range(h):
        line = raw[y * (stride + 1) : (y + 1) * (stride + 1)]
        ftype, cur = line[0], list(line[1:])
        for i in range(stride):
            a = cur[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if ftype == 0:
                pred = 0
            elif ftype == 1:
                pred = a
            elif ftype == 2:
                pred = b
            elif ftype == 3:
                pred = (a + b) // 2
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            else:
                raise AssertionError(f"unknown filter type {ftype}")
            cur[i] = (cur[i] + pred) & 0xFF
        out.append(cur)
        prev = cur
    return np.array(out, dtype=np.uint8).reshape(h, w, channels)


class FakeTensor:
    """Enough of a torch.Tensor for rankwise's duck typing (torch itself is not installed here)."""

    __module__ = "torch"
    __qualname__ = "Tensor"

    def __init__(self, values: Any, device: str = "cpu") -> None:
        self.values = np.asarray(values)
        self.device = type("device", (), {"type": device})()
        self.dtype = f"torch.{self.values.dtype}"

    def numel(self) -> int:
        return int(self.values.size)

    def detach(self) -> FakeTensor:
        return self

    def cpu(self) -> FakeTensor:
        return FakeTensor(self.values.copy()) if self.device.type != "cpu" else self

    def numpy(self) -> np.ndarray:
        return self.values  # shares memory, like torch's .numpy()

    def reshape(self, shape: Any) -> FakeTensor:
        return FakeTensor(self.values.reshape(shape))

    def item(self) -> Any:
        return self.values.item()
