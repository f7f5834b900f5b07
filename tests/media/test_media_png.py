"""The zlib PNG encoder: byte-exact against a known-good file, decoded by an independent
decoder for every colour type and filter, and by Pillow when it is installed."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from mediautil import decode_png, png_chunks

from client.media._png import encode_png

# A 1×1 RGB PNG of one red pixel, as the specification builds it: signature; IHDR of 1×1, depth
# 8, colour type 2 with its well-known CRC 0x907753DE; IDAT = zlib level 6 of the scanline
# 00 FF 00 00 (filter None + R G B); IEND with its constant CRC 0xAE426082.
RED_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108020000 00907753de".replace(" ", "")
    + "0000000c49444154789c63f8cfc0000003010100c9fe92ef"
    + "0000000049454e44ae426082"
)


def test_one_red_pixel_is_byte_exact():
    """encode_png of one red RGB pixel is exactly the reference file built from the spec."""
    assert zlib.decompress(RED_1X1[41:53]) == b"\x00\xff\x00\x00"  # the reference's own IDAT payload
    assert encode_png(np.array([[[255, 0, 0]]], dtype=np.uint8)) == RED_1X1


@pytest.mark.parametrize("channels, color_type", [(None, 0), (1, 0), (2, 4), (3, 2), (4, 6)])
def test_every_colour_type_round_trips_through_an_independent_decoder(channels, color_type):
    """Random pixels of each colour type decode (chunk CRCs, zlib, un-filtering) to the input."""
    rng = np.random.default_rng(channels or 0)
    shape = (13, 11) if channels is None else (13, 11, channels)
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    data = encode_png(pixels)
    assert png_chunks(data)[0][1][9] == color_type
    expected = pixels[:, :, None] if channels is None else pixels
    np.testing.assert_array_equal(decode_png(data), expected)


def test_all_five_filters_are_used_and_decode():
    """An image whose rows favour different predictors makes the encoder choose all five
    filter types, and each decodes back exactly."""
    h, w = 40, 24
    rng = np.random.default_rng(7)
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[0:8] = rng.integers(0, 4, (8, w, 3))  # near-constant: None
    img[8:16] = (np.arange(w)[None, :, None] * 9) % 256  # horizontal ramp: Sub
    img[16:24] = img[15]  # repeated row: Up
    img[24:32] = (np.add.outer(np.arange(8), np.arange(w))[:, :, None] * 5 + 3) % 256  # diagonal: Average/Paeth
    img[32:40] = rng.integers(0, 256, (8, w, 3))
    data = encode_png(img)
    raw = zlib.decompress(b"".join(b for k, b in png_chunks(data) if k == b"IDAT"))
    used = {raw[y * (w * 3 + 1)] for y in range(h)}
    assert used == {0, 1, 2, 3, 4}
    np.testing.assert_array_equal(decode_png(data), img)


def test_a_block_boundary_keeps_the_row_above():
    """Images taller than one filtering block (256 rows) decode exactly: the Up/Paeth
    predictors of a block's first row use the previous block's last row."""
    img = (np.add.outer(np.arange(600), np.arange(5))[:, :, None] % 251).astype(np.uint8)
    np.testing.assert_array_equal(decode_png(encode_png(img)), img)


def test_bad_input_is_refused():
    """Non-uint8 data, five channels or an empty image raise ValueError."""
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="H×W"):
        encode_png(np.zeros((2, 2, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match="width and height"):
        encode_png(np.zeros((0, 2), dtype=np.uint8))


def test_pillow_reads_the_encoder_output():
    """Pillow decodes the zlib encoder's PNGs to the same pixels and mode."""
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(3)
    for shape, mode in [((9, 7), "L"), ((9, 7, 2), "LA"), ((9, 7, 3), "RGB"), ((9, 7, 4), "RGBA")]:
        px = rng.integers(0, 256, shape, dtype=np.uint8)
        im = Image.open(io.BytesIO(encode_png(px)))
        assert im.mode == mode
        np.testing.assert_array_equal(np.asarray(im), px)
