"""End to end into ClickHouse 18.16: real ranks, the real agent they spawn with RANKWISE_STORE=<URL>, and
every reader on the URL. Every point is read back exactly through ``rankwise.Api(URL)`` (runs, per-rank
history, group rows against numpy over the raw values), ``rankwise status`` names the URL, nothing is
written to a SQLite store, and ``rankwise ui --store URL`` (the real command) serves the group."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import rankwise
from support.grouprows import assert_dense_group
from support.probes import cli, rankwise_cmd, read_line, status_json
from support.processes import run_ranks, spawn

WORLD, STEPS = 4, 400
SCRIPT = (
    """
import os, numpy as np, rankwise
rank = int(os.environ["RANK"])
rng = np.random.default_rng(100 + rank)
run = rankwise.init(project="chx")
for s in range(%d):
    run.log({"x": rank * 10000.0 + s, "noise": float(rng.normal()), "i": s})
run.finish()
"""
    % STEPS
)


def _expected(rank: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(100 + rank)
    return {
        "x": rank * 10000.0 + np.arange(STEPS),
        "noise": np.array([rng.normal() for _ in range(STEPS)]),
        "i": np.arange(STEPS, dtype=float),
    }


@pytest.fixture
def logged(rankwise_env, clickhouse_url):
    """A 4-rank group logged through the agent the ranks spawn, storing into ``clickhouse_url``."""
    run_ranks(rankwise_env, SCRIPT, WORLD, "job-ch", RANKWISE_STORE=clickhouse_url)
    return clickhouse_url


def test_agent_stores_into_clickhouse_and_api_reads_every_point(rankwise_env, logged):
    """4 ranks × 400 steps × 3 keys through the real agent into ClickHouse: ``Api(URL)`` gives 4 finished
    runs with every step once and the logged values bit for bit, group rows equal numpy's count, mean,
    min, max and std over the ranks; the agent reports the URL as its store, and wrote no SQLite store."""
    url = logged
    assert not (Path(rankwise_env.data) / "store.sqlite").exists()
    assert status_json(rankwise_env)["store"] == url
    with rankwise.Api(url) as api:
        assert api.projects() == ["chx"]
        expected = [_expected(r) for r in range(WORLD)]
        values = {key: np.stack([e[key] for e in expected]) for key in ("x", "noise", "i")}
        assert_dense_group(api.group("chx", "job-ch"), values, group_keys=("x", "noise"))


def test_cli_commands_read_the_url(rankwise_env, logged):
    """``rankwise runs`` and ``rankwise export --per-rank`` with ``--store URL`` read the same group."""
    out = cli(rankwise_env, "runs", "--store", logged, "--json")
    assert out.returncode == 0, out.stderr
    groups = json.loads(out.stdout)
    assert [(g["project"], g["name"]) for g in groups] == [("chx", "job-ch")]
    out = cli(rankwise_env, "export", "job-ch", "--store", logged, "--per-rank", "--keys", "x", "-f", "jsonl")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    got = sorted((row["rank"], row["_step"], row["x"]) for row in rows)
    assert got == [(r, s, r * 10000.0 + s) for r in range(WORLD) for s in range(STEPS)]


def test_rankwise_ui_serves_the_group_from_clickhouse(rankwise_env, logged):
    """The real ``rankwise ui --store URL --port 0``: it prints the URL it serves and its address; the
    group's JSON (4 finished ranks) and its full-resolution series of x (group rows and each rank's
    values) come from ClickHouse and equal what ``Api(URL)`` reads; Ctrl-C stops it with status 0."""
    proc = spawn(
        [*rankwise_cmd(), "ui", "--store", logged, "--port", "0"],
        rankwise_env.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = read_line(proc, timeout_s=60, what="rankwise ui's address")
        assert line.startswith(f"rankwise ui: serving {logged} at http://127.0.0.1:"), line
        address = line.split(" at ", 1)[1].split()[0]
        base, token = address.split("/?token=")
        headers = {"Authorization": f"token {token}"}

        def get(path: str) -> dict:
            req = urllib.request.Request(f"{base}{path}", headers=headers)
            with urllib.request.urlopen(req, timeout=60) as res:
                assert res.status == 200
                return json.loads(res.read())

        group = get("/api/projects/chx/groups/job-ch")
        assert sorted((r["rank"], r["state"]) for r in group["runs"]) == [(r, "finished") for r in range(WORLD)]
        s = get("/api/projects/chx/groups/job-ch/series?key=x&width=1000&ranks=1")
        assert s["resolution"] == "full" and s["x"] == list(range(STEPS))
        with rankwise.Api(logged) as api:
            h = api.group("chx", "job-ch").history("x")
        assert s["mean"] == h["mean"].tolist() and s["min"] == h["min"].tolist() and s["max"] == h["max"].tolist()
        assert [(e["rank"], e["values"]) for e in s["ranks"]] == [
            (r, (r * 10000.0 + np.arange(STEPS)).tolist()) for r in range(WORLD)
        ]
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    assert code in (0, 130), proc.stderr.read()
