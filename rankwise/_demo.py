"""``rankwise demo`` (``make demo``): a simulated data-parallel training job.

Eight processes get torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
TORCHELASTIC_RUN_ID, ...) and train one logistic-regression model on their own
shards. Each step every rank computes its gradient, the gradients are averaged
through shared memory behind a barrier (an all-reduce), and every rank logs its
loss, accuracy, gradient norm, learning rate and step time through rankwise.
Rank ``--slow-rank`` computes slower, so every step waits for it: a straggler.
Ranks see different label noise, so their losses differ. At the end the group
view is printed: per key, mean/min/max over ranks and which rank is min/max.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import sys
import time
from typing import Any

FEATURES = 32
BATCH = 64


def _worker(
    rank: int, world: int, project: str, group: str, steps: int, slow_rank: int, barrier: Any, grads: Any
) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
        GROUP_RANK="0",
        TORCHELASTIC_RUN_ID=group,
        TORCHELASTIC_RESTART_COUNT="0",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT="29500",
    )
    import numpy as np

    import rankwise

    run = rankwise.init(project=project, config={"lr": 0.5, "batch": BATCH, "features": FEATURES, "world": world})
    run.define_metric("loss", summary="min")
    run.define_metric("acc", summary="max")
    truth = np.random.default_rng(0).normal(size=FEATURES)  # same task on every rank
    rng = np.random.default_rng(1000 + rank)  # each rank its own shard
    noise = 0.05 + 0.03 * rank  # higher ranks see noisier labels
    w = np.zeros(FEATURES)
    shared = np.frombuffer(grads, dtype=np.float64).reshape(world, FEATURES)
    for step in range(steps):
        t0 = time.perf_counter()
        x = rng.normal(size=(BATCH, FEATURES))
        y = (x @ truth + rng.normal(scale=1.0, size=BATCH) > 0).astype(np.float64)
        flip = rng.random(BATCH) < noise
        y[flip] = 1.0 - y[flip]
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        eps = 1e-9
        loss = float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
        acc = float(np.mean((p > 0.5) == (y > 0.5)))
        grad = x.T @ (p - y) / BATCH
        if rank == slow_rank:
            time.sleep(0.004)  # the straggler: slower data loading on this rank
        compute_ms = (time.perf_counter() - t0) * 1e3
        shared[rank] = grad  # all-reduce: publish, wait for everyone, average
        barrier.wait()
        avg = shared.mean(axis=0)
        barrier.wait()
        lr = 0.5 * 0.5 * (1 + math.cos(math.pi * step / steps)) * min(1.0, (step + 1) / 20)
        w -= lr * avg
        run.log(
            {
                "loss": loss,
                "acc": acc,
                "grad_norm": float(np.linalg.norm(grad)),
                "lr": lr,
                "step_time_ms": (time.perf_counter() - t0) * 1e3,
                "compute_ms": compute_ms,
            }
        )
    run.summary["final_weight_error"] = float(
        np.linalg.norm(w / (np.linalg.norm(w) + 1e-12) - truth / np.linalg.norm(truth))
    )
    run.finish()


def main(args: argparse.Namespace) -> int:
    from agent.store.open import is_url, redact
    from rankwise._api import Api
    from rankwise._stores import chosen_store
    from rankwise._table import group_table, table
    from rankwise._ui.address import group_url

    world, steps = args.ranks, args.steps
    if world < 1 or steps < 1:
        print("rankwise demo: --ranks and --steps must be >= 1", file=sys.stderr)
        return 2
    group = args.group or "demo-" + time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid() % 1000:03d}"
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(world)
    grads = ctx.RawArray("d", world * FEATURES)
    print(f"rankwise demo: {world} ranks x {steps} steps, project {args.project!r}, group {group!r}")
    t0 = time.time()
    procs = [
        ctx.Process(target=_worker, args=(r, world, args.project, group, steps, args.slow_rank, barrier, grads))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    failed = [r for r, p in enumerate(procs) if p.exitcode != 0]
    print(f"trained in {time.time() - t0:.1f} s" + (f"; ranks {failed} failed" if failed else ""))
    print()
    # the store the ranks' agent writes: RANKWISE_STORE (a ClickHouse URL, or a SQLite path) or the default file
    spec = chosen_store(None)
    url = redact(spec) if is_url(spec) else None  # shown with the password as ***
    api = Api(spec)
    g = api.group(args.project, group)
    headers, rows = group_table(g)
    print(f"group {g.project}/{g.name}: {len(g.runs)} of {g.world_size} ranks, {g.state}")
    print(table(headers, rows))
    print()
    straggle = []
    for r in g.runs:
        cols = r.history_arrays(["compute_ms"])
        vals = cols.get("compute_ms", (None, []))[1]
        straggle.append((float(sum(vals) / max(1, len(vals))), r.rank, r.state))
    straggle.sort(reverse=True)
    print("stragglers (mean compute time per step):")
    print(table(["rank", "compute ms", "state"], [[rank, ms, state] for ms, rank, state in straggle[:3]]))
    print()
    store = f" --store {url}" if url else ""
    print(f"data:   {api.path}")
    print(f"look:   rankwise show {group} --project {args.project}{store}")
    print(f"python: rankwise.Api({repr(url) if url else ''}).group({args.project!r}, {group!r}).history('loss')")
    # the UI's token is made when `rankwise ui` starts: its printed address (with ?token=) logs the browser in,
    # after which the group's address works as it is
    print(
        f"ui:     rankwise ui{store}, open the address it prints (it carries the token), then "
        f"{group_url(args.project, group)}"
    )
    return 1 if failed else 0
