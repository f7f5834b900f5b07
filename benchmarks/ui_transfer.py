"""11. UI transfer: bytes of one chart's per-rank series, plain and gzipped, and what gzip costs.

A finished group of 64 ranks x 3,000 steps (quick: 16 x 1,000) of one key is written straight through the
SQLite store classes, as the agent lays it out (group rows by the agent's own reducers: grouping/); a
``rankwise ui`` server (rankwise/_ui/server.py) in this process serves it. For chart widths of 700 and
1,400 px the series endpoint with per-rank lines (``ranks=1``) is fetched without and with
``Accept-Encoding: gzip``: the bytes on the wire are the figure of merit (issue 14: below 500 KB a chart).
Per-rank values come at 6 significant digits (rankwise/_ui/charts.py ``RANK_DIGITS``); the same chart with
``digits=0`` (full precision, what it cost before) and one rank's chart as the rank page asks for it
(``rank=0``) are measured beside it, gzipped.
The same JSON body is also compressed here with zlib levels 1 and 6 (the server uses
rankwise/_ui/compress.py ``JSON_LEVEL``): bytes and milliseconds (median of 5) of each.
"""

from __future__ import annotations

import gzip
import http.client
import statistics
import time
from pathlib import Path
from typing import Any

NAME = "ui_transfer"
TITLE = "11. UI transfer: one chart's per-rank series, plain and gzipped (64 ranks x 3k steps)"
WIDTHS = (700, 1400)
REPEAT = 5


def params(quick: bool) -> dict[str, Any]:
    return {"ranks": 16, "steps": 1000} if quick else {"ranks": 64, "steps": 3000}


def write_group(path: Path, ranks: int, steps: int) -> None:
    """One finished group, key ``loss``: every rank's history and the group rows, 1,000 steps a transaction."""
    import numpy as np

    from agent.store.sqlite import SQLiteStore
    from grouping import finalize, reduce_points

    store = SQLiteStore(path)
    runs = []
    for rank in range(ranks):
        info = {"name": f"rank-{rank}", "run_key": f"t-{rank}", "rank": rank, "local_rank": rank % 8}
        info.update({"node": f"node-{rank // 8}", "pid": 1000 + rank, "config": {}})
        g, r, _ = store.register("bench", "transfer", ranks, info, 1.7e9)
        runs.append(r)
    rng = np.random.default_rng(0)
    values = [2.0 * np.exp(-np.arange(steps) / 800) + 0.05 * rng.standard_normal(steps) for _ in range(ranks)]
    for lo in range(0, steps, 1000):
        s = np.arange(lo, min(steps, lo + 1000), dtype=np.int64)
        with store.transaction() as txn:
            for rank, r in enumerate(runs):
                txn.add_history(r.id, "_timestamp", s, 1.7e9 + 0.01 * s, False)
                txn.add_history(r.id, "loss", s, values[rank][s], False)
            points = reduce_points(
                np.tile(s, ranks),
                np.repeat(np.arange(ranks, dtype=np.int64), len(s)),
                np.concatenate([v[s] for v in values]),
            )
            txn.add_group_rows(g.id, "loss", finalize(points, ranks), False)
    with store.transaction() as txn:
        for r in runs:
            r.state, r.exit_code, r.step, r.rows = "finished", 0, steps, steps
            txn.put_run(r)
        g.sealed_through = steps - 1
        txn.put_group(g)
    store.close()


def _get(port: int, path: str, gzip_ok: bool) -> tuple[bytes, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    t0 = time.perf_counter()
    conn.request("GET", path, headers={"Accept-Encoding": "gzip"} if gzip_ok else {})
    res = conn.getresponse()
    body = res.read()
    dt = time.perf_counter() - t0
    conn.close()
    assert res.status == 200, (res.status, body[:200])
    assert (res.getheader("Content-Encoding") == "gzip") == gzip_ok
    return body, dt


def run(ctx: Any) -> dict:
    import threading

    from benchmarks._harness import Sandbox
    from rankwise._ui.server import make_server

    p = params(ctx.quick)
    out: dict[str, Any] = {**p, "widths": {}}
    with Sandbox(NAME) as box:
        store = Path(box.data) / "store.sqlite"
        write_group(store, p["ranks"], p["steps"])
        server = make_server(store, "127.0.0.1", 0)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            for width in WIDTHS:
                path = f"/api/projects/bench/groups/transfer/series?key=loss&width={width}&ranks=1"
                plain, _ = _get(server.port, path, False)
                plain_s = min(_get(server.port, path, False)[1] for _ in range(REPEAT))
                gz, _ = _get(server.port, path, True)
                gz_s = min(_get(server.port, path, True)[1] for _ in range(REPEAT))
                assert gzip.decompress(gz) == plain
                exact, _ = _get(server.port, path + "&digits=0", True)
                one, _ = _get(server.port, path.replace("&ranks=1", "&rank=0"), True)
                levels = {}
                for level in (1, 6):
                    times = []
                    for _ in range(REPEAT):
                        t0 = time.perf_counter()
                        z = gzip.compress(plain, compresslevel=level, mtime=0)
                        times.append(time.perf_counter() - t0)
                    levels[level] = {"bytes": len(z), "ms": statistics.median(times) * 1000}
                out["widths"][width] = {
                    "plain_bytes": len(plain),
                    "gzip_bytes": len(gz),
                    "exact_gzip_bytes": len(exact),
                    "one_rank_gzip_bytes": len(one),
                    "plain_request_ms": plain_s * 1000,
                    "gzip_request_ms": gz_s * 1000,
                    "zlib": levels,
                }
        finally:
            server.shutdown()
            server.server_close()
            thread.join(10)
    return out


def rows(r: dict) -> list[tuple[str, str, str]]:
    out = []
    for width, w in r["widths"].items():
        kb = lambda n: f"{n / 1024:.0f} KB"  # noqa: E731
        out.append(
            (
                f"{r['ranks']} ranks x {r['steps']} steps, {width} px: per-rank series",
                f"{kb(w['gzip_bytes'])} gzipped",
                f"{kb(w['plain_bytes'])} plain; request {w['gzip_request_ms']:.1f} ms gzipped, "
                f"{w['plain_request_ms']:.1f} ms plain (loopback, best of {REPEAT})",
            )
        )
        out.append(
            (
                f"  same, full precision (digits=0) / one rank (rank=0) at {width} px",
                f"{kb(w['exact_gzip_bytes'])} / {kb(w['one_rank_gzip_bytes'])}",
                "gzipped",
            )
        )
        z1, z6 = w["zlib"][1], w["zlib"][6]
        out.append(
            (
                f"  zlib level 1 / 6 at {width} px",
                f"{kb(z1['bytes'])} / {kb(z6['bytes'])}",
                f"{z1['ms']:.1f} ms / {z6['ms']:.1f} ms (median of {REPEAT})",
            )
        )
    return out
