"""Health in the web UI (issue 13): the alerts endpoint returns the stored alerts exactly; the group page
shows them as a banner (newest first, naming rank and step), as a marker on the chart of the alert's key at
its step, and as badges in the runs table row of the alert's rank; a new alert reaches an open page of a
running group without a reload; the runs table tells NaN and inf from a missing value; the system endpoint
reduces sampled system metrics to a band over ranks and a line per node.

The groups here are written straight through the SQLite store classes (group rows by the agent's own
reducers, alerts through ``Txn.add_alert``), so these tests do not depend on the detectors that raise the
alerts; the band continuing past a NaN rank's step is checked on a real 8-rank job once group rows are
NaN-aware (the ``nan_count`` column). Screenshots go to test-artifacts/."""

from __future__ import annotations

import numpy as np
import pytest

import rankwise
from agent.alerts.alert import Alert
from support.probes import wait_for
from support.uihelp import (
    add_alerts,
    artifact,
    get,
    log_group,
    own_env,
    page_url,
    served,
    watch_errors,
    write_health_group,
)

PROJECT, GROUP, RANKS, STEPS, NAN_RANK, NAN_STEP = "health", "job-nan", 4, 400, 2, 300
T = 1.7e9 + 10


def alerts_of(gid: int, runs: list) -> list[Alert]:
    """A nan alert (the chart marker), a hang and a straggler alert (runs table badges), raised in this order."""
    return [
        Alert("nan", gid, T, f"rank {NAN_RANK}: loss is NaN at step {NAN_STEP}", rank=NAN_RANK,
              run_id=runs[NAN_RANK].id, key="loss", step=NAN_STEP, level="ERROR", details={"value": "nan"}),
        Alert("hang", gid, T + 5, "rank 1: no commit for 120 s while ranks 0, 2, 3 progress", rank=1,
              run_id=runs[1].id, level="ERROR", details={"silent_s": 120.0}),
        Alert("straggler", gid, T + 9, "rank 3: step time 1.62x the group median over steps 100-200", rank=3,
              run_id=runs[3].id, step=200, level="WARN", details={"factor": 1.62}),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def health(tmp_path_factory):
    path = tmp_path_factory.mktemp("health") / "store.sqlite"
    runs = write_health_group(path, PROJECT, GROUP, RANKS, STEPS, NAN_RANK, NAN_STEP, "finished")
    alerts = alerts_of(runs[0].group_id, runs)
    add_alerts(path, alerts)
    return path, alerts


@pytest.fixture(scope="module")
def server(health):
    with served(health[0]) as s:
        yield s


def open_group(page, server, group: str = GROUP) -> None:
    page.goto(page_url(server, PROJECT, group))
    page.wait_for_function("window.rw && window.rw.ready", timeout=30_000)


# ---------------------------------------------------------------- API


def test_alerts_endpoint_returns_the_stored_alerts_exactly(server, health):
    """GET .../alerts is every stored alert as Alert.to_dict gives it, in raise order, with a count per kind;
    an unknown group is a 404 naming it, an unknown parameter a 400; /api lists the endpoint."""
    _, alerts = health
    status, body = get(server, f"/api/projects/{PROJECT}/groups/{GROUP}/alerts")
    assert status == 200
    assert body == {"alerts": [a.to_dict() for a in alerts], "kinds": {"hang": 1, "nan": 1, "straggler": 1}}
    status, body = get(server, f"/api/projects/{PROJECT}/groups/nope/alerts")
    assert status == 404 and "nope" in body["error"]
    status, body = get(server, f"/api/projects/{PROJECT}/groups/{GROUP}/alerts?rank=1")
    assert status == 400 and "rank" in body["error"]
    assert (
        "/api/projects/{project}/groups/{group}/alerts[?x=step|time|rel|metric:M]"
        in get(server, "/api")[1]["endpoints"]
    )


def test_a_group_without_alerts_has_an_empty_list(tmp_path):
    """A group nobody alerted about answers an empty list (not an error): the page then shows no banner."""
    path = tmp_path / "store.sqlite"
    write_health_group(path, PROJECT, "quiet", 2, 20, -1, 0, "finished")
    with served(path) as server:
        assert get(server, f"/api/projects/{PROJECT}/groups/quiet/alerts") == (200, {"alerts": [], "kinds": {}})


def test_alert_count_is_the_stored_alerts_and_zero_without_an_alerts_table(tmp_path):
    """The live page's alert count (rankwise/_ui/alerts.py ``alert_count``) is the number of stored alerts (a
    repeated identity counted once), and 0 with an empty list from the endpoint for a store written before
    alerts existed (no ``alerts`` table)."""
    import sqlite3

    from rankwise._ui.alerts import alert_count
    from rankwise._ui.data import UIData

    path = tmp_path / "store.sqlite"
    runs = write_health_group(path, PROJECT, "counted", 2, 20, -1, 0, "finished")
    gid = runs[0].group_id
    alerts = [Alert("nan", gid, 1.0, "nan", rank=r, run_id=runs[r].id, key="loss", step=3) for r in (0, 1, 0)]
    add_alerts(path, alerts + [Alert("stalled", gid, 2.0, "stalled", step=5)])
    assert alert_count(UIData(path), gid) == 3
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE alerts")
    assert alert_count(UIData(path), gid) == 0
    with served(path) as server:
        assert get(server, f"/api/projects/{PROJECT}/groups/counted/alerts") == (200, {"alerts": [], "kinds": {}})


def test_group_detail_spells_out_nonfinite_summary_values(server):
    """The summary sends NaN/inf as null (JSON has no spelling for them); summary_nonfinite names them, so the
    page can tell them from a key the rank never logged."""
    status, body = get(server, f"/api/projects/{PROJECT}/groups/{GROUP}")
    assert status == 200
    by_rank = {r["rank"]: r for r in body["runs"]}
    assert by_rank[NAN_RANK]["summary"]["loss"] is None
    assert by_rank[NAN_RANK]["summary_nonfinite"] == {"loss": "NaN"}
    assert by_rank[1]["summary_nonfinite"] == {"grad_norm": "inf"}
    assert by_rank[0]["summary_nonfinite"] == {} and by_rank[3]["summary_nonfinite"] == {}
    assert "grad_norm" not in by_rank[3]["summary"]


def test_system_reduction_is_a_band_over_ranks_and_a_line_per_node():
    """reduce_system: each rank's samples averaged per time bucket, then mean/min/max over the ranks with a
    sample there (checked against numpy); host keys one series per node; no samples, empty lists."""
    from rankwise._ui.system import reduce_system

    t = 1000.0 + np.arange(10) * 5.0
    per_rank = {r: {"_timestamp": t + 0.1 * r, "proc.rss_bytes": 1e6 * (r + 1) + np.arange(10)} for r in range(3)}
    per_rank[2]["proc.rss_bytes"][4] = np.nan  # a missed sample does not count
    nodes = {"node-0": {"_timestamp": t, "host.load1": np.linspace(0, 1, 10)}}
    out = reduce_system(per_rank, nodes, width=10)
    rss = out["ranks"][0]
    assert rss["key"] == "proc.rss_bytes" and rss["ranks"] == [0, 1, 2] and len(rss["t"]) == 10
    vals = np.array([per_rank[r]["proc.rss_bytes"] for r in range(3)])  # one sample per bucket here
    assert rss["mean"] == pytest.approx(np.nanmean(vals, axis=0).tolist())
    assert rss["min"] == np.nanmin(vals, axis=0).tolist() and rss["max"] == np.nanmax(vals, axis=0).tolist()
    assert rss["count"] == [3, 3, 3, 3, 2, 3, 3, 3, 3, 3]
    assert out["nodes"] == [
        {"node": "node-0", "keys": [{"key": "host.load1", "t": rss["t"], "values": np.linspace(0, 1, 10).tolist()}]}
    ]
    assert out["t0"] == 1000.0
    assert reduce_system({}, {}, 10) == {"t0": None, "ranks": [], "nodes": []}


def test_system_endpoint_and_section_over_a_real_store(tmp_path, browser):
    """System rows stored through a real SQLiteStore transaction (``Txn.add_system``, as the agent's sampler
    commits them): the endpoint gives each proc.* key as mean/min/max over the ranks per time bucket (numpy
    over the stored samples) and each host.* key per node; the page shows a "System" section with one chart
    per key, and none for a group without samples."""
    from agent.store.sqlite import SQLiteStore

    path = tmp_path / "store.sqlite"
    runs = write_health_group(path, PROJECT, "sys", 2, 20, -1, 0, "finished")
    write_health_group(path, PROJECT, "nosys", 2, 20, -1, 0, "finished")
    t = 1.7e9 + np.arange(8) * 5.0
    rss = {r.rank: 1e8 * (r.rank + 1) + 1e6 * np.arange(8) for r in runs}
    store = SQLiteStore(path)
    with store.transaction() as txn:
        for r in runs:
            txn.add_system(r.group_id, r.id, "node-0", {"_timestamp": t, "proc.rss_bytes": rss[r.rank]})
        txn.add_system(runs[0].group_id, None, "node-0", {"_timestamp": t, "host.load1": np.arange(8.0)})
    store.close()
    with served(path) as server:
        status, body = get(server, f"/api/projects/{PROJECT}/groups/sys/system?width=8")
        assert status == 200 and body["t0"] == t[0]
        (k,) = body["ranks"]
        both = np.array([rss[0], rss[1]])
        assert k["key"] == "proc.rss_bytes" and k["ranks"] == [0, 1] and k["count"] == [2] * 8
        assert k["mean"] == both.mean(axis=0).tolist() and k["min"] == rss[0].tolist() and k["max"] == rss[1].tolist()
        assert body["nodes"] == [
            {"node": "node-0", "keys": [{"key": "host.load1", "t": k["t"], "values": list(range(8))}]}
        ]
        assert get(server, f"/api/projects/{PROJECT}/groups/nosys/system")[1] == {"t0": None, "ranks": [], "nodes": []}
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = watch_errors(page)
        page.goto(page_url(server, PROJECT, "sys"))
        page.wait_for_function("window.rw && window.rw.ready && window.rw.system === 2", timeout=30_000)
        assert page.locator("#system-head").is_visible()
        assert page.locator("#system .card").evaluate_all("cs => cs.map(c => c.dataset.key)") == [
            "rank:proc.rss_bytes",
            "host:host.load1",
        ]
        page.locator("#system").scroll_into_view_if_needed()
        page.screenshot(path=artifact("ui-health-system.png"), full_page=True)
        page.goto(page_url(server, PROJECT, "nosys"))
        page.wait_for_function("window.rw && window.rw.ready && window.rw.system === 0", timeout=30_000)
        assert page.locator("#system-head").is_hidden()
        page.close()
    assert errors == []


# ---------------------------------------------------------------- browser


def test_banner_names_rank_and_step_and_markers_sit_at_the_step(page, server, health):
    """The banner lists every alert newest first with its kind and message ("rank 2: loss is NaN at step
    300"), in the error colour; the loss chart has one marker at step 300 whose hover text is the message, the
    acc chart none; the hang and straggler alerts are badges in their rank's runs table row."""
    open_group(page, server)
    page.wait_for_function("() => window.rw.alerts === 3")
    assert page.locator("#alerts").get_attribute("class") == "alerts error"
    assert page.locator("#alerts-head").inner_text().startswith("3 alerts: 1 hang, 1 nan, 1 straggler")
    items = page.locator("#alert-list li")
    assert [items.nth(i).get_attribute("data-kind") for i in range(3)] == ["straggler", "hang", "nan"]
    assert f"rank {NAN_RANK}: loss is NaN at step {NAN_STEP}" in items.nth(2).inner_text()
    marker = page.locator('.card[data-key="loss"] .amark')
    assert marker.count() == 1 and marker.get_attribute("data-step") == str(NAN_STEP)
    assert marker.get_attribute("title") == f"rank {NAN_RANK}: loss is NaN at step {NAN_STEP}"
    # the marker's x is the chart's x of step 300
    x_at = page.evaluate("() => window.rw.charts.get('loss').u.valToPos(300, 'x')")
    left = page.evaluate("() => parseFloat(document.querySelector('.card[data-key=\"loss\"] .amark').style.left)")
    assert left == pytest.approx(x_at, abs=0.01)
    assert page.locator('.card[data-key="acc"] .amark').count() == 0
    row = lambda r: page.locator(f'#runs tr[data-rank="{r}"] td.alertcell .abadge')  # noqa: E731
    assert row(1).get_attribute("data-kind") == "hang" and "no commit for 120 s" in row(1).get_attribute("title")
    assert row(3).get_attribute("data-kind") == "straggler" and row(0).count() == 0
    assert row(NAN_RANK).get_attribute("data-kind") == "nan"
    page.locator('.card[data-key="loss"] .amark').hover()
    page.screenshot(path=artifact("ui-health-alerts.png"), full_page=True)
    assert page.errors == []


def test_runs_table_shows_nan_and_inf_apart_from_missing(page, server):
    """Summary cells: NaN and inf spelled out (and marked non-finite), a key the rank never logged "–"."""
    open_group(page, server)
    heads = page.locator("#runs thead th").all_inner_texts()
    cell = lambda r, k: page.locator(f'#runs tr[data-rank="{r}"] td').nth(heads.index(k))  # noqa: E731
    assert cell(NAN_RANK, "loss").inner_text() == "NaN" and "nonfinite" in cell(NAN_RANK, "loss").get_attribute("class")
    assert cell(1, "grad_norm").inner_text() == "inf"
    assert cell(3, "grad_norm").inner_text() == "–" and cell(1, "val_acc").inner_text() == "–"
    assert cell(0, "loss").inner_text() not in ("NaN", "–")
    page.locator("#runs").scroll_into_view_if_needed()
    page.screenshot(path=artifact("ui-health-runs.png"), full_page=True)
    assert page.errors == []


def test_new_alert_reaches_an_open_page_without_reload(page, tmp_path):
    """On the page of a running group, an alert stored afterwards (no row committed with it: a stalled group)
    appears in the banner through the live event stream, and the page was not reloaded."""
    path = tmp_path / "store.sqlite"
    runs = write_health_group(path, PROJECT, "live", 2, 50, -1, 0, "running")
    with served(path) as server:
        open_group(page, server, "live")
        assert page.locator("#alerts").is_hidden()
        page.evaluate("() => { window.notReloaded = true; }")
        add_alerts(path, [Alert("stalled", runs[0].group_id, T, "no rank progressed for 300 s", level="ERROR")])
        page.wait_for_function("() => window.rw.alerts === 1", timeout=30_000)
        assert "no rank progressed for 300 s" in page.locator("#alert-list").inner_text()
        assert page.evaluate("() => window.notReloaded === true")
    assert page.errors == []


def test_many_alerts_start_collapsed_with_counts_and_fold_long_details(page, tmp_path):
    """More than three alerts: the banner starts collapsed on one line counting them per kind, opens on a
    click; a multi-line detail (a hung rank's stack) is folded under its alert; the straggler panel flags the
    ranks that have alerts."""
    path = tmp_path / "store.sqlite"
    runs = write_health_group(path, PROJECT, "many", 4, 50, -1, 0, "finished")
    gid = runs[0].group_id
    stack = 'Thread 0x1 (idle): "MainThread"\n    wait (train.py:42)\n    step (train.py:80)'
    alerts = [Alert("nan", gid, T + i, f"rank {i}: acc is NaN at step {10 + i}", rank=i, run_id=runs[i].id,
                    key="acc", step=10 + i, level="ERROR") for i in range(3)]  # fmt: skip
    alerts.append(Alert("hang", gid, T + 9, "rank 3: no commit for 60 s", rank=3, run_id=runs[3].id,
                        details={"stack": stack, "silent_s": 60.0}))  # fmt: skip
    add_alerts(path, alerts)
    with served(path) as server:
        open_group(page, server, "many")
        page.wait_for_function("() => window.rw.alerts === 4")
        assert page.locator("#alerts-head").inner_text().startswith("4 alerts: 1 hang, 3 nan")
        assert page.locator("#alerts").evaluate("d => d.open") is False
        assert page.locator("#alert-list").is_hidden()
        page.click("#alerts-head")
        assert page.locator("#alert-list").is_visible()
        hang = page.locator('#alert-list li[data-kind="hang"]')
        assert hang.locator("details.adetail summary").inner_text() == "stack"
        assert hang.locator("details.adetail pre").text_content() == stack
        assert page.locator('.card[data-key="acc"] .amark').evaluate_all("ms => ms.map(m => m.dataset.step)") == [
            "10",
            "11",
            "12",
        ]
        page.wait_for_function("() => document.querySelector('#stragglers .ranklabels div[data-rank=\"3\"]')")
        flagged = page.locator("#stragglers .ranklabels div.alerted").evaluate_all("ds => ds.map(d => d.dataset.rank)")
        assert flagged == ["0", "1", "2", "3"]
        assert (
            page.locator('#stragglers .ranklabels div[data-rank="3"]').get_attribute("title")
            == "rank 3: no commit for 60 s"
        )
        page.screenshot(path=artifact("ui-health-many.png"), full_page=True)
    assert page.errors == []


def test_series_carries_nan_count_and_rank_at_full_and_reduced_resolution(server, health):
    """With NaN-aware group rows, series sends nan_count/nan_rank: per step at full resolution (0/-1 before
    the NaN step, 1/rank from it), per bucket in minmax resolution (the bucket's largest count, lowest rank)."""
    _, body = get(server, f"/api/projects/{PROJECT}/groups/{GROUP}/series?key=loss&width=0")
    after = STEPS - NAN_STEP
    assert body["nan_count"] == [0] * NAN_STEP + [1] * after
    assert body["nan_rank"] == [-1] * NAN_STEP + [NAN_RANK] * after
    assert all(v is not None for v in body["mean"])
    _, red = get(server, f"/api/projects/{PROJECT}/groups/{GROUP}/series?key=loss&width=50")
    assert red["resolution"] == "minmax"
    buckets = np.clip(np.floor(np.arange(STEPS) * 50 / (STEPS - 1)).astype(int), 0, 49)
    hit = np.zeros(50, bool)
    hit[buckets[NAN_STEP:]] = True
    assert red["nan_count"] == np.repeat(hit.astype(int), 2).tolist()
    assert red["nan_rank"] == np.repeat(np.where(hit, NAN_RANK, -1), 2).tolist()


# ---------------------------------------------------------------- a real job with a NaN rank

REAL_WORLD, REAL_STEPS, REAL_NAN_RANK, REAL_NAN_STEP = 8, 200, 5, 120
NAN_SCRIPT = """
import os, rankwise
rank = int(os.environ["RANK"])
run = rankwise.init(project="health")
for s in range(%(steps)d):
    loss = 2.0 * 0.99 ** s + 0.05 * rank
    run.log({"loss": float("nan") if rank == %(nan_rank)d and s >= %(nan_step)d else loss})
run.finish()
""" % {"steps": REAL_STEPS, "nan_rank": REAL_NAN_RANK, "nan_step": REAL_NAN_STEP}


def test_real_job_band_continues_past_the_nan_rank(browser):
    """8 ranks through the real agent, rank 5's loss NaN from step 120: the chart's band and mean go on past
    step 120 over the 7 healthy ranks (numpy's nan-reductions), the header names rank 5 and step 120, the
    steps from 120 carry the non-finite tick; the nan detector's alert names rank 5 and step 120 in the banner and
    the marker."""
    with own_env() as env:
        log_group(env, NAN_SCRIPT, REAL_WORLD, "job-real-nan")
        api = rankwise.Api(env.store)
        g = api.group("health", "job-real-nan")
        raw = np.array([g.run(rank=r).history_arrays(["loss"])["loss"][1] for r in range(REAL_WORLD)])
        h = g.history("loss")
        assert h["mean"].tolist() == pytest.approx(np.nanmean(raw, axis=0).tolist())
        # the nan alert is stored on a tick after the rows, so waited for; value alerts (nan, diverged) name
        # rank 5 only
        wait_for(lambda: any(a["kind"] == "nan" for a in api._reader.alerts(g._record.id)), 60, "the nan alert")
        value_alerts = [
            (a["kind"], a["rank"], a["key"], a["step"])
            for a in api._reader.alerts(g._record.id)
            if a["kind"] in ("nan", "diverged")
        ]
        assert value_alerts == [("nan", REAL_NAN_RANK, "loss", REAL_NAN_STEP)]
        api.close()
        with served(env.store) as server:
            p = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors = watch_errors(p)
            p.goto(page_url(server, "health", "job-real-nan"))
            p.wait_for_function("window.rw && window.rw.ready", timeout=30_000)
            c = p.evaluate(
                "() => { const c = window.rw.charts.get('loss'); return {x: Array.from(c.u.data[0]), "
                "mean: Array.from(c.u.data[c.u.data.length - 1]), min: Array.from(c.u.data[1]), "
                "nc: c.data.nan_count, nr: c.data.nan_rank, first: c.card.dataset.nanFirst} }"
            )
            assert c["x"] == list(range(REAL_STEPS))
            assert c["mean"] == h["mean"].tolist() and all(v is not None for v in c["mean"][REAL_NAN_STEP:])
            assert c["min"] == np.nanmin(raw, axis=0).tolist()
            assert c["nc"] == [0] * REAL_NAN_STEP + [1] * (REAL_STEPS - REAL_NAN_STEP)
            assert c["nr"][REAL_NAN_STEP:] == [REAL_NAN_RANK] * (REAL_STEPS - REAL_NAN_STEP)
            assert c["first"] == str(REAL_NAN_STEP)
            warn = p.locator('.card[data-key="loss"] .warn').inner_text()
            assert warn.startswith(f"1 rank non-finite from step {REAL_NAN_STEP} (rank {REAL_NAN_RANK})")
            p.wait_for_function("() => window.rw.alerts >= 1")
            assert f"rank {REAL_NAN_RANK}" in p.locator("#alert-list").inner_text()
            assert str(REAL_NAN_STEP) in p.locator("#alert-list").inner_text()
            m = p.locator('.card[data-key="loss"] .amark[data-kind="nan"]')
            assert m.count() == 1 and m.get_attribute("data-step") == str(REAL_NAN_STEP)
            p.screenshot(path=artifact("ui-health-real-nan.png"), full_page=True)
            p.close()
            assert errors == []
