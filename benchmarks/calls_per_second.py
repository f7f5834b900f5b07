"""2. Sustained ``log()`` calls per second per rank in a tight loop: 1 rank, and 8 ranks at once.

Each rank logs a fresh 4-scalar dict per call for a fixed time, then calls
``finish()``. Two rates per rank: *loop* = calls / loop time (what the training
thread can issue), *sustained* = calls / (loop + finish) — everything stored and
acknowledged, so a backlog the I/O thread has not worked off does not count.
After the ranks exit, every rank's rows are counted in the store through
``rankwise.Api`` (sent = stored, steps exactly 0..n-1; rows the client coalesced
into spans because the loop outran its I/O thread count by their spans' counts:
``check_loss_coalesced``). Each rank also reports its op queue at the loop's end
(calls and an estimate in MB, bounded by ``max_queued_bytes``), its RSS then, and
how many rows were coalesced (client/coalesce.py).

The same worker (``tight``) drives the agent-throughput benchmark.
"""

from __future__ import annotations

from typing import Any

NAME = "calls_per_second"
TITLE = "2. Sustained log() calls/s per rank, tight loop (1 rank; 8 ranks at once)"
KEYS4 = ("loss", "acc", "lr", "step")


def key_names(n: int) -> tuple[str, ...]:
    """4 keys: the latency benchmark's dict; more: those plus ``m4``, ``m5``, … (wide rows)."""
    return KEYS4 if n == 4 else KEYS4 + tuple(f"m{i}" for i in range(4, n))


def params(quick: bool) -> dict[str, Any]:
    # --quick is a smoke run: 4 ranks stand in for 8 (spawning 8 interpreters dominates a short run)
    return {"duration_s": 0.4, "ranks": [1, 4]} if quick else {"duration_s": 2.5, "ranks": [1, 8]}


def _cpu_s() -> float:
    """CPU time of this whole process (training thread + I/O thread), user + system."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def tight(args: dict, barrier: Any) -> dict:
    """Worker: log as fast as possible for ``duration_s``, finish, report counts and times."""
    from time import perf_counter

    import rankwise

    run = rankwise.init(project="bench", group=args["group"], rank=args["rank"], world_size=args["world"])
    log = run.log
    nkeys = args.get("keys", 4)
    base = dict.fromkeys(key_names(nkeys), 0.5)
    warm = 1000
    for i in range(warm):
        d = base.copy()
        d["step"] = i
        log(d)
    run.flush()
    t_go = barrier.wait() if args.get("barrier") else perf_counter()
    cpu0 = _cpu_s()
    t_end = t_go + args["duration_s"]
    i = 0
    if nkeys == 4:
        while True:
            for _ in range(1000):
                log({"loss": 1.0 / (i + 1), "acc": 0.5, "lr": 3e-4, "step": i})
                i += 1
            if perf_counter() >= t_end:
                break
    else:
        while True:
            for _ in range(1000):
                d = base.copy()
                d["loss"] = 1.0 / (i + 1)
                d["step"] = i
                log(d)
                i += 1
            if perf_counter() >= t_end:
                break
    t_loop = perf_counter()
    writer = run._writer
    backlog = len(getattr(writer, "ops", ()))
    queued_mb = writer.queued_bytes() / 2**20 if hasattr(writer, "queued_bytes") else None
    rss_loop_mb = _rss_mb()
    run.finish()
    t_done = perf_counter()
    cpu = _cpu_s() - cpu0
    return {
        "rank": args["rank"],
        "calls": i,
        "rows_logged": i + warm,
        "t_go": t_go,
        "t_loop_end": t_loop,
        "t_done": t_done,
        "loop_s": t_loop - t_go,
        "finish_s": t_done - t_loop,
        "calls_per_s": i / (t_loop - t_go),
        "sustained_per_s": i / (t_done - t_go),
        "backlog_ops_at_loop_end": backlog,
        "queued_calls_at_loop_end": backlog // 4,  # (the deque holds four items per call)
        "queued_mb_at_loop_end": queued_mb,
        "rss_mb_at_loop_end": rss_loop_mb,
        "cpu_s": cpu,
        "cpu_us_per_call": cpu / i * 1e6,
        "stats": run.stats,
    }


def _rss_mb() -> float | None:
    try:
        from benchmarks._worker import rss_bytes

        return rss_bytes() / 2**20
    except Exception:  # noqa: BLE001 - a number for the report, never a reason to fail the run
        return None


def check_loss_coalesced(box: Any, project: str, group: str, keys: Any, sent: dict[int, int]) -> dict:
    """``check_loss``, where a span (rows coalesced by the client under overload, or by the agent's row
    budget) counts as the rows it stands for: per key, stored points not at a span's step plus the spans'
    counts; ``exact`` also asks that rows and spans cover steps 0..n-1 exactly once."""
    import numpy as np

    import rankwise
    from benchmarks._harness import check_loss

    res = check_loss(box, project, group, keys, sent)
    api = rankwise.Api(box.reads)
    try:
        runs = list(api.group(project, group).runs)
        if not any(r.coalesced_rows[0] for r in runs):
            return res
        lost = stored = coalesced = 0
        exact = True
        for r in runs:
            n = sent.get(r.rank, 0)
            cols = r.history_arrays(list(keys))
            for k in keys:
                steps = np.asarray(cols[k][0]) if k in cols else np.empty(0, np.int64)
                sp = r.coalesced(k)
                covered = np.zeros(max(n, 1), dtype=np.int64)
                raw = steps[~np.isin(steps, sp["step"])] if sp else steps
                covered[raw[raw < n]] += 1
                for lo, hi in zip(sp.get("first_step", ()), sp.get("step", ())):
                    covered[lo : min(hi, n - 1) + 1] += 1
                got = len(raw) + (int(sp["count"].sum()) if sp else 0)
                coalesced += int(sp["count"].sum()) if sp else 0
                lost += max(0, n - got)
                stored += got
                exact = exact and r.rows == n and bool((covered[:n] == 1).all())
        res.update(
            lost_points=lost,
            stored_points=stored,
            coalesced_points=coalesced,
            exact=exact,
            extra_points=max(0, stored - res["sent_points"]),
        )
        return res
    finally:
        api.close()


def run_ranks(
    box: Any, ranks: int, duration_s: float, keys: int, group: str, timeout_s: float, agent_pid: int | None = None
) -> dict:
    """Start ``ranks`` tight workers together against ``box``'s agent; aggregate and check for loss."""
    from benchmarks._harness import ProcWatch, agent_counters, results, start_together

    workers = [
        box.worker(
            f"{NAME}:tight",
            {"group": group, "rank": r, "world": ranks, "keys": keys, "duration_s": duration_s, "barrier": True},
        )
        for r in range(ranks)
    ]
    watch = ProcWatch(agent_pid) if agent_pid else None
    for w in workers:
        w.wait_ready(timeout_s)
    if watch:
        watch.start()
    t_go = start_together(workers, timeout_s)
    res = results(workers, timeout_s)
    t_loop = max(r["t_loop_end"] for r in res)
    t_done = max(r["t_done"] for r in res)
    calls = sum(r["calls"] for r in res)
    out = {
        "ranks": ranks,
        "keys": keys,
        "duration_s": duration_s,
        "calls": calls,
        "per_rank_calls_per_s": [r["calls_per_s"] for r in res],
        "per_rank_sustained_per_s": [r["sustained_per_s"] for r in res],
        "mean_rank_calls_per_s": sum(r["calls_per_s"] for r in res) / ranks,
        "mean_rank_sustained_per_s": sum(r["sustained_per_s"] for r in res) / ranks,
        "aggregate_calls_per_s": calls / (t_loop - t_go),
        "aggregate_sustained_per_s": calls / (t_done - t_go),
        "offered_points_per_s": calls * keys / (t_loop - t_go),
        "stored_points_per_s": calls * keys / (t_done - t_go),
        "loop_s": t_loop - t_go,
        "done_s": t_done - t_go,
        "finish_s_max": max(r["finish_s"] for r in res),
        "backlog_ops_at_loop_end": sum(r["backlog_ops_at_loop_end"] for r in res),
        "queued_calls_at_loop_end": sum(r["queued_calls_at_loop_end"] for r in res),
        "queued_mb_at_loop_end_max": max((r["queued_mb_at_loop_end"] or 0.0) for r in res),
        "rss_mb_at_loop_end_max": max((r["rss_mb_at_loop_end"] or 0.0) for r in res),
        "coalesced_rows": sum(r["stats"].get("coalesced_rows", 0) for r in res),
        "coalesced_spans": sum(r["stats"].get("coalesced_spans", 0) for r in res),
        "overloads": sum(r["stats"].get("overloads", 0) for r in res),
        "queued_peak_mb_max": max(r["stats"].get("queued_peak_bytes", 0) for r in res) / 2**20,
        "resends": sum(r["stats"].get("resends", 0) for r in res),
        # what one logged row costs the rank process in CPU, wherever it runs: less sensitive to
        # other load on the machine than any rate
        "client_cpu_us_per_call": sum(r["cpu_s"] for r in res) / calls * 1e6,
    }
    if watch:
        out["agent"] = watch.stop(t_end=t_done)
        out["agent"].update(agent_counters(box))
    out["loss"] = check_loss_coalesced(box, "bench", group, key_names(keys), {r["rank"]: r["rows_logged"] for r in res})
    return out


def run(ctx: Any) -> dict:
    from benchmarks._harness import Sandbox

    p = params(ctx.quick)
    configs = []
    for ranks in p["ranks"]:
        with Sandbox(f"{NAME}-{ranks}") as box:
            pid = box.start_agent()
            configs.append(run_ranks(box, ranks, p["duration_s"], 4, f"cps-{ranks}", ctx.timeout(120), pid))
    return {"params": p, "configs": configs}


def rows(r: dict) -> list:
    from benchmarks._table import loss_note, ms, rate

    out = []
    for c in r["configs"]:
        n = c["ranks"]
        label = "1 rank" if n == 1 else f"{n} ranks, per rank (mean)"
        queued = c.get("queued_calls_at_loop_end", c["backlog_ops_at_loop_end"] // 4)
        out.append(
            (
                label + ": loop",
                rate(c["mean_rank_calls_per_s"], " calls/s"),
                f"{c['duration_s']:.1f} s loop; queue at loop end {queued:,} calls "
                f"(~{c.get('queued_mb_at_loop_end_max', 0):.1f} MB, peak ~{c.get('queued_peak_mb_max', 0):.1f} MB), "
                f"RSS {c.get('rss_mb_at_loop_end_max', 0):.0f} MB",
            )
        )
        if c.get("coalesced_rows"):
            who = "1 rank" if n == 1 else f"{n} ranks, all together"
            out.append(
                (
                    who + ": coalesced",
                    f"{c['coalesced_rows']:,} rows",
                    f"into {c['coalesced_spans']:,} spans over {c['overloads']} overload(s): the loop outran "
                    "the I/O thread (max_queued_bytes)",
                )
            )
        out.append(
            (
                label + ": sustained",
                rate(c["mean_rank_sustained_per_s"], " calls/s"),
                f"incl. finish() {ms(c['finish_s_max'])} until all acknowledged",
            )
        )
        out.append(
            (
                f"{n} rank{'s' if n > 1 else ''}: client CPU per call",
                f"{c['client_cpu_us_per_call']:.2f} µs",
                "rank process CPU (training + I/O thread) from start to finish() ÷ calls",
            )
        )
        if n > 1:
            out.append(
                (
                    f"{n} ranks, all together: sustained",
                    rate(c["aggregate_sustained_per_s"], " calls/s"),
                    f"loop {rate(c['aggregate_calls_per_s'], ' calls/s')}",
                )
            )
        out.append((f"{n} rank{'s' if n > 1 else ''}: loss", str(c["loss"]["lost_points"]), loss_note(c["loss"])))
    return out
