"""9. Media from 8 ranks every step: does it slow the ranks' scalar ``log()``, and does the agent keep
within its byte budget?

Every rank runs 1,000 steps twice: a *baseline* phase logging only scalars, then a *media* phase
that also logs a fresh 64×64 RGB image every step (``log({"img": Image(...)}, commit=False)``, then
the timed scalar ``log()`` commits the row). The figure of merit is the scalar call's latency in both
phases (the image's own cost — a copy on the caller's thread — is reported apart): PNG encoding runs
on the I/O thread and hashing/storing in the agent, so the training loop should not notice.

The agent runs with ``RANKWISE_MEDIA_BYTES_PER_S`` set low enough that the ranks exceed it: stored
bytes must stay within rate × duration + burst per run, and every image is accounted for as stored
or counted as skipped (cause ``media_budget``).
"""

from __future__ import annotations

import time
from typing import Any

NAME = "media"
TITLE = "9. Media from 8 ranks every step: scalar log() latency and the agent's byte budget"
BUDGET_BYTES_PER_S = 512 << 10
BURST_S = 4.0  # agent/media.py MediaSink default


def params(quick: bool) -> dict[str, Any]:
    return {"ranks": 4, "steps": 200} if quick else {"ranks": 8, "steps": 1000}


def _pct(values: list[int], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] / 1000.0


def rank(args: dict, barrier: Any) -> dict:
    """Worker: baseline phase, then media phase; scalar log() timed per call."""
    from time import perf_counter_ns

    import numpy as np

    import rankwise

    run = rankwise.init(project="bench", group=args["group"], rank=args["rank"], world_size=args["world"])
    rng = np.random.default_rng(args["rank"])
    steps = args["steps"]
    if args.get("barrier"):
        barrier.wait()
    base: list[int] = []
    for s in range(steps):
        run.log({"aux": float(s)}, commit=False)  # same shape as the media phase: one call, then the timed one
        d = {"loss": 1.0 / (s + 1), "acc": 0.5, "lr": 3e-4, "step": float(s)}
        t0 = perf_counter_ns()
        run.log(d)
        base.append(perf_counter_ns() - t0)
        time.sleep(0.0005)  # a training step does something between logs
    media: list[int] = []
    image_calls: list[int] = []
    t_media = time.perf_counter()
    wall_media = time.time()
    for s in range(steps):
        pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)  # unique per rank and step
        t0 = perf_counter_ns()
        run.log({"img": rankwise.Image(pixels, caption=f"r{args['rank']} s{s}")}, commit=False)
        image_calls.append(perf_counter_ns() - t0)
        d = {"loss": 1.0 / (s + 1), "acc": 0.5, "lr": 3e-4, "step": float(s)}
        t0 = perf_counter_ns()
        run.log(d)
        media.append(perf_counter_ns() - t0)
        time.sleep(0.0005)
    media_s = time.perf_counter() - t_media
    run.finish()  # returns once the agent stored (or counted as skipped) every image
    return {
        "wall_media_start": wall_media,
        "wall_done": time.time(),
        "rank": args["rank"],
        "rows": 2 * steps,
        "images": steps,
        "media_phase_s": media_s,
        "baseline_p50_us": _pct(base, 0.5),
        "baseline_p99_us": _pct(base, 0.99),
        "media_p50_us": _pct(media, 0.5),
        "media_p99_us": _pct(media, 0.99),
        "image_call_p50_us": _pct(image_calls, 0.5),
        "stats": run.stats,
    }


def run(ctx: Any) -> dict:
    from benchmarks._harness import Sandbox, agent_counters, results, start_together

    p = params(ctx.quick)
    with Sandbox("media") as box:
        env = box.env(RANKWISE_MEDIA_BYTES_PER_S=BUDGET_BYTES_PER_S)
        workers = [
            box.worker(
                f"{NAME}:rank",
                {"group": "media", "rank": r, "world": p["ranks"], "steps": p["steps"], "barrier": True},
                env=env,
            )
            for r in range(p["ranks"])
        ]
        for w in workers:
            w.wait_ready(ctx.timeout(120))
        start_together(workers, ctx.timeout(120))
        res = results(workers, ctx.timeout(300))
        counters = agent_counters(box)
        import rankwise

        api = rankwise.Api(box.store)
        g = api.group("bench", "media")
        stored = skipped = rows_stored = 0
        for r in g.runs:
            rows_stored += r.rows
            for value in r.history_arrays(["img"]).get("img", (None, []))[1]:
                if isinstance(value, dict) and value.get("skipped"):
                    skipped += 1
                elif isinstance(value, dict) and value.get("path"):
                    stored += 1
        files = [f for f in (box.store.parent / "media").rglob("*.png")]
        stored_bytes = sum(f.stat().st_size for f in files)
        api.close()
    images = sum(r["images"] for r in res)
    # the agent's buckets refill on its clock, from the first image it sees to the last it stores
    window = max(r["wall_done"] for r in res) - min(r["wall_media_start"] for r in res)
    bound = p["ranks"] * BUDGET_BYTES_PER_S * (window + BURST_S)
    return {
        "params": p,
        "ranks": res,
        "baseline_p50_us": sum(r["baseline_p50_us"] for r in res) / len(res),
        "media_p50_us": sum(r["media_p50_us"] for r in res) / len(res),
        "baseline_p99_us": sum(r["baseline_p99_us"] for r in res) / len(res),
        "media_p99_us": sum(r["media_p99_us"] for r in res) / len(res),
        "image_call_p50_us": sum(r["image_call_p50_us"] for r in res) / len(res),
        "images": images,
        "images_stored": stored,
        "images_skipped": skipped,
        "skipped_counted": (counters.get("drops") or {}).get("media_budget", 0),
        "files": len(files),
        "stored_bytes": stored_bytes,
        "budget_bound_bytes": bound,
        "rows_sent": sum(r["stats"]["rows_sent"] for r in res),
        "rows_stored": rows_stored,
    }


def rows(r: dict) -> list[tuple[str, str, str]]:
    return [
        (
            "scalar log() p50, without / with media",
            f"{r['baseline_p50_us']:.2f} / {r['media_p50_us']:.2f} µs",
            "mean over ranks; the image is logged apart, commit=False",
        ),
        ("scalar log() p99, without / with media", f"{r['baseline_p99_us']:.2f} / {r['media_p99_us']:.2f} µs", ""),
        ("log({'img': Image(64×64×3)}) p50", f"{r['image_call_p50_us']:.1f} µs", "a copy on the caller's thread"),
        (
            "images stored / skipped (counted)",
            f"{r['images_stored']} / {r['images_skipped']} ({r['skipped_counted']})",
            f"of {r['images']} logged; budget {BUDGET_BYTES_PER_S / 2**20:g} MiB/s per run",
        ),
        (
            "media bytes stored / bound",
            f"{r['stored_bytes'] / 2**20:.1f} / {r['budget_bound_bytes'] / 2**20:.1f} MiB",
            f"{r['files']} files (content-addressed)",
        ),
        ("rows sent / stored", f"{r['rows_sent']} / {r['rows_stored']}", ""),
    ]
