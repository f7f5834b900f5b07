"""A step metric as the UI's x axis (``define_metric(k, step_metric=M)``; docs/ui.md): the group detail lists
the step metrics the runs defined, ``series?x=metric:M`` returns each key's group rows and per-rank values
against M's value at the same row (or, for keys defined with M, the latest earlier one), and in the browser
the x-axis selector offers M and the chart's x values become M's."""

from __future__ import annotations

from urllib.parse import quote

import pytest

import rankwise
from support.uihelp import get, log_group, own_env, served

WORLD, STEPS = 2, 30
SCRIPT = """
import os, rankwise
rank = int(os.environ["RANK"])
run = rankwise.init(project="sm", group="hf")
run.define_metric("train/global_step")
run.define_metric("train/*", step_metric="train/global_step")
run.define_metric("eval/*", step_metric="train/global_step")
for i in range(%(steps)d):
    run.log({"train/global_step": 4 * i + 4, "train/loss": 10.0 * rank + 1.0 / (i + 1)})
    if i %% 10 == 9:
        run.log({"eval/acc": 0.5 + rank + i / 100})
run.finish()
""" % {"steps": STEPS}

LOSS = {r: [10.0 * r + 1.0 / (i + 1) for i in range(STEPS)] for r in range(WORLD)}
ACC = {r: [(4 * i + 4, 0.5 + r + i / 100) for i in range(STEPS) if i % 10 == 9] for r in range(WORLD)}
GSTEP = [4 * i + 4 for i in range(STEPS)]


@pytest.fixture(scope="module")
def store():
    """One group of two ranks logging as HF's Trainer does (global step in every training row), through the
    real agent."""
    with own_env() as env:
        log_group(env, SCRIPT, WORLD, "hf")
        api = rankwise.Api(env.store)
        assert [r.state for r in api.group("sm", "hf").runs] == ["finished"] * WORLD
        api.close()
        yield env.store


def _series(server, key: str, **params) -> dict:
    q = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in {"key": key, **params}.items())
    status, body = get(server, f"/api/projects/sm/groups/hf/series?{q}")
    assert status == 200, body
    return body


def test_detail_lists_step_metrics_and_series_pairs_exactly(store):
    """Detail: step_metrics = [{key: train/global_step, for: [eval/*, train/*]}]. series x=metric:... gives the
    group mean of train/loss at x = the global step of the same row, every rank's own values on those x (digits=0:
    as stored),
    and eval/acc at the global step logged before it (step_sync); x=step is unchanged."""
    with served(store) as server:
        status, detail = get(server, "/api/projects/sm/groups/hf")
        assert status == 200
        assert detail["step_metrics"] == [{"key": "train/global_step", "for": ["eval/*", "train/*"]}]
        s = _series(server, "train/loss", x="metric:train/global_step", width=0, ranks=1, digits=0)
        assert s["axis"] == "metric:train/global_step" and s["x_key"] == "train/global_step"
        assert s["x"] == GSTEP
        assert s["mean"] == [(LOSS[0][i] + LOSS[1][i]) / 2 for i in range(STEPS)]
        assert s["min"] == LOSS[0] and s["max"] == LOSS[1]
        assert [r["rank"] for r in s["ranks"]] == [0, 1]
        assert [r["values"] for r in s["ranks"]] == [LOSS[0], LOSS[1]]
        acc = _series(server, "eval/acc", x="metric:train/global_step", width=0, ranks=1, digits=0)
        assert acc["x"] == [g for g, _ in ACC[0]]
        assert [r["values"] for r in acc["ranks"]] == [[a for _, a in ACC[r]] for r in range(WORLD)]
        red = _series(server, "train/loss", x="metric:train/global_step", width=4)  # 30 points > 2 per bucket
        assert red["resolution"] == "minmax" and red["x"][0] == 4 and red["x"][-1] == 4 * STEPS
        assert set(red["mean"]) <= set(s["mean"]) and set(red["x"]) <= set(GSTEP)  # bucket extremes: real points
        assert max(red["mean"]) == max(s["mean"]) and min(red["mean"]) == min(s["mean"])
        zoom = _series(server, "train/loss", x="metric:train/global_step", width=0, start=20, end=40)
        assert zoom["x"] == [20, 24, 28, 32, 36, 40]
        # x=step as before: the training rows' own steps (an eval row every 10 training rows)
        assert _series(server, "train/loss", x="step", width=0)["x"] == [s for s in range(STEPS + 2) if s % 11 != 10]
        status, body = get(server, "/api/projects/sm/groups/hf/series?key=train/loss&x=epochs")
        assert status == 400 and "metric:<key>" in body["error"]
        status, body = get(server, "/api/projects/sm/groups/hf/series?key=train/loss&x=metric:nope")
        assert status == 404 and "'nope'" in body["error"]


CHART = """([key]) => { const c = window.rw.charts.get(key); if (!c || !c.u || !c.data) return null;
  return {x: Array.from(c.u.data[0]), mean: Array.from(c.u.data[c.u.data.length - 1]), axis: c.data.axis,
          label: c.u.series[0].label, readout: c.readout.textContent} }"""


def test_browser_axis_selector_plots_against_the_step_metric(store):
    """In the page, the x selector lists train/global_step; choosing it redraws train/loss with the global
    steps as x values (and the group mean as y), and the zoom readout names the metric."""
    from support.uihelp import BROWSER_ARGS, CHROMIUM, page_url, require_browser, watch_errors

    sync_playwright = require_browser()
    with served(store) as server, sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = b.new_page(viewport={"width": 1400, "height": 1000})
            errors = watch_errors(page)
            page.goto(page_url(server, "sm", "hf"))
            page.wait_for_function("window.rw && window.rw.ready", timeout=30_000)
            options = page.evaluate(
                "() => [...document.querySelectorAll('#axis option')].map(o => [o.value, o.textContent])"
            )
            assert options[:5] == [
                ["auto", "default (per key)"],
                ["step", "step"],
                ["rel", "relative time"],
                ["time", "wall time"],
                ["metric:train/global_step", "train/global_step"],
            ]
            # then every other logged key (issue 14: any key as the x axis), once each
            assert all(v == f"metric:{t}" for v, t in options[5:]) and len({v for v, _ in options}) == len(options)
            page.select_option("#axis", "metric:train/global_step")
            page.wait_for_function(
                "([k]) => { const c = window.rw.charts.get(k); return c && c.data && c.data.axis.startsWith('metric:') }",
                arg=["train/loss"],
                timeout=30_000,
            )
            c = page.evaluate(CHART, ["train/loss"])
            assert c["axis"] == "metric:train/global_step" and c["label"] == "train/global_step"
            assert c["x"] == GSTEP
            assert c["mean"] == [(LOSS[0][i] + LOSS[1][i]) / 2 for i in range(STEPS)]
            page.wait_for_function(
                "([k]) => { const c = window.rw.charts.get(k); return c && c.data && c.data.axis.startsWith('metric:') }",
                arg=["eval/acc"],
                timeout=30_000,
            )
            assert page.evaluate(CHART, ["eval/acc"])["x"] == [g for g, _ in ACC[0]]
            assert errors == []
        finally:
            b.close()


def test_browser_default_axis_is_each_keys_step_metric(store):
    """With no x= in the URL the selector shows "default (per key)": train/loss and eval/acc (defined with
    step_metric=train/global_step) are drawn against the global step, train/global_step itself (its own step
    metric) against step; choosing "step" puts every chart on steps and writes x=step into the URL, and the
    reloaded URL keeps it. A zoom dragged in default mode is in the global-step units of its chart (rx=)."""
    from support.uihelp import BROWSER_ARGS, CHROMIUM, artifact, page_url, require_browser, watch_errors

    sync_playwright = require_browser()
    with served(store) as server, sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = b.new_page(viewport={"width": 1400, "height": 1000})
            errors = watch_errors(page)
            status, detail = get(server, "/api/projects/sm/groups/hf")
            per_key = {k["key"]: k["step_metric"] for k in detail["keys"]}
            assert per_key == {
                "eval/acc": "train/global_step",
                "train/global_step": None,
                "train/loss": "train/global_step",
            }
            page.goto(page_url(server, "sm", "hf"))
            page.wait_for_function("window.rw && window.rw.ready", timeout=30_000)
            assert page.evaluate("() => document.querySelector('#axis').value") == "auto"
            for key in ("train/loss", "eval/acc", "train/global_step"):
                page.wait_for_function(
                    "([k]) => { const c = window.rw.charts.get(k); return c && c.u && c.data }",
                    arg=[key],
                    timeout=30_000,
                )
            loss, acc, gstep = (page.evaluate(CHART, [k]) for k in ("train/loss", "eval/acc", "train/global_step"))
            assert loss["axis"] == "metric:train/global_step" and loss["x"] == GSTEP
            assert loss["mean"] == [(LOSS[0][i] + LOSS[1][i]) / 2 for i in range(STEPS)]
            assert loss["label"] == "train/global_step"
            assert acc["axis"] == "metric:train/global_step" and acc["x"] == [g for g, _ in ACC[0]]
            assert gstep["axis"] == "step" and gstep["x"] == [s for s in range(STEPS + 2) if s % 11 != 10]
            assert gstep["mean"] == [float(g) for g in GSTEP]
            page.screenshot(path=artifact("ui-step-metric-default.png"), full_page=False)
            # a drag on train/loss zooms it in global-step units: the URL says so, train/global_step stays whole
            box = page.evaluate(
                """() => { const c = window.rw.charts.get('train/loss'); const r = c.u.over.getBoundingClientRect();
                return {x0: r.left + c.u.valToPos(40, 'x'), x1: r.left + c.u.valToPos(80, 'x'), y: r.top + r.height / 2} }"""
            )
            page.mouse.move(box["x0"], box["y"])
            page.mouse.down()
            page.mouse.move(box["x1"], box["y"], steps=5)
            page.mouse.up()
            page.wait_for_function("() => location.search.includes('rx=')", timeout=30_000)
            page.wait_for_function(
                "() => { const c = window.rw.charts.get('train/loss'); return c.data && c.data.points < 30 }",
                timeout=30_000,
            )
            zoomed = page.evaluate(CHART, ["train/loss"])
            assert 36 <= zoomed["x"][0] <= 44 and 76 <= zoomed["x"][-1] <= 84
            assert "rx=metric%3Atrain%2Fglobal_step" in page.evaluate("() => location.search")
            assert page.evaluate(CHART, ["train/global_step"])["x"] == gstep["x"]
            # an explicit choice: every chart on steps, x=step in the URL, kept on reload
            page.select_option("#axis", "step")
            page.wait_for_function(
                "() => ['train/loss', 'eval/acc'].every(k => { const c = window.rw.charts.get(k); return c.data && c.data.axis === 'step' })",
                timeout=30_000,
            )
            assert "x=step" in page.evaluate("() => location.search")
            page.reload()
            page.wait_for_function("window.rw && window.rw.ready", timeout=30_000)
            assert page.evaluate("() => document.querySelector('#axis').value") == "step"
            page.wait_for_function(
                "() => { const c = window.rw.charts.get('train/loss'); return c && c.data && c.data.axis === 'step' }",
                timeout=30_000,
            )
            assert page.evaluate(CHART, ["train/loss"])["x"] == [s for s in range(STEPS + 2) if s % 11 != 10]
            assert errors == []
        finally:
            b.close()
