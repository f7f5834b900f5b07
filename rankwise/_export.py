"""``rankwise export GROUP``: group rows (default) or every rank's history (``--per-rank``) as CSV or JSON lines.

Group rows are long: one line per (key, step) with count, expected, mean, min,
max, std, min_rank, max_rank, nan_count, nan_rank. Per-rank history is wide, one line per (rank,
step) as ``Api().group(...).run(rank=r).history()`` returns it: rank, run,
_step, _timestamp, _runtime and one column per key (empty where that row has no
value). Floats are written exactly (shortest round-trip form); NaN and ±inf as
``nan``/``inf`` in CSV and ``NaN``/``Infinity`` in JSON lines (Python's json
and pandas read them). Non-numeric values are JSON-encoded in CSV cells.

Control characters never reach the output raw (a key with ESC or BEL must not drive the terminal it is
printed on): JSON lines escape them as JSON does (``\\u001b``, exact), CSV writes them as ``\\x1b`` in
column names and cells (line breaks and tabs inside a string value stay, quoted as CSV does).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from typing import Any, TextIO

import numpy as np

from agent.store.base import GROUP_FIELDS
from rankwise._lookup import check_keys, find_group
from rankwise._table import safe

FORMATS = ("csv", "jsonl")
GROUP_COLUMNS = ("key", *GROUP_FIELDS)
_INT_FIELDS = {"step", "count", "expected", "min_rank", "max_rank", "nan_count", "nan_rank"}


def group_rows(g: Any, keys: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Every group row of every key (ordered by key, then step) as a dict of Python numbers."""
    for key in keys or g.keys():
        h = g.history(key)
        cols = {
            f: (h[f].astype(np.int64) if f in _INT_FIELDS else h[f].astype(np.float64)).tolist() for f in GROUP_FIELDS
        }
        for i in range(len(cols["step"])):
            row: dict[str, Any] = {"key": key}
            for f in GROUP_FIELDS:
                row[f] = cols[f][i]
            yield row


def rank_rows(g: Any, keys: list[str] | None = None) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """(columns, rows) of every run's full-resolution history, by rank then step."""
    runs = g.runs
    names = sorted(set(keys) if keys else {k for r in runs for k in r.keys()})
    columns = ["rank", "run", "_step", "_timestamp", "_runtime", *names]

    def rows() -> Iterator[dict[str, Any]]:
        for r in runs:
            for row in r.scan_history(keys):
                yield {"rank": r.rank, "run": r.name, **row}

    return columns, rows()


def _cell(v: Any) -> Any:
    if v is None or isinstance(v, (int, float)):
        return "" if v is None else v
    if isinstance(v, str):
        return safe(v, keep="\n\t")
    return json.dumps(v)  # ensure_ascii: control characters come out as \u escapes


def write(rows: Iterator[dict[str, Any]], columns: list[str], fmt: str, out: TextIO) -> int:
    n = 0
    if fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow([safe(c) for c in columns])
        for row in rows:
            w.writerow([_cell(row.get(c)) for c in columns])
            n += 1
    else:
        for row in rows:
            out.write(json.dumps(row) + "\n")
            n += 1
    return n


def export(
    api: Any,
    project: str | None,
    name: str | None,
    fmt: str,
    per_rank: bool = False,
    out: str | None = None,
    keys: list[str] | None = None,
) -> int:
    if fmt not in FORMATS:
        print(f"rankwise export: --format {fmt!r} is not one of {', '.join(FORMATS)}", file=sys.stderr)
        return 2
    g = find_group(api, project, name)
    # per-rank history has every key a rank logged (media too); group rows only numeric keys
    check_keys(g, keys, {k for r in g.runs for k in r.keys()} if per_rank else None)
    if per_rank:
        columns, rows = rank_rows(g, keys)
    else:
        columns, rows = list(GROUP_COLUMNS), group_rows(g, keys)
    if out is None or out == "-":
        write(rows, columns, fmt, sys.stdout)
        return 0
    with open(out, "w", newline="", encoding="utf-8") as f:
        n = write(rows, columns, fmt, f)
    what = "per-rank rows" if per_rank else "group rows"
    print(safe(f"wrote {n} {what} of {g.project}/{g.name} to {out}"), file=sys.stderr)
    return 0
