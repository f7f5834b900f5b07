"""3. Agent throughput: scalar points per second stored by one agent with 1/4/8/16 rank processes.

Every rank logs as fast as it can for a fixed time (the tight loop of
benchmark 2) and then finishes; a point is one key of one row (``_timestamp``
and ``_runtime`` are not counted). *Offered* = points logged / loop time;
*stored* = the same points / time until the last rank's ``finish()`` returned,
i.e. until the agent had committed and acknowledged all of them. The agent is
started fresh for each configuration so its CPU% (over that window, 100 % = one
core) and peak RSS (VmHWM) belong to that configuration alone. Zero loss is
verified by counting stored rows per rank and key.

On a machine with fewer cores than ranks + agent, ranks and agent share the
CPU: the stored rate then says what the whole node sustains, the agent's CPU%
says how much of it the agent needed.
"""

from __future__ import annotations

from typing import Any

NAME = "agent_throughput"
TITLE = "3. Agent throughput: points/s stored, N rank processes logging flat out"


def params(quick: bool) -> dict[str, Any]:
    if quick:
        return {"duration_s": 0.4, "configs": [(2, 4)]}
    return {"duration_s": 2.0, "configs": [(1, 4), (4, 4), (8, 4), (16, 4), (8, 32)]}


def run(ctx: Any) -> dict:
    from benchmarks._harness import Sandbox
    from benchmarks.calls_per_second import run_ranks

    p = params(ctx.quick)
    configs = []
    for ranks, keys in p["configs"]:
        with Sandbox(f"{NAME}-{ranks}x{keys}") as box:
            pid = box.start_agent()
            configs.append(run_ranks(box, ranks, p["duration_s"], keys, f"tp-{ranks}x{keys}", ctx.timeout(180), pid))
    return {"params": {"duration_s": p["duration_s"], "configs": [list(c) for c in p["configs"]]}, "configs": configs}


def render(r: dict) -> list[str]:
    from benchmarks._table import mb, ms, pct, rate, render_grid

    header = ["ranks × keys", "offered", "stored", "stored rows/s", "drain after loop", "rank CPU/row", "agent CPU",
              "agent peak RSS",
              "commits", "in commit", "written", "lost"]
    body = []
    for c in r["configs"]:
        loss = c["loss"]
        counters = c["agent"].get("counters", {})
        lost = "0" if loss["lost_points"] == 0 and loss["exact"] else f"{loss['lost_points']} (exact={loss['exact']})"
        body.append([
            f"{c['ranks']} × {c['keys']}",
            rate(c["offered_points_per_s"], " pts/s"),
            rate(c["stored_points_per_s"], " pts/s"),
            rate(c["aggregate_sustained_per_s"], " rows/s"),
            ms(c["done_s"] - c["loop_s"]),
            f"{c['client_cpu_us_per_call']:.1f} µs",
            pct(c["agent"]["cpu_percent"]),
            mb(c["agent"]["peak_rss_mb"]),
            f"{counters.get('commits', 0):,}",
            ms(counters.get("commit_us", 0) / 1e6),
            mb(c["agent"].get("write_chars_mb")),
            lost,
        ])  # fmt: skip
    total = sum(c["loss"]["stored_points"] for c in r["configs"])
    return render_grid(header, body) + [
        f"  {r['params']['duration_s']:.1f} s loop per configuration; {total:,} points stored and counted in all; "
        "rank CPU/row: a rank process's CPU per logged row; agent CPU: 100 % = one core; 'in commit': the agent's time in store transactions (its own counter); "
        "'written': bytes the agent passed to write() (store + WAL + checkpoints)"
    ]
