"""13. Store engines: what one agent ingests into SQLite and into ClickHouse, and how fast a group reads back.

Ingest: a fresh agent per engine (``RANKWISE_STORE``: its SQLite file, a clickhouse-server 18.16 started here
on a loopback port, the no chdb: see ``_engines``) takes 8 rank processes logging 4 keys flat out
for 2 s (benchmark 3's tight loop); points/s stored is points over the time until every ``finish()`` returned,
i.e. until the agent had committed and acknowledged them; every stored row is counted (no loss).

Read: a finished group of 64 ranks x 100,000 steps of one key (quick: 8 x 10,000) is written through each
engine's store classes (``Txn.add_history`` / ``add_group_rows``, 10,000 steps a transaction), then read as the
web UI reads it: ``Reader.group_rank_history`` (every rank's values) and ``Reader.group_history`` (the group
rows), best of 3, each on a fresh reader. The ClickHouse server shares this machine's cores with the
benchmark (issue 15: the read at least as fast as SQLite, the ingest within 2x).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

NAME = "store_engines"
TITLE = "13. Store engines: one agent into SQLite / ClickHouse, and a 64-rank group read back"
REPEAT = 3
DATABASE = "bench"


def params(quick: bool) -> dict[str, Any]:
    if quick:
        return {"ranks": 2, "keys": 4, "duration_s": 0.4, "read_ranks": 8, "read_steps": 10_000}
    return {"ranks": 8, "keys": 4, "duration_s": 2.0, "read_ranks": 64, "read_steps": 100_000}


def _engines(stack: list) -> dict[str, tuple[str | None, str]]:
    """Engine name → (the agent's store spec, None for its own SQLite file; the read benchmark's store spec).
    ClickHouse only where its server and driver are installed (the chdb engine is left out: one data directory
    per process, and the agent and this process would share it)."""
    read_dir = tempfile.mkdtemp(prefix="rwbsq", dir="/tmp")
    stack.append(lambda: shutil.rmtree(read_dir, ignore_errors=True))
    out: dict[str, tuple[str | None, str]] = {"sqlite": (None, str(Path(read_dir) / "store.sqlite"))}
    try:
        import clickhouse_driver  # noqa: F401
    except ImportError:
        return out
    from tests.support.chserver import CLICKHOUSE_SERVER, ClickHouseServer

    if Path(CLICKHOUSE_SERVER).exists():
        server = ClickHouseServer().start()
        stack.append(server.stop)
        for db in (DATABASE, f"{DATABASE}_read"):
            server.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
        out["clickhouse 18.16"] = (server.url(DATABASE), server.url(f"{DATABASE}_read"))
    return out


def _ingest(spec: str | None, p: dict, ctx: Any) -> dict:
    from benchmarks._harness import Sandbox
    from benchmarks.calls_per_second import run_ranks

    with Sandbox(f"{NAME}-ingest", store=spec) as box:
        pid = box.start_agent()
        cfg = run_ranks(box, p["ranks"], p["duration_s"], p["keys"], "engines", ctx.timeout(300), pid)
    return {
        "stored_points_per_s": cfg["stored_points_per_s"],
        "offered_points_per_s": cfg["offered_points_per_s"],
        "loss": cfg["loss"],
        "agent_cpu_percent": cfg.get("agent", {}).get("cpu_percent"),
    }


def _write(store: Any, ranks: int, steps: int) -> int:
    """The read benchmark's group; returns its id."""
    import numpy as np

    from grouping import finalize, reduce_points

    runs = []
    for rank in range(ranks):
        info = {"name": f"rank-{rank}", "run_key": f"e-{rank}", "rank": rank, "local_rank": rank % 8}
        info.update({"node": f"node-{rank // 8}", "pid": 1000 + rank, "config": {}})
        g, r, _ = store.register("bench", "engines", ranks, info, 1.7e9)
        runs.append(r)
    rng = np.random.default_rng(0)
    for lo in range(0, steps, 10_000):
        s = np.arange(lo, min(steps, lo + 10_000), dtype=np.int64)
        values = [1.0 + 0.01 * rng.standard_normal(len(s)) for _ in runs]
        with store.transaction() as txn:
            for r, v in zip(runs, values):
                txn.add_history(r.id, "loss", s, v, False)
            points = reduce_points(
                np.tile(s, ranks), np.repeat(np.arange(ranks, dtype=np.int64), len(s)), np.concatenate(values)
            )
            txn.add_group_rows(g.id, "loss", finalize(points, ranks), False)
    return g.id


def _read(spec: str, p: dict) -> dict:
    from agent.store.open import open_reader, open_store

    store = open_store(spec)
    try:
        t0 = time.perf_counter()
        gid = _write(store, p["read_ranks"], p["read_steps"])
        write_s = time.perf_counter() - t0
    finally:
        store.close()
    ranks_s, rows_s = [], []
    for _ in range(REPEAT):
        reader = open_reader(spec)
        try:
            t0 = time.perf_counter()
            _, per_run = reader.group_rank_history(gid, "loss")
            ranks_s.append(time.perf_counter() - t0)
            got = sum(len(s) for s, _ in per_run.values())
            assert got == p["read_ranks"] * p["read_steps"], got
            t0 = time.perf_counter()
            rows = reader.group_history(gid, "loss")
            rows_s.append(time.perf_counter() - t0)
            assert len(rows["step"]) == p["read_steps"]
        finally:
            reader.close()
    points = p["read_ranks"] * p["read_steps"]
    return {
        "ranks": p["read_ranks"],
        "steps": p["read_steps"],
        "write_points_per_s": points / write_s,
        "rank_history_s": min(ranks_s),
        "group_rows_s": min(rows_s),
        "rank_history_s_median": statistics.median(ranks_s),
    }


def run(ctx: Any) -> dict:
    p = params(ctx.quick)
    stack: list = []
    out: dict[str, Any] = {"params": p, "engines": {}}
    try:
        for name, (ingest_spec, read_spec) in _engines(stack).items():
            out["engines"][name] = {"ingest": _ingest(ingest_spec, p, ctx), "read": _read(read_spec, p)}
    finally:
        for stop in reversed(stack):
            stop()
    return out


def rows(r: dict) -> list[tuple[str, str, str]]:
    from benchmarks._table import loss_note, rate

    p = r["params"]
    out = []
    base = r["engines"].get("sqlite")
    for name, e in r["engines"].items():
        ing = e["ingest"]
        vs = ""
        if base and name != "sqlite":
            vs = f"; {ing['stored_points_per_s'] / base['ingest']['stored_points_per_s']:.2f}x SQLite"
        out.append(
            (
                f"{name}: ingest, {p['ranks']} ranks x {p['keys']} keys",
                rate(ing["stored_points_per_s"], " pts/s"),
                f"offered {rate(ing['offered_points_per_s'])}{vs}; {loss_note(ing['loss'])}",
            )
        )
        rd = e["read"]
        vs = ""
        if base and name != "sqlite":
            vs = f"; {rd['rank_history_s'] / base['read']['rank_history_s']:.1f}x SQLite's time"
        out.append(
            (
                f"  read {p['read_ranks']} ranks x {p['read_steps']} steps",
                f"{rd['rank_history_s'] * 1000:.0f} ms",
                f"every rank's values (best of {REPEAT}){vs}; group rows {rd['group_rows_s'] * 1000:.0f} ms; "
                f"written at {rate(rd['write_points_per_s'], ' pts/s')}",
            )
        )
    return out
