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

Memory (issue 11, goal: agent ≤ 150 MB RSS at any load): the agent's peak RSS
per configuration (VmHWM, a fresh agent each) is checked against the goal, with
what the agent's own status says it held at most: applied-but-uncommitted bytes
(budget ``RANKWISE_AGENT_PENDING_BYTES``) and its write-ahead log at the end
(bounded by ``RANKWISE_WAL_MAX_BYTES``).
"""

from __future__ import annotations

from typing import Any

RSS_GOAL_MB = 150.0  # benchmarks.TARGETS["agent_peak_rss_mb"]

NAME = "agent_throughput"
TITLE = "3. Agent throughput: points/s stored, N rank processes logging flat out"


def params(quick: bool) -> dict[str, Any]:
    if quick:
        return {"duration_s": 0.4, "configs": [(2, 4)]}
    return {"duration_s": 2.0, "configs": [(1, 4), (4, 4), (8, 4), (16, 4), (8, 32), (8, 128)]}


def run(ctx: Any) -> dict:
    from benchmarks._harness import Sandbox
    from benchmarks.calls_per_second import run_ranks

    p = params(ctx.quick)
    configs = []
    for ranks, keys in p["configs"]:
        with Sandbox(f"{NAME}-{ranks}x{keys}") as box:
            pid = box.start_agent()
            cfg = run_ranks(box, ranks, p["duration_s"], keys, f"tp-{ranks}x{keys}", ctx.timeout(180), pid)
            cfg["agent"].update(_memory(box))
            # the peak includes what the agent does after the last finish(): sealing the open windows
            cfg["agent"]["peak_rss_mb"] = max(cfg["agent"]["peak_rss_mb"], cfg["agent"]["status_peak_rss_mb"] or 0)
            configs.append(cfg)
    return {"params": {"duration_s": p["duration_s"], "configs": [list(c) for c in p["configs"]]}, "configs": configs}


def _memory(box: Any, timeout_s: float = 60.0) -> dict:
    """What the agent says it held (its status, once it has sealed and committed everything) and its WAL."""
    import time

    from rankwise._control import request

    deadline = time.monotonic() + timeout_s
    while True:
        st = request("status", runtime_dir=box.runtime, timeout_s=5.0) or {}
        if (not st.get("window_bytes") and not st.get("pending_points")) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    wal = box.store.with_name(box.store.name + "-wal")
    return {
        "pending_bytes_max": st.get("pending_bytes_max"),
        "pending_budget_bytes": st.get("pending_budget_bytes"),
        "status_peak_rss_mb": (st["peak_rss_bytes"] / 2**20) if st.get("peak_rss_bytes") else None,
        "wal_mb": wal.stat().st_size / 2**20 if wal.exists() else 0.0,
    }


def peak_rss_check(r: dict, targets: dict) -> tuple[str, float, float, str]:
    """The target line: the highest agent peak RSS over every configuration against the goal."""
    worst = max(r["configs"], key=lambda c: c["agent"]["peak_rss_mb"])
    label = f"agent peak RSS ≤ {targets['agent_peak_rss_mb']:.0f} MB (worst: {worst['ranks']} × {worst['keys']})"
    return label, worst["agent"]["peak_rss_mb"], targets["agent_peak_rss_mb"], "MB"


def render(r: dict) -> list[str]:
    from benchmarks._table import mb, ms, pct, rate, render_grid

    header = [
        "ranks × keys",
        "offered",
        "stored",
        "stored rows/s",
        "drain after loop",
        "rank CPU/row",
        "agent CPU",
        f"agent peak RSS (≤ {RSS_GOAL_MB:.0f} MB)",
        "max pending",
        "WAL at end",
        "commits",
        "in commit",
        "written",
        "lost",
    ]
    body = []
    for c in r["configs"]:
        loss = c["loss"]
        counters = c["agent"].get("counters", {})
        lost = "0" if loss["lost_points"] == 0 and loss["exact"] else f"{loss['lost_points']} (exact={loss['exact']})"
        body.append(
            [
                f"{c['ranks']} × {c['keys']}",
                rate(c["offered_points_per_s"], " pts/s"),
                rate(c["stored_points_per_s"], " pts/s"),
                rate(c["aggregate_sustained_per_s"], " rows/s"),
                ms(c["done_s"] - c["loop_s"]),
                f"{c['client_cpu_us_per_call']:.1f} µs",
                pct(c["agent"]["cpu_percent"]),
                mb(c["agent"]["peak_rss_mb"]) + ("" if c["agent"]["peak_rss_mb"] <= RSS_GOAL_MB else " (over)"),
                mb(c["agent"]["pending_bytes_max"] / 2**20) if c["agent"].get("pending_bytes_max") is not None else "–",
                mb(c["agent"].get("wal_mb")),
                f"{counters.get('commits', 0):,}",
                ms(counters.get("commit_us", 0) / 1e6),
                mb(c["agent"].get("write_chars_mb")),
                lost,
            ]
        )
    total = sum(c["loss"]["stored_points"] for c in r["configs"])
    return render_grid(header, body) + [
        f"  {r['params']['duration_s']:.1f} s loop per configuration; {total:,} points stored and counted in all; "
        "rank CPU/row: a rank process's CPU per logged row; agent CPU: 100 % = one core; 'in commit': the agent's time in store transactions (its own counter); "
        "'written': bytes the agent passed to write() (store + WAL + checkpoints); "
        "max pending: the agent's high-water mark of applied-but-uncommitted bytes (its budget: "
        f"{_budget(r)}); WAL at end: the store's write-ahead log after the last commit"
    ]


def _budget(r: dict) -> str:
    budgets = {c["agent"].get("pending_budget_bytes") for c in r["configs"]} - {None}
    return ", ".join(f"{b / 2**20:.0f} MB" for b in sorted(budgets)) or "unknown"
