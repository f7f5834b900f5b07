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
drop duplicates (docs/architecture.md, the wire protocol; the client's side is
client/link.py).

Here: the envelope (``pack``/``unpack``), the message kinds, the batch codec and
the small messages. A batch's span block has its codec in client/spanwire.py, the
column encodings both share are in client/columnwire.py; this module re-exports
their names. Decoders validate everything and raise :class:`ProtocolError`; the
agent counts and drops such frames, it never crashes on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from client.columnwire import MAX_BATCH_ROWS, NUMERIC_ENCODINGS, OBJECT_ENCODING, fixed_array  # noqa: F401
from client.errors import ProtocolError
from client.spanwire import SPAN_KEY_FIELDS, SpanBlock, SpanColumn, decode_spans, encode_spans  # noqa: F401

# (the names imported above are re-exported: the agent and the tools read them as ``wire.X``)
VERSION = 1
MAX_FRAME_BYTES = 64 << 20  # also ZMQ_MAXMSGSIZE on every socket; clients split batches to stay under it

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


# ---------------------------------------------------------------- batches (their span block: client/spanwire.py)


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
    open_row: tuple[int, float, dict] | None  # the row not committed yet (commit=False): step, time, values
    summary: dict | None
    control: list[tuple[str, Any]]
    nbytes: int
    spans: SpanBlock | None = None  # rows the client coalesced under overload (client/coalesce.py)


def encode_batch(
    writer: str,
    seq: int,
    step: bytes,
    t: bytes,
    runtime: bytes,
    late: bytes | None,
    n: int,
    blocks: list,
    open_row: list | None,
    summary: dict | None,
    control: list | None,
) -> bytes:
    """Encode a batch. ``blocks`` is a list of ``[keys, row_idx_bytes|None, [[enc, data], ...]]``."""
    rows = [n, step, t, runtime, late, blocks] if n else None
    return pack(BATCH, {"w": writer, "s": seq, "rows": rows, "pend": open_row, "sum": summary, "ctl": control})


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
            raise ProtocolError(
                f"row count out of range (1..{MAX_BATCH_ROWS})"
                if isinstance(n, int)
                else f"row count is a {type(n).__name__}, not an integer"
            )
        step = fixed_array(raw_step, np.dtype("<i8"), n, "step")
        if step.min() < 0:
            raise ProtocolError("negative step")
        t = fixed_array(raw_t, np.dtype("<f8"), n, "t")
        rt = fixed_array(raw_rt, np.dtype("<f8"), n, "runtime")
        late = None if raw_late is None else fixed_array(raw_late, np.dtype("?"), n, "late")
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
                    values: Any = fixed_array(data, NUMERIC_ENCODINGS[enc], m, f"column {key!r}")
                elif enc == OBJECT_ENCODING:
                    if not isinstance(data, list) or len(data) != m:
                        raise ProtocolError(f"column {key!r}: expected {m} values")
                    values = data
                else:
                    raise ProtocolError(f"column {key!r}: unknown encoding {enc!r}")
                columns.append(Column(key, idx, values))
    open_row = body.get("pend")
    if open_row is not None:
        if not (
            isinstance(open_row, list)
            and len(open_row) == 3
            and isinstance(open_row[0], int)
            and open_row[0] >= 0
            and isinstance(open_row[1], float)
            and isinstance(open_row[2], dict)
        ):
            raise ProtocolError("pending must be [step, t, {key: value}]")
        open_row = (open_row[0], open_row[1], open_row[2])
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
        writer,
        seq,
        n,
        step,
        t,
        rt,
        late,
        columns,
        open_row,
        summary,
        [(c[0], c[1]) for c in control],
        nbytes,
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
