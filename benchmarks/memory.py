"""7. Resident memory of a client process around a million ``log()`` calls, and of the agent.

The worker reads its own RSS (``/proc/self/statm``) at each stage: bare
interpreter (plus this harness), after ``import rankwise``, after ``init()``,
right after 1M calls in a tight loop (whatever the I/O thread has not yet
turned into batches is still queued as Python objects), after ``flush()``
(everything stored), and its peak (VmHWM). The agent's RSS and peak are taken
with psutil / VmHWM after the client finished.

The op queue is bounded (``max_queued_bytes``, 32 MiB by default): past it the
client coalesces rows into spans (client/coalesce.py). The worker samples the
queue every 4096 calls (its peak, in calls and as the writer's byte estimate) and
the RSS, and reports the overhead over the after-init baseline (goal ≤ 64 MB)
and how many rows were coalesced. Stored points count spans by their counts.
"""

from __future__ import annotations

from typing import Any

NAME = "memory"
TITLE = "7. RSS: client process around 1M log() calls, and the agent"
KEYS = ("loss", "acc", "lr", "step")


def params(quick: bool) -> dict[str, int]:
    return {"calls": 100_000 if quick else 1_000_000}


def client_rss(args: dict, barrier: Any) -> dict:
    """Worker: RSS at each stage of a 1M-call run."""
    import gc
    from time import perf_counter

    from benchmarks._worker import peak_rss_bytes, rss_bytes

    mb = 1 / 2**20
    out: dict[str, Any] = {"bare_mb": rss_bytes() * mb}
    import rankwise

    out["after_import_mb"] = rss_bytes() * mb
    run = rankwise.init(project="bench", group=args["group"], rank=0, world_size=1)
    log = run.log
    out["after_init_mb"] = rss_bytes() * mb
    n = args["calls"]
    writer = run._writer
    ops = getattr(writer, "ops", ())
    peak_items = 0
    peak_loop_rss = 0
    t0 = perf_counter()
    for j in range(0, n, 4096):
        for i in range(j, min(n, j + 4096)):
            log({"loss": 1.0 / (i + 1), "acc": 0.5, "lr": 3e-4, "step": i})
        if len(ops) > peak_items:
            peak_items = len(ops)
        if not j & 0x3FFFF:  # every 256k calls: the RSS (a read of /proc, not free)
            peak_loop_rss = max(peak_loop_rss, rss_bytes())
    out["loop_s"] = perf_counter() - t0
    out["backlog_ops_at_loop_end"] = len(ops)
    out["after_logs_mb"] = rss_bytes() * mb
    op_bytes = getattr(writer, "_op_bytes", 0.0)
    out["queued_calls_at_loop_end"] = len(ops) // 4
    out["queued_calls_peak_sampled"] = peak_items // 4
    out["queued_mb_peak_sampled"] = peak_items // 4 * op_bytes * mb
    out["max_queued_mb"] = run.settings.max_queued_bytes * mb if hasattr(run.settings, "max_queued_bytes") else None
    out["loop_rss_peak_sampled_mb"] = max(peak_loop_rss * mb, out["after_logs_mb"])
    run.flush()
    out["after_flush_mb"] = rss_bytes() * mb
    gc.collect()
    out["after_gc_mb"] = rss_bytes() * mb
    run.finish()
    out["after_finish_mb"] = rss_bytes() * mb
    peak = peak_rss_bytes()
    # VmHWM and statm come from counters the kernel updates at different moments
    # (per-CPU RSS batching), so VmHWM can lag a statm sample by a few pages.
    sampled = max(v for k, v in out.items() if k.endswith("_mb"))
    out["peak_mb"] = None if peak is None else max(peak * mb, sampled)
    out["rows_logged"] = n
    out["overhead_peak_mb"] = out["peak_mb"] - out["after_init_mb"] if out["peak_mb"] is not None else None
    stats = run.stats
    for k in ("overloads", "coalesced_rows", "coalesced_spans", "queued_peak_bytes"):
        out[k] = stats.get(k, 0)
    return out


def run(ctx: Any) -> dict:
    from benchmarks._harness import ProcWatch, Sandbox
    from benchmarks.calls_per_second import check_loss_coalesced as check_loss

    p = params(ctx.quick)
    with Sandbox(NAME) as box:
        pid = box.start_agent()
        watch = ProcWatch(pid).start()
        agent_idle_mb = watch.proc.memory_info().rss / 2**20
        res = box.worker(f"{NAME}:client_rss", {"group": "mem", "calls": p["calls"]}).result(ctx.timeout(240))
        res["agent"] = watch.stop()
        res["agent"]["idle_rss_mb"] = agent_idle_mb
        # the idle reading is a sample too (VmHWM can lag a statm reading by a few pages)
        res["agent"]["peak_rss_mb"] = max(res["agent"]["peak_rss_mb"], agent_idle_mb)
        res["loss"] = check_loss(box, "bench", "mem", KEYS, {0: res["rows_logged"]})
    res["params"] = p
    return res


def rows(r: dict) -> list:
    from benchmarks._table import loss_note, mb

    n = r["params"]["calls"]
    return [
        ("client: interpreter + harness", mb(r["bare_mb"]), ""),
        ("client: after import rankwise", mb(r["after_import_mb"]), ""),
        ("client: after init()", mb(r["after_init_mb"]), "transport loaded, I/O thread running"),
        (
            f"client: right after {n:,} calls",
            mb(r["after_logs_mb"]),
            f"{r.get('queued_calls_at_loop_end', r['backlog_ops_at_loop_end'] // 4):,} calls still queued for the I/O thread",
        ),
        ("client: after flush()", mb(r["after_flush_mb"]), f"after gc.collect(): {mb(r['after_gc_mb'])}"),
        ("client: peak (VmHWM)", mb(r["peak_mb"]), ""),
        ("client: overhead (peak − after init)", mb(r.get("overhead_peak_mb")), "goal ≤ 64 MB at any call rate"),
        (
            "client: op queue, sampled peak",
            f"{r.get('queued_calls_peak_sampled', 0):,} calls",
            f"~{r.get('queued_mb_peak_sampled', 0):.1f} MB (writer's peak estimate "
            f"{r.get('queued_peak_bytes', 0) / 2**20:.1f} MB); bound max_queued_bytes = {mb(r.get('max_queued_mb'))}",
        ),
        (
            "client: coalesced under overload",
            f"{r.get('coalesced_rows', 0):,} rows",
            f"into {r.get('coalesced_spans', 0):,} spans, {r.get('overloads', 0)} overload(s)",
        ),
        (
            "agent: idle / after the run",
            f"{mb(r['agent']['idle_rss_mb'])} / {mb(r['agent']['rss_mb'])}",
            f"peak {mb(r['agent']['peak_rss_mb'])}",
        ),
        ("loss", str(r["loss"]["lost_points"]), loss_note(r["loss"])),
    ]
