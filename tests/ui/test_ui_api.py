"""The UI's JSON API over a store written by real rank processes through the real agent: every number is
checked against ``rankwise.Api`` (or numpy over it), errors are proper HTTP errors, the store is only read."""

from __future__ import annotations

import http.client
import json
import math
import socket
import sqlite3
import time
from urllib.parse import quote

import numpy as np
import pytest

import rankwise
from rankwise._ui.address import group_url
from support.processes import start_ranks, wait_all
from support.uihelp import auth, get, log_group, own_env, served, wait_group

WORLD, STEPS, SPIKE_RANK, SPIKE_STEP, SLOW_RANK = 4, 400, 2, 123, 1
SCRIPT = """
import os, time, numpy as np, rankwise
rank = int(os.environ["RANK"])
rng = np.random.default_rng(rank)
run = rankwise.init(project="ui", config={"lr": 0.1 * (rank + 1), "batch": 32, "opt": {"name": "adam", "beta": 0.9}})
for s in range(%(steps)d):
    d = {"loss": float(rng.normal()) + (100.0 if (rank == %(spike_rank)d and s == %(spike_step)d) else 0.0),
         "acc": (s %% 7) / 7}
    if s %% 10 == 0:
        d["val"] = {"acc": float(rng.random())}
    if s == 0:
        d["phase"] = "warmup"
    run.log(d)
    if rank == %(slow)d:
        time.sleep(0.002)
run.summary["best"] = float(rank)
run.finish()
""" % {"steps": STEPS, "spike_rank": SPIKE_RANK, "spike_step": SPIKE_STEP, "slow": SLOW_RANK}


@pytest.fixture(scope="module")
def store():
    """One group of 4 ranks x 400 steps logged through the real agent, shared by this module's tests."""
    with own_env() as env:
        log_group(env, SCRIPT, WORLD, "job-ui")
        yield env.store


@pytest.fixture
def api(store):
    a = rankwise.Api(store)
    yield a
    a.close()


@pytest.fixture
def server(store):
    with served(store) as s:
        yield s


def base(name: str = "job-ui") -> str:
    return f"/api/projects/ui/groups/{name}"


def exact(values: list, expected: np.ndarray) -> bool:
    """JSON list equals the array value for value (None for NaN), floats compared exactly."""
    exp = [None if isinstance(v, float) and not math.isfinite(v) else v for v in np.asarray(expected).tolist()]
    return values == exp


def test_projects_and_groups_summarise_the_store(server, api):
    """/api/projects counts groups per project; /api/projects/P/groups gives each group's state, ranks,
    nodes, steps, start, duration and state counts as the Api sees them."""
    status, projects = get(server, "/api/projects")
    assert status == 200
    g = api.group("ui", "job-ui")
    assert projects == [{"name": "ui", "groups": 1, "latest": g.created}]
    status, groups = get(server, "/api/projects/ui/groups")
    assert status == 200 and len(groups) == 1
    s = groups[0]
    runs = g.runs
    assert (s["name"], s["state"], s["world_size"], s["ranks"]) == ("job-ui", "finished", WORLD, WORLD)
    assert s["nodes"] == sorted({r.node for r in runs})
    assert s["steps"] == STEPS
    assert s["states"] == {"finished": WORLD}
    assert s["created"] == g.created
    assert s["duration"] == max(r.runtime for r in runs)


def test_group_detail_has_keys_runs_and_config_diff(server, api):
    """The group page's data: numeric keys with their number of group rows, every run with state, exit
    code, summary and config, and the config split into keys equal everywhere and keys that differ; no key
    has a step metric (define_metric(k, step_metric=M): tests/ui/test_ui_step_metric.py)."""
    status, d = get(server, base())
    assert status == 200
    assert d["keys"] == [
        {"key": "acc", "points": STEPS, "first": 0, "last": STEPS - 1, "step_metric": None},
        {"key": "loss", "points": STEPS, "first": 0, "last": STEPS - 1, "step_metric": None},
        {"key": "val.acc", "points": STEPS // 10, "first": 0, "last": STEPS - 10, "step_metric": None},
    ]
    runs = api.group("ui", "job-ui").runs
    assert [r["rank"] for r in d["runs"]] == [0, 1, 2, 3]
    for got, r in zip(d["runs"], runs):
        assert (got["name"], got["node"], got["state"], got["exit_code"], got["step"]) == (
            r.name,
            r.node,
            "finished",
            0,
            STEPS,
        )
        assert got["summary"] == r.summary
        assert got["summary"]["best"] == float(r.rank)
        assert got["config"] == {"lr": r.config["lr"], "batch": 32, "opt.name": "adam", "opt.beta": 0.9}
    assert d["config"] == {"common": {"batch": 32, "opt.beta": 0.9, "opt.name": "adam"}, "differs": ["lr"]}


@pytest.mark.parametrize("key", ["loss", "val.acc"])
def test_series_at_full_resolution_equals_the_group_rows(server, api, key):
    """A range with at most two points per bucket comes back point for point: x is the steps and mean,
    min, max, std, count, min_rank, max_rank are the group rows the Api returns."""
    status, s = get(server, f"{base()}/series?key={quote(key)}&width=1000")
    assert status == 200
    h = api.group("ui", "job-ui").history(key)
    assert s["resolution"] == "full" and s["points"] == len(h["step"])
    assert s["x"] == h["step"].tolist()
    for f in ("mean", "min", "max", "std", "count", "min_rank", "max_rank"):
        assert exact(s[f], h[f]), f
    assert s["ranks"] is None
    assert s["domain"] == [float(h["step"][0]), float(h["step"][-1])]


def test_series_per_rank_values_equal_each_runs_history(server, api):
    """With ranks=1 every run's own values come on the same x grid (one list per rank, by rank); with digits=0
    exactly as stored."""
    status, s = get(server, f"{base()}/series?key=val.acc&width=1000&ranks=1&digits=0")
    assert status == 200
    g = api.group("ui", "job-ui")
    assert [r["rank"] for r in s["ranks"]] == list(range(WORLD))
    for entry in s["ranks"]:
        steps, values = g.run(rank=entry["rank"]).history_arrays(["val.acc"])["val.acc"]
        assert steps.tolist() == s["x"]
        assert exact(entry["values"], values)


def _buckets(x: np.ndarray, lo: float, hi: float, n: int) -> list[np.ndarray]:
    """Indices of the points in each non-empty bucket, bucket = floor((x - lo) * n / (hi - lo)) clipped."""
    ids = np.clip(np.floor((x - lo) * (n / (hi - lo))).astype(int), 0, n - 1)
    inside = (x >= lo) & (x <= hi)
    return [np.flatnonzero(inside & (ids == b)) for b in range(n) if (inside & (ids == b)).any()]


def test_series_reduced_to_buckets_keeps_every_extreme(server, api):
    """400 steps at width 16: each non-empty bucket gives two rows at its first and last step; the mean's
    lowest and highest value in the order they occur; the band's lowest min and highest max. So the
    one-step spike of rank 2 is in the band and in rank 2's line."""
    status, s = get(server, f"{base()}/series?key=loss&width=16&ranks=1&digits=0")
    assert status == 200 and s["resolution"] == "minmax" and s["buckets"] == 16
    g = api.group("ui", "job-ui")
    h = g.history("loss")
    x = h["step"].astype(float)
    rows_x, rows_mean, rows_min, rows_max = [], [], [], []
    for idx in _buckets(x, 0.0, float(STEPS - 1), 16):
        rows_x += [int(h["step"][idx[0]]), int(h["step"][idx[-1]])]
        m = h["mean"][idx]
        lo_i, hi_i = int(np.argmin(m)), int(np.argmax(m))
        rows_mean += [float(m[min(lo_i, hi_i)]), float(m[max(lo_i, hi_i)])]
        rows_min += [float(h["min"][idx].min())] * 2
        rows_max += [float(h["max"][idx].max())] * 2
    assert s["x"] == rows_x
    assert s["mean"] == rows_mean
    assert s["min"] == rows_min and s["max"] == rows_max
    spike = float(g.run(rank=SPIKE_RANK).history_arrays(["loss"])["loss"][1][SPIKE_STEP])
    assert spike > 90 and max(s["max"]) == spike
    assert max(v for v in s["ranks"][SPIKE_RANK]["values"] if v is not None) == spike
    assert s["max_rank_mode"] is not None and s["points"] == STEPS


def test_zooming_in_returns_every_point_of_the_range(server, api):
    """start/end narrow the range; 51 steps at width 40 is full resolution again, exactly those steps."""
    status, s = get(server, f"{base()}/series?key=loss&start=100&end=150&width=40")
    assert status == 200 and s["resolution"] == "full" and s["range"] == [100.0, 150.0]
    h = api.group("ui", "job-ui").history("loss")
    assert s["x"] == list(range(100, 151))
    assert exact(s["mean"], h["mean"][100:151]) and exact(s["max"], h["max"][100:151])


def test_time_axis_uses_when_each_step_was_complete(server, api):
    """x=time: a step's time is the latest commit time of it over the ranks, in seconds since the group's
    first commit (t0)."""
    status, s = get(server, f"{base()}/series?key=loss&x=time&width=1000")
    assert status == 200 and s["axis"] == "time"
    g = api.group("ui", "job-ui")
    stamps = np.array([g.run(rank=r).history_arrays(["_timestamp"])["_timestamp"][1] for r in range(WORLD)])
    t0 = float(stamps[:, 0].min())
    assert s["t0"] == t0
    done = stamps.max(axis=0) - t0
    order = np.argsort(done, kind="stable")
    assert s["x"] == done[order].tolist()
    assert exact(s["mean"], g.history("loss")["mean"][order])


def test_stragglers_from_step_times_name_the_slow_rank(server, api):
    """Step time per rank is the time between its consecutive commits (from _timestamp); the mean per
    rank and per step bucket are numpy's, and the rank that slept every step is named first."""
    status, st = get(server, f"{base()}/stragglers?width=10")
    assert status == 200 and st["metric"] == "step_time" and st["unit"] == "s"
    g = api.group("ui", "job-ui")
    edges = np.linspace(1.0, float(STEPS - 1), 11)
    assert st["edges"] == edges.tolist()
    for entry in st["ranks"]:
        steps, ts = g.run(rank=entry["rank"]).history_arrays(["_timestamp"])["_timestamp"]
        dt = np.diff(ts) / np.diff(steps)
        assert entry["n"] == STEPS - 1
        assert entry["mean"] == pytest.approx(float(dt.mean()), rel=1e-12)
        ids = np.clip(np.floor((steps[1:] - 1.0) * (10 / (STEPS - 2))).astype(int), 0, 9)
        assert entry["cells"] == pytest.approx([float(dt[ids == b].mean()) for b in range(10)], rel=1e-12)
    assert st["slowest"][0]["rank"] == SLOW_RANK
    assert st["slowest"][0]["ratio"] > 2


def test_stragglers_of_any_per_rank_key(server, api):
    """key= takes another per-rank metric (e.g. compute time) instead of the step time: means per rank."""
    status, st = get(server, f"{base()}/stragglers?key=loss")
    assert status == 200 and st["metric"] == "loss" and st["unit"] is None
    g = api.group("ui", "job-ui")
    means = {r: float(g.run(rank=r).history_arrays(["loss"])["loss"][1].mean()) for r in range(WORLD)}
    assert {e["rank"]: e["mean"] for e in st["ranks"]} == pytest.approx(means, rel=1e-12)
    assert st["slowest"][0]["rank"] == max(means, key=means.get)


@pytest.mark.parametrize(
    "path, status, fragment",
    [
        ("/api/projects/nope/groups", 404, "no project 'nope'"),
        ("/api/projects/nope/groups/job-ui", 404, "no project 'nope'"),
        ("/api/projects/ui/groups/nope", 404, "no group 'nope'"),
        ("/api/projects/ui/groups/job-ui/series?key=nope", 404, "no key 'nope'"),
        ("/api/projects/ui/groups/job-ui/series?key=phase", 404, "no key 'phase'"),
        ("/api/projects/ui/groups/job-ui/stragglers?key=nope", 404, "no per-rank numeric key 'nope'"),
        ("/api/projects/ui/groups/job-ui/nope", 404, "no such endpoint"),
        ("/api/projects/ui/groups/job-ui/series", 400, "'key' is required"),
        ("/api/projects/ui/groups/job-ui/series?key=loss&width=abc", 400, "width='abc' is not an integer"),
        ("/api/projects/ui/groups/job-ui/series?key=loss&width=-1", 400, "must be between 0 and 20000"),
        ("/api/projects/ui/groups/job-ui/series?key=loss&x=epoch", 400, "x='epoch' is not one of step, time"),
        ("/api/projects/ui/groups/job-ui/series?key=loss&start=9&end=3", 400, "is after end"),
        ("/api/projects/ui/groups/job-ui/series?key=loss&start=nan", 400, "must be finite"),
        ("/api/projects/ui/groups/job-ui/series?key=loss&ranks=maybe", 400, "not a boolean"),
        ("/api/projects/ui/groups/job-ui/series?key=loss&colour=red", 400, "unknown parameter 'colour'"),
        ("/api/projects/ui/groups/job-ui/series?key=loss&key=acc", 400, "given 2 times"),
        ("/api/projects/ui/groups/job-ui/events?x=1", 400, "unknown parameter 'x'"),
        ("/api/projects/ui/groups/nope/events", 404, "no group 'nope'"),
    ],
)
def test_errors_are_json_with_the_right_status(server, path, status, fragment):
    """Unknown project, group, key or endpoint: 404; a bad parameter: 400; both a JSON body that says what."""
    got, body = get(server, path)
    assert got == status
    assert body["status"] == status and fragment in body["error"]


def test_read_only_and_local_only(server):
    """Writes are refused (405), requests naming another host are refused (403: no DNS rebinding), and the
    store connection itself is read-only."""
    assert get(server, "/api/projects", method="POST")[0] == 405
    assert get(server, "/api/projects", method="DELETE")[0] == 405
    status, body = get(server, "/api/projects", headers={"Host": "attacker.example:8765"})
    assert status == 403 and "localhost" in body["error"]
    assert get(server, "/api/projects", headers={"Host": f"localhost:{server.port}"})[0] == 200
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        server.data.api._reader.con.execute("CREATE TABLE t (x)")


def test_pages_and_vendored_static_files(server):
    """/, /p/P and /g/P/G serve the app; uPlot comes from the package (no CDN); nothing outside static/."""
    for path in ("/", "/p/ui", "/g/ui/job-ui"):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", path, headers=auth(server))
        res = conn.getresponse()
        html = res.read().decode()
        assert res.status == 200 and res.getheader("Content-Type").startswith("text/html")
        assert "/static/vendor/uPlot.iife.min.js" in html and "http" not in html.split("<body>")[0].replace(
            "http-equiv", ""
        )
        conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/static/vendor/uPlot.iife.min.js", headers=auth(server))
    res = conn.getresponse()
    assert res.status == 200 and res.getheader("Content-Type").startswith("text/javascript")
    assert res.read().startswith(b"/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    for path in ("/static/../server.py", "/static/%2e%2e/server.py", "/static/vendor/VENDORED.mdx", "/x/y/z/w"):
        conn.request("GET", path, headers=auth(server))
        res = conn.getresponse()
        res.read()
        assert res.status == 404, path
    conn.close()


def test_group_url_addresses_the_group_page(server):
    """group_url() quotes project and group names; the address it gives serves the group's page."""
    assert group_url("my proj", "run #1", "127.0.0.1", 8765) == "http://127.0.0.1:8765/g/my%20proj/run%20%231"
    assert group_url("p", "g", "::1", 80) == "http://[::1]:80/g/p/g"
    url = group_url("ui", "job-ui", "127.0.0.1", server.port)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", url.split(str(server.port), 1)[1], headers=auth(server))
    res = conn.getresponse()
    assert res.status == 200 and b"app.js" in res.read()


def test_store_missing_then_created(rankwise_env):
    """Started before any run, the server answers 503 (no store yet), then serves the store once a run
    through the agent has created it, without a restart."""
    with served(rankwise_env.data) as server:
        status, body = get(server, "/api/projects")
        assert status == 503 and "no store" in body["error"]
        run = rankwise.init(project="late", group="g1", rank=0, world_size=1)
        run.log({"x": 1.5})
        run.finish()
        status, projects = get(server, "/api/projects")
        assert status == 200 and [p["name"] for p in projects] == ["late"]
        status, s = get(server, "/api/projects/late/groups/g1/series?key=x")
        assert status == 200 and s["x"] == [0] and s["mean"] == [1.5]


LIVE = """
import os, pathlib, time, rankwise
rank = int(os.environ["RANK"])
go = pathlib.Path(os.environ["GO_FILE"])
run = rankwise.init(project="live")
for s in range(60):
    if s == 30:
        while not go.exists():
            time.sleep(0.01)
    run.log({"loss": float(s * 10 + rank)})
run.finish()
"""


def _sse_events(sock_file, until: str, timeout_s: float = 60.0) -> list[tuple[str, dict]]:
    events, name, deadline = [], None, time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = sock_file.readline().decode()
        if not line:
            break
        line = line.rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name:
            events.append((name, json.loads(line[6:])))
            if name == until:
                return events
            name = None
    raise AssertionError(f"no {until!r} event; got {[e[0] for e in events]}")


def test_event_stream_follows_a_running_group_to_its_end(rankwise_env, tmp_path):
    """While ranks log, /events sends an update when the agent commits (the group summary with the steps
    so far); after the last rank finishes it sends the final summary and 'end'. Every point reaches the
    store while the UI reads it (the agent is never blocked)."""
    go = tmp_path / "go"
    procs = start_ranks(rankwise_env, LIVE, 2, "job-live", GO_FILE=str(go))
    try:
        api = wait_group(
            rankwise_env.store,
            "live",
            "job-live",
            lambda g: len(g.runs) == 2 and min(r.step for r in g.runs) == 30,
            "30 steps of both ranks",
        )
        with served(rankwise_env.data) as server:
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
            sock.sendall(
                f"GET /api/projects/live/groups/job-live/events HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                f"Authorization: token {server.token}\r\n\r\n".encode()
            )
            f = sock.makefile("rb")
            assert f.readline().startswith(b"HTTP/1.1 200")
            first = _sse_events(f, "update")
            assert first[-1][1]["state"] == "running" and first[-1][1]["steps"] == 30
            go.touch()
            rest = _sse_events(f, "end")
            updates = [d for name, d in rest if name == "update"]
            assert updates and updates[-1]["state"] == "finished" and updates[-1]["steps"] == 60
            assert updates[-1]["states"] == {"finished": 2}
            sock.close()
    finally:
        go.touch()
        wait_all(procs)
    h = api.group("live", "job-live").history("loss")
    assert h["step"].tolist() == list(range(60))
    assert h["mean"].tolist() == [s * 10 + 0.5 for s in range(60)]
    api.close()
