"""What the command line prints: text escaped for the terminal (:func:`safe`, :func:`say`), numbers,
times and sizes formatted, aligned tables, sparklines, and the per-key table of a group that ``rankwise
show``, ``rankwise tail`` and ``rankwise demo`` print (:func:`group_table`)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def safe(text: str, keep: str = "") -> str:
    """``text`` with every non-printable character (ESC, BEL and other controls, format characters such as
    a right-to-left override, lone surrogates) escaped as ``\\xNN`` / ``\\uNNNN``, except those in ``keep``:
    a key or name from the store cannot retitle, clear or recolour the terminal it is printed on."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable() or ch in keep:
            out.append(ch)
        elif ch in _NAMED:
            out.append(_NAMED[ch])
        else:
            n = ord(ch)
            out.append(f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}")
    return "".join(out)


def say(*parts: Any, file: Any = None) -> None:
    """print() for everything the CLI writes: names and keys come from the store (any logged string), so
    non-printable characters are escaped (only line breaks pass), never sent raw to the terminal."""
    print(safe(" ".join(str(p) for p in parts), keep="\n"), file=file)


def fmt(value: Any) -> str:
    """Numbers with 4–5 significant digits; a non-finite value spelled ``NaN`` / ``inf`` / ``-inf``, so it
    never looks like a missing value (None), which is '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.4e}"
        return f"{value:.5g}"
    text = safe(str(value))
    return text if len(text) <= 40 else text[:37] + "..."


def ago(t: float | None, now: float | None = None) -> str:
    if t is None:
        return "-"
    d = (time.time() if now is None else now) - t
    if d < 90:
        return f"{d:.0f}s ago"
    if d < 5400:
        return f"{d / 60:.0f}m ago"
    if d < 172800:
        return f"{d / 3600:.1f}h ago"
    return time.strftime("%Y-%m-%d", time.localtime(t))


def duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def byte_size(n: float) -> str:
    """``n`` bytes in B, KiB, MiB or GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[bool] | None = None) -> str:
    """Align columns; numeric-looking columns are right-aligned unless ``right`` says otherwise."""
    cells = [[safe(h) for h in headers]] + [[safe(c) if isinstance(c, str) else fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if right is None:
        right = [all(_numeric(r[i]) for r in cells[1:]) and len(cells) > 1 for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right)]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return text in ("-", "NaN", "inf", "-inf")


_SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int = 24) -> str:
    """A terminal sparkline of ``values`` squeezed into ``width`` characters (mean per bucket)."""
    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return ""
    if len(vals) > width:
        size = len(vals) / width
        vals = [
            sum(vals[int(i * size) : max(int((i + 1) * size), int(i * size) + 1)])
            / len(vals[int(i * size) : max(int((i + 1) * size), int(i * size) + 1)])
            for i in range(width)
        ]
    lo, hi = min(vals), max(vals)
    span = hi - lo or 1.0
    return "".join(_SPARK[min(7, int((v - lo) / span * 7.999))] for v in vals)


def _rank(r: Any) -> int | None:
    """A rank column of a group row: -1 (no such rank, e.g. no finite value at the step) is missing."""
    return int(r) if r >= 0 else None


def group_table(g: Any, keys: list[str] | None = None) -> tuple[list[str], list[list[Any]]]:
    """The per-key table of ``rankwise show``: the last group row of every key, and a trend of the mean.
    mean/min/max/std are over the ranks' finite values; ``non-finite`` counts the ranks whose value was NaN
    or ±inf at that step and ``first nf rank`` is the lowest of them (docs: README "Group rows")."""
    headers = [
        "key",
        "step",
        "ranks",
        "mean",
        "min",
        "min rank",
        "max",
        "max rank",
        "std",
        "non-finite",
        "first nf rank",
        "trend (mean)",
    ]
    rows = []
    for key in keys or g.keys():
        h = g.history(key)
        if len(h["step"]) == 0:
            continue
        i = len(h["step"]) - 1
        rows.append(
            [
                key,
                int(h["step"][i]),
                f"{int(h['count'][i])}/{int(h['expected'][i])}",
                float(h["mean"][i]),
                float(h["min"][i]),
                _rank(h["min_rank"][i]),
                float(h["max"][i]),
                _rank(h["max_rank"][i]),
                float(h["std"][i]),
                int(h["nan_count"][i]),
                _rank(h["nan_rank"][i]),
                sparkline(h["mean"].tolist()),
            ]
        )
    return headers, rows
