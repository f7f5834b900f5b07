"""The wire protocol between run handles, node agents and tools (``rankwise status``).

Every message is one ZeroMQ frame holding a msgpack array ``[VERSION, kind, body]``
(a ROUTER socket prepends the peer identity on the receiving side). Bodies are
maps with short keys. Numeric history travels columnar: a batch holds its rows'
steps and times once as little-endian arrays, and blocks of rows that share a
key set with one array per key, so packing costs the client a fraction of a
microsecond per value and the agent can reduce with numpy without a Python loop
per point.

Reliability does not come from ZeroMQ: every batch has a per-writer sequence
number, the receiver acknowledges "stored through seq N" only once the batch is
durable, and senders replay unacknowledged batches after a reconnect; receivers
drop duplicates (see DESIGN.md, Transport and durability).

Decoders validate everything and raise :class:`ProtocolError`; the agent counts
and drops such frames, it never crashes on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from client.errors import ProtocolError

VERSION = 1
MAX_FRAME_BYTES = 64 << 20  # also ZMQ_MAXMSGSIZE on every socket; clients split batches to stay under it
MAX_BATCH_ROWS = 1 << 20

# message kinds
HELLO = "hello"  # client → agent: register a writer for a run
WELCOME = "welcome"  # agent → client: run id, resume point, next expected seq
REFUSE = "refuse"  # agent → client: the run cannot be registered (reason)
BATCH = "batch"  # client → agent: rows, pending row, summary, control ops
ACK = "ack"  # agent → client: stored through seq
NACK = "nack"  # agent → client: unknown writer; gap (resend from "expect"); "rejected" batch "s" (drop it)
STATUS = "status"  # tool → agent; reply is STATUS with the counters
STOP = "stop"  # tool → agent: shut down cleanly; reply STOP
PING = "ping"  # anyone → agent; reply PING

KINDS = frozenset({HELLO, WELCOME, REFUSE, BATCH, ACK, NACK, STATUS, STOP, PING})

# column encodings: numpy little-endian dtypes, or "mp" for a msgpack list of values
NUMERIC_ENCODINGS = {"f8": np.dtype("<f8"), "i8": np.dtype("<i8"), "b1": np.dtype("?")}
OBJECT_ENCODING = "mp"

_packer_default = None


def pack(kind: str, body: Any) -> bytes:
    """Encode one message."""
    return msgpack.packb([VERSION, kind, body], use_bin_type=True)


def unpack(frame: bytes) -> tuple[str, Any]:
    """Decode one message; raises ProtocolError on anything malformed."""
    if len(frame) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        msg = msgpack.unpackb(frame, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises a zoo of types on garbage
        raise ProtocolError(f"undecodable frame: {type(exc).__name__}") from None
    if not (isinstance(msg, list) and len(msg) == 3):
        raise ProtocolError("frame is not [version, kind, body]")
    version, kind, body = msg
    if version != VERSION:
        raise ProtocolError(f"protocol version {version!r}, expected {VERSION}")
    if not isinstance(kind, str):
        raise ProtocolError(f"message kind is a {type(kind).__name__}, not a string")
    if kind not in KINDS:
        raise ProtocolError(f"unknown message kind {kind!r}")
    return kind, body


def _need(body: Any, key: str, typ: type | tuple[type, ...]) -> Any:
    if not isinstance(body, dict):
        raise ProtocolError("body is not a map")
    value = body.get(key)
    if not isinstance(value, typ) or (isinstance(value, bool) and typ is int):
        raise ProtocolError(f"field {key!r} missing or of type {type(value).__name__}")
    return value


def _array(raw: Any, dtype: np.dtype, n: int, what: str) -> np.ndarray:
    if not isinstance(raw, bytes) or len(raw) != n * dtype.itemsize:
        raise ProtocolError(f"{what}: expected {n} values of {dtype.str}")
    return np.frombuffer(raw, dtype=dtype)


# ---------------------------------------------------------------- batches


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    rows: np.ndarray | None  # int32 row indices into the batch, None = every row
    values: np.ndarray | list  # numeric ndarray, or list of msgpack values

    @property
    def numeric(self) -> bool:
        return isinstance(self.values, np.ndarray)


@dataclass(frozen=True, slots=True)
class Batch:
    """A decoded, validated batch from one writer."""

    writer: str
    seq: int
    n: int  # committed rows in this batch
    step: np.ndarray  # int64[n]
    t: np.ndarray  # float64[n], wall clock of the commit (epoch seconds)
    runtime: np.ndarray  # float64[n]
    late: np.ndarray | None  # bool[n]; None = no late rows
    columns: list[Column]
    pending: tuple[int, float, dict] | None
    summary: dict | None
    control: list[tuple[str, Any]]
    nbytes: int
    spans: "SpanBlock | None" = None  # rows the client coalesced under overload (client/coalesce.py)


# ---------------------------------------------------------------- spans: rows a client coalesced
#
# Under overload (log() faster than the I/O thread, client/coalesce.py) a batch may carry, instead of
# rows, a block of spans: ``[m, step, first, rows, t, runtime, cols, raw]`` with the span's last step,
# first step, the rows it stands for, the time and runtime of its last row (arrays of m); per key
# ``[key, idx, data]``: ``idx`` the int32 span indices that have the key (None: all), ``data`` the
# key's ``SPAN_KEY_FIELDS`` as k little-endian arrays one after the other (k = len(idx) or m): the step
# of its last value in the span, then agent/ratelimit.py's SPAN_FIELDS; and per key that opted out of
# rate limiting ``[key, steps, [enc, data]]``: every value, at its step (steps int64, increasing,
# within the spans; a column encoded as in a batch's blocks).

SPAN_KEY_FIELDS = ("step", "first_step", "count", "last", "mean", "min", "max")
_SPAN_INT = frozenset({"step", "first_step", "count"})
_MAX_STEP = 1 << 62  # as client/run.py MAX_STEP: the store keeps step + 1 in an int64


@dataclass(frozen=True, slots=True)
class SpanColumn:
    key: str
    rows: np.ndarray | None  # int32 span indices, None = every span
    fields: dict  # SPAN_KEY_FIELDS -> array of len(rows) (or m)


@dataclass(frozen=True, slots=True)
class SpanBlock:
    m: int
    step: np.ndarray  # int64[m]: last step of each span
    first: np.ndarray  # int64[m]: first step
    rows: np.ndarray  # int64[m]: rows each stands for
    t: np.ndarray  # float64[m]
    runtime: np.ndarray  # float64[m]
    columns: list[SpanColumn]
    raw: list  # (key, steps, values): keys kept row for row (rate_limit=False), values as a batch column's


def encode_spans(spans: list, t: np.ndarray, runtime: np.ndarray) -> list:
    """The block of ``client.coalesce.Span`` objects (their times already wall clock and runtime)."""
    m = len(spans)
    per_key: dict[str, list[int]] = {}
    raw: dict[str, list] = {}
    for i, sp in enumerate(spans):
        for key in sp.keys:
            if key in sp.raw:
                raw.setdefault(key, []).append(sp.raw[key])
            else:
                per_key.setdefault(key, []).append(i)
    cols = []
    for key, idx in per_key.items():
        entries = [spans[i].keys[key] for i in idx]
        data = b"".join(
            np.asarray([e[j] for e in entries], dtype="<i8" if f in _SPAN_INT else "<f8").tobytes()
            for j, f in enumerate(SPAN_KEY_FIELDS)
        )
        cols.append([key, None if len(idx) == m else np.asarray(idx, dtype="<i4").tobytes(), data])
    return [
        m,
        np.asarray([sp.step for sp in spans], dtype="<i8").tobytes(),
        np.asarray([sp.first for sp in spans], dtype="<i8").tobytes(),
        np.asarray([sp.rows for sp in spans], dtype="<i8").tobytes(),
        np.ascontiguousarray(t, dtype="<f8").tobytes(),
        np.ascontiguousarray(runtime, dtype="<f8").tobytes(),
        cols,
        [[key, b"".join(p[0] for p in parts), _join_columns([p[1] for p in parts])] for key, parts in raw.items()],
    ]


def _join_columns(encoded: list) -> list:
    """One encoded column of several (a key kept raw over several spans): arrays of one dtype join as
    bytes, anything else as a list of values."""
    if len(encoded) == 1:
        return encoded[0]
    encs = {e[0] for e in encoded}
    if len(encs) == 1 and encoded[0][0] in NUMERIC_ENCODINGS:
        return [encoded[0][0], b"".join(e[1] for e in encoded)]
    values: list = []
    for enc, data in encoded:
        values += data if enc == OBJECT_ENCODING else np.frombuffer(data, NUMERIC_ENCODINGS[enc]).tolist()
    return [OBJECT_ENCODING, values]


def decode_spans(raw: Any) -> SpanBlock:
    if not (isinstance(raw, list) and len(raw) == 8):
        raise ProtocolError("spans must be [m, step, first, rows, t, runtime, columns, raw columns]")
    m, raw_step, raw_first, raw_rows, raw_t, raw_rt, cols, raw_cols = raw
    if not isinstance(m, int) or isinstance(m, bool) or not 0 < m <= MAX_BATCH_ROWS:
        raise ProtocolError(f"span count out of range (1..{MAX_BATCH_ROWS})")
    i8, f8 = np.dtype("<i8"), np.dtype("<f8")
    step = _array(raw_step, i8, m, "span step")
    first = _array(raw_first, i8, m, "span first step")
    rows = _array(raw_rows, i8, m, "span rows")
    t = _array(raw_t, f8, m, "span t")
    rt = _array(raw_rt, f8, m, "span runtime")
    if first.min() < 0 or step.max() >= _MAX_STEP or (first > step).any():
        raise ProtocolError("span steps out of range (0 <= first step <= step < 2**62)")
    if m > 1 and (first[1:] <= step[:-1]).any():
        raise ProtocolError("spans overlap or are out of order")
    if rows.min() < 1 or (rows > step - first + 1).any():
        raise ProtocolError("span rows out of range (1..steps it covers)")
    if not isinstance(cols, list):
        raise ProtocolError("span columns must be a list")
    columns: list[SpanColumn] = []
    seen: set[str] = set()
    for col in cols:
        if not (isinstance(col, list) and len(col) == 3 and isinstance(col[0], str) and col[0]):
            raise ProtocolError("span column must be [key, rows, data]")
        key, raw_idx, data = col
        if key in seen:
            raise ProtocolError(f"span column {key!r} twice")
        seen.add(key)
        if raw_idx is None:
            idx = None
            k = m
        else:
            if not isinstance(raw_idx, bytes) or len(raw_idx) % 4 or not raw_idx:
                raise ProtocolError("span column index must be int32 bytes")
            idx = np.frombuffer(raw_idx, dtype="<i4")
            k = len(idx)
            if idx.min() < 0 or idx.max() >= m or (k > 1 and (np.diff(idx) <= 0).any()):
                raise ProtocolError("span column index out of range or not increasing")
        if not isinstance(data, bytes) or len(data) != 8 * k * len(SPAN_KEY_FIELDS):
            raise ProtocolError(f"span column {key!r}: expected {k} values of each of {SPAN_KEY_FIELDS}")
        fields = {
            f: np.frombuffer(data, dtype=i8 if f in _SPAN_INT else f8, count=k, offset=8 * k * j)
            for j, f in enumerate(SPAN_KEY_FIELDS)
        }
        lo, hi, n = (first, step, rows) if idx is None else (first[idx], step[idx], rows[idx])
        fs, ks, cnt = fields["first_step"], fields["step"], fields["count"]
        if (fs < lo).any() or (ks > hi).any() or (fs > ks).any() or (cnt < 1).any() or (cnt > n).any():
            raise ProtocolError(f"span column {key!r}: steps or counts outside its spans")
        columns.append(SpanColumn(key, idx, fields))
    if not isinstance(raw_cols, list):
        raise ProtocolError("span raw columns must be a list")
    kept = []
    seen = set()  # (a key may also have span columns: its rate_limit definition came between spans)
    for col in raw_cols:
        if not (isinstance(col, list) and len(col) == 3 and isinstance(col[0], str) and col[0]):
            raise ProtocolError("span raw column must be [key, steps, [encoding, data]]")
        key, raw_steps, enc_col = col
        if key in seen:
            raise ProtocolError(f"span column {key!r} twice")
        seen.add(key)
        if not isinstance(raw_steps, bytes) or not raw_steps or len(raw_steps) % 8:
            raise ProtocolError(f"span raw column {key!r}: steps must be int64 bytes")
        k = len(raw_steps) // 8
        ks = np.frombuffer(raw_steps, dtype=i8)
        if (k > 1 and (np.diff(ks) <= 0).any()) or ks[0] < first[0] or ks[-1] > step[-1]:
            raise ProtocolError(f"span raw column {key!r}: steps not increasing or outside the spans")
        if not (isinstance(enc_col, list) and len(enc_col) == 2 and isinstance(enc_col[0], str)):
            raise ProtocolError(f"span raw column {key!r} must hold [encoding, data]")
        enc, data = enc_col
        if enc in NUMERIC_ENCODINGS:
            values: Any = _array(data, NUMERIC_ENCODINGS[enc], k, f"span raw column {key!r}")
        elif enc == OBJECT_ENCODING and isinstance(data, list) and len(data) == k:
            values = data
        else:
            raise ProtocolError(f"span raw column {key!r}: expected {k} values of a known encoding")
        kept.append((key, ks, values))
    return SpanBlock(m, step, first, rows, t, rt, columns, kept)


def encode_batch(
    writer: str,
    seq: int,
    step: bytes,
    t: bytes,
    runtime: bytes,
    late: bytes | None,
    n: int,
    blocks: list,
    pending: list | None,
    summary: dict | None,
    control: list | None,
) -> bytes:
    """Encode a batch. ``blocks`` is a list of ``[keys, row_idx_bytes|None, [[enc, data], ...]]``."""
    rows = [n, step, t, runtime, late, blocks] if n else None
    return pack(BATCH, {"w": writer, "s": seq, "rows": rows, "pend": pending, "sum": summary, "ctl": control})


def decode_batch(body: Any, nbytes: int = 0) -> Batch:
    writer = _need(body, "w", str)
    seq = _need(body, "s", int)
    if seq < 1:
        raise ProtocolError("seq must be >= 1")
    rows = body.get("rows")
    columns: list[Column] = []
    if rows is None:
        n = 0
        step = np.empty(0, np.int64)
        t = np.empty(0, np.float64)
        rt = np.empty(0, np.float64)
        late = None
    else:
        if not (isinstance(rows, list) and len(rows) == 6):
            raise ProtocolError("rows must be [n, step, t, runtime, late, blocks]")
        n, raw_step, raw_t, raw_rt, raw_late, blocks = rows
        if not isinstance(n, int) or not 0 < n <= MAX_BATCH_ROWS:
            raise ProtocolError(f"row count out of range (1..{MAX_BATCH_ROWS})" if isinstance(n, int) else
                                f"row count is a {type(n).__name__}, not an integer")
        step = _array(raw_step, np.dtype("<i8"), n, "step")
        if step.min() < 0:
            raise ProtocolError("negative step")
        t = _array(raw_t, np.dtype("<f8"), n, "t")
        rt = _array(raw_rt, np.dtype("<f8"), n, "runtime")
        late = None if raw_late is None else _array(raw_late, np.dtype("?"), n, "late")
        if not isinstance(blocks, list):
            raise ProtocolError("blocks must be a list")
        seen: set[str] = set()
        for block in blocks:
            if not (isinstance(block, list) and len(block) == 3):
                raise ProtocolError("block must be [keys, rows, cols]")
            keys, raw_idx, cols = block
            if not (isinstance(keys, list) and isinstance(cols, list) and len(keys) == len(cols) and keys):
                raise ProtocolError("block keys and columns differ in length")
            if raw_idx is None:
                idx = None
                m = n
            else:
                if not isinstance(raw_idx, bytes) or len(raw_idx) % 4:
                    raise ProtocolError("block row index must be int32 bytes")
                idx = np.frombuffer(raw_idx, dtype="<i4")
                m = len(idx)
                if m == 0 or idx.min() < 0 or idx.max() >= n:
                    raise ProtocolError("block row index out of range")
            for key, col in zip(keys, cols):
                if not isinstance(key, str) or not key:
                    raise ProtocolError("column key must be a non-empty string")
                # a key can sit in several blocks (different key sets), but only once per row:
                # the agent trusts the client's row assembly and does not re-check that here
                seen.add(key)
                if not (isinstance(col, list) and len(col) == 2 and isinstance(col[0], str)):
                    raise ProtocolError(f"column {key!r} must be [encoding, data]")
                enc, data = col
                if enc in NUMERIC_ENCODINGS:
                    values: Any = _array(data, NUMERIC_ENCODINGS[enc], m, f"column {key!r}")
                elif enc == OBJECT_ENCODING:
                    if not isinstance(data, list) or len(data) != m:
                        raise ProtocolError(f"column {key!r}: expected {m} values")
                    values = data
                else:
                    raise ProtocolError(f"column {key!r}: unknown encoding {enc!r}")
                columns.append(Column(key, idx, values))
    pending = body.get("pend")
    if pending is not None:
        if not (
            isinstance(pending, list)
            and len(pending) == 3
            and isinstance(pending[0], int)
            and pending[0] >= 0
            and isinstance(pending[1], float)
            and isinstance(pending[2], dict)
        ):
            raise ProtocolError("pending must be [step, t, {key: value}]")
        pending = (pending[0], pending[1], pending[2])
    summary = body.get("sum")
    if summary is not None and not isinstance(summary, dict):
        raise ProtocolError("summary must be a map")
    control = body.get("ctl") or []
    if not isinstance(control, list) or not all(
        isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) for c in control
    ):
        raise ProtocolError("control must be a list of [op, argument]")
    spans = body.get("spans")
    if spans is not None:
        spans = decode_spans(spans)
    return Batch(
        writer, seq, n, step, t, rt, late, columns, pending, summary, [(c[0], c[1]) for c in control], nbytes,
        spans,
    )


# ---------------------------------------------------------------- small messages


@dataclass(frozen=True, slots=True)
class Hello:
    writer: str
    pid: int
    run: dict  # project, group, name, rank, world_size, local_rank, node, launcher, resume, ...
    reconnect: bool


_RUN_FIELDS = {
    "project": str,
    "group": str,
    "name": str,
    "rank": int,
    "world_size": int,
    "local_rank": int,
    "node": str,
    "launcher": str,
    "resume": str,
    "started": float,
}


def decode_hello(body: Any) -> Hello:
    writer = _need(body, "w", str)
    pid = _need(body, "pid", int)
    run = _need(body, "run", dict)
    for key, typ in _RUN_FIELDS.items():
        _need(run, key, typ)
    if run["world_size"] < 1 or not 0 <= run["rank"] < run["world_size"]:
        raise ProtocolError("rank out of range of world_size")
    for key in ("config", "meta"):
        if run.get(key) is not None and not isinstance(run[key], dict):
            raise ProtocolError(f"run {key} must be a map")
    return Hello(writer, pid, run, bool(body.get("re", False)))
