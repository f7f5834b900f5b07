"""``rankwise tail``, ``rankwise export`` and ``rankwise ui`` as commands, over groups logged through the
real agent; every exported value is compared exactly with ``rankwise.Api``."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import subprocess
import sys

import pytest

import rankwise
from rankwise._cli import main
from rankwise._table import fmt
from support.processes import start_ranks, wait_all
from support.uihelp import get, log_group, own_env, wait_group

WORLD, STEPS = 3, 120
SCRIPT = (
    """
import os, numpy as np, rankwise
rank = int(os.environ["RANK"])
rng = np.random.default_rng(10 + rank)
run = rankwise.init(project="cli")
for s in range(%d):
    d = {"loss": float(rng.normal()), "acc": float(rng.random())}
    if s == 5:
        d["loss"] = float("nan") if rank == 1 else d["loss"]
        d["note"] = ["hi, \\"there\\"", rank]
    if s %% 4 == 0:
        d["val"] = {"f1": float(rng.random())}
    run.log(d)
run.finish()
"""
    % STEPS
)


@pytest.fixture(scope="module")
def store():
    with own_env() as env:
        log_group(env, SCRIPT, WORLD, "job-cli")
        yield env.store


@pytest.fixture
def group(store):
    api = rankwise.Api(store)
    yield api.group("cli", "job-cli")
    api.close()


def same(a, b) -> bool:
    """Equal, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def test_tail_once_prints_the_latest_group_row_of_every_key(store, group, capsys):
    """tail --once: header with ranks and state, then per key the last group row's step, ranks, mean,
    min, max (as ``rankwise show`` formats them), and exits 0."""
    assert main(["tail", "job-cli", "--store", str(store), "--once"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"group cli/job-cli: {WORLD} of {WORLD} ranks, finished ({WORLD} finished)")
    assert lines[1] == f"progress: every rank has committed {STEPS} steps"
    table = {ln.split()[0]: ln.split() for ln in lines[3:] if ln and not ln.startswith(("key", "---"))}
    assert sorted(table) == ["acc", "loss", "val.f1"]
    for key, cells in table.items():
        h = group.history(key)
        i = len(h["step"]) - 1
        assert cells[1:8] == [
            str(int(h["step"][i])),
            f"{int(h['count'][i])}/{WORLD}",
            fmt(float(h["mean"][i])),
            fmt(float(h["min"][i])),
            str(int(h["min_rank"][i])),
            fmt(float(h["max"][i])),
            str(int(h["max_rank"][i])),
        ]


@pytest.mark.parametrize("form", ["csv", "jsonl"])
def test_export_group_rows_exactly(store, group, form, capsys):
    """export (default: group rows): one line per key and step with every group field, values exact
    (shortest round-trip floats; NaN kept as nan / NaN), a NaN rank counted in nan_count / nan_rank."""
    assert main(["export", "job-cli", "--store", str(store), "--format", form]) == 0
    out = capsys.readouterr().out
    if form == "csv":
        reader = csv.DictReader(io.StringIO(out))
        assert reader.fieldnames == [
            "key",
            "step",
            "count",
            "expected",
            "mean",
            "min",
            "max",
            "std",
            "min_rank",
            "max_rank",
            "nan_count",
            "nan_rank",
        ]
        got = [
            {
                k: (
                    v
                    if k == "key"
                    else (
                        int(v)
                        if k in ("step", "count", "expected", "min_rank", "max_rank", "nan_count", "nan_rank")
                        else float(v)
                    )
                )
                for k, v in row.items()
            }
            for row in reader
        ]
    else:
        got = [json.loads(line) for line in out.splitlines()]
    want = []
    for key in group.keys():
        h = group.history(key)
        for i in range(len(h["step"])):
            want.append({"key": key, **{f: h[f][i].item() for f in h}})
    assert len(got) == len(want) == 2 * STEPS + STEPS // 4
    for g_row, w_row in zip(got, want):
        assert g_row.keys() == w_row.keys() and all(same(g_row[k], w_row[k]) for k in w_row), (g_row, w_row)
    # rank 1's NaN at step 5: counted and named, the other ranks' mean stays a number
    (nan_row,) = [r for r in got if r["key"] == "loss" and r["step"] == 5]
    assert (nan_row["nan_count"], nan_row["nan_rank"]) == (1, 1) and math.isfinite(nan_row["mean"])


@pytest.mark.parametrize("form", ["csv", "jsonl"])
def test_export_per_rank_history_exactly(store, group, form, tmp_path, capsys):
    """export --per-rank --out FILE: every run's rows as history() gives them (rank, run, _step,
    _timestamp, _runtime, keys), non-numeric values JSON-encoded in CSV; a line on stderr says what."""
    out_file = tmp_path / f"ranks.{form}"
    assert main(["export", "job-cli", "--store", str(store), "-f", form, "--per-rank", "--out", str(out_file)]) == 0
    assert capsys.readouterr().err == f"wrote {WORLD * STEPS} per-rank rows of cli/job-cli to {out_file}\n"
    want = [{"rank": r.rank, "run": r.name, **row} for r in group.runs for row in r.history()]
    text = out_file.read_text()
    if form == "csv":
        reader = csv.DictReader(io.StringIO(text))
        assert reader.fieldnames == ["rank", "run", "_step", "_timestamp", "_runtime", "acc", "loss", "note", "val.f1"]
        got = []
        for row in reader:
            parsed = {}
            for k, v in row.items():
                if v == "":
                    continue
                parsed[k] = (
                    v
                    if k == "run"
                    else json.loads(v)
                    if k == "note"
                    else int(v)
                    if k in ("rank", "_step")
                    else float(v)
                )
            got.append(parsed)
    else:
        got = [json.loads(line) for line in text.splitlines()]
    assert len(got) == len(want) == WORLD * STEPS
    for g_row, w_row in zip(got, want):
        assert g_row.keys() == w_row.keys() and all(same(g_row[k], w_row[k]) for k in w_row), (g_row, w_row)
    assert got[5]["note"] == ['hi, "there"', 0]


def test_export_selected_keys_and_errors(store, group, capsys):
    """--keys limits the export; an unknown group exits 1 with a message naming it."""
    assert main(["export", "job-cli", "--store", str(store), "--keys", "val.f1", "-f", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["step"] for r in rows] == group.history("val.f1")["step"].tolist() and {r["key"] for r in rows} == {
        "val.f1"
    }
    assert main(["export", "nope", "--store", str(store)]) == 1
    assert "no group named 'nope' (GROUP)" in capsys.readouterr().err


LIVE = """
import os, pathlib, time, rankwise
go = pathlib.Path(os.environ["GO_FILE"])
run = rankwise.init(project="tail")
for s in range(40):
    if s == 20:
        while not go.exists():
            time.sleep(0.01)
    run.log({"x": float(s)})
run.finish()
"""


def test_tail_follows_a_running_group_until_it_finishes(rankwise_env, tmp_path):
    """tail without --once keeps printing (a new table whenever the group changed, into a pipe) while the
    group runs, and exits 0 by itself once it finished, the last table showing the final row."""
    go = tmp_path / "go"
    procs = start_ranks(rankwise_env, LIVE, 2, "job-tail", GO_FILE=str(go))
    try:
        api = wait_group(
            rankwise_env.store,
            "tail",
            "job-tail",
            lambda g: len(g.runs) == 2 and g.history("x")["step"].tolist()[-1:] == [19],
            "20 sealed steps",
        )
        tail = subprocess.Popen(
            [sys.executable, "-m", "rankwise._cli", "tail", "job-tail", "--interval", "0.1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=rankwise_env.env(),
        )
        first = tail.stdout.readline()
        assert first.startswith("group tail/job-tail: 2 of 2 ranks, running")
        go.touch()
        out = tail.stdout.read()  # until tail exits: it must stop by itself once the group finished
        assert tail.wait(timeout=60) == 0, tail.stderr.read()
    finally:
        go.touch()
        wait_all(procs)
    tables = ("\n" + first + out).split("\ngroup tail/job-tail: ")[1:]
    assert len(tables) >= 2 and tables[0].startswith("2 of 2 ranks, running")
    last = tables[-1]
    assert "finished (2 finished)" in last.splitlines()[0]
    x_row = [ln for ln in last.splitlines() if ln.startswith("x ")][0].split()
    assert x_row[1:5] == ["39", "2/2", "39", "39"]
    api.close()


def test_ui_command_serves_until_interrupted(store):
    """rankwise ui --port 0 binds 127.0.0.1 on a free port, prints the address, serves the API, and
    exits 0 on Ctrl-C (SIGINT)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rankwise._cli", "ui", "--store", str(store), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"rankwise ui: serving {store} at http://127.0.0.1:")
        url, _, token = line.split(" at ")[1].split()[0].partition("/?token=")
        port = int(url.rsplit(":", 1)[1])
        assert port != 0 and len(token) == 32  # 24 random bytes, URL-safe base64

        class Server:
            pass

        server = Server()
        server.url, server.token = url + "/", None
        status, body = get(server, "/api/projects")
        assert status == 403 and "token" in body["error"]
        server.token = token
        status, projects = get(server, "/api/projects")
        assert status == 200 and projects[0]["name"] == "cli"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ui_command_reports_a_busy_port(store):
    """A port already in use: exit 1 and a message that says how to pick a free one."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = subprocess.run(
            [sys.executable, "-m", "rankwise._cli", "ui", "--store", str(store), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert res.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in res.stderr and "--port 0" in res.stderr


def test_import_rankwise_loads_no_ui_or_http_code():
    """The UI is imported only by `rankwise ui`: importing rankwise (and its CLI module) stays light."""
    code = "import sys, rankwise, rankwise._cli; print(sorted(m for m in sys.modules if m.startswith(('http', 'rankwise._ui', 'sqlite3'))))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr
