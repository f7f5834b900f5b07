"""The project page's table and the compare page over two real small jobs (real rank processes through the
real agent) that differ in their learning rate: the table endpoint's metrics against numpy over the ranks'
raw values, the series each group contributes to a compare chart against ``Group.history``, and in headless
Chromium the table's metric column, sorting, search and selection, the compare URL, both groups drawn per
key, the config diff naming ``lr`` with both values, and an unknown group named while the others still draw.
Screenshots go to test-artifacts/."""

from __future__ import annotations

import numpy as np
import pytest

import rankwise
from support.uihelp import artifact, get, health_values, log_group, own_env, served, write_health_group

WORLD, STEPS, PROJECT = 3, 120, "cmp"
LRS = {"lr-a": 0.1, "lr-b": 0.01}
SCRIPT = """
import os, numpy as np, rankwise
rank = int(os.environ["RANK"])
lr = %(lr)r
rng = np.random.default_rng(rank)
run = rankwise.init(project="cmp", config={"lr": lr, "batch": 32, "seed": 7})
for s in range(%(steps)d):
    run.log({"loss": float(2.0 * np.exp(-lr * s) + 0.01 * rank + 0.001 * rng.random()), "acc": float(1 - np.exp(-lr * s))})
run.finish()
"""

COMPARE_CHART = """([key]) => { const c = window.rw.compare.charts.get(key); if (!c || !c.u) return null;
  return {series: c.u.series.length - 1, time: c.u.scales.x.time, groups: c.ok.map(g => g.label), labels: c.u.series.map(s => s.label),
          drawn: Object.fromEntries(Object.entries(c.series).map(([k, v]) => [k, {x: v.x, mean: v.mean}]))} }"""


@pytest.fixture(scope="module")
def store():
    with own_env() as env:
        for group, lr in LRS.items():
            log_group(env, SCRIPT % {"lr": lr, "steps": STEPS}, WORLD, group)
        yield env.store


@pytest.fixture(scope="module")
def api(store):
    a = rankwise.Api(store)
    yield a
    a.close()


def raw(api, group: str, key: str) -> np.ndarray:
    """(ranks × steps) of ``key``: each rank's raw values as logged."""
    g = api.group(PROJECT, group)
    return np.stack([g.run(rank=r).history_arrays([key])[key][1] for r in range(WORLD)])


def open_path(page, server, path: str) -> None:
    page.goto(f"{server.url}{path.lstrip('/')}{'&' if '?' in path else '?'}token={server.token}")
    page.wait_for_function("window.rw && window.rw.ready", timeout=30_000)


def test_table_endpoint_metrics_are_rank_means_of_summaries(server, api):
    """``/table?metrics=loss,acc`` lists both groups with the project's summary keys, and each group's metric
    is the mean over its ranks of their last logged value (numpy over the raw values); the config carries
    ``lr``; an unknown metric is a 400 naming it and the keys, an unknown project a 404."""
    status, body = get(server, f"/api/projects/{PROJECT}/table?metrics=loss,acc")
    assert status == 200, body
    assert body["metrics"] == ["loss", "acc"]
    assert {"loss", "acc"} <= set(body["summary_keys"])
    rows = {g["name"]: g for g in body["groups"]}
    assert set(rows) == set(LRS)
    for name, lr in LRS.items():
        row = rows[name]
        assert row["state"] == "finished" and row["ranks"] == WORLD and row["steps"] == STEPS
        for key in ("loss", "acc"):
            values = raw(api, name, key)
            assert values.shape == (WORLD, STEPS)
            assert row["metrics"][key] == pytest.approx(float(np.mean(values[:, -1])), rel=1e-12)
            assert row["metrics_missing"][key] == 0
        assert row["config"]["common"]["lr"] == lr and row["config"]["common"]["batch"] == 32
    _, groups = get(server, f"/api/projects/{PROJECT}/groups")
    assert [g["name"] for g in groups] == [g["name"] for g in body["groups"]]  # same rows, same order
    status, err = get(server, f"/api/projects/{PROJECT}/table?metrics=loss,nope")
    assert status == 400 and "'nope'" in err["error"] and "loss" in err["error"]
    status, err = get(server, "/api/projects/none/table")
    assert status == 404 and "none" in err["error"]


def test_table_metric_leaves_out_missing_and_nonfinite_ranks(tmp_path):
    """A rank whose summary lacks the key or holds NaN/±inf is left out of the group's mean and counted in
    ``metrics_missing`` (the health group: rank 2's loss NaN, rank 1's grad_norm +inf, rank 3 without
    grad_norm, rank 0 alone with val_acc); a metric no rank has a finite value for is null."""
    path = tmp_path / "store.sqlite"
    write_health_group(path, "h", "nan-job", 4, 50, 2, 30, "finished")
    write_health_group(path, "h", "all-nan", 1, 50, 0, 30, "finished")
    with served(path) as srv:
        status, body = get(srv, "/api/projects/h/table?metrics=loss,grad_norm,val_acc")
    assert status == 200, body
    assert body["summary_keys"] == ["grad_norm", "loss", "val_acc"]
    rows = {g["name"]: g for g in body["groups"]}
    last = [float(health_values(r, 50, 2, 30)["loss"][-1]) for r in (0, 1, 3)]
    assert rows["nan-job"]["metrics"] == {
        "loss": pytest.approx(float(np.mean(last)), rel=1e-12),
        "grad_norm": 1.0,
        "val_acc": 0.5,
    }
    assert rows["nan-job"]["metrics_missing"] == {"loss": 1, "grad_norm": 2, "val_acc": 3}
    assert rows["all-nan"]["metrics"] == {"loss": None, "grad_norm": 1.0, "val_acc": 0.5}
    assert rows["all-nan"]["metrics_missing"] == {"loss": 1, "grad_norm": 0, "val_acc": 0}


def test_compare_series_are_each_groups_history(server, api):
    """What the compare page fetches per group and key (the group's series endpoint) is that group's
    ``Group.history`` exactly, and its mean, min and max are numpy's over the ranks' raw values; the two
    learning rates give different curves."""
    means = {}
    for name in LRS:
        h = api.group(PROJECT, name).history("loss")
        status, d = get(server, f"/api/projects/{PROJECT}/groups/{name}/series?key=loss&width=1000")
        assert status == 200 and d["resolution"] == "full"
        assert d["x"] == h["step"].tolist() == list(range(STEPS))
        assert d["mean"] == h["mean"].tolist()
        values = raw(api, name, "loss")
        np.testing.assert_allclose(d["mean"], values.mean(axis=0), rtol=1e-12)
        assert d["min"] == values.min(axis=0).tolist() and d["max"] == values.max(axis=0).tolist()
        means[name] = np.array(d["mean"])
    assert means["lr-a"][-1] < means["lr-b"][-1] - 0.5  # the faster rate is visibly lower at the end


def test_project_page_metric_column_sort_search_and_compare(page, server, api):
    """The project page lists both groups; ticking the ``loss`` metric adds its column (the table endpoint's
    values) and puts it in the URL; clicking its header orders rows by it, again reverses; search filters on
    config values; ticking both rows and clicking compare opens /compare?g=cmp/lr-a&g=cmp/lr-b."""
    open_path(page, server, f"/p/{PROJECT}")
    assert sorted(page.locator("#groups tbody tr").evaluate_all("rs => rs.map(r => r.dataset.group)")) == sorted(LRS)
    assert page.locator("#compare").is_disabled()
    assert page.locator("#project-warning").is_hidden()
    page.evaluate("() => { window.rw.ready = false; }")
    page.locator("#metric-picker summary").click()
    page.locator('#metric-picker input[data-key="loss"]').check()
    page.wait_for_function("window.rw.ready && document.querySelectorAll('td.metric').length === 2", timeout=30_000)
    assert "metrics=loss" in page.url
    finals = {name: float(np.mean(raw(api, name, "loss")[:, -1])) for name in LRS}
    shown = page.locator("#groups tbody tr").evaluate_all(
        "rs => rs.map(r => [r.dataset.group, r.querySelector('td.metric').textContent])"
    )
    for name, text in shown:
        assert float(text) == pytest.approx(finals[name], rel=1e-4)
    order = sorted(LRS, key=finals.get)
    page.locator('th[data-col="metric:loss"]').click()
    assert page.locator("#groups tbody tr").evaluate_all("rs => rs.map(r => r.dataset.group)") == order
    page.locator('th[data-col="metric:loss"]').click()
    assert page.locator("#groups tbody tr").evaluate_all("rs => rs.map(r => r.dataset.group)") == order[::-1]
    assert "sort=metric%3Aloss" in page.url and "desc=1" in page.url
    page.fill("#group-search", "lr=0.01")
    assert page.locator("#groups tbody tr").evaluate_all("rs => rs.map(r => r.dataset.group)") == ["lr-b"]
    page.screenshot(path=artifact("ui-project-search.png"), full_page=True)
    page.fill("#group-search", "")
    assert page.locator("#groups tbody tr").count() == 2
    page.locator('input.pick[data-group="lr-a"]').check()
    page.locator('input.pick[data-group="lr-b"]').check()
    page.screenshot(path=artifact("ui-project.png"), full_page=True)
    page.locator("#compare").click()
    page.wait_for_url("**/compare?*", timeout=30_000)
    page.wait_for_function("window.rw && window.rw.ready && window.rw.compare", timeout=30_000)
    assert page.evaluate("() => new URLSearchParams(location.search).getAll('g')") == ["cmp/lr-a", "cmp/lr-b"]
    assert page.evaluate("() => window.rw.compare.charts.get('loss').ok.length") == 2
    assert page.errors == []


def test_project_page_view_comes_back_from_its_url(page, server, api):
    """A project page opened with ?metrics=loss&sort=metric:loss&desc=1&q=lr- shows the loss column ticked in
    the picker, rows by loss descending and the search text, as a reload or a shared link must."""
    open_path(page, server, f"/p/{PROJECT}?metrics=loss&sort=metric:loss&desc=1&q=lr-")
    finals = {name: float(np.mean(raw(api, name, "loss")[:, -1])) for name in LRS}
    rows = page.locator("#groups tbody tr").evaluate_all("rs => rs.map(r => r.dataset.group)")
    assert rows == sorted(LRS, key=finals.get, reverse=True)
    assert page.locator('#metric-picker input[data-key="loss"]').is_checked()
    assert page.input_value("#group-search") == "lr-"
    assert page.locator('th[data-col="metric:loss"]').get_attribute("class") == "sortable desc"
    assert page.errors == []


def test_compare_page_draws_both_groups_and_config_diff(page, server, api):
    """/compare?g=cmp/lr-a&g=cmp/lr-b draws one chart per key with both groups (three series each: band
    edges and mean), each group's mean being its ``Group.history`` mean; the config diff lists ``lr`` with
    both values (and not ``batch``, folded as equal); the key filter hides the other chart."""
    open_path(page, server, f"/compare?g={PROJECT}/lr-a&g={PROJECT}/lr-b")
    assert sorted(page.evaluate("() => [...window.rw.compare.charts.keys()]")) == ["acc", "loss"]
    for key in ("acc", "loss"):
        c = page.evaluate(COMPARE_CHART, [key])
        assert c["series"] == 6 and c["groups"] == ["cmp/lr-a", "cmp/lr-b"] and c["time"] is False
        assert c["labels"][3] == "cmp/lr-a" and c["labels"][6] == "cmp/lr-b"
        for name in LRS:
            h = api.group(PROJECT, name).history(key)
            assert c["drawn"][f"{PROJECT}/{name}"]["mean"] == h["mean"].tolist()
    rows = page.locator("#config-diff tbody tr").evaluate_all("rs => rs.map(r => [...r.cells].map(c => c.textContent))")
    assert rows == [["lr", "0.1", "0.01"]]
    same = page.locator("#config-same").text_content()
    assert "2 config keys equal" in same and "batch" in same and "seed" in same
    assert page.locator("#compare-groups tbody tr").count() == 2
    cells = page.locator("#compare-groups tbody tr").evaluate_all(
        "rs => rs.map(r => [r.dataset.group, r.cells[2].textContent, r.cells[3].textContent, r.cells[4].textContent])"
    )
    assert cells == [[f"{PROJECT}/{n}", "finished", f"{WORLD}/{WORLD}", str(STEPS)] for n in LRS]
    page.screenshot(path=artifact("ui-compare.png"), full_page=True)
    page.fill("#compare-filter", "loss")
    assert page.locator('.ccard[data-key="acc"]').is_hidden() and page.locator('.ccard[data-key="loss"]').is_visible()
    assert page.errors == []


def test_compare_page_names_an_unknown_group_and_shows_the_others(page, server, api):
    """A group the store does not have is named in a message, and the known group's charts are still drawn."""
    open_path(page, server, f"/compare?g={PROJECT}/nope&g={PROJECT}/lr-a")
    msg = page.locator(".missing").inner_text()
    assert "cmp/nope" in msg and "no group 'nope'" in msg
    c = page.evaluate(COMPARE_CHART, ["loss"])
    assert c["series"] == 3 and c["groups"] == ["cmp/lr-a"]
    page.screenshot(path=artifact("ui-compare-missing.png"), full_page=True)
    assert [e for e in page.errors if "404" not in e] == []


def ema(values: list[float], alpha: float) -> list[float]:
    """chart.js ``smooth``: the debiased exponential moving average (TensorBoard's)."""
    out, last = [], 0.0
    for n, v in enumerate(values, 1):
        last = last * alpha + (1 - alpha) * v
        out.append(last / (1 - alpha**n))
    return out


COMPARE_DRAWN = """([key]) => { const c = window.rw.compare.charts.get(key); if (!c || !c.u) return null;
  return {x: Array.from(c.u.data[0]), means: c.meanCol.map(i => Array.from(c.u.data[i])), distr: c.u.scales.y.distr,
          time: c.u.scales.x.time, series: c.u.series.length - 1} }"""


def test_compare_controls_go_into_the_url_and_come_back_on_reload(page, server, api):
    """On /compare: relative time as x (each group's series x=rel: seconds since its own start), log y and
    smoothing 0.6 (the debiased EMA of each group's mean over every point, raw means faded beneath) and the
    keys filter are written into the URL next to the g= parameters; the reloaded URL shows the same controls
    and the same drawing."""
    open_path(page, server, f"/compare?g={PROJECT}/lr-a&g={PROJECT}/lr-b")
    page.evaluate("() => { window.rw.compareRenders = 0; }")
    page.select_option("#compare-axis", "rel")
    page.wait_for_function("() => window.rw.compareRenders >= 2", timeout=30_000)  # both charts fetched again
    page.check("#compare-log")
    page.locator("#compare-smooth").fill("0.6")
    page.fill("#compare-filter", "loss")
    page.wait_for_function("() => window.rw.compareRenders >= 4", timeout=30_000)  # smoothing on: every point
    q = page.evaluate("() => Object.fromEntries(new URLSearchParams(location.search))")
    assert {k: v for k, v in q.items() if k != "g"} == {"x": "rel", "log": "1", "smooth": "0.6", "filter": "loss"}
    assert page.evaluate("() => new URLSearchParams(location.search).getAll('g')") == ["cmp/lr-a", "cmp/lr-b"]

    def expected() -> tuple[list[float], list[list[float | None]]]:
        per = {}
        for name in LRS:
            status, d = get(server, f"/api/projects/{PROJECT}/groups/{name}/series?key=loss&x=rel&width=0")
            assert status == 200 and d["axis"] == "rel"
            per[name] = dict(zip(d["x"], ema(d["mean"], 0.6)))
        xs = sorted(set(per["lr-a"]) | set(per["lr-b"]))
        return xs, [[per[name].get(x) for x in xs] for name in LRS]

    xs, means = expected()
    for attempt in ("before", "after reload"):
        c = page.evaluate(COMPARE_DRAWN, ["loss"])
        assert c["x"] == xs, attempt
        for got, want in zip(c["means"], means):
            assert [v is None for v in got] == [v is None for v in want], attempt  # each group's gaps
            assert [v for v in got if v is not None] == pytest.approx([v for v in want if v is not None], rel=1e-9)
        assert c["distr"] == 3 and c["time"] is False and c["series"] == 8  # per group: min, max, raw, mean
        assert page.locator('.ccard[data-key="acc"]').is_hidden()
        if attempt == "before":
            page.screenshot(path=artifact("ui-compare-controls.png"), full_page=True)
            page.reload()
            page.wait_for_function("window.rw && window.rw.ready && window.rw.compare", timeout=30_000)
            controls = page.evaluate(
                """() => [document.querySelector('#compare-axis').value, document.querySelector('#compare-log').checked,
                document.querySelector('#compare-smooth').value, document.querySelector('#compare-filter').value]"""
            )
            assert controls == ["rel", True, "0.6", "loss"]
    assert page.errors == []


def _append_steps(path, project: str, group: str, lo: int, hi: int) -> None:
    """Commit steps [lo, hi) of loss and acc for every rank of a running group as the agent would (history,
    group rows by the agent's reducers, the runs' step and the group's updated time)."""
    import time

    from agent.store.sqlite import SQLiteStore
    from grouping import finalize, reduce_points

    store = SQLiteStore(path)
    try:
        reader = store.reader()
        g = reader.group(project, group)
        runs = reader.runs(g.id)
        s = np.arange(lo, hi, dtype=np.int64)
        with store.transaction() as txn:
            for r in runs:
                txn.add_history(r.id, "_timestamp", s, 1.7e9 + s / 64, False)
                for key in ("loss", "acc"):
                    txn.add_history(r.id, key, s, np.full(len(s), 0.5 + r.rank), False)
            for key in ("loss", "acc"):
                points = reduce_points(
                    np.tile(s, len(runs)),
                    np.repeat(np.array([r.rank for r in runs], dtype=np.int64), len(s)),
                    np.concatenate([np.full(len(s), 0.5 + r.rank) for r in runs]),
                )
                txn.add_group_rows(g.id, key, finalize(points, len(runs)), False)
            for r in runs:
                r.step, r.rows, r.updated = hi, hi, time.time()
                txn.put_run(r)
            g.updated, g.sealed_through = time.time(), hi - 1
            txn.put_group(g)
    finally:
        store.close()


def test_compare_page_follows_a_running_group(page, tmp_path):
    """A compare page over a running group and a finished one polls while the running one runs: rows the
    agent commits afterwards appear in the compare chart (its last x is the new last step) without a reload,
    and the header says live."""
    path = tmp_path / "store.sqlite"
    write_health_group(path, "lv", "running", 2, 50, -1, 0, "running")
    write_health_group(path, "lv", "done", 2, 50, -1, 0, "finished")
    with served(path) as server:
        open_path(page, server, "/compare?g=lv/running&g=lv/done")
        assert page.evaluate(COMPARE_DRAWN, ["loss"])["x"] == list(range(50))
        assert page.locator("#live").inner_text() == "live"
        page.evaluate("() => { window.notReloaded = true; }")
        _append_steps(path, "lv", "running", 50, 80)
        page.wait_for_function("() => window.rw.compareUpdates >= 1", timeout=60_000)
        page.wait_for_function(
            "() => { const c = window.rw.compare.charts.get('loss'); return c.u && c.u.data[0].length === 80 }",
            timeout=60_000,
        )
        c = page.evaluate(COMPARE_DRAWN, ["loss"])
        assert c["x"] == list(range(80))
        assert c["means"][0][50:] == [1.0] * 30  # ranks 0 and 1 logged 0.5 and 1.5
        assert c["means"][1][50:] == [None] * 30  # the finished group has no rows there
        assert page.evaluate("() => window.notReloaded === true")
        page.screenshot(path=artifact("ui-compare-live.png"), full_page=True)
    assert page.errors == []
