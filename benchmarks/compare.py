"""8. Side by side: the same log-latency and calls/s workloads through wandb, MLflow and tensorboardX.

Every tool, rankwise included, runs the *same* worker loop in its own fresh
process, so the ratios are like for like:

* latency: a fresh 4-scalar dict per call, ``perf_counter_ns`` around the call
  (as in benchmark 1), up to a call cap and a time budget per tool;
* calls/s: a tight loop for a fixed time, then the tool's finish/close timed;
  *sustained* = calls / (loop + finish).

How each tool is driven (its documented, default way of logging scalars):

* rankwise: ``run.log(d)`` against a live agent;
* wandb: offline mode (``WANDB_MODE=offline``, ``WANDB_DIR`` in a temp dir,
  ``WANDB_SILENT=true``, ``WANDB_CONSOLE=off``), ``run.log(d)``, ``run.finish()``;
* MLflow: local file store in a temp dir (``MLFLOW_ALLOW_FILE_STORE=true``),
  ``mlflow.log_metrics(d, step=i)``, ``mlflow.end_run()``;
* tensorboardX: ``SummaryWriter.add_scalar(k, v, i)`` for each of the 4 keys,
  ``close()``.

A tool that is not importable is skipped with a note (``make bench-compare``
installs all three). Each has a hard time limit, after which its process group
is killed and the tool is reported as timed out.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

NAME = "compare"
TITLE = "8. Side by side with wandb / MLflow / tensorboardX (same loop, same dict)"
TOOLS = ("rankwise", "wandb", "mlflow", "tensorboardX")
MODULE = {"rankwise": "rankwise", "wandb": "wandb", "mlflow": "mlflow", "tensorboardX": "tensorboardX"}

# (latency call cap, latency budget s, tight-loop s): slow tools get fewer calls, never more time
_FULL = {
    "rankwise": (200_000, 5.0, 2.0),
    "wandb": (20_000, 4.0, 2.0),
    "mlflow": (5_000, 4.0, 2.0),
    "tensorboardX": (200_000, 4.0, 2.0),
}
_QUICK = {
    "rankwise": (20_000, 1.0, 0.4),
    "wandb": (2_000, 1.0, 0.5),
    "mlflow": (500, 1.0, 0.5),
    "tensorboardX": (5_000, 1.0, 0.5),
}


def params(quick: bool) -> dict[str, Any]:
    budgets = _QUICK if quick else _FULL
    return {t: {"latency_calls": b[0], "latency_budget_s": b[1], "tight_s": b[2]} for t, b in budgets.items()}


def _setup(tool: str, args: dict) -> tuple[Callable[[dict], Any], Callable[[], Any], str]:
    """Import and start the tool; return (log, finish, version)."""
    if tool == "rankwise":
        import rankwise

        run = rankwise.init(project="bench", group="compare", rank=0, world_size=1)
        return run.log, run.finish, rankwise.__version__
    if tool == "wandb":
        import wandb

        wrun = wandb.init(project="bench", dir=args["dir"])
        return wrun.log, wrun.finish, wandb.__version__
    if tool == "mlflow":
        import mlflow

        mlflow.set_experiment("bench")
        mlflow.start_run()
        log_metrics = mlflow.log_metrics

        def log(d: dict) -> None:
            log_metrics(d, step=d["step"])

        return log, mlflow.end_run, mlflow.__version__
    if tool == "tensorboardX":
        import tensorboardX

        writer = tensorboardX.SummaryWriter(logdir=args["dir"])
        add = writer.add_scalar

        def log(d: dict) -> None:
            s = d["step"]
            for k, v in d.items():
                add(k, v, s)

        return log, writer.close, tensorboardX.__version__
    raise ValueError(f"unknown tool {tool!r}")


def workload(args: dict, barrier: Any) -> dict:
    """Worker: setup, warm-up, latency phase, tight loop, timed finish — identical for every tool."""
    from array import array
    from time import perf_counter
    from time import perf_counter_ns as pc

    import numpy as np

    from benchmarks._stats import dist_ns

    t0 = perf_counter()
    log, finish, version = _setup(args["tool"], args)
    setup_s = perf_counter() - t0
    step = 0
    for _ in range(100):  # warm-up (first calls validate keys, create files)
        log({"loss": 1.0 / (step + 1), "acc": 0.5, "lr": 3e-4, "step": step})
        step += 1

    cap = args["latency_calls"]
    lat = array("q", bytes(8 * cap))
    t_end = perf_counter() + args["latency_budget_s"]
    n = 0
    for n in range(1, cap + 1):
        d = {"loss": 1.0 / (step + 1), "acc": 0.5, "lr": 3e-4, "step": step}
        t_a = pc()
        log(d)
        t_b = pc()
        lat[n - 1] = t_b - t_a
        step += 1
        if not n & 15 and perf_counter() > t_end:
            break
    latency = dist_ns(np.frombuffer(lat, dtype=np.int64)[:n])

    calls = 0
    t_go = perf_counter()
    t_end = t_go + args["tight_s"]
    while True:
        for _ in range(16):
            log({"loss": 1.0 / (step + 1), "acc": 0.5, "lr": 3e-4, "step": step})
            step += 1
        calls += 16
        if perf_counter() >= t_end:
            break
    t_loop = perf_counter()
    finish()
    t_done = perf_counter()
    out = {
        "tool": args["tool"],
        "version": version,
        "setup_s": setup_s,
        "latency": latency,
        "latency_budget_hit": n < cap,
        "tight_calls": calls,
        "calls_per_s": calls / (t_loop - t_go),
        "sustained_per_s": calls / (t_done - t_go),
        "finish_s": t_done - t_loop,
        "rows_logged": step,
    }
    if args["tool"] == "rankwise":  # delivery counters (coalesced rows and spans, drops): what the store should hold
        out["stats"] = log.__self__.stats
    return out


def _tool_env(box: Any, tool: str, scratch: str) -> dict[str, str]:
    if tool == "wandb":
        return box.env(
            WANDB_MODE="offline",
            WANDB_DIR=scratch,
            WANDB_SILENT="true",
            WANDB_CONSOLE="off",
            WANDB_DISABLE_GIT="true",
            WANDB_CACHE_DIR=scratch,
            WANDB_CONFIG_DIR=scratch,
            WANDB_DATA_DIR=scratch,
        )
    if tool == "mlflow":
        return box.env(MLFLOW_TRACKING_URI=f"file://{scratch}/mlruns", MLFLOW_ALLOW_FILE_STORE="true")
    return box.env()


def _check_loss(box: Any, project: str, group: str, keys: Any, sent: dict[int, int]) -> dict:
    """``check_loss``, counting rows the client coalesced into spans (its op queue over its byte bound: the
    tight loop outruns the I/O thread) as the rows they stand for (``check_loss_coalesced``, issue 11)."""
    try:
        from benchmarks.calls_per_second import check_loss_coalesced as check
    except ImportError:  # a tree without client-side coalescing
        from benchmarks._harness import check_loss as check
    return check(box, project, group, keys, sent)


def run(ctx: Any) -> dict:
    import os

    from benchmarks._harness import BenchError, Sandbox

    p = params(ctx.quick)
    out: dict[str, Any] = {"params": p, "tools": {}, "notes": []}
    with Sandbox(NAME) as box:
        box.start_agent()
        for tool in TOOLS:
            if tool != "rankwise":
                if not ctx.compare:
                    out["tools"][tool] = {"skipped": "comparison off (--quick without --compare, or --no-compare)"}
                    continue
                if importlib.util.find_spec(MODULE[tool]) is None:
                    out["tools"][tool] = {"skipped": f"{MODULE[tool]} not installed (make bench-compare)"}
                    continue
            scratch = os.path.join(box.scratch, tool)
            os.makedirs(scratch, exist_ok=True)
            w = box.worker(
                f"{NAME}:workload",
                dict(p[tool], tool=tool, dir=scratch),
                env=_tool_env(box, tool, scratch),
                new_session=tool != "rankwise",
            )
            try:
                res = w.result(ctx.timeout(90))
            except BenchError as exc:
                out["tools"][tool] = {"skipped": f"failed or timed out: {str(exc).splitlines()[0]}"}
                continue
            finally:
                w.kill()  # a tool's helper processes (wandb-core) go with the worker's session
            if tool == "rankwise":
                keys = ("loss", "acc", "lr", "step")
                res["loss"] = _check_loss(box, "bench", "compare", keys, {0: res["rows_logged"]})
            out["tools"][tool] = res
    base = out["tools"].get("rankwise", {})
    for res in out["tools"].values():
        if "latency" in res and "latency" in base:
            res["ratios"] = {
                "p50": res["latency"]["p50_ns"] / base["latency"]["p50_ns"],
                "p99": res["latency"]["p99_ns"] / base["latency"]["p99_ns"],
                "calls_per_s": base["calls_per_s"] / res["calls_per_s"],
                "sustained_per_s": base["sustained_per_s"] / res["sustained_per_s"],
            }
    return out


def render(r: dict) -> list[str]:
    from benchmarks._table import loss_note, ms, rate, ratio, render_grid, us

    header = [
        "tool",
        "version",
        "calls timed",
        "p50",
        "p50 vs rw",
        "p99",
        "p99 vs rw",
        "max",
        "loop calls/s",
        "sustained",
        "sust. vs rw",
        "finish",
    ]
    body = []
    notes = []
    for tool in TOOLS:
        res = r["tools"].get(tool)
        if res is None:
            continue
        if "skipped" in res:
            notes.append(f"  {tool}: skipped — {res['skipped']}")
            continue
        lat, rt = res["latency"], res.get("ratios", {})
        body.append(
            [
                tool,
                res["version"],
                f"{lat['n']:,}" + (" (budget)" if res["latency_budget_hit"] else ""),
                us(lat["p50_ns"]),
                ratio(rt.get("p50")),
                us(lat["p99_ns"]),
                ratio(rt.get("p99")),
                us(lat["max_ns"]),
                rate(res["calls_per_s"]),
                rate(res["sustained_per_s"]),
                ratio(rt.get("sustained_per_s")),
                ms(res["finish_s"]),
            ]
        )
    lines = render_grid(header, body) if body else []
    lines.append("  'vs rw' = times slower than rankwise: their latency ÷ rankwise's; rankwise's rate ÷ theirs")
    base = r["tools"].get("rankwise", {})
    if "loss" in base:
        st = base.get("stats", {})
        co = (
            f"; {st['coalesced_rows']:,} rows coalesced by the client into {st['coalesced_spans']:,} spans (its queue"
            " over its byte bound; counts, min, max, last kept)"
            if st.get("coalesced_rows")
            else ""
        )
        lines.append(f"  rankwise in this loop: {loss_note(base['loss'])}{co}")
    return lines + notes
