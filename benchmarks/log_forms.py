"""1b. ``log()`` latency for every form training code uses (issue 11), quiet and under contention.

Benchmark 1 times one form (a flat dict of Python floats, no ``step``); real
training code mostly uses others. Each form below runs in its own fresh worker
process, its own run (group ``forms-<form>``), against the benchmark's agent,
rate limiting off (``RANKWISE_ROWS_PER_S=0``):

* a warm-up (the first call of a key set takes the validating slow path);
* the timer overhead: the same loop with nothing between the two
  ``perf_counter_ns()`` reads; its median is subtracted ("net of timer");
* the timed loop: a fresh value per call, built outside the timed region,
  ``perf_counter_ns()`` around each call (both calls of the commit form are
  samples), up to a call cap and a time budget;
* blocks of 1000 calls with one timer pair per block (values built before the
  block): *calls/s* is calls ÷ time in those blocks, no per-call timer at all;
* ``finish()``, timed; then every row is counted in the store (sent = stored:
  every key of every row, steps exactly ``0..n-1``).

The contended variant repeats the timed loop of each form (a subset with
``--quick``) while 4 spinning processes compete for the machine's cores, as
dataloader workers do on a training node; they start after the worker's
warm-up and stop before ``finish()``. When wandb is importable and comparison
is on (``make bench-compare``), every form also runs through wandb in offline
mode (``WANDB_MODE=offline``, driven as in benchmark 8), in the same worker
code: same dicts (torch tensors included), same warm-up, timer-overhead loop,
timed loop and blocks, net of timer; fewer calls (``params()["wandb"]``: its
calls take ~100x longer), capped by a time budget. wandb's rows are not counted
back (its offline file has no reader here).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

NAME = "log_forms"
TITLE = "1b. log() per form (step=, commit=, nested, ints, numpy, torch), net of timer; quiet and contended"

# form → (label, call kind, keys as stored, target class)
FORMS: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "floats": ("flat Python floats", "plain", ("loss", "acc", "lr", "gnorm"), "python"),
    "step": ("log(d, step=i)", "step", ("loss", "acc", "lr", "gnorm"), "python"),
    "commit": ("log(d, commit=False) + log(d2)", "commit", ("loss", "acc", "lr", "gnorm"), "python"),
    "nested": (
        "nested {'train': {..}, 'opt': {..}}",
        "plain",
        ("train.loss", "train.acc", "opt.lr", "opt.gnorm"),
        "python",
    ),
    "ints_bools": ("ints and bools", "plain", ("epoch", "tokens", "done", "best"), "python"),
    "numpy": ("numpy float32 / int64 scalars", "plain", ("loss", "acc", "tokens", "epoch"), "numpy"),
    "module": ("rankwise.log(d, step=i)", "step", ("loss", "acc", "lr", "gnorm"), "python"),
    "torch_cpu": ("torch 0-d CPU tensors", "plain", ("loss", "acc", "gnorm", "tokens"), "torch_cpu"),
    "torch_cuda": ("torch 0-d CUDA tensors", "plain", ("loss", "acc", "gnorm", "tokens"), "torch_cuda"),
}
BUSY = 4  # spinning processes in the contended variant (issue 11: 4 busy processes on the cores)
QUICK_CONTENDED = ("floats", "step")


def params(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "warmup": 500,
            "calls": 20_000,
            "overhead_calls": 10_000,
            "blocks": 10,
            "block_size": 1000,
            "budget_s": 3.0,
            "contended_calls": 20_000,
            "contended_forms": list(QUICK_CONTENDED),
            "wandb": {"calls": 2_000, "budget_s": 1.0, "blocks": 1, "block_size": 500},
        }
    return {
        "warmup": 2000,
        "calls": 200_000,
        "overhead_calls": 100_000,
        "blocks": 100,
        "block_size": 1000,
        "budget_s": 10.0,
        "contended_calls": 50_000,
        "contended_forms": None,  # None: every form
        "wandb": {"calls": 20_000, "budget_s": 5.0, "blocks": 5, "block_size": 1000},
    }


def _maker(form: str) -> Callable[[int], Any]:
    """The value(s) of row ``i`` for ``form``: what one training step would pass to ``log()``."""
    if form in ("floats", "step", "module"):
        return lambda i: {"loss": 1.0 / (i + 1), "acc": 0.5 + i * 1e-9, "lr": 3e-4, "gnorm": float(i % 97)}
    if form == "commit":
        return lambda i: ({"loss": 1.0 / (i + 1), "acc": 0.5 + i * 1e-9}, {"lr": 3e-4, "gnorm": float(i % 97)})
    if form == "nested":
        return lambda i: {
            "train": {"loss": 1.0 / (i + 1), "acc": 0.5 + i * 1e-9},
            "opt": {"lr": 3e-4, "gnorm": float(i % 97)},
        }
    if form == "ints_bools":
        return lambda i: {"epoch": i // 1000, "tokens": i * 512, "done": i % 2 == 0, "best": i % 7 == 0}
    if form == "numpy":
        import numpy as np

        f32, i64 = np.float32, np.int64
        return lambda i: {"loss": f32(1.0 / (i + 1)), "acc": f32(0.5), "tokens": i64(i * 512), "epoch": i64(i // 1000)}
    if form in ("torch_cpu", "torch_cuda"):
        import torch

        dev = "cuda" if form == "torch_cuda" else "cpu"
        t = torch.tensor
        return lambda i: {
            "loss": t(1.0 / (i + 1), device=dev),
            "acc": t(0.5, device=dev),
            "gnorm": t(float(i % 97), device=dev),
            "tokens": t(i * 512, device=dev),
        }
    raise ValueError(f"unknown form {form!r}; choose from {', '.join(FORMS)}")


def _timed(call: str, log: Callable, make: Callable, lat: Any, row: int, n: int, deadline: float) -> tuple[int, int]:
    """``n`` calls (stopped early at ``deadline``), each timed into ``lat``, from row ``row``;
    returns (calls made, next row). The branch on the form is outside the timed region."""
    from time import perf_counter
    from time import perf_counter_ns as pc

    j, i = 0, row
    while j < n and perf_counter() < deadline:
        end = min(n, j + 4096)
        if call == "plain":
            while j < end:
                d = make(i)
                t0 = pc()
                log(d)
                t1 = pc()
                lat[j] = t1 - t0
                j += 1
                i += 1
        elif call == "step":
            while j < end:
                d = make(i)
                t0 = pc()
                log(d, step=i)
                t1 = pc()
                lat[j] = t1 - t0
                j += 1
                i += 1
        else:  # commit: two calls per row, both timed
            while j < end:
                d1, d2 = make(i)
                t0 = pc()
                log(d1, commit=False)
                t1 = pc()
                lat[j] = t1 - t0
                t0 = pc()
                log(d2)
                t1 = pc()
                lat[j + 1] = t1 - t0
                j += 2
                i += 1
    return j, i


def _blocks(
    call: str, log: Callable, make: Callable, row: int, blocks: int, size: int, flush: Callable
) -> tuple[int, int, int]:
    """Blocks of ``size`` rows with one timer pair per block; returns (calls, ns in blocks, next row)."""
    from time import perf_counter_ns as pc

    calls = ns = 0
    for b in range(blocks):
        rows = range(row, row + size)
        if call == "plain":
            ds = [make(i) for i in rows]
            t0 = pc()
            for d in ds:
                log(d)
            t1 = pc()
            calls += size
        elif call == "step":
            pairs = [(i, make(i)) for i in rows]
            t0 = pc()
            for i, d in pairs:
                log(d, step=i)
            t1 = pc()
            calls += size
        else:
            ds = [make(i) for i in rows]
            t0 = pc()
            for d1, d2 in ds:
                log(d1, commit=False)
                log(d2)
            t1 = pc()
            calls += 2 * size
        ns += t1 - t0
        row += size
        if b % 20 == 19:
            flush()  # keep the queue short, as a training loop at a realistic rate would
    return calls, ns, row


def _setup(tool: str, form: str, args: dict) -> tuple[Callable, Callable, Callable, str, Any]:
    """(log, flush, finish, version, run) for ``tool``; ``module`` uses the module-level log."""
    if tool == "wandb":
        import wandb

        wrun = wandb.init(project="bench", dir=args["dir"])
        log = wandb.log if form == "module" else wrun.log
        return log, lambda: None, wrun.finish, wandb.__version__, None
    import rankwise

    run = rankwise.init(project="bench", group=args["group"], rank=0, world_size=1)
    log = rankwise.log if form == "module" else run.log
    return log, run.flush, run.finish, rankwise.__version__, run


def measure(args: dict, barrier: Any) -> dict:
    """Worker: warm-up, timer overhead, [barrier], timed loop, blocks, timed finish — one form, one tool."""
    import time
    from array import array
    from time import perf_counter_ns as pc

    import numpy as np

    from benchmarks._stats import dist_ns

    form, tool = args["form"], args["tool"]
    call = FORMS[form][1]
    make = _maker(form)
    log, flush, finish, version, run = _setup(tool, form, args)
    row = 0
    scratch = array("q", bytes(8 * args["warmup"] * 2))
    _, row = _timed(call, log, make, scratch, row, args["warmup"] * (2 if call == "commit" else 1), float("inf"))
    flush()

    n_ov = args["overhead_calls"]
    ov = array("q", bytes(8 * n_ov))
    for i in range(n_ov):  # same loop, nothing timed: what the two timer reads cost
        _ = make(i)
        t0 = pc()
        t1 = pc()
        ov[i] = t1 - t0

    n = args["calls"] - args["calls"] % 2
    lat = array("q", bytes(8 * n))
    barrier.wait()  # the contended variant starts its busy processes now
    t_start, cpu_start = time.perf_counter(), time.process_time()
    done, row = _timed(call, log, make, lat, row, n, t_start + args["budget_s"])
    loop_s = time.perf_counter() - t_start
    loop_cpu_s = time.process_time() - cpu_start  # < loop_s when other processes took the cores
    barrier.wait()  # … and stops them here
    backlog = len(getattr(getattr(run, "_writer", None), "ops", ()))
    t_flush = time.perf_counter()
    flush()
    drain_s = time.perf_counter() - t_flush

    block_calls, block_ns, row = _blocks(call, log, make, row, args["blocks"], args["block_size"], flush)
    flush()

    t_fin = time.perf_counter()
    finish()
    finish_s = time.perf_counter() - t_fin

    lat_d = dist_ns(np.frombuffer(lat, dtype=np.int64)[:done])
    ov_d = dist_ns(np.frombuffer(ov, dtype=np.int64))
    out = {
        "form": form,
        "tool": tool,
        "version": version,
        "latency": lat_d,
        "timer_overhead": ov_d,
        "net_p50_ns": lat_d["p50_ns"] - ov_d["p50_ns"],
        "net_p99_ns": lat_d["p99_ns"] - ov_d["p50_ns"],
        "net_max_ns": lat_d["max_ns"] - ov_d["p50_ns"],
        "calls_requested": n,
        "budget_hit": done < n,
        "loop_s": loop_s,
        "loop_cpu_s": loop_cpu_s,
        "calls_per_s_timed_loop": done / loop_s if loop_s > 0 else None,
        "block_calls": block_calls,
        "calls_per_s": block_calls / block_ns * 1e9 if block_ns else None,
        "backlog_ops_at_loop_end": backlog,
        "drain_s": drain_s,
        "finish_s": finish_s,
        "rows_logged": row,
    }
    if run is not None:
        out["stats"] = run.stats
    return out


def _one(box: Any, ctx: Any, args: dict, env: dict | None, busy: int, new_session: bool) -> dict:
    """One worker through its two barriers: released after its warm-up (with ``busy`` spinning
    processes started first), then after its timed loop (they are stopped before it goes on)."""
    from benchmarks._harness import Busy

    w = box.worker(f"{NAME}:measure", args, env=env, new_session=new_session)
    try:
        w.wait_ready(ctx.timeout(120))
        spin = Busy(busy).start() if busy else None
        try:
            w.ready.clear()
            w.go()
            w.wait_ready(ctx.timeout(180))  # the timed loop is over
        finally:
            if spin is not None:
                spin.stop()
        w.go()
        return w.result(ctx.timeout(180))
    finally:
        w.kill()


def available_forms() -> tuple[list[str], dict[str, str]]:
    """The forms this machine can run, and why the others are left out."""
    forms, skipped = [], {}
    has_torch = importlib.util.find_spec("torch") is not None
    cuda = False
    if has_torch:
        try:
            import torch

            cuda = bool(torch.cuda.is_available())
        except Exception as exc:  # a broken torch install: no tensor rows, said why
            has_torch = False
            skipped["torch_cpu"] = f"torch does not import: {exc}"
    for form, (_label, _call, _keys, cls) in FORMS.items():
        if cls.startswith("torch") and not has_torch:
            skipped.setdefault(form, "torch not installed")
        elif cls == "torch_cuda" and not cuda:
            skipped[form] = "torch.cuda.is_available() is False"
        else:
            forms.append(form)
    return forms, skipped


def run(ctx: Any) -> dict:
    import os

    from benchmarks._harness import BenchError, ProcWatch, Sandbox
    from benchmarks.compare import _check_loss as check_loss
    from benchmarks.compare import _tool_env

    p = params(ctx.quick)
    forms, skipped = available_forms()
    contended = [f for f in forms if p["contended_forms"] is None or f in p["contended_forms"]]
    want_wandb = ctx.compare and importlib.util.find_spec("wandb") is not None
    out: dict[str, Any] = {
        "params": p,
        "forms": {},
        "skipped": skipped,
        "notes": [],
        "busy_processes": BUSY,
        "cores": os.cpu_count(),
    }
    if not ctx.compare:
        out["wandb"] = "comparison off (--quick without --compare, or --no-compare)"
    elif not want_wandb:
        out["wandb"] = "wandb not installed (make bench-compare)"
    base = {k: p[k] for k in ("warmup", "calls", "overhead_calls", "blocks", "block_size", "budget_s")}
    with Sandbox(NAME) as box:
        pid = box.start_agent()
        watch = ProcWatch(pid).start()
        for form in forms:
            keys = FORMS[form][2]
            entry: dict[str, Any] = {"label": FORMS[form][0], "class": FORMS[form][3], "keys": list(keys)}
            group = f"forms-{form}"
            res = _one(box, ctx, dict(base, form=form, tool="rankwise", group=group), None, 0, False)
            # (rows the client coalesced, its queue over max_queued_bytes, count as their spans' counts)
            res["loss"] = check_loss(box, "bench", group, keys, {0: res["rows_logged"]})
            entry["quiet"] = res
            if form in contended:
                group_c = f"forms-{form}-contended"
                args_c = dict(base, form=form, tool="rankwise", group=group_c, calls=p["contended_calls"], blocks=0)
                res_c = _one(box, ctx, args_c, None, BUSY, False)
                res_c["loss"] = check_loss(box, "bench", group_c, keys, {0: res_c["rows_logged"]})
                entry["contended"] = res_c
            if want_wandb:
                scratch = os.path.join(box.scratch, f"wandb-{form}")
                os.makedirs(scratch, exist_ok=True)
                # same warm-up, timer-overhead loop, dicts and loops as rankwise; fewer calls (wandb's take
                # ~100x longer), capped by the same kind of time budget
                args_w = dict(base, **p["wandb"], form=form, tool="wandb", dir=scratch)
                try:
                    entry["wandb"] = _one(box, ctx, args_w, _tool_env(box, "wandb", scratch), 0, True)
                except BenchError as exc:
                    entry["wandb"] = {"skipped": f"failed or timed out: {str(exc).splitlines()[0]}"}
            out["forms"][form] = entry
        out["agent"] = watch.stop()
    return out


def target_checks(r: dict, targets: dict) -> list[tuple[str, float, float, str]]:
    """(name, value, limit, unit) for the issue-11 goals; the worst form of a class names the row."""
    checks = []
    forms = r.get("forms", {})

    def worst(cls: tuple[str, ...], variant: str, field: str) -> tuple[float, str] | None:
        vals = [(e[variant][field] / 1000, f) for f, e in forms.items() if e["class"] in cls and variant in e]
        return max(vals) if vals else None

    for cls, field, limit, what in (
        (("python", "numpy"), "net_p50_ns", targets["forms_p50_us"], "p50"),
        (("python", "numpy"), "net_p99_ns", targets["forms_p99_us"], "p99"),
    ):
        w = worst(cls, "quiet", field)
        if w:
            checks.append((f"log() {what} ≤ {limit:g} µs, every Python/numpy form (worst: {w[1]})", w[0], limit, "µs"))
    w = worst(("torch_cpu",), "quiet", "net_p50_ns")
    if w:
        checks.append(
            (
                f"log() p50 ≤ {targets['forms_torch_p50_us']:g} µs, torch 0-d CPU tensors",
                w[0],
                targets["forms_torch_p50_us"],
                "µs",
            )
        )
    w = worst(("python", "numpy", "torch_cpu", "torch_cuda"), "contended", "net_p99_ns")
    if w:
        lim = targets["forms_contended_p99_us"]
        checks.append(
            (
                f"log() p99 ≤ {lim:g} µs with {r.get('busy_processes', BUSY)} busy processes (worst: {w[1]})",
                w[0],
                lim,
                "µs",
            )
        )
    return checks


def _goal(entry: dict) -> str:
    from benchmarks import TARGETS

    q = entry["quiet"]
    if entry["class"] in ("python", "numpy"):
        ok = q["net_p50_ns"] <= TARGETS["forms_p50_us"] * 1000 and q["net_p99_ns"] <= TARGETS["forms_p99_us"] * 1000
    elif entry["class"] == "torch_cpu":
        ok = q["net_p50_ns"] <= TARGETS["forms_torch_p50_us"] * 1000
    else:
        return "-"
    if "contended" in entry:
        ok = ok and entry["contended"]["net_p99_ns"] <= TARGETS["forms_contended_p99_us"] * 1000
    return "met" if ok else "MISSED"


def render(r: dict) -> list[str]:
    from benchmarks._table import rate, render_grid, us

    forms = r["forms"]
    has_w = any("latency" in e.get("wandb", {}) for e in forms.values())
    header = ["form", "calls timed", "p50", "p99", "max", "calls/s", "loss", "contended p99", "max"]
    if has_w:
        header += ["wandb p50", "wandb p99", "wandb calls/s"]
    header.append("goal")
    body = []
    for e in forms.values():
        q = e["quiet"]
        c = e.get("contended")
        row = [
            e["label"],
            f"{q['latency']['n']:,}" + (" (budget)" if q["budget_hit"] else ""),
            us(q["net_p50_ns"]),
            us(q["net_p99_ns"]),
            us(q["net_max_ns"]),
            rate(q["calls_per_s"]),
            str(q["loss"]["lost_points"] + q["loss"]["extra_points"]) if q["loss"]["exact"] else "LOSS",
            us(c["net_p99_ns"]) if c else "-",
            us(c["net_max_ns"]) if c else "-",
        ]
        if has_w:
            w = e.get("wandb", {})
            row += [us(w["net_p50_ns"]), us(w["net_p99_ns"]), rate(w["calls_per_s"])] if "latency" in w else ["-"] * 3
        row.append(_goal(e))
        body.append(row)
    lines = render_grid(header, body) if body else []
    sent = sum(
        e["quiet"]["loss"]["sent_points"] + e.get("contended", {}).get("loss", {}).get("sent_points", 0)
        for e in forms.values()
    )
    stored = sum(
        e["quiet"]["loss"]["stored_points"] + e.get("contended", {}).get("loss", {}).get("stored_points", 0)
        for e in forms.values()
    )
    ov = [e["quiet"]["timer_overhead"]["p50_ns"] for e in forms.values()]
    lines.append(
        f"  latencies net of the timer (its median, {us(min(ov))}–{us(max(ov))}, subtracted); calls/s: "
        f"{r['params']['blocks']} blocks of {r['params']['block_size']} rows, one timer pair per block"
    )
    shares = [
        e["contended"]["loop_cpu_s"] / e["contended"]["loop_s"]
        for e in forms.values()
        if "contended" in e and e["contended"].get("loop_s")
    ]
    if shares:
        lines.append(
            f"  contended: the worker process got {min(shares):.0%}–{max(shares):.0%} of one core's time in its timed "
            "loop (its CPU time ÷ wall time, training + I/O thread)"
        )
    lines.append(
        f"  contended: {r['busy_processes']} spinning processes on {r['cores']} cores during the timed loop"
        f" ({r['params']['contended_calls']:,} calls); loss = points missing or extra in the store"
        f" (sent {sent:,} = stored {stored:,} points)"
        if sent == stored
        else f"  LOSS: sent {sent:,} stored {stored:,} points"
    )
    ag = r.get("agent")
    if ag:
        lines.append(f"  agent: {ag['cpu_percent']:.0f} % CPU, peak RSS {ag['peak_rss_mb']:.0f} MB over the benchmark")
    for form, why in r.get("skipped", {}).items():
        lines.append(f"  {FORMS[form][0]}: skipped — {why}")
    for e in forms.values():
        for variant in ("quiet", "contended"):
            st = e.get(variant, {}).get("stats", {})
            if st.get("coalesced_rows"):
                lines.append(
                    f"  {e['label']} ({variant}): {st['coalesced_rows']:,} rows coalesced by the client into "
                    f"{st['coalesced_spans']:,} spans (its queue passed max_queued_bytes; counted as the "
                    "rows they stand for)"
                )
    if "wandb" in r:
        lines.append(f"  wandb: skipped — {r['wandb']}")
    wb = [e["wandb"] for e in forms.values() if "latency" in e.get("wandb", {})]
    if wb:
        n = [w["latency"]["n"] for w in wb]
        lines.append(
            f"  wandb {wb[0]['version']}: offline mode, same worker loop and dicts, {min(n):,}–{max(n):,} calls "
            f"timed per form (cap {r['params']['wandb']['calls']:,} or {r['params']['wandb']['budget_s']:g} s)"
        )
    for e in forms.values():
        if "skipped" in e.get("wandb", {}):
            lines.append(f"  wandb, {e['label']}: {e['wandb']['skipped']}")
    return lines
