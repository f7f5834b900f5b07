"""``Api.runs(filters=, order=)``: wandb's MongoDB-style run filters and ordering over :class:`Run` objects.

Fields: ``group``, ``state``, ``name``/``id`` (the run id, as in wandb), ``display_name`` (the run's name),
``tags``, ``notes``, ``job_type``, ``entity``, ``project``, ``created_at``/``heartbeat_at`` (ISO strings; a
``datetime`` or Unix seconds compare too), ``config.<key>`` (nested or dotted keys, ``.value`` optional),
``summary_metrics.<key>``, and rankwise's ``rank``, ``local_rank``, ``node``, ``exit_code``. Operators:
``$eq $ne $gt $gte $lt $lte $in $nin $exists $regex $not $and $or $nor``; a scalar matches a list holding it
(``{"tags": "baseline"}``). Comparing unlike types (a string with a number) matches nothing, as in MongoDB.
Unknown fields and operators raise :class:`InvalidArgumentError` naming them.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

from rankwise.errors import InvalidArgumentError


def iso(t: float | None) -> str | None:
    """wandb's timestamp format: UTC, ISO 8601 to the second, no zone suffix ("2026-12-07T09:30:00")."""
    if t is None:
        return None
    return _dt.datetime.fromtimestamp(float(t), _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


_MISSING = object()
_TIME_FIELDS = {
    "created_at": "created_at",
    "createdAt": "created_at",
    "heartbeat_at": "heartbeat_at",
    "heartbeatAt": "heartbeat_at",
    "updated_at": "heartbeat_at",
    "updatedAt": "heartbeat_at",
}
_FIELDS = {
    "group": lambda r: r.group,
    "state": lambda r: r.state,
    "name": lambda r: r.id,
    "id": lambda r: r.id,
    "run_id": lambda r: r.id,
    "display_name": lambda r: r.name,
    "displayName": lambda r: r.name,
    "tags": lambda r: r.tags,
    "notes": lambda r: r.notes,
    "job_type": lambda r: r.job_type,
    "jobType": lambda r: r.job_type,
    "entity": lambda r: r.entity,
    "project": lambda r: r.project,
    "username": lambda r: r.user,
    "user": lambda r: r.user,
    "sweep": lambda r: None,
    "rank": lambda r: r.rank,
    "local_rank": lambda r: r.local_rank,
    "node": lambda r: r.node,
    "host": lambda r: r.node,
    "exit_code": lambda r: r.exit_code,
    "lastHistoryStep": lambda r: r.lastHistoryStep,
    "created_at": lambda r: r.created_at,
    "heartbeat_at": lambda r: r.heartbeat_at,
}


def _dotted(d: Any, path: str) -> Any:
    """``path`` in a dict whose keys may themselves hold dots ("val.acc", a flattened log key) or be nested;
    a trailing ``.value`` (wandb's config spelling, ``config.lr.value``) is optional."""
    if isinstance(d, dict):
        if path in d:
            return d[path]
        for cut in range(len(path) - 1, 0, -1):  # the longest key that is a dotted prefix of the path
            if path[cut] == "." and path[:cut] in d:
                found = _dotted(d[path[:cut]], path[cut + 1 :])
                if found is not _MISSING:
                    return found
    return d if path == "value" else _MISSING


def _field(run: Any, name: str) -> Any:
    if name.startswith("config."):
        return _dotted(run._record.config, name[len("config.") :])
    for prefix in ("summary_metrics.", "summary."):
        if name.startswith(prefix):
            return _dotted(run._record.summary, name[len(prefix) :])
    get = _FIELDS.get(_TIME_FIELDS.get(name, name))
    if get is None:
        raise InvalidArgumentError(
            f"runs(filters=/order=): unknown field {name!r}; known: config.<key>, "
            f"summary_metrics.<key>, {', '.join(sorted(_FIELDS))}"
        )
    return get(run)


def _time_operand(v: Any) -> Any:
    if isinstance(v, _dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(_dt.timezone.utc).replace(tzinfo=None)
        return v.strftime("%Y-%m-%dT%H:%M:%S")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return iso(v)
    if isinstance(v, (list, tuple)):
        return [_time_operand(x) for x in v]
    return v


def _compare(value: Any, op: str, operand: Any) -> bool:
    if value is _MISSING or value is None:
        return False
    try:
        if op == "$gt":
            return value > operand
        if op == "$gte":
            return value >= operand
        if op == "$lt":
            return value < operand
        return value <= operand
    except TypeError:  # e.g. a string against a number: no match, as in MongoDB
        return False


def _equals(value: Any, operand: Any) -> bool:
    if value is _MISSING:
        return operand is None
    if isinstance(value, list) and not isinstance(operand, list):
        return operand in value  # MongoDB: a scalar matches an array holding it (tags)
    return value == operand


def _cond(value: Any, cond: Any, time_field: bool) -> bool:
    if not (isinstance(cond, dict) and cond and all(isinstance(k, str) and k.startswith("$") for k in cond)):
        return _equals(value, _time_operand(cond) if time_field else cond)
    for op, operand in cond.items():
        if time_field:
            operand = _time_operand(operand)
        if op == "$eq":
            ok = _equals(value, operand)
        elif op == "$ne":
            ok = not _equals(value, operand)
        elif op in ("$gt", "$gte", "$lt", "$lte"):
            ok = _compare(value, op, operand)
        elif op in ("$in", "$nin"):
            if not isinstance(operand, (list, tuple)):
                raise InvalidArgumentError(f"runs(filters=...): {op} takes a list, got {operand!r}")
            ok = any(_equals(value, o) for o in operand)
            ok = ok if op == "$in" else not ok
        elif op == "$exists":
            ok = (value is not _MISSING and value is not None) == bool(operand)
        elif op == "$regex":
            flags = re.IGNORECASE if "i" in str(cond.get("$options", "")) else 0
            ok = isinstance(value, str) and re.search(str(operand), value, flags) is not None
        elif op == "$options":
            continue
        elif op == "$not":
            ok = not _cond(value, operand, time_field)
        else:
            raise InvalidArgumentError(
                f"runs(filters=...): unsupported operator {op!r}; supported: $eq, $ne, $gt, "
                "$gte, $lt, $lte, $in, $nin, $exists, $regex, $not, $and, $or, $nor"
            )
        if not ok:
            return False
    return True


def matches(run: Any, filters: dict) -> bool:
    for key, cond in filters.items():
        if key in ("$and", "$or", "$nor"):
            if not isinstance(cond, (list, tuple)) or not all(isinstance(c, dict) for c in cond):
                raise InvalidArgumentError(f"runs(filters=...): {key} takes a list of filter dicts, got {cond!r}")
            hits = [matches(run, c) for c in cond]
            ok = all(hits) if key == "$and" else any(hits) if key == "$or" else not any(hits)
        else:
            ok = _cond(_field(run, key), cond, key in _TIME_FIELDS)
        if not ok:
            return False
    return True


def ordered(runs: list, order: str) -> list:
    if not isinstance(order, str) or not order.strip("+-"):
        raise InvalidArgumentError(
            f"runs(order={order!r}) must be a field such as '+created_at' or '-summary_metrics.loss'"
        )
    desc = order.startswith("-")
    name = order.lstrip("+-")
    # ties (ranks of one job start within the same second) keep group creation, then rank order
    base = sorted(runs, key=lambda r: (r._record.created, r._group.created, r.rank, r._record.id))
    if name in ("created_at", "createdAt"):
        return base[::-1] if desc else base

    def key(r: Any) -> tuple:
        v = _field(r, name)
        if v is _MISSING or v is None:
            return (1, 0, "")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return (0, 0, float(v))
        return (0, 1, str(v))

    present = [r for r in base if key(r)[0] == 0]
    missing = [r for r in base if key(r)[0] == 1]
    return sorted(present, key=key, reverse=desc) + missing  # runs without the field last either way
