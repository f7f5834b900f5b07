"""``python -m benchmarks --quick`` (the smoke run of ``make bench``) runs every benchmark end to end
in a subprocess and writes a JSON report whose fields are complete and consistent. No timing
thresholds here: speed is judged from the numbers on a quiet machine, not by tests. What is
asserted is what must hold on any machine: counts match what was asked for, nothing logged was
lost, distributions are ordered, resources were measured, and ``import rankwise`` stays light."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmarks import BENCHMARKS
from support.processes import REPO

TOOLS = ("wandb", "mlflow", "tensorboardX")


def _no_loss(loss: dict) -> None:
    assert loss["lost_points"] == 0, loss
    assert loss["extra_points"] == 0, loss
    assert loss["exact"] is True, loss
    assert loss["stored_points"] == loss["sent_points"] > 0, loss


def _ordered(d: dict) -> None:
    assert (
        0 < d["min_ns"] <= d["p50_ns"] <= d["p90_ns"] <= d["p99_ns"] <= d["p999_ns"] <= d["p9999_ns"] <= d["max_ns"]
    ), d


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}"
    assert f"JSON: {out}" in proc.stdout
    return json.loads(out.read_text())


def test_quick_report_has_every_benchmark_and_the_machine(report):
    """Every benchmark ran without error; the machine (CPU, cores, Python, numpy, pyzmq) is recorded;
    targets are evaluated with a value, a limit and a verdict."""
    assert report["quick"] is True
    assert list(report["benchmarks"]) == list(BENCHMARKS)
    for name, res in report["benchmarks"].items():
        assert "error" not in res, f"{name}: {res.get('error')}"
        assert res["duration_s"] > 0
    m = report["machine"]
    assert m["cpu_model"] and m["cores_logical"] >= 1 and m["python"].count(".") == 2
    assert m["numpy"] and m["pyzmq"] and m["libzmq"]
    assert report["targets"], "no target was evaluated"
    for check in report["targets"]:
        assert set(check) == {"target", "value", "limit", "unit", "met"} and isinstance(check["met"], bool)


def test_quick_log_latency_counts_and_distribution(report):
    """log() latency: as many samples as calls timed, ordered percentiles, timer overhead measured
    separately, net = raw - overhead median, every row logged in all phases stored."""
    r = report["benchmarks"]["log_latency"]
    p = r["params"]
    assert r["log"]["n"] == p["calls"] or r["budget_hit"]
    assert r["timer_overhead"]["n"] == p["overhead_calls"]
    assert r["module_log"]["n"] == p["module_calls"]
    _ordered(r["log"])
    _ordered(r["timer_overhead"])
    assert r["net_p50_ns"] == r["log"]["p50_ns"] - r["timer_overhead"]["p50_ns"]
    assert r["blocks"]["n"] == p["blocks"]
    assert r["rows_logged"] == 2000 + r["log"]["n"] + p["blocks"] * 1000 + p["module_calls"]
    assert r["loss"]["sent_rows"] == r["loss"]["stored_rows"] == r["rows_logged"]
    _no_loss(r["loss"])
    assert r["agent"]["peak_rss_mb"] > 0 and r["agent"]["cpu_s"] >= 0


def test_quick_calls_per_second_and_throughput_lose_nothing(report):
    """Tight loops with 1 and several ranks, and the agent-throughput configurations: calls were made
    by every rank, every row is stored (sent == stored), and the agent's CPU and RSS were sampled."""
    cps = report["benchmarks"]["calls_per_second"]
    assert [c["ranks"] for c in cps["configs"]] == cps["params"]["ranks"]
    tp = report["benchmarks"]["agent_throughput"]
    assert [[c["ranks"], c["keys"]] for c in tp["configs"]] == tp["params"]["configs"]
    for c in cps["configs"] + tp["configs"]:
        assert len(c["per_rank_calls_per_s"]) == c["ranks"]
        assert all(rate > 0 for rate in c["per_rank_calls_per_s"])
        assert c["calls"] > 0
        _no_loss(c["loss"])
        assert c["loss"]["sent_rows"] == c["calls"] + 1000 * c["ranks"]  # plus each rank's warm-up rows
        assert c["stored_points_per_s"] <= c["offered_points_per_s"]
        assert c["client_cpu_us_per_call"] > 0
        assert c["agent"]["peak_rss_mb"] > 0 and c["agent"]["cpu_percent"] >= 0


def test_quick_e2e_finish_startup_memory(report):
    """End-to-end samples all seen, each after it was sent; finish() timed for every scenario and
    repetition; import rankwise loads none of numpy/zmq/sqlite3/the agent; a cold init() spawned an
    agent; RSS measured at every stage; no loss anywhere."""
    e2e = report["benchmarks"]["e2e_latency"]
    assert e2e["latency_s"]["n"] == e2e["params"]["samples"]
    assert e2e["latency_s"]["min"] > 0  # causality: a row cannot be visible before log() was called
    _no_loss(e2e["loss"])

    fin = report["benchmarks"]["finish_time"]
    assert [[s["burst"], s["finish_s"]["n"]] for s in fin["scenarios"]] == fin["params"]["scenarios"]
    assert all(s["finish_s"]["min"] > 0 for s in fin["scenarios"])
    assert fin["loss"]["lost_points"] == 0 and fin["loss"]["exact"] is True

    st = report["benchmarks"]["startup"]
    assert st["import"]["in_process_s"]["n"] == st["params"]["import_reps"]
    assert st["import"]["heavy_modules_loaded"] == []
    assert st["init_warm"]["first_init_s"]["n"] == st["params"]["warm_reps"]
    assert st["init_warm"]["first_init_numpy_loaded_s"]["n"] == st["params"]["warm_reps"]
    assert st["init_cold"]["agent_spawned"] is True

    mem = report["benchmarks"]["memory"]
    for key in ("bare_mb", "after_import_mb", "after_init_mb", "after_logs_mb", "after_flush_mb"):
        assert mem[key] > 0, key
    assert mem["peak_mb"] >= mem["after_logs_mb"]
    assert mem["agent"]["peak_rss_mb"] >= mem["agent"]["idle_rss_mb"] > 0
    _no_loss(mem["loss"])


def test_quick_compare_has_rankwise_baseline_and_a_verdict_per_tool(report):
    """The side-by-side table always has rankwise's own row (same loop as the others); each other
    tool is either measured (with ratios against rankwise) or skipped with a reason."""
    cmp = report["benchmarks"]["compare"]
    base = cmp["tools"]["rankwise"]
    _ordered(base["latency"])
    _no_loss(base["loss"])
    assert base["ratios"]["p50"] == 1.0
    for tool in TOOLS:
        res = cmp["tools"][tool]
        if "skipped" in res:
            assert isinstance(res["skipped"], str) and res["skipped"]
        else:
            _ordered(res["latency"])
            assert res["tight_calls"] > 0 and res["ratios"]["p50"] > 0


def test_cli_rejects_unknown_benchmark_names():
    """``--only`` with a name that is not a benchmark fails at once (exit 2) and lists the valid names."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "log_latency,nope"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "nope" in proc.stderr and "log_latency" in proc.stderr


def test_quick_media_every_image_accounted_for_within_the_budget(report):
    """Media from every rank every step: each image is stored or skipped and counted (media_budget),
    stored bytes stay within the agent's budget bound, and every row is stored."""
    r = report["benchmarks"]["media"]
    assert r["images"] == r["params"]["ranks"] * r["params"]["steps"]
    assert r["images_stored"] + r["images_skipped"] == r["images"]
    assert r["skipped_counted"] == r["images_skipped"]
    assert r["files"] == r["images_stored"]  # distinct pixels: one file per stored image
    assert r["stored_bytes"] <= r["budget_bound_bytes"]
    assert r["rows_sent"] == r["rows_stored"] == 2 * r["images"]


def test_quick_log_forms_every_form_counted_in_the_store(report):
    """log() per form (issue 11): each available form ran in its own run; samples = calls timed
    (the commit form times both of its calls), net = raw - timer median, every row of the warm-up,
    timed loop and blocks is stored with every key (sent == stored, steps 0..n-1), the contended
    variant ran for its forms with nothing lost, and a form left out (CUDA, wandb) says why."""
    from benchmarks.log_forms import FORMS, QUICK_CONTENDED, available_forms

    r = report["benchmarks"]["log_forms"]
    p = r["params"]
    forms, skipped = available_forms()
    assert list(r["forms"]) == forms
    assert r["skipped"] == skipped and set(forms) | set(skipped) == set(FORMS)
    assert isinstance(r["wandb"], str) and r["wandb"]  # quick: comparison off
    for form, e in r["forms"].items():
        per_row = 2 if FORMS[form][1] == "commit" else 1
        q = e["quiet"]
        assert q["latency"]["n"] == p["calls"] or q["budget_hit"], form
        _ordered(q["latency"])
        assert q["net_p50_ns"] == q["latency"]["p50_ns"] - q["timer_overhead"]["p50_ns"]
        assert q["block_calls"] == p["blocks"] * p["block_size"] * per_row
        assert q["rows_logged"] == p["warmup"] + (q["latency"]["n"] + q["block_calls"]) // per_row, form
        assert q["loss"]["sent_rows"] == q["loss"]["stored_rows"] == q["rows_logged"], form
        assert q["loss"]["sent_points"] == 4 * q["rows_logged"]
        _no_loss(q["loss"])
        if form in QUICK_CONTENDED:
            c = e["contended"]
            assert c["latency"]["n"] == p["contended_calls"] or c["budget_hit"], form
            assert c["loss"]["sent_rows"] == c["loss"]["stored_rows"] == c["rows_logged"], form
            _no_loss(c["loss"])
        else:
            assert "contended" not in e
    names = [t["target"] for t in report["targets"]]
    assert any("every Python/numpy form" in n for n in names)


def test_quick_ui_transfer_gzip_is_smaller_and_level_1_is_not_slower(report):
    """One chart's per-rank series: the server's gzipped answer is under half the plain bytes (it was checked
    to decompress to them in the benchmark) and zlib level 6 is never smaller by more than a fifth."""
    r = report["benchmarks"]["ui_transfer"]
    assert (r["ranks"], r["steps"]) == (16, 1000)
    for w in r["widths"].values():
        assert 0 < w["gzip_bytes"] < w["plain_bytes"] / 2
        assert w["zlib"]["1"]["bytes"] == w["gzip_bytes"]
        assert w["zlib"]["6"]["bytes"] > 0.8 * w["zlib"]["1"]["bytes"]


def test_quick_store_engines_ingest_and_read_every_point(report):
    """Store engines: SQLite always, ClickHouse 18.16 where its server is installed (CI installs it): every
    point the ranks logged is stored once in each, and the read of the group returns every rank's points
    (the benchmark asserts the count) in a positive time."""
    from support.chserver import CLICKHOUSE_SERVER

    r = report["benchmarks"]["store_engines"]
    engines = r["engines"]
    want = ["sqlite"] + (["clickhouse 18.16"] if os.path.exists(CLICKHOUSE_SERVER) else [])
    assert list(engines) == want
    for name, e in engines.items():
        _no_loss(e["ingest"]["loss"])
        assert e["ingest"]["stored_points_per_s"] > 0, name
        assert e["read"]["rank_history_s"] > 0 and e["read"]["group_rows_s"] > 0, name
