"""Custom x axes: ``define_metric(key, step_metric=M)`` read back (the Api's ``history(x_axis=)`` and the UI).

A run stores its ``define_metric`` calls in its meta (``meta["metrics"]``: name or glob → spec). A key's
step metric is the ``step_metric`` of the last definition whose name or glob matches it (later definitions
win, as for ``summary=`` and ``rate_limit=``).

Pairing a key with a step metric ``M`` follows wandb: the x of a row is the value of ``M`` logged in that
same row. wandb's client also copies the last value of ``M`` into a row that logs a key defined with
``step_metric=M`` without ``M`` itself (``step_sync``, on unless ``step_sync=False``); rankwise stores the
row as logged and does the same on read: such a row gets the latest value of ``M`` logged at or before its
step. Rows of other keys without ``M`` have no x on that axis and are left out, and so are rows before
the first value of ``M``.

Pure functions over numpy arrays and meta dicts; no I/O.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any

import numpy as np


def definitions(meta: dict) -> list[tuple[str, dict]]:
    """The run's ``define_metric`` specs in definition order: ``[(name or glob, spec)]``."""
    metrics = meta.get("metrics") if isinstance(meta, dict) else None
    if not isinstance(metrics, dict):
        return []
    return [(str(name), spec) for name, spec in metrics.items() if isinstance(spec, dict)]


def _spec_for(defs: list[tuple[str, dict]], key: str) -> dict | None:
    found = None
    for name, spec in defs:
        if spec.get("step_metric") and (name == key or fnmatch.fnmatchcase(key, name)):
            found = spec  # later definitions win
    return found


def step_metric_of(meta: dict, key: str) -> str | None:
    """The step metric ``key`` was defined with (None: plotted against ``_step``)."""
    spec = _spec_for(definitions(meta), key)
    return str(spec["step_metric"]) if spec else None


def step_metrics(metas: Iterable[dict]) -> dict[str, list[str]]:
    """Over runs' metas: every step metric defined → the names/globs defined with it (sorted, no repeats)."""
    out: dict[str, set[str]] = {}
    for meta in metas:
        for name, spec in definitions(meta):
            m = spec.get("step_metric")
            if isinstance(m, str) and m:
                out.setdefault(m, set()).add(name)
    return {m: sorted(names) for m, names in sorted(out.items())}


def syncs(meta: dict, key: str, metric: str) -> bool:
    """Whether rows of ``key`` without ``metric`` take its latest earlier value (wandb's ``step_sync``)."""
    spec = _spec_for(definitions(meta), key)
    return bool(spec) and spec.get("step_metric") == metric and spec.get("step_sync") is not False


def x_of(steps: np.ndarray, m_steps: np.ndarray, m_values: np.ndarray, sync: bool) -> tuple[np.ndarray, np.ndarray]:
    """For rows at ``steps`` (sorted): (mask of the rows that have an x, their x). ``m_steps``/``m_values``
    are the step metric's own rows (sorted by step). A row's x is the metric's value at the same step; with
    ``sync`` a row without one takes the latest value at an earlier step."""
    steps = np.asarray(steps, np.int64)
    m_steps = np.asarray(m_steps, np.int64)
    m_values = np.asarray(m_values, np.float64)
    if len(m_steps) == 0 or len(steps) == 0:
        return np.zeros(len(steps), bool), np.empty(0)
    pos = np.searchsorted(m_steps, steps, "right") - 1
    ok = pos >= 0
    if not sync:
        ok &= m_steps[np.maximum(pos, 0)] == steps
    return ok, m_values[pos[ok]]


def numeric(values: Any) -> np.ndarray | None:
    """A step metric's values as float64 (None when they are not all numbers: no axis can be made of them)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        return values.astype(np.float64, copy=False)
    out = []
    for v in values.tolist() if isinstance(values, np.ndarray) else values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None
        out.append(float(v))
    return np.asarray(out, np.float64)


def pair_rows(rows: Iterable[dict], x_axis: str, meta: dict, keys: list[str] | None = None) -> Iterable[dict]:
    """History rows (ordered by step) paired with ``x_axis``: each row that has a value of it, or takes the
    latest earlier one (a row holding a key defined with ``step_metric=x_axis``, see the module doc), with
    that value in the row; the others left out. With ``keys``, only rows holding one of them."""
    memo: dict[str, bool] = {}
    wanted = None if keys is None else set(keys)
    last = None
    for row in rows:
        if x_axis in row:
            last = row[x_axis]
        elif last is None:
            continue
        else:
            hit = False
            for k in row:
                if not k.startswith("_"):
                    s = memo.get(k)
                    if s is None:
                        s = memo[k] = syncs(meta, k, x_axis)
                    if s:
                        hit = True
                        break
            if not hit:
                continue
            row = dict(row)
            row[x_axis] = last
        if wanted is None or wanted & row.keys():
            yield row
