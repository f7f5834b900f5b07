"""1. ``log()`` latency in the calling thread, with a live agent and I/O thread (the real situation).

The worker logs a fresh 4-scalar dict per call (``loss``, ``acc``, ``lr`` floats
and ``step`` int, built outside the timed region) and takes
``perf_counter_ns()`` around each ``run.log(d)``. The cost of the timer itself
is measured by the same loop with nothing between the two reads and reported
separately; "net" subtracts its median. A second phase times blocks of 1000
calls with one timer pair per block (no per-call timer at all). A third times
the module-level ``rankwise.log`` (what ``import rankwise as wandb`` scripts call).

Between phases the worker calls ``run.flush()`` so each phase starts with an
empty queue; how long that drain took says how far the I/O thread fell behind a
loop that does nothing but log. Garbage-collector pauses (any thread: they hold
the GIL) are timed through ``gc.callbacks``: they explain most of the tail.
Every row logged is then counted in the store (sent = stored).
"""

from __future__ import annotations

from typing import Any

NAME = "log_latency"
TITLE = "1. log() latency, 4-scalar dict, calling thread, live agent + I/O thread"
KEYS = ("loss", "acc", "lr", "step")


def params(quick: bool) -> dict[str, int]:
    if quick:
        return {"calls": 100_000, "overhead_calls": 50_000, "blocks": 50, "module_calls": 20_000, "budget_s": 20}
    return {"calls": 1_000_000, "overhead_calls": 300_000, "blocks": 300, "module_calls": 200_000, "budget_s": 60}


class GcTimer:
    """Collector pauses by generation (``gc.callbacks``), on whichever thread triggered them: a pause
    anywhere holds the GIL and so stops the training thread. Wall and CPU time are both kept: on a
    busy machine the wall time of a pause also contains time the OS gave to other processes."""

    def __init__(self) -> None:
        import gc
        import threading
        from time import perf_counter_ns, thread_time_ns

        self._gc = gc
        self._ident = threading.get_ident
        self._main = threading.main_thread().ident
        self._wall = perf_counter_ns
        self._cpu = thread_time_ns
        self._start: dict[int, tuple[int, int]] = {}
        self.pauses: dict[int, list[tuple[int, int, bool]]] = {0: [], 1: [], 2: []}

    def __call__(self, phase: str, info: dict) -> None:
        tid = self._ident()
        if phase == "start":
            self._start[tid] = (self._wall(), self._cpu())
        elif tid in self._start:
            w0, c0 = self._start.pop(tid)
            self.pauses.setdefault(info["generation"], []).append(
                (self._wall() - w0, self._cpu() - c0, tid == self._main)
            )

    def __repr__(self) -> str:
        return f"<GcTimer pauses={ {g: len(p) for g, p in self.pauses.items()} }>"

    def __enter__(self) -> GcTimer:
        self._gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._gc.callbacks.remove(self)

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for gen, p in sorted(self.pauses.items()):
            out[f"gen{gen}"] = {
                "count": len(p),
                "on_main_thread": sum(1 for x in p if x[2]),
                "total_ms": sum(x[0] for x in p) / 1e6,
                "cpu_ms": sum(x[1] for x in p) / 1e6,
                "max_ms": max((x[0] for x in p), default=0) / 1e6,
            }
        return out


def measure(args: dict, barrier: Any) -> dict:
    """Worker: the three timed phases against a live agent."""
    import time
    from array import array
    from time import perf_counter_ns as pc

    import numpy as np

    import rankwise
    from benchmarks._stats import dist_ns

    run = rankwise.init(project="bench", group=args["group"], rank=0, world_size=1)
    log = run.log
    logged = 0
    for i in range(2000):  # warm-up: the first call of a key set takes the validating slow path
        log({"loss": 1.0 / (i + 1), "acc": 0.5, "lr": 3e-4, "step": i})
    logged += 2000
    run.flush()

    n_ov = args["overhead_calls"]
    ov = array("q", bytes(8 * n_ov))
    for i in range(n_ov):  # same loop, nothing timed: what the two timer reads cost
        d = {"loss": 1.0 / (i + 1), "acc": 0.5, "lr": 3e-4, "step": i}
        t0 = pc()
        t1 = pc()
        ov[i] = t1 - t0

    n = args["calls"]
    lat = array("q", bytes(8 * n))
    t_start = time.perf_counter()
    deadline = t_start + args["budget_s"]  # a guard for very slow machines; the count says what ran
    done = 0
    with GcTimer() as gct:
        while done < n:
            end = min(n, done + 4096)
            for i in range(done, end):
                d = {"loss": 1.0 / (i + 1), "acc": 0.5, "lr": 3e-4, "step": i}
                t0 = pc()
                log(d)
                t1 = pc()
                lat[i] = t1 - t0
            done = end
            if time.perf_counter() > deadline:
                break
    loop_s = time.perf_counter() - t_start
    n = done
    logged += n
    backlog = len(getattr(run._writer, "ops", ()))
    t_flush = time.perf_counter()
    run.flush()
    drain_s = time.perf_counter() - t_flush

    # blocks of 1000 calls, one timer pair per block; dicts built before the block
    blocks = args["blocks"]
    block_ns = []
    loop_ns = []
    for b in range(blocks):
        ds = [{"loss": 1.0 / (j + 1), "acc": 0.5, "lr": 3e-4, "step": j} for j in range(1000)]
        t0 = pc()
        for d in ds:
            log(d)
        t1 = pc()
        block_ns.append((t1 - t0) / 1000)
        t0 = pc()
        for _d in ds:  # the bare loop, for reference
            pass
        t1 = pc()
        loop_ns.append((t1 - t0) / 1000)
        if b % 100 == 99:
            run.flush()  # keep the queue short, as a training loop at a realistic rate would
    logged += blocks * 1000
    run.flush()

    m = args["module_calls"]
    mod = array("q", bytes(8 * m))
    rlog = rankwise.log
    for i in range(m):
        d = {"loss": 1.0 / (i + 1), "acc": 0.5, "lr": 3e-4, "step": i}
        t0 = pc()
        rlog(d)
        t1 = pc()
        mod[i] = t1 - t0
    logged += m

    t_fin = time.perf_counter()
    run.finish()
    finish_s = time.perf_counter() - t_fin

    lat_a = np.frombuffer(lat, dtype=np.int64)[:n]
    ov_d = dist_ns(np.frombuffer(ov, dtype=np.int64))
    lat_d = dist_ns(lat_a)
    blk = np.asarray(block_ns)
    return {
        "log": lat_d,
        "timer_overhead": ov_d,
        "net_p50_ns": lat_d["p50_ns"] - ov_d["p50_ns"],
        "net_p99_ns": lat_d["p99_ns"] - ov_d["p50_ns"],
        "net_p999_ns": lat_d["p999_ns"] - ov_d["p50_ns"],
        "blocks": {
            "n": blocks,
            "per_call_median_ns": float(np.median(blk)),
            "per_call_mean_ns": float(blk.mean()),
            "per_call_min_ns": float(blk.min()),
            "per_call_max_ns": float(blk.max()),
            "bare_loop_per_iter_ns": float(np.median(loop_ns)),
        },
        "module_log": dist_ns(np.frombuffer(mod, dtype=np.int64)),
        "gc": gct.report(),
        "loop_s": loop_s,
        "calls_per_s_timed_loop": n / loop_s,
        "backlog_ops_at_loop_end": backlog,
        "drain_s": drain_s,
        "finish_s": finish_s,
        "rows_logged": logged,
        "calls_requested": args["calls"],
        "budget_hit": n < args["calls"],
        "stats": run.stats,
    }


def run(ctx: Any) -> dict:
    from benchmarks._harness import ProcWatch, Sandbox, check_loss

    p = params(ctx.quick)
    with Sandbox(NAME) as box:
        pid = box.start_agent()
        watch = ProcWatch(pid).start()
        group = "log-latency"
        res = box.worker(f"{NAME}:measure", dict(p, group=group)).result(ctx.timeout(300))
        res["agent"] = watch.stop()
        res["loss"] = check_loss(box, "bench", group, KEYS, {0: res["rows_logged"]})
    res["params"] = p
    return res


def rows(r: dict) -> list:
    from benchmarks._table import loss_note, ms, pct, rate, us

    lat, ov, blk, gc = r["log"], r["timer_overhead"], r["blocks"], r["gc"]
    g2 = gc.get("gen2", {})
    return [
        (
            "calls timed",
            f"{lat['n']:,}",
            f"fresh dict per call; {rate(r['calls_per_s_timed_loop'], ' calls/s')} in the timed loop"
            + (f" (stopped by the {r['params']['budget_s']} s budget)" if r["budget_hit"] else ""),
        ),
        ("p50", us(lat["p50_ns"]), f"net of timer: {us(r['net_p50_ns'])}"),
        ("p90", us(lat["p90_ns"]), ""),
        ("p99", us(lat["p99_ns"]), f"net of timer: {us(r['net_p99_ns'])}"),
        ("p99.9", us(lat["p999_ns"]), f"net of timer: {us(r['net_p999_ns'])}"),
        ("p99.99", us(lat["p9999_ns"]), ""),
        (
            "max",
            us(lat["max_ns"]),
            f"{lat['over_100us']:,} calls > 100 µs ({lat['time_over_100us_ms']:.0f} ms in total), "
            f"{lat['over_1ms']:,} > 1 ms",
        ),
        ("mean", us(lat["mean_ns"]), ""),
        (
            "timer overhead p50 / p99",
            f"{us(ov['p50_ns'])} / {us(ov['p99_ns'])}",
            "perf_counter_ns pair with nothing between",
        ),
        (
            "mean over 1000-call blocks",
            us(blk["per_call_median_ns"]),
            f"median of {blk['n']} blocks (mean {us(blk['per_call_mean_ns'])}, worst {us(blk['per_call_max_ns'])}; "
            f"bare loop {us(blk['bare_loop_per_iter_ns'])}/iter)",
        ),
        ("rankwise.log (module) p50 / p99", f"{us(r['module_log']['p50_ns'])} / {us(r['module_log']['p99_ns'])}", ""),
        (
            "GC pauses (gen2)",
            f"{g2.get('count', 0)} × max {g2.get('max_ms', 0):.1f} ms",
            f"gen2 {g2.get('cpu_ms', 0):.0f} ms CPU; all generations {sum(v['total_ms'] for v in gc.values()):.0f} ms wall, "
            f"{sum(v['cpu_ms'] for v in gc.values()):.0f} ms CPU, in a {r['loop_s']:.1f} s loop",
        ),
        ("queue at loop end / drain", f"{r['backlog_ops_at_loop_end']:,} ops", f"flush() took {ms(r['drain_s'])}"),
        ("agent CPU", pct(r["agent"]["cpu_percent"]), f"peak RSS {r['agent']['peak_rss_mb']:.0f} MB"),
        ("loss", "0" if r["loss"]["lost_points"] == 0 else str(r["loss"]["lost_points"]), loss_note(r["loss"])),
    ]
