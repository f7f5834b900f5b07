"""One spool record: what a node agent's commit sends to the root.

A node agent runs the same ingest as a single agent (validation, per-writer
de-duplication, step state, group windows), but instead of a store transaction
each of its commits appends one record to its spool, and the root applies the
record in one transaction of its own. A record holds, in the order they
happened at the node:

* ops: ``["h", run, hello]`` a writer said HELLO (the client's HELLO body, and
  whether the node resumed the run), ``["b", run, frame]`` a client batch exactly
  as the client sent it (writer id and seq inside, so the root de-duplicates per
  writer; media bytes inside, so they reach the root's media store),
  ``["c", run, why]`` the node saw the run's process vanish, ``["s", run, host, columns]`` system samples
  of the run's process tree (``host`` false) or of the node while it ran the run's group (``host`` true):
  ``{key: float64 bytes}`` with ``_timestamp`` (agent/system/forward.py);
* ``late``: ``[group, key, steps]`` points the node received for steps it had
  already sealed (the root recomputes those rows);
* ``parts``: ``[group, key, ranks, partial]`` what the node sealed, as
  :class:`grouping.Partial` arrays over the ranks it serves (a node agent from
  before ``nan_count``/``nan_rank`` sends partials without them: :func:`decode`
  reads its all-finite steps as nan_count 0, nan_rank -1, which is exact, and
  turns its steps that saw a NaN/±Inf, whose sums and extremes include it, into
  ``late`` entries, so the root recomputes those rows from the stored per-rank
  values);
* ``marks``: ``[group, watermark]`` how far the node has sealed each group.

``run`` and ``group`` index tables in the record (``runs``: the HELLO's run
fields plus pid; ``groups``: project, name, world size), so each entry names
its run without repeating it and the root can resolve or register it even if
it never saw the HELLO (a root whose store was replaced). Arrays travel as
little-endian bytes. :func:`decode` validates everything and raises
:class:`ProtocolError`: a record is data from the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from agent.store.system_chunks import check_columns
from client.errors import ProtocolError
from grouping import GroupingError, Partial

VERSION = 1
_INT_FIELDS = frozenset({"step", "count", "min_rank", "max_rank", "nan_count", "nan_rank"})
_NAN_FIELDS = ("nan_count", "nan_rank")
# what a partial from a node agent of before NaN-aware group rows holds
_LEGACY_FIELDS = frozenset(Partial.FIELDS) - frozenset(_NAN_FIELDS)
_RUN_TYPES = {
    "project": str,
    "group": str,
    "name": str,
    "rank": int,
    "world_size": int,
    "local_rank": int,
    "node": str,
    "pid": int,
}
MAX_NAME = 1024


@dataclass(frozen=True, slots=True)
class Record:
    instance: str  # the node agent process that wrote it (a restart changes it)
    node: str
    t: float
    runs: list[dict]
    groups: list[tuple[str, str, int]]
    ops: list[tuple[str, int, Any]]
    late: list[tuple[int, str, np.ndarray]]
    parts: list[tuple[int, str, np.ndarray, Partial]]
    marks: list[tuple[int, int]]


def _i8(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype="<i8").tobytes()


def encode(
    instance: str,
    node: str,
    t: float,
    runs: list[dict],
    groups: list[tuple[str, str, int]],
    ops: list[list],
    late: list[tuple[int, str, np.ndarray]],
    parts: list[tuple[int, str, np.ndarray, Partial]],
    marks: list[tuple[int, int]],
) -> bytes:
    body = {
        "v": VERSION,
        "i": instance,
        "node": node,
        "t": float(t),
        "runs": runs,
        "groups": [list(g) for g in groups],
        "ops": ops,
        "late": [[g, k, _i8(steps)] for g, k, steps in late],
        "parts": [
            [
                g,
                k,
                _i8(ranks),
                {
                    f: np.ascontiguousarray(getattr(p, f), dtype="<i8" if f in _INT_FIELDS else "<f8").tobytes()
                    for f in Partial.FIELDS
                },
            ]
            for g, k, ranks, p in parts
        ],
        "marks": [list(m) for m in marks],
    }
    return msgpack.packb(body, use_bin_type=True)


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise ProtocolError(f"record: {what}")


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and -(1 << 63) <= v < (1 << 63)


def _steps(raw: Any, what: str) -> np.ndarray:
    _need(isinstance(raw, bytes) and len(raw) % 8 == 0, f"{what} must be int64 bytes")
    return np.frombuffer(raw, "<i8")


def _partial(raw: Any) -> tuple[Partial, np.ndarray | None]:
    """The partial, and for a legacy one (no nan fields) the steps whose values were not all finite."""
    _need(isinstance(raw, dict) and set(raw) in (set(Partial.FIELDS), _LEGACY_FIELDS), "partial fields")
    n = None
    arrays = {}
    for f in Partial.FIELDS:
        if f not in raw:
            continue
        b = raw[f]
        _need(isinstance(b, bytes) and len(b) % 8 == 0, f"partial field {f}")
        arrays[f] = np.frombuffer(b, "<i8" if f in _INT_FIELDS else "<f8")
        n = len(arrays[f]) if n is None else n
        _need(len(arrays[f]) == n, "partial fields differ in length")
    legacy = None
    if "nan_count" not in arrays:
        # its m2 is NaN exactly where a NaN/±Inf value was seen (the old reducers' invariant)
        legacy = arrays["step"][np.isnan(arrays["m2"])]
        arrays["nan_count"] = np.zeros(n, np.int64)
        arrays["nan_rank"] = np.full(n, -1, np.int64)
    try:
        return Partial.from_dict(arrays), legacy
    except GroupingError as exc:
        raise ProtocolError(f"record: partial: {exc}") from None


def _run_info(raw: Any) -> dict:
    _need(isinstance(raw, dict), "run entry is not a map")
    for key, typ in _RUN_TYPES.items():
        v = raw.get(key)
        _need(isinstance(v, typ) and not isinstance(v, bool), f"run field {key!r}")
        _need(not isinstance(v, str) or 0 < len(v) <= MAX_NAME, f"run field {key!r} length")
    _need(1 <= raw["world_size"] <= (1 << 20) and 0 <= raw["rank"] < raw["world_size"], "run rank/world_size")
    _need(0 <= raw["pid"] < (1 << 31) and 0 <= raw["local_rank"] < (1 << 31), "run pid/local_rank")
    return raw


def decode(payload: bytes) -> Record:
    """A validated record; ProtocolError when anything is malformed."""
    try:
        body = msgpack.unpackb(payload, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:
        raise ProtocolError(f"record undecodable: {type(exc).__name__}") from None
    _need(isinstance(body, dict) and body.get("v") == VERSION, "not a version-1 record")
    instance, node, t = body.get("i"), body.get("node"), body.get("t")
    _need(isinstance(instance, str) and isinstance(node, str) and isinstance(t, float), "header")
    runs = body.get("runs")
    _need(isinstance(runs, list), "runs")
    runs = [_run_info(r) for r in runs]
    groups = body.get("groups")
    _need(isinstance(groups, list), "groups")
    gtable = []
    for g in groups:
        _need(
            isinstance(g, list)
            and len(g) == 3
            and isinstance(g[0], str)
            and isinstance(g[1], str)
            and _int(g[2])
            and 1 <= g[2] <= (1 << 20),
            "group entry",
        )
        gtable.append((g[0], g[1], g[2]))
    ops = []
    raw_ops = body.get("ops")
    _need(isinstance(raw_ops, list), "ops")
    for op in raw_ops:
        _need(isinstance(op, list) and len(op) >= 3 and op[0] in ("h", "b", "c", "s"), "op shape")
        _need(_int(op[1]) and 0 <= op[1] < len(runs), "op run index")
        if op[0] == "h":
            _need(len(op) == 4 and isinstance(op[2], dict) and isinstance(op[3], bool), "hello op")
            ops.append(("h", op[1], (op[2], op[3])))
        elif op[0] == "b":
            _need(isinstance(op[2], bytes), "batch op")
            ops.append(("b", op[1], op[2]))
        elif op[0] == "s":
            ops.append(("s", op[1], _system_op(op)))
        else:
            _need(isinstance(op[2], str), "crash op")
            ops.append(("c", op[1], op[2][:200]))
    late = []
    for e in body.get("late") or []:
        _need(_keyed_entry(e, 3, len(gtable)), "late entry")
        late.append((e[0], e[1], _steps(e[2], "late steps")))
    parts = []
    for e in body.get("parts") or []:
        _need(_keyed_entry(e, 4, len(gtable)), "partial entry")
        part, legacy = _partial(e[3])
        parts.append((e[0], e[1], _steps(e[2], "partial ranks"), part))
        if legacy is not None and len(legacy):
            late.append((e[0], e[1], legacy))
    marks = []
    for e in body.get("marks") or []:
        _need(
            isinstance(e, list) and len(e) == 2 and _int(e[0]) and 0 <= e[0] < len(gtable) and _int(e[1]),
            "watermark entry",
        )
        marks.append((e[0], e[1]))
    return Record(instance, node, t, runs, gtable, ops, late, parts, marks)


def system_op_fields(host: bool, columns: dict[str, np.ndarray]) -> list:
    """The fields of a system op after its run index: ``[host, {key: float64 bytes}]``."""
    return [bool(host), {k: np.ascontiguousarray(v, dtype="<f8").tobytes() for k, v in columns.items()}]


def _system_op(op: list) -> tuple[bool, dict[str, np.ndarray]]:
    _need(len(op) == 4 and isinstance(op[2], bool) and isinstance(op[3], dict), "system op")
    columns = {}
    for k, v in op[3].items():
        _need(
            isinstance(k, str) and 0 < len(k) <= MAX_NAME and isinstance(v, bytes) and len(v) % 8 == 0, "system column"
        )
        columns[k] = np.frombuffer(v, "<f8")
    try:
        check_columns(columns, "system op")
    except ValueError as exc:
        raise ProtocolError(f"record: {exc}") from None
    return op[2], columns


def _keyed_entry(e: Any, size: int, groups: int) -> bool:
    """A ``late`` or ``parts`` entry's shape: a list of ``size`` items, a group index, then a non-empty key."""
    return (
        isinstance(e, list)
        and len(e) == size
        and _int(e[0])
        and 0 <= e[0] < groups
        and isinstance(e[1], str)
        and bool(e[1])
    )
