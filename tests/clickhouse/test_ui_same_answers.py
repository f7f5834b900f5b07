"""The web UI answers the same over ClickHouse as over SQLite: one project written identically through each
store's classes (two groups: per-rank history with a step metric and a key logged every other step, group rows
by the agent's reducers, system samples of ranks and hosts, alerts, a failed rank with its exception, summaries
and configs), then every API endpoint the pages call (rankwise/_ui/api.py ``ROUTES``) with the parameters they
use, each answer (status and JSON) compared with SQLite's, which the rest of tests/ui checks in the browser. On
chdb (ClickHouse 26 in process) and on the clickhouse-server 18.16 the tests start."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from agent.alerts.alert import Alert
from agent.store.open import open_store
from grouping import finalize, reduce_points
from support.chfixtures import require_package

STEPS = 300
GROUPS = {"ga": 4, "gb": 2}  # name: ranks
REQUESTS = [
    "projects",
    "projects/proj/groups",
    "projects/proj/groups/ga",
    "projects/proj/groups/gb",
    "projects/proj/table?metrics=loss,acc",
    "projects/proj/groups/ga/series?key=loss",
    "projects/proj/groups/ga/series?key=loss&width=50",
    "projects/proj/groups/ga/series?key=loss&ranks=1&width=40",
    "projects/proj/groups/ga/series?key=acc&ranks=1",
    "projects/proj/groups/ga/series?key=loss&rank=2&width=30",
    "projects/proj/groups/ga/series?key=loss&x=time",
    "projects/proj/groups/ga/series?key=loss&x=rel&ranks=1",
    "projects/proj/groups/ga/series?key=loss&x=metric:epoch&ranks=1",
    "projects/proj/groups/ga/series?key=loss&start=100&end=120&ranks=1&digits=0",
    "projects/proj/groups/ga/series?key=nope",
    "projects/proj/groups/ga/stragglers",
    "projects/proj/groups/ga/stragglers?key=loss&width=20",
    "projects/proj/groups/ga/alerts",
    "projects/proj/groups/ga/alerts?x=time",
    "projects/proj/groups/ga/alerts?x=metric:epoch",
    "projects/proj/groups/ga/system?width=3",
    "projects/proj/groups/ga/ranks/3",
    "projects/proj/groups/ga/ranks/0?width=5",
    "projects/proj/groups/ga/ranks/9",
    "projects/proj/groups/ga/histograms?key=loss",
    "projects/nope/groups",
    "projects/proj/groups/zz",
]


def fill(store) -> dict[str, np.ndarray]:
    """Both groups, 100 steps a transaction, every time fixed; returns group ga's loss per rank (ranks × steps)."""
    kept = {}
    for name, world in GROUPS.items():
        runs = []
        for rank in range(world):
            info = {"name": f"rank-{rank}", "run_key": f"{name}-{rank}", "rank": rank, "local_rank": rank}
            info.update(node=f"node-{rank // 2}", pid=1000 + rank, config={"lr": 0.1 * world, "bs": 32})
            g, r, _ = store.register("proj", name, world, info, 1.7e9 + rank)
            runs.append(r)
        rng = np.random.default_rng(world)
        loss = 2.0 * np.exp(-np.arange(STEPS) / 80) + 0.05 * rng.standard_normal((world, STEPS))
        acc = np.arange(STEPS) / STEPS + 0.01 * np.arange(world)[:, None]
        epoch = np.tile(np.arange(STEPS) // 50, (world, 1)).astype(np.float64)
        kept[name] = loss
        for lo in range(0, STEPS, 100):
            s = np.arange(lo, lo + 100, dtype=np.int64)
            stamp = {"_timestamp": np.array([1.7e9 + 0.5 * lo])}
            with store.transaction() as txn:
                for rank, r in enumerate(runs):
                    txn.add_history(r.id, "_timestamp", s, 1.7e9 + 0.5 * s + 0.01 * rank, False)
                    txn.add_history(r.id, "loss", s, loss[rank, s], False)
                    txn.add_history(r.id, "acc", s[::2], acc[rank, s[::2]], False)  # every other step
                    txn.add_history(r.id, "epoch", s, epoch[rank, s], False)
                    txn.add_system(g.id, r.id, r.node, {**stamp, "proc.rss_bytes": np.array([1e8 + rank])})
                for node in sorted({r.node for r in runs}):
                    txn.add_system(g.id, None, node, {**stamp, "host.load1": np.array([1.5])})
                for key, values, steps in (("loss", loss, s), ("acc", acc, s[::2]), ("epoch", epoch, s)):
                    ranks = np.repeat(np.arange(world, dtype=np.int64), len(steps))
                    points = reduce_points(np.tile(steps, world), ranks, values[:, steps].ravel())
                    txn.add_group_rows(g.id, key, finalize(points, world), False)
                if lo == 100:
                    txn.add_alert(
                        Alert(
                            "nan", g.id, 1.7e9 + 60, "rank 1: loss NaN", rank=1, run_id=runs[1].id, key="loss", step=150
                        )
                    )
                    txn.add_alert(Alert("stalled", g.id, 1.7e9 + 70, "group stalled", step=160, level="ERROR"))
        with store.transaction() as txn:
            for rank, r in enumerate(runs):
                failed = name == "ga" and rank == 3
                r.state, r.exit_code = ("failed", 1) if failed else ("finished", 0)
                r.step, r.rows, r.finished, r.runtime = STEPS, STEPS, 1.7e9 + 200 + rank, 150.0 + rank
                r.summary = {"loss": float(loss[rank, -1]), "acc": float(acc[rank, -2]), "best": rank}
                if failed:
                    r.meta = {
                        "exception": {"type": "RuntimeError", "message": "boom", "traceback": "RuntimeError: boom"}
                    }
                txn.put_run(r)
            g.sealed_through, g.updated = STEPS - 1, 1.7e9 + 300
            txn.put_group(g)
    store.close()
    return kept


def answers(spec) -> dict[str, tuple[int, object]]:
    """(status, JSON as the server would send it) of every request, straight through the API's dispatcher."""
    from rankwise._ui.api import call
    from rankwise._ui.data import UIData

    data = UIData(spec)
    out = {}
    try:
        for request in REQUESTS:
            parts = urlsplit("/api/" + request)
            status, body = call(data, [s for s in parts.path.split("/") if s], parse_qs(parts.query))
            out[request] = (status, json.loads(json.dumps(body, default=str)))
    finally:
        data.close()  # chdb serves one data directory per process: the next test opens its own
    return out


@pytest.fixture(params=["chdb", "server"])
def url(request, tmp_path) -> str:
    if request.param == "chdb":
        require_package("chdb")
        return f"chdb://{tmp_path / 'chdb'}"
    return request.getfixturevalue("clickhouse_url")


def test_every_endpoint_answers_as_over_sqlite(url, tmp_path):
    """Each request's status and JSON body over ClickHouse equal SQLite's (the 404s' messages included); the
    SQLite answers hold what was written: 300 steps of loss whose mean is numpy's over the 4 ranks, the failed
    rank's exception on its rank page, both alerts, system rows of both nodes."""
    loss = fill(open_store(tmp_path / "store.sqlite"))["ga"]
    fill(open_store(url))
    want, got = answers(tmp_path / "store.sqlite"), answers(url)
    assert [r for r in REQUESTS if got[r] != want[r]] == []
    status, series = want["projects/proj/groups/ga/series?key=loss"]
    assert status == 200 and series["x"] == list(range(STEPS))
    np.testing.assert_allclose(series["mean"], loss.mean(axis=0), rtol=1e-12)
    status, rank3 = want["projects/proj/groups/ga/ranks/3"]
    assert status == 200 and "boom" in json.dumps(rank3)
    assert [a["kind"] for a in want["projects/proj/groups/ga/alerts"][1]["alerts"]] == ["nan", "stalled"]
    assert want["projects/proj/groups/ga/ranks/9"][0] == want["projects/proj/groups/zz"][0] == 404
    assert "node-0" in json.dumps(want["projects/proj/groups/ga/system?width=3"][1])
