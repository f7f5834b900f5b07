"""The media endpoints of the JSON API (docs/ui.md) and the media files.

* ``media``: the values of one non-scalar key at one step, every rank's own (images, video, audio,
  tables, charts, plotly figures, HTML, 3-D objects are never merged across ranks), with the list of
  steps for the panel's slider. A rank without a value at the step shows its latest value before it.
* ``histograms``: the histograms of a key over steps, merged over the ranks at each step
  (:meth:`rankwise._api.Group.histograms`) or one rank's own, thinned to the panel's width.
* ``/media/ab/<sha256>.<ext>``: the content-addressed files the references name, read-only, names
  validated before any file system access.

References in the JSON get a ``url`` (``/media/ab/<sha256>.<ext>``) next to their ``path``; values
marked ``skipped`` (not stored: over the byte budget) or ``error`` (not encodable in the client) get
none and are passed on as they are, for the page to show as such.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from agent.media import MediaError, mime_type, relative_path
from rankwise._ui.data import UIData
from rankwise._ui.params import Params, clean, step_range
from rankwise._views import Group, media_type
from rankwise.errors import ApiError, NotFound

DEFAULT_HIST_WIDTH = 200
MAX_HIST_WIDTH = 2000
MAX_STEP = 2**62
_HEX2 = re.compile(r"^[0-9a-f]{2}$")


# ---------------------------------------------------------------- values for JSON


def with_urls(value: Any) -> Any:
    """``value`` made JSON-safe, every stored media reference given its ``url``."""
    if isinstance(value, dict):
        out = {str(k): with_urls(v) for k, v in value.items() if k != "bytes"}
        if "_type" in value and "path" in value and not value.get("skipped") and not value.get("error"):
            try:
                out["url"] = "/" + relative_path(value.get("sha256"), value.get("format"))
            except MediaError:
                pass  # a name that does not validate gets no link
        return out
    if isinstance(value, list):
        return [with_urls(v) for v in value]
    return clean(value)


def _opt_int(p: Params, name: str) -> int | None:
    if p.q.get(name) in (None, ""):
        return None
    return p.int(name, 0, 0, MAX_STEP)


def _steps(data: UIData, project: str, name: str, key: str) -> tuple[Any, list, dict[int, np.ndarray]]:
    g = data.group(project, name)
    runs = data.runs(g)
    by_run = data.value_steps(g, runs, key)
    if not by_run:
        known = [m["key"] for m in data.media_keys(g, runs)]
        raise NotFound(f"group {name!r} has no values of {key!r}; media keys: {', '.join(known[:20]) or 'none'}")
    return g, runs, by_run


# ---------------------------------------------------------------- endpoints


def media(data: UIData, p: Params, project: str, name: str) -> dict[str, Any]:
    """Every rank's value of ``key`` at ``step`` (default: the last), the steps for a slider."""
    key = p.str("key")
    if not key:
        raise ApiError(400, "parameter 'key' is required")
    step = _opt_int(p, "step")
    rank = _opt_int(p, "rank")
    with_steps = p.bool("steps") if "steps" in p.q else True
    g, runs, by_run = _steps(data, project, name, key)
    union = np.unique(np.concatenate(list(by_run.values())))
    at = int(union[-1]) if step is None else step
    chosen: list[tuple[Any, int | None]] = []
    for r in runs:
        if rank is not None and r.rank != rank:
            continue
        steps = by_run.get(r.id)
        shown = None
        if steps is not None and len(steps):
            i = int(np.searchsorted(steps, at, side="right")) - 1
            shown = int(steps[i]) if i >= 0 else None
        chosen.append((r, shown))
    if rank is not None and not chosen:
        raise NotFound(f"group {name!r} has no run of rank {rank}")
    want = np.array(sorted({s for _, s in chosen if s is not None}), np.int64)
    values: dict[int, tuple[np.ndarray, list]] = {}
    if len(want):
        with data.cache.readers.get() as reader:
            values = reader.group_values(g.id, key, want)
    out_ranks = []
    kind = None
    for r, shown in chosen:
        value = None
        if shown is not None and r.id in values:
            st, vals = values[r.id]
            hit = np.flatnonzero(st == shown)
            value = vals[int(hit[-1])] if len(hit) else None
        kind = kind or media_type(value)
        out_ranks.append({"rank": r.rank, "name": r.name, "step": shown, "value": with_urls(value)})
    if kind is None:
        kind = next((m["type"] for m in data.media_keys(g, runs) if m["key"] == key), None)
    return {
        "key": key,
        "type": kind,
        "step": at,
        "first": int(union[0]),
        "last": int(union[-1]),
        "count": int(len(union)),
        "steps": union.tolist() if with_steps else None,
        "ranks": out_ranks,
    }


def histograms(data: UIData, p: Params, project: str, name: str) -> dict[str, Any]:
    """Histograms of ``key`` over [start, end]: merged over the ranks (``rank=merged``, the default) or one
    rank's, at most ``width`` steps chosen evenly among those logged."""
    key = p.str("key")
    if not key:
        raise ApiError(400, "parameter 'key' is required")
    raw_rank = p.q.get("rank", "merged")
    rank = None if raw_rank in ("merged", "") else _opt_int(p, "rank")
    width = p.int("width", DEFAULT_HIST_WIDTH, 1, MAX_HIST_WIDTH)
    start, end = step_range(p)
    g, runs, by_run = _steps(data, project, name, key)
    if rank is not None:
        ids = [r.id for r in runs if r.rank == rank]
        if not ids:
            raise NotFound(f"group {name!r} has no run of rank {rank}")
        parts = [by_run[i] for i in ids if i in by_run]
    else:
        parts = list(by_run.values())
    union = np.unique(np.concatenate(parts)) if parts else np.empty(0, np.int64)
    domain = [int(union[0]), int(union[-1])] if len(union) else None
    inside = union
    if start is not None:
        inside = inside[inside >= start]
    if end is not None:
        inside = inside[inside <= end]
    if len(inside) > width:
        inside = inside[np.unique(np.round(np.linspace(0, len(inside) - 1, width)).astype(np.int64))]
    columns = []
    if len(inside):
        group = Group(data.api, g)
        for st, h in group.histograms(key, rank=rank, steps=inside):
            columns.append({"step": st, "bins": clean(h["bins"]), "values": clean(h["values"]), "ranks": h["ranks"]})
    lo = min((c["bins"][0] for c in columns), default=None)
    hi = max((c["bins"][-1] for c in columns), default=None)
    in_range = union
    if start is not None:
        in_range = in_range[in_range >= start]
    if end is not None:
        in_range = in_range[in_range <= end]
    return {
        "key": key,
        "rank": rank,
        "domain": domain,
        "range": [int(in_range[0]), int(in_range[-1])] if len(in_range) else None,
        "steps": int(len(in_range)),
        "shown": len(columns),
        "lo": lo,
        "hi": hi,
        "expected": g.world_size,
        "columns": columns,
    }


# ---------------------------------------------------------------- files


def media_file(root: Path, parts: list[str]) -> tuple[Path, str, str]:
    """(file, content type, sha256) for ``/media/<ab>/<sha256>.<ext>`` below the store directory ``root``;
    ApiError 404 for any other name (checked before the file system is touched: no traversal)."""
    if len(parts) != 2 or not _HEX2.match(parts[0]) or "." not in parts[1]:
        raise ApiError(404, "media files are /media/<ab>/<sha256>.<ext>")
    sha, ext = parts[1].split(".", 1)
    try:
        rel = relative_path(sha, ext)
    except MediaError as exc:
        raise ApiError(404, f"no media file {'/'.join(parts)}: {exc}") from exc
    if sha[:2] != parts[0]:
        raise ApiError(404, f"no media file {'/'.join(parts)}: its directory must be {sha[:2]}")
    path = root / rel
    if not path.is_file():
        raise ApiError(404, f"no media file {rel} in this store")
    return path, mime_type(ext), sha
