"""4. End-to-end latency: from ``log()`` in a rank to the row being visible through ``rankwise.Api``.

A rank logs ``{"seq": k, "t_sent": perf_counter()}`` at a modest, jittered rate
(~40 rows/s, so the phase against the I/O thread's flush timer is random). The
orchestrator polls the store through ``Api`` in a loop and, when row ``k``
first shows up, takes ``t_seen`` = the end of that poll. Latency =
``t_seen − t_sent``: both clocks are ``perf_counter()`` (CLOCK_MONOTONIC, one
clock for all processes on Linux). The end, not the start: the read's snapshot
is taken somewhere inside the poll, so a row logged after the poll started can
still be in it (on a loaded machine a read takes tens of ms); only the end is
certain to follow the row's visibility, so the figure is an upper bound and
never negative. One poll (reported) bounds the error. The path measured: deque → I/O thread (wakes every
``flush_interval_s``) → batch → agent → SQLite commit → visible to a reader.
"""

from __future__ import annotations

from typing import Any

NAME = "e2e_latency"
TITLE = "4. End-to-end latency: log() → visible in rankwise.Api"


def params(quick: bool) -> dict[str, Any]:
    return {"samples": 25 if quick else 100, "interval_ms": [15.0, 35.0]}


def paced(args: dict, barrier: Any) -> dict:
    """Worker: log one timestamped row at a time, at random intervals."""
    import random
    import time
    from time import perf_counter

    import rankwise

    run = rankwise.init(project="bench", group=args["group"], rank=0, world_size=1)
    for _ in range(3):  # warm-up rows (seq -1): the first call of a key set takes the slow path
        run.log({"seq": -1, "t_sent": 0.0})
    run.flush()
    barrier.wait()
    rng = random.Random(42)
    lo, hi = args["interval_ms"]
    for k in range(args["samples"]):
        time.sleep(rng.uniform(lo, hi) / 1000)
        run.log({"seq": k, "t_sent": perf_counter()})
    t0 = perf_counter()
    run.finish()
    return {"finish_s": perf_counter() - t0, "rows_logged": args["samples"] + 3}


def run(ctx: Any) -> dict:
    import time
    from time import perf_counter

    import numpy as np

    import rankwise
    from benchmarks._harness import BenchError, Sandbox, check_loss
    from benchmarks._stats import summary

    p = params(ctx.quick)
    group = "e2e"
    with Sandbox(NAME) as box:
        box.start_agent()
        w = box.worker(f"{NAME}:paced", dict(p, group=group))
        w.wait_ready(ctx.timeout(60))
        api = rankwise.Api(box.data)
        try:
            rv = api.group("bench", group).run(rank=0)
            seen: dict[int, float] = {}
            polls: list[float] = []
            w.go()
            deadline = time.monotonic() + 30 + p["samples"] * p["interval_ms"][1] / 1000
            while len(seen) < p["samples"]:
                if time.monotonic() > deadline:
                    raise BenchError(f"only {len(seen)} of {p['samples']} rows became visible")
                t_start = perf_counter()
                cols = rv.history_arrays(["seq", "t_sent"])
                t_poll = perf_counter()
                polls.append(t_poll - t_start)
                if "seq" in cols:
                    seqs = np.asarray(cols["seq"][1]).tolist()
                    sent = np.asarray(cols["t_sent"][1]).tolist()
                    for s, t in zip(seqs, sent):
                        if s >= 0 and s not in seen:
                            seen[s] = t_poll - t
                time.sleep(0.0005)
        finally:
            api.close()
        res = w.result(ctx.timeout(60))
        loss = check_loss(box, "bench", group, ("seq", "t_sent"), {0: res["rows_logged"]})
    lat = [seen[k] for k in sorted(seen)]
    return {
        "params": p,
        "latency_s": summary(lat),
        "p50_s": float(np.percentile(lat, 50)),
        "p99_s": float(np.percentile(lat, 99, method="higher")),
        "poll_s": summary(polls),
        "finish_s": res["finish_s"],
        "loss": loss,
    }


def rows(r: dict) -> list:
    from benchmarks._table import loss_note, ms

    lat = r["latency_s"]
    return [
        (
            "samples",
            str(lat["n"]),
            f"one row every {r['params']['interval_ms'][0]:.0f}–{r['params']['interval_ms'][1]:.0f} ms",
        ),
        ("p50", ms(r["p50_s"]), ""),
        ("p99", ms(r["p99_s"]), f"min {ms(lat['min'])}, max {ms(lat['max'])}"),
        ("poll resolution", ms(r["poll_s"]["median"] + 0.0005), "one Api read + 0.5 ms sleep; bounds the error"),
        ("loss", str(r["loss"]["lost_points"]), loss_note(r["loss"])),
    ]
