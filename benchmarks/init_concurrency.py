"""6b. ``init()`` of many ranks at once against a running agent.

N processes (200; 40 with ``--quick``) import rankwise and the transport
(numpy, zmq, msgpack: what a training process has loaded when it calls
``init()`` — see below for the cost of those imports), wait at a barrier, are
released together and each time ``init()`` up to the agent's WELCOME, then log
one row and ``finish()``. Reported: p50 / p99 / max of ``init()`` over the ranks,
the time from release until the last rank was registered, and the agent's
HELLO count (every rank registered exactly once) and stored rows (nothing lost).

A second phase (full runs only) releases the same number of ranks that import
the transport *inside* ``init()`` (a process that never loaded numpy): that is
CPU-bound, about 60–130 ms of imports per process, so on a machine with few
cores its time grows with N / cores. The agent handles a HELLO in about 0.15 ms
and takes no lock per registration, so it is not what a slow ``init()`` waits for.
"""

from __future__ import annotations

import time
from typing import Any

NAME = "init_concurrency"
TITLE = "6b. init() of many ranks at once, agent running"


def params(quick: bool) -> dict[str, Any]:
    return {"ranks": 40 if quick else 200, "cold_imports": not quick}


def rank_init(args: dict, barrier: Any) -> dict:
    """Worker: (optionally) import the transport, wait for the release, time init(), log, finish."""
    from time import perf_counter

    import rankwise

    if args.get("preimport", True):
        import msgpack  # noqa: F401
        import numpy  # noqa: F401
        import zmq  # noqa: F401

        from client import transport  # noqa: F401
    released = barrier.wait()
    t0 = perf_counter()
    run = rankwise.init(project="bench", group=args["group"], rank=args["rank"], world_size=args["world"])
    t1 = perf_counter()
    run.log({"x": float(args["rank"])})
    run.finish()
    return {
        "init_s": t1 - t0,
        "released": released,
        "registered": t1,
        "sent": run.stats["rows_sent"],
        "unacked": run.stats["unacked_rows"],
    }


def _phase(ctx: Any, box: Any, n: int, group: str, preimport: bool) -> dict:
    from benchmarks._harness import agent_counters, results, start_together, stored_counts
    from benchmarks._stats import summary

    hellos_before = agent_counters(box).get("counters", {}).get("hellos", 0)
    workers = [
        box.worker(f"{NAME}:rank_init", {"group": group, "rank": r, "world": n, "preimport": preimport})
        for r in range(n)
    ]
    release = start_together(workers, ready_timeout_s=ctx.timeout(600))
    res = results(workers, timeout_s=ctx.timeout(600))
    counters = agent_counters(box).get("counters", {})
    stored = stored_counts(box, "bench", group, ["x"])
    return {
        "ranks": n,
        "preimported_transport": preimport,
        "init_s": summary([r["init_s"] for r in res]),
        "all_registered_after_s": max(r["registered"] for r in res) - release,
        "hellos": counters.get("hellos", 0) - hellos_before,
        "sent_rows": sum(r["sent"] for r in res),
        "unacked_rows": sum(r["unacked"] for r in res),
        "stored_rows": sum(c["points"]["x"] for c in stored.values()),
    }


def run(ctx: Any) -> dict:
    from benchmarks._harness import Sandbox

    p = params(ctx.quick)
    out: dict[str, Any] = {"params": p, "phases": []}
    with Sandbox(NAME) as box:
        box.start_agent()
        t0 = time.perf_counter()
        out["phases"].append(_phase(ctx, box, p["ranks"], "warm", preimport=True))
        if p["cold_imports"]:
            out["phases"].append(_phase(ctx, box, p["ranks"], "cold", preimport=False))
        out["wall_s"] = time.perf_counter() - t0
    return out


def rows(r: dict) -> list:
    from benchmarks._table import ms

    lines = []
    for ph in r["phases"]:
        what = "transport loaded" if ph["preimported_transport"] else "imports inside init()"
        s = ph["init_s"]
        lines.append(
            (
                f"init(), {ph['ranks']} ranks at once, {what}",
                f"{ms(s['median'])} / {ms(s['p99'])} / {ms(s['max'])}",
                f"p50 / p99 / max; all registered {ms(ph['all_registered_after_s'])} after release; "
                f"{ph['hellos']} HELLOs, rows {ph['stored_rows']}/{ph['sent_rows']} stored",
            )
        )
    return lines
