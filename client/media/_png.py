"""A small PNG encoder (numpy + zlib), so ``Image(array)`` needs no PIL.

PNG (ISO/IEC 15948, https://www.w3.org/TR/png/) is simple enough to write by hand:

    signature  89 50 4E 47 0D 0A 1A 0A
    chunk*     length (u32 BE) | type (4 ASCII) | data | CRC-32 of type+data (u32 BE)

with three chunks here: ``IHDR`` (width, height, bit depth 8, colour type, compression 0,
filter method 0, no interlace), one ``IDAT`` (the zlib stream of all scanlines) and ``IEND``.
Each scanline is one filter-type byte followed by the row's bytes passed through that filter.

Filters predict each byte from its neighbours in the *unfiltered* image (``a`` left, ``b``
above, ``c`` above-left, all 0 outside the image) and store the difference mod 256. Because
they only read unfiltered bytes, all five can be computed for a whole block of rows with
numpy; we then pick, per row, the one whose output has the smallest sum of absolute values
when read as signed bytes (the heuristic libpng recommends). Filtering typically halves the
compressed size of photographs and gradients compared with no filter.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from client.errors import InvalidValueError

SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: channels → PNG colour type: gray, gray+alpha, RGB, RGBA (all 8 bits per sample)
COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}

_BLOCK_ROWS = 256  # rows filtered at a time: bounds the temporary arrays to a few blocks
_COST = np.minimum(np.arange(256), 256 - np.arange(256)).astype(np.uint8)  # |byte as int8|


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _filter_block(raw: np.ndarray, above: np.ndarray, bpp: int) -> np.ndarray:
    """Scanlines (filter byte + filtered row) for ``raw`` (rows × bytes, uint8), given the
    unfiltered row above the block (zeros for the first block)."""
    # uint8 arithmetic wraps modulo 256, which is exactly what PNG filters store
    x = raw
    b = np.empty_like(x)
    b[0] = above
    b[1:] = x[:-1]
    a = np.zeros_like(x)
    a[:, bpp:] = x[:, :-bpp]
    c = np.zeros_like(x)
    c[:, bpp:] = b[:, :-bpp]
    a16, b16, c16 = a.astype(np.int16), b.astype(np.int16), c.astype(np.int16)
    # Paeth predictor: whichever of a, b, c is closest to p = a + b - c (ties: a, then b);
    # |p - a| = |b - c|, |p - b| = |a - c|, |p - c| = |a + b - 2c|
    pa, pb, pc = np.abs(b16 - c16), np.abs(a16 - c16), np.abs(a16 + b16 - 2 * c16)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    average = ((a16 + b16) >> 1).astype(np.uint8)
    candidates = np.stack([x, x - a, x - b, x - average, x - paeth])  # filter types 0..4
    # cost: sum of |byte read as signed|; argmin picks the lowest filter type on ties
    choice = _COST[candidates].sum(axis=2, dtype=np.int64).argmin(axis=0)
    out = np.empty((x.shape[0], x.shape[1] + 1), dtype=np.uint8)
    out[:, 0] = choice
    out[:, 1:] = candidates[choice, np.arange(x.shape[0])]
    return out


def encode_png(pixels: np.ndarray, compress_level: int = 6) -> bytes:
    """Encode ``pixels`` (uint8, H×W gray, or H×W×C with C = 1 gray, 2 gray+alpha, 3 RGB,
    4 RGBA) as a PNG file. Deterministic: the same pixels always give the same bytes."""
    if pixels.dtype != np.uint8:
        raise InvalidValueError(f"encode_png needs uint8 pixels, got {pixels.dtype}")
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in COLOR_TYPES:
        raise InvalidValueError(f"encode_png needs H×W or H×W×{{1,2,3,4}} pixels, got shape {pixels.shape}")
    height, width, channels = pixels.shape
    if not (0 < width < 2**31 and 0 < height < 2**31):
        raise InvalidValueError(f"PNG width and height must be 1..2^31-1, got {width}×{height}")
    raw = np.ascontiguousarray(pixels).reshape(height, width * channels)
    compressor = zlib.compressobj(compress_level)
    parts = []
    above = np.zeros(width * channels, dtype=np.uint8)
    for start in range(0, height, _BLOCK_ROWS):
        block = raw[start : start + _BLOCK_ROWS]
        parts.append(compressor.compress(_filter_block(block, above, channels).tobytes()))
        above = block[-1]
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, COLOR_TYPES[channels], 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")
