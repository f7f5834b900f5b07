"""The rows part of a batch: how many committed rows one batch takes, and their columnar key-set blocks.

The assembler (client/assembler.py) cuts its committed rows into batches. A batch is columnar: row
steps and times as arrays, then per set of keys one array per key (``client.wire``; client/columns.py
encodes one column). How many rows go in one batch is bounded by rows (``max_rows``), by media bytes,
by values (cells) and, for wide rows, by columns, so that no frame grows past what the agent decodes
in one piece without keeping everyone else waiting. Values the I/O thread cannot encode are dropped
one by one (counted through ``drop(cause, n, what)``), never the batch. Plain functions: the
assembler owns the state and the counters.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np

from client.columns import encode_column, same_keys, to_wire
from client.framing import BAD_VALUE
from client.ops import SPAN
from client.values import MAX_KEYS_PER_ROW, nbytes_hint

if TYPE_CHECKING:
    from client.summarizer import Summarizer

Drop = Callable[[str, int, str], None]  # (cause, how many, what)

_NUMBER_TYPES = (int, float, bool)
# bytes of strings, lists, tables and media per batch (their estimate): frames stay well under
# wire.MAX_FRAME_BYTES; a single row above it travels alone
MAX_BATCH_MEDIA_BYTES = 24 << 20
_CELL_BYTES = 16  # a generous wire size of one numeric value of a row (8 bytes, plus keys of blocks by set)
# values of one batch, in _CELL_BYTES: 8192 rows of up to 32 numbers fit, wider rows make batches of fewer
# rows. The agent lets ZeroMQ queue a frame or two per connection (its recv_hwm), so the frame size of
# scalar batches is what bounds that memory: 8 ranks of 128-key rows sent 8 MB frames (agent peak 154 MB)
MAX_BATCH_CELL_BYTES = 4 << 20
MAX_BATCH_COLUMNS = MAX_KEYS_PER_ROW  # columns of one batch's rows (one row of the widest kind still fits)
_WIDE_ROW = 64  # keys per row on average above which the columns of a batch are counted
MAX_SPAN_CELLS = 1 << 18  # key records of spans per batch (~56 bytes each on the wire)


def kind_limit(kinds: list[int], dicts: list, limit: int) -> int:
    """Rows up to the first change between spans and rows (at least one); spans also by their values.
    (A batch holds rows or spans, never both: the summary sees them in order.)"""
    end = min(limit, len(kinds))
    if kinds[0] != SPAN:
        try:
            return max(1, kinds.index(SPAN, 0, end))
        except ValueError:
            return end
    cells = 0
    for i in range(end):
        if kinds[i] != SPAN:
            return max(1, i)
        cells += len(dicts[i].keys)
        if cells > MAX_SPAN_CELLS and i:
            return i
    return end


def media_limit(dicts: list[dict], limit: int) -> int:
    """Rows that fit in one batch by their media bytes (at least one row)."""
    total = 0
    for i, row in enumerate(dicts[:limit]):
        for v in row.values():
            if type(v) not in _NUMBER_TYPES:
                total += nbytes_hint(v)
        if total > MAX_BATCH_MEDIA_BYTES and i:
            return i
    return limit


def cells_limit(dicts: list[dict], limit: int) -> int:
    """Rows that fit in one batch by their number of values (wide rows: 8192 rows of 10k numbers would
    make a frame of 700 MB) and, for wide rows, by their columns (keys per key set: the agent decodes a
    frame in one piece, ~3 µs per column, so a frame of 30k columns would keep it from answering anyone
    for 100 ms or more); at least one row."""
    dicts = dicts[:limit]
    cells = sum(map(len, dicts))
    wide = cells > MAX_BATCH_COLUMNS and cells > _WIDE_ROW * len(dicts)
    if not wide and cells * _CELL_BYTES <= MAX_BATCH_CELL_BYTES:
        return limit
    total = columns = 0
    prev: dict = {}
    for i, d in enumerate(dicts):
        total += len(d)
        if wide and (len(d) != len(prev) or d.keys() != prev.keys()):
            columns += len(d)  # a new key set: a block of its own in the frame
        prev = d
        if i and (total * _CELL_BYTES > MAX_BATCH_CELL_BYTES or columns > MAX_BATCH_COLUMNS):
            return i
    return limit


def encode_blocks(dicts: list[dict]) -> tuple[list, list]:
    """The blocks of a batch's rows, ``[keys, row_idx_bytes | None, [[enc, data], ...]]`` per key set, and
    its columns as encoded, ``(key, values, numeric array or None, row indices)``, for the summary. Raises
    on a value that cannot be encoded (see ``drop_unencodable``)."""
    n = len(dicts)
    groups: dict[Any, tuple[tuple, Any]] = {}
    same = same_keys(dicts)
    if same is not None:  # the common case: one block, columns built without a Python loop per row
        groups[None] = (same[0], range(n))
    else:
        prev = None
        cur: list[int] = []
        for i, d in enumerate(dicts):
            keys = d.keys()
            if keys != prev:
                fk = frozenset(keys)
                entry = groups.get(fk)
                if entry is None:
                    entry = groups[fk] = (tuple(keys), [])
                cur = entry[1]
                prev = keys
            cur.append(i)
    blocks = []
    columns: list = []
    for keys, idx in groups.values():
        if not keys:
            continue
        if same is not None:
            cols = same[1]
            idx_b = None
        else:
            get = itemgetter(*keys)
            if len(idx) == n:
                vals = list(map(get, dicts))
                idx_b = None
            else:
                vals = [get(dicts[i]) for i in idx]
                idx_b = np.asarray(idx, dtype="<i4").tobytes()
            cols = [vals] if len(keys) == 1 else list(zip(*vals))
        encoded = []
        for key, col in zip(keys, cols):
            enc, arr = encode_column(col)
            encoded.append(enc)
            columns.append((key, col, arr, idx))
        blocks.append([list(keys), idx_b, encoded])
    return blocks, columns


def drop_unencodable(dicts: list[dict], drop: Drop) -> None:
    """Remove from their rows the values that cannot be encoded (an int beyond int64 by the fast path, a
    media object whose encoder fails), each counted as a bad value."""
    for d in dicts:
        for k, v in list(d.items()):
            if type(v) is float or type(v) is bool:
                continue
            try:
                msgpack.packb(to_wire(v), use_bin_type=True)
            except Exception as exc:  # noqa: BLE001
                del d[k]
                drop(BAD_VALUE, 1, f"key {k!r}: {type(exc).__name__}: {exc}"[:200])


def wire_map(values: dict, drop: Drop) -> dict:
    """``to_wire`` of a dict's values; a value that fails is dropped (counted) instead of the batch."""
    out = {}
    for k, v in values.items():
        try:
            w = to_wire(v)
            msgpack.packb(w, use_bin_type=True)
        except Exception as exc:  # noqa: BLE001 - a value must never stop the I/O thread
            drop(BAD_VALUE, 1, f"key {k!r}: {type(exc).__name__}: {exc}"[:200])
            continue
        out[k] = w
    return out


# ------------------------------------------------------------ blocks, summarised; values the I/O thread cannot encode


def summarised_blocks(dicts: list, steps: np.ndarray, late: np.ndarray | None, summarizer: Summarizer) -> list:
    """The key-set blocks of ``dicts`` (``encode_blocks``), every column fed to the run's summary."""
    blocks, columns = encode_blocks(dicts)
    # every column encoded before any is summarised: a value that fails to encode leaves no trace in
    # the summary, and the caller may drop it and build the blocks again
    # key -> (step, row position, value) of its value at the highest step (latest row on ties)
    newest: dict[str, tuple[int, int, Any]] = {}
    for key, col, arr, idx in columns:
        summarizer.column(key, col, arr, idx, steps, late, newest)
    summarizer.settle_last(newest)
    return blocks


def safe_blocks(
    dicts: list, steps: np.ndarray, late: np.ndarray | None, summarizer: Summarizer, drop: Drop
) -> list | None:
    """``summarised_blocks``; when a value cannot be encoded (an int beyond int64 by the fast path, a media
    object whose encoder fails), that value is dropped from its row and counted, and the rest goes."""
    try:
        return summarised_blocks(dicts, steps, late, summarizer)
    except Exception:  # noqa: BLE001 - find the culprits value by value
        pass
    drop_unencodable(dicts, drop)
    try:
        return summarised_blocks(dicts, steps, late, summarizer)
    except Exception:  # noqa: BLE001
        return None
