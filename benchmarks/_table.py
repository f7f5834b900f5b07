"""Plain-text table of a benchmark run: machine, one section per benchmark, targets.

A section is a list of rows ``(label, value, note)``; values are already
formatted with their unit by the helpers below so that every benchmark prints
µs, ms, MB and rates the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Row = tuple[str, str, str]


def us(ns: float | None) -> str:
    if ns is None:
        return "-"
    v = ns / 1000.0
    return f"{v:.2f} µs" if v < 10 else (f"{v:.1f} µs" if v < 1000 else f"{v / 1000:.2f} ms")


def ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    v = seconds * 1000.0
    return f"{v:.2f} ms" if v < 10 else (f"{v:.1f} ms" if v < 1000 else f"{seconds:.2f} s")


def rate(per_s: float | None, unit: str = "/s") -> str:
    if per_s is None:
        return "-"
    if per_s >= 1e6:
        return f"{per_s / 1e6:.2f} M{unit}"
    if per_s >= 1e3:
        return f"{per_s / 1e3:.1f} k{unit}"
    return f"{per_s:.0f} {unit}"


def mb(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} MB"


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} %"


def ratio(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}×" if v >= 100 else (f"{v:.1f}×" if v >= 10 else f"{v:.2f}×")


def loss_note(loss: dict[str, Any] | None) -> str:
    if not loss:
        return ""
    if loss.get("lost_points") == 0 and loss.get("extra_points") == 0 and loss.get("exact"):
        return f"sent = stored ({loss['stored_points']:,} points)"
    return f"LOSS: sent {loss['sent_points']:,} stored {loss['stored_points']:,} points (exact={loss['exact']})"


def render_rows(rows: Iterable[Row], indent: str = "  ") -> list[str]:
    rows = list(rows)
    if not rows:
        return []
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    out = []
    for label, value, note in rows:
        line = f"{indent}{label:<{w0}}  {value:>{w1}}"
        if note:
            line += f"   {note}"
        out.append(line.rstrip())
    return out


def render_grid(header: list[str], body: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(str(r[i])) for r in [header] + body) for i in range(len(header))]
    lines = [indent + "  ".join(f"{h:<{w}}" if i == 0 else f"{h:>{w}}" for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append(indent + "  ".join("-" * w for w in widths))
    for r in body:
        lines.append(
            indent + "  ".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(r, widths)))
        )
    return [line.rstrip() for line in lines]


def machine_lines(m: dict[str, Any]) -> list[str]:
    return [
        f"machine  {m.get('cpu_model')} · {m.get('cores_logical')} logical cores"
        f" ({m.get('cores_physical')} physical) · {m.get('mem_total_gb', 0):.1f} GB · {m.get('platform')}",
        f"software Python {m.get('python')} ({m.get('python_impl')}) · numpy {m.get('numpy')} · pyzmq "
        f"{m.get('pyzmq')} (libzmq {m.get('libzmq')}) · msgpack {m.get('msgpack')} · rankwise {m.get('rankwise')}",
        f"load     {m.get('load_avg_start')} (1/5/15 min load average at start; other work on the machine "
        "skews every number)",
    ]
