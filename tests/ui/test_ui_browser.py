"""The web UI in real headless Chromium (Playwright, system /usr/bin/chromium) over groups logged through
the real agent: charts drawn with the right series and points, per-rank lines, zoom, controls, the
straggler panel, and a live update arriving without a reload. Screenshots go to test-artifacts/."""

from __future__ import annotations

import numpy as np
import pytest

import rankwise
from support.processes import start_ranks, wait_all
from support.uihelp import artifact, log_group, own_env, page_url, served, wait_group

WORLD, STEPS, SLOW_RANK = 4, 300, 3
SCRIPT = """
import os, time, numpy as np, rankwise
rank = int(os.environ["RANK"])
rng = np.random.default_rng(rank)
run = rankwise.init(project="web", config={"lr": 0.01 * (rank + 1), "batch": 64})
for s in range(%(steps)d):
    d = {"loss": float(2.0 * np.exp(-s / 80) + 0.1 * rng.normal() + 0.05 * rank), "acc": float(rng.random())}
    if s %% 10 == 0:
        d["val"] = {"acc": float(0.5 + s / 1000 + 0.01 * rank)}
    run.log(d)
    if rank == %(slow)d:
        time.sleep(0.003)
run.finish()
""" % {"steps": STEPS, "slow": SLOW_RANK}

CHART = """([key]) => { const c = window.rw.charts.get(key); if (!c || !c.u) return null;
  return {series: c.u.series.length - 1, points: c.u.data[0].length, x: Array.from(c.u.data[0]),
          mean: Array.from(c.u.data[c.u.data.length - 1]), labels: c.u.series.map(s => s.label),
          strokes: c.u.series.map(s => typeof s.stroke === "function" ? s.stroke(c.u, 0) : s.stroke),
          distr: c.u.scales.y.distr, axis: c.data.axis, resolution: c.data.resolution} }"""


@pytest.fixture(scope="module")
def store():
    with own_env() as env:
        log_group(env, SCRIPT, WORLD, "job-web")
        yield env.store


@pytest.fixture
def group(store):
    api = rankwise.Api(store)
    yield api.group("web", "job-web")
    api.close()


def open_group(page, server, name: str = "job-web", project: str = "web") -> None:
    page.goto(page_url(server, project, name))
    page.wait_for_function("window.rw && window.rw.ready", timeout=30_000)


def chart(page, key: str) -> dict:
    return page.evaluate(CHART, [key])


def wait_chart(page, key: str, cond: str, timeout: float = 30_000) -> dict:
    """Wait until ``cond`` (JS over c = the chart's summary) holds for the chart of ``key``."""
    page.wait_for_function(
        f"([key]) => {{ const c = ({CHART})([key]); return c && ({cond}); }}", arg=[key], timeout=timeout
    )
    return chart(page, key)


def test_group_page_draws_one_chart_per_key(page, server, group):
    """Every numeric key gets a chart of three series (band min, band max, mean) with one point per group
    row; the mean drawn is the group's mean exactly; the run table lists every rank."""
    open_group(page, server)
    assert page.locator(".card").count() == 3
    for key in ("acc", "loss", "val.acc"):
        h = group.history(key)
        c = chart(page, key)
        assert c["series"] == 3 and c["labels"][1:] == ["min", "max", "mean"]
        assert c["points"] == len(h["step"]) and c["resolution"] == "full"
        assert c["x"] == h["step"].tolist()
        assert c["mean"] == h["mean"].tolist()
        assert page.locator(f'.card[data-key="{key}"] canvas').first.bounding_box()["width"] > 200
    assert page.locator("#runs tbody tr").count() == WORLD
    assert page.locator("#state .badge").inner_text() == "finished"
    assert "4 of 4 ranks" in page.locator("#summary").inner_text()
    page.screenshot(path=artifact("ui-group.png"), full_page=True)
    assert page.errors == []


def test_per_rank_lines_toggle_and_highlight_min_max_rank(page, server, group):
    """The per-rank toggle adds one line per rank holding that rank's own values; the rank lowest most
    often and the one highest most often are drawn in the min and max colours; unchecking removes them."""
    open_group(page, server)
    page.check("#ranks")
    c = wait_chart(page, "loss", "c.series === 3 + 4")
    assert c["labels"][3:7] == [f"rank {r}" for r in range(WORLD)]
    data = page.evaluate("() => window.rw.charts.get('loss').u.data.map(a => Array.from(a))")
    for r in range(WORLD):
        steps, values = group.run(rank=r).history_arrays(["loss"])["loss"]
        assert data[3 + r] == [float(f"{v:.6g}") for v in values.tolist()]  # at 6 significant digits
    h = group.history("loss")
    lo, hi = int(np.bincount(h["min_rank"]).argmax()), int(np.bincount(h["max_rank"]).argmax())
    assert c["strokes"][3 + lo] == "#2563eb" and c["strokes"][3 + hi] == "#dc2626"
    assert f"lowest most often: rank {lo}" in page.locator('.card[data-key="loss"] .readout').inner_text()
    page.screenshot(path=artifact("ui-group-ranks.png"), full_page=True)
    page.uncheck("#ranks")
    wait_chart(page, "loss", "c.series === 3")
    assert page.errors == []


def test_drag_zooms_every_chart_to_full_resolution_and_double_click_resets(page, server, group):
    """Dragging across a chart selects a step range: every chart is fetched again for it (all points of
    the range); double-click goes back to the whole run."""
    open_group(page, server)
    box = page.locator('.card[data-key="loss"] .u-over').bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.25, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=8)
    page.mouse.up()
    c = wait_chart(page, "loss", "c.points < 300")
    lo, hi = c["x"][0], c["x"][-1]
    assert 40 < lo < 110 and 110 < hi < 190
    h = group.history("loss")
    inside = (h["step"] >= lo) & (h["step"] <= hi)
    assert c["x"] == h["step"][inside].tolist() and c["mean"] == h["mean"][inside].tolist()
    acc = wait_chart(page, "acc", f"c.x[0] === {lo}")
    assert acc["x"][-1] == hi
    assert "reset zoom" in page.locator("#range").inner_text()
    page.locator('.card[data-key="loss"] .u-over').dblclick()
    c = wait_chart(page, "loss", "c.points === 300")
    assert page.errors == []


def test_filter_log_scale_smoothing_and_time_axis(page, server, group):
    """Key filter hides other charts (text or /regex/); log scale switches the y distribution; smoothing
    draws the debiased EMA of the mean; the time axis puts each step at its completion time."""
    open_group(page, server)
    page.fill("#filter", "val")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.card')].filter(c => c.style.display !== 'none').length === 1"
    )
    assert page.locator('.card[data-key="val.acc"]').is_visible()
    page.fill("#filter", "/^(acc|loss)$/")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.card')].filter(c => c.style.display !== 'none').length === 2"
    )
    page.fill("#filter", "")
    page.check("#log")
    assert wait_chart(page, "loss", "c.distr === 3")["distr"] == 3
    page.uncheck("#log")
    page.locator("#smooth").fill("0.9")
    c = wait_chart(page, "loss", "c.distr === 1")
    mean = group.history("loss")["mean"]
    ema, last = [], 0.0
    for n, v in enumerate(mean.tolist(), 1):
        last = last * 0.9 + 0.1 * v
        ema.append(last / (1 - 0.9**n))
    c = wait_chart(page, "loss", f"Math.abs(c.mean[5] - {ema[5]}) < 1e-9")
    assert c["mean"] == pytest.approx(ema, rel=1e-12)
    page.select_option("#axis", "time")
    c = wait_chart(page, "loss", "c.axis === 'time'")
    stamps = np.array([group.run(rank=r).history_arrays(["_timestamp"])["_timestamp"][1] for r in range(WORLD)])
    assert c["x"] == pytest.approx(np.sort(stamps.max(axis=0)).tolist(), abs=1e-6)
    page.screenshot(path=artifact("ui-time-axis.png"), full_page=False)
    assert page.errors == []


def test_straggler_panel_names_the_slow_rank(page, server, group):
    """The straggler heat map has a row per rank and a column per step bucket; the rank that slept every
    step is named slowest and highlighted; another metric and the lines view can be chosen."""
    open_group(page, server)
    page.wait_for_function("() => document.querySelector('#slowest').textContent.includes('rank')")
    text = page.locator("#slowest").inner_text()
    # the default metric is "auto": here the commit-to-commit step time separates the ranks best
    assert text.startswith("Slowest by mean step time (chosen automatically): ")
    assert text.split(": ", 1)[1].startswith(f"rank {SLOW_RANK} ")
    size = page.evaluate("() => [document.querySelector('#heatmap').width, document.querySelector('#heatmap').height]")
    assert size[1] == WORLD and size[0] > 20
    assert page.locator(f'#runs tr[data-rank="{SLOW_RANK}"]').get_attribute("class") == "hl"
    page.locator("#stragglers").scroll_into_view_if_needed()
    page.screenshot(path=artifact("ui-stragglers.png"), full_page=True)
    page.select_option("#straggler-metric", "loss")
    page.wait_for_function("() => document.querySelector('#slowest').textContent.startsWith('Slowest by mean loss')")
    page.select_option("#straggler-view", "lines")
    page.wait_for_function("() => document.querySelectorAll('#stragglers .lines canvas').length > 0")
    assert page.errors == []


def test_navigation_from_projects_to_a_group(page, server):
    """/ lists projects, a project lists its groups with status and counts, a group links to its page."""
    page.goto(page_url(server))
    page.click("#projects a:text('web')")
    page.wait_for_selector("#groups")
    row = page.locator("#groups tbody tr").first
    assert row.locator("td").nth(1).inner_text() == "finished" and row.locator("td").nth(2).inner_text() == "4/4"
    page.screenshot(path=artifact("ui-groups.png"))
    page.click("#groups a:text('job-web')")
    page.wait_for_function("window.rw && window.rw.ready", timeout=30_000)
    assert page.url.endswith("/g/web/job-web")
    assert page.errors == []


LIVE = """
import os, pathlib, time, rankwise
rank = int(os.environ["RANK"])
go = pathlib.Path(os.environ["GO_FILE"])
run = rankwise.init(project="live")
for s in range(80):
    if s == 40:
        while not go.exists():
            time.sleep(0.01)
    run.log({"loss": float(100 - s + rank)})
    time.sleep(0.005)
run.finish()
"""


def test_live_update_arrives_without_reload(page, rankwise_env, tmp_path):
    """With the group page open on a running group, its charts grow as the ranks log (server-sent
    events, no reload) and the page shows the group finished at the end, with every step drawn."""
    go = tmp_path / "go"
    procs = start_ranks(rankwise_env, LIVE, 2, "job-live", GO_FILE=str(go))
    try:
        api = wait_group(
            rankwise_env.store,
            "live",
            "job-live",
            lambda g: g.history("loss")["step"].tolist()[-1:] == [39],
            "40 sealed steps",
        )
        with served(rankwise_env.data) as server:
            open_group(page, server, "job-live", "live")
            assert chart(page, "loss")["points"] == 40
            assert page.locator("#live").inner_text() == "live"
            page.evaluate("() => { window.notReloaded = true; }")
            go.touch()
            c = wait_chart(page, "loss", "c.points === 80", timeout=60_000)
            page.wait_for_function("() => document.querySelector('#live').textContent === 'finished'", timeout=60_000)
            assert page.evaluate("() => window.notReloaded === true")
            # the end event sets #live at once; the badge follows from the refresh it starts (async, and up to a
            # second later when a refresh was under way): wait for it, do not race it
            page.wait_for_function(
                "() => document.querySelector('#state .badge')?.textContent === 'finished'", timeout=60_000
            )
            c = wait_chart(page, "loss", "c.points === 80")
            h = api.group("live", "job-live").history("loss")
            assert c["x"] == list(range(80)) and c["mean"] == h["mean"].tolist()
            assert page.evaluate("() => window.rw.liveUpdates") >= 1
            page.screenshot(path=artifact("ui-live.png"), full_page=True)
    finally:
        go.touch()
        wait_all(procs)
    api.close()
    assert page.errors == []


def test_missing_browser_skips_locally_but_fails_when_required(monkeypatch):
    """Without Chromium the browser tests skip, unless RANKWISE_REQUIRE_BROWSER=1 (CI), where they fail."""
    from support import uihelp

    monkeypatch.setattr(uihelp, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.delenv("RANKWISE_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="/nonexistent/chromium is missing"):
        uihelp.require_browser()
    monkeypatch.setenv("RANKWISE_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="RANKWISE_REQUIRE_BROWSER=1 but /nonexistent/chromium is missing"):
        uihelp.require_browser()
