"""How a column of values travels: the encodings a batch's blocks (client/wire.py) and a span block's raw
columns (client/spanwire.py) share, and the decoder of a fixed-length array.

Numbers travel as little-endian arrays of one dtype (``NUMERIC_ENCODINGS``), anything else as a msgpack
list of values (``OBJECT_ENCODING``); client/columns.py chooses the encoding of a column. A leaf of the
wire codec: ``client.wire`` re-exports these names, the span codec imports them from here (no cycle).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from client.errors import ProtocolError

MAX_BATCH_ROWS = 1 << 20  # the longest column a decoder accepts: the rows of a batch, the spans of a block

# column encodings: numpy little-endian dtypes, or "mp" for a msgpack list of values
NUMERIC_ENCODINGS = {"f8": np.dtype("<f8"), "i8": np.dtype("<i8"), "b1": np.dtype("?")}
OBJECT_ENCODING = "mp"


def fixed_array(raw: Any, dtype: np.dtype, n: int, what: str) -> np.ndarray:
    """``n`` values of ``dtype`` from the bytes ``raw`` (no copy); ProtocolError naming ``what`` otherwise."""
    if not isinstance(raw, bytes) or len(raw) != n * dtype.itemsize:
        raise ProtocolError(f"{what}: expected {n} values of {dtype.str}")
    return np.frombuffer(raw, dtype=dtype)
