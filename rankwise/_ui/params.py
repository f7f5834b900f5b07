"""Parameters and JSON for the API (:mod:`rankwise._ui.api`): errors with an HTTP status, query
parameters checked one by one (a 400 names the parameter and what it accepts), and numbers made JSON-safe
(NaN and ±inf become ``null``: JSON has no spelling for them that browsers parse)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rankwise.errors import ApiError

# ---------------------------------------------------------------- JSON helpers


def clean(value: Any) -> Any:
    """Make summaries and configs JSON-safe: non-finite floats become None, bytes and others a string."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        return clean(value.item())
    return repr(value)


def numbers(a: np.ndarray, integral: bool = False) -> list:
    """An array as a JSON list: ints stay ints (floats too with ``integral``), NaN and ±inf become None."""
    a = np.asarray(a)
    if a.dtype.kind in "iub":
        return a.tolist()
    a = a.astype(np.float64, copy=False)
    if integral:
        out = np.where(np.isfinite(a), a, 0).astype(np.int64).astype(object)
        out[~np.isfinite(a)] = None
        return out.tolist()
    bad = ~np.isfinite(a)
    if not bad.any():
        return a.tolist()
    out = a.astype(object)
    out[bad] = None
    return out.tolist()


# ---------------------------------------------------------------- parameters


class Params:
    """Query parameters, each given at most once; unknown names are a 400 naming the known ones."""

    def __init__(self, query: dict[str, list[str]], known: tuple[str, ...]):
        unknown = sorted(set(query) - set(known))
        if unknown:
            raise ApiError(400, f"unknown parameter {unknown[0]!r}; known: {', '.join(known) or 'none'}")
        for name, values in query.items():
            if len(values) > 1:
                raise ApiError(400, f"parameter {name!r} given {len(values)} times; give it once")
        self.q = {k: v[0] for k, v in query.items()}

    def str(self, name: str, default: str | None = None, choices: tuple[str, ...] | None = None) -> str | None:
        value = self.q.get(name, default)
        if choices is not None and value not in choices:
            raise ApiError(400, f"{name}={value!r} is not one of {', '.join(choices)}")
        return value

    def float(self, name: str) -> float | None:
        raw = self.q.get(name)
        if raw in (None, ""):
            return None
        try:
            value = float(raw)
        except ValueError as exc:
            raise ApiError(400, f"{name}={raw!r} is not a number") from exc
        if not math.isfinite(value):
            raise ApiError(400, f"{name}={raw!r} must be finite")
        return value

    def int(self, name: str, default: int, lo: int, hi: int) -> int:
        raw = self.q.get(name)
        if raw in (None, ""):
            return default
        try:
            value = int(raw)
        except ValueError as exc:
            raise ApiError(400, f"{name}={raw!r} is not an integer") from exc
        if not lo <= value <= hi:
            raise ApiError(400, f"{name}={value} must be between {lo} and {hi}")
        return value

    def bool(self, name: str) -> bool:
        raw = self.q.get(name, "0")
        if raw in ("1", "true", "yes"):
            return True
        if raw in ("0", "false", "no", ""):
            return False
        raise ApiError(400, f"{name}={raw!r} is not a boolean; use 1 or 0")


def step_range(p: Params) -> tuple[float | None, float | None]:
    start, end = p.float("start"), p.float("end")
    if start is not None and end is not None and start > end:
        raise ApiError(400, f"start={start:g} is after end={end:g}")
    return start, end
