"""Messages between a node agent (DEALER) and the root agent (ROUTER) over TCP.

Same framing as the client protocol (client/wire.py): one ZeroMQ frame holding
msgpack ``[VERSION, kind, body]``; a different set of kinds, so that a client
frame sent to the root's TCP port, or a link frame sent to an agent's ipc
socket, is rejected and counted as malformed.

The scheme mirrors client → agent delivery (client/link.py), with spool
records in place of batches:

``nhello``   node → root  ``{a: agent id, i: instance, n: node name, h: n}``
``nwelcome`` root → node  ``{h, next: the record seq the root expects, acked: stored and fsynced
             through (the node may delete that much), root: its instance}``
``rec``      node → root  ``{s: seq, p: prev, d: record bytes}``; ``p`` is the seq of the
             node's previous record (``s - 1`` unless records in between were lost to a
             corrupt, quarantined spool segment: the root then counts them as lost)
``rack``     root → node  ``{s: stored through, done: [[project, group], ...]}`` after the
             root's transaction holding the records committed; ``done`` names groups of
             which every rank has joined (a node stops waiting for ranks it may never see)
``rnack``    root → node  ``{expect: seq}`` a gap, or ``{reason: "unknown-agent"}``
``lookup``   node → root  ``{q: writer, p: project, g: group, n: name}``: a rank the node
             does not know said HELLO; the root's view of its run (the resume point)
``found``    root → node  ``{q, run: {...} or None, ws: the writer's stored seq}``
``state``    node → root  ``{as_of: seq, m: [[project, group, watermark], ...]}``, after a
             (re)connect: the node's watermarks, valid once the root applied record ``as_of``

Decoders validate types and sizes and raise :class:`ProtocolError`.
"""

from __future__ import annotations

import re
from typing import Any

import msgpack

from client.errors import ProtocolError
from client.wire import MAX_FRAME_BYTES

VERSION = 1
# a record holds up to a drain of client frames (the node cuts records at RECORD_SOFT_BYTES) plus one frame
RECORD_SOFT_BYTES = 16 << 20
MAX_LINK_FRAME = 2 * MAX_FRAME_BYTES + RECORD_SOFT_BYTES  # also ZMQ_MAXMSGSIZE on both ends
MAX_SEQ = 1 << 62
_AGENT_ID = re.compile(r"^[A-Za-z0-9._@:-]{1,128}$")

NHELLO, NWELCOME, REC, RACK, RNACK, LOOKUP, FOUND, STATE, REFUSE = (
    "nhello",
    "nwelcome",
    "rec",
    "rack",
    "rnack",
    "lookup",
    "found",
    "state",
    "nrefuse",
)
KINDS = frozenset({NHELLO, NWELCOME, REC, RACK, RNACK, LOOKUP, FOUND, STATE, REFUSE})


def pack(kind: str, body: dict) -> bytes:
    return msgpack.packb([VERSION, kind, body], use_bin_type=True)


def unpack(frame: bytes) -> tuple[str, dict]:
    if len(frame) > MAX_LINK_FRAME:
        raise ProtocolError(f"link frame of {len(frame)} bytes exceeds {MAX_LINK_FRAME}")
    try:
        msg = msgpack.unpackb(frame, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:
        raise ProtocolError(f"undecodable link frame: {type(exc).__name__}") from None
    if not (isinstance(msg, list) and len(msg) == 3 and msg[0] == VERSION):
        raise ProtocolError("link frame is not [version, kind, body]")
    kind, body = msg[1], msg[2]
    if kind not in KINDS:
        raise ProtocolError(f"unknown link message kind {kind!r}")
    if not isinstance(body, dict):
        raise ProtocolError("link body is not a map")
    return kind, body


def need(body: dict, key: str, typ: type | tuple[type, ...]) -> Any:
    value = body.get(key)
    if not isinstance(value, typ) or (isinstance(value, bool) and typ is not bool):
        raise ProtocolError(f"link field {key!r} missing or of type {type(value).__name__}")
    return value


def seq_field(body: dict, key: str, minimum: int = 0) -> int:
    value = need(body, key, int)
    if not minimum <= value < MAX_SEQ:
        raise ProtocolError(f"link field {key!r} out of range")
    return value


def read_agent_id(body: dict) -> str:
    """The sending node agent's id (``a`` of an ``nhello``), checked: letters, digits and ._@:- only."""
    value = need(body, "a", str)
    if not _AGENT_ID.match(value):
        raise ProtocolError("bad agent id (up to a few dozen letters, digits and ._@:- only)")
    return value


def names(raw: Any, width: int, what: str) -> list[list]:
    """A list of [project, group(, int)] entries, as in ``done`` and ``state``."""
    if not isinstance(raw, list) or len(raw) > 100000:
        raise ProtocolError(f"link field {what!r} must be a list")
    for e in raw:
        if not (isinstance(e, list) and len(e) == width and isinstance(e[0], str) and isinstance(e[1], str)):
            raise ProtocolError(f"link field {what!r}: bad entry")
        if width == 3 and not (isinstance(e[2], int) and not isinstance(e[2], bool) and -1 <= e[2] < MAX_SEQ):
            raise ProtocolError(f"link field {what!r}: bad watermark")
    return raw
