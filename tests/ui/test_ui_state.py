"""The group page's view in its URL, history inside the app, the x-axis modes, the toolbar and layout, and the
straggler panel (issue 14 points 3, 5, 8, 9; docs/ui.md "Page state in the URL"), in real headless Chromium over
a small job logged through the real agent and a 64-rank group written through the store classes. Screenshots
go to test-artifacts/."""

from __future__ import annotations

import re
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest

from support import uihelp
from support.uihelp import artifact, get, log_group, own_env, page_url, served, watch_errors, write_big_group

WORLD, STEPS = 4, 200
SCRIPT = """
import os, time, numpy as np, rankwise
rank = int(os.environ["RANK"])
rng = np.random.default_rng(rank)
run = rankwise.init(project="st", config={"lr": 0.01 * (rank + 1)})
for s in range(%(steps)d):
    d = {"loss": float(2.0 * np.exp(-s / 60) + 0.05 * rank + 0.01 * rng.random()), "acc": float(s / %(steps)d)}
    if rank != 3 or s < %(steps)d // 2:  # rank 3 stops logging "late" halfway: empty heat-map cells
        d["late"] = float(rank)
    if rank == 0 and s %% 50 == 0:  # a figure only rank 0 logs
        d["fig"] = rankwise.Image(np.full((40, 60, 3), s, np.uint8), caption=f"step {s}")
    run.log(d)
    time.sleep(0.002)
run.finish()
""" % {"steps": STEPS}

CHART = """([key]) => { const c = window.rw.charts.get(key); if (!c || !c.u || !c.data) return null;
  return {axis: c.data.axis, range: c.data.range, distr: c.u.scales.y.distr, series: c.u.series.length - 1,
          ticks: c.u.axes[0]._values || [], hidden: c.card.style.display === "none"} }"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with own_env() as env:
        log_group(env, SCRIPT, WORLD, "job-st")
        big = tmp_path_factory.mktemp("big") / "store.db"
        # its spike step is for 100k-step groups: one inside these 400 steps
        with mock.patch.object(uihelp, "BIG_SPIKE_STEP", 300):
            write_big_group(big, "wide", "g64", ranks=64, steps=400, chunk=400)
        yield env.store, big


@pytest.fixture(scope="module")
def server(store):
    with served(store[0]) as s:
        yield s


@pytest.fixture(scope="module")
def big_server(store):
    with served(store[1]) as s:
        yield s


def wait_ready(page) -> None:
    page.wait_for_function("window.rw && window.rw.ready", timeout=30_000)


def wait_chart(page, key: str, cond: str) -> dict:
    page.wait_for_function(f"([k]) => {{ const c = ({CHART})([k]); return c && ({cond}); }}", arg=[key], timeout=30_000)
    return page.evaluate(CHART, [key])


def query(page) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}


def test_view_state_survives_a_reload(page, server):
    """Filter, x axis, log scale, smoothing, per-rank lines, a dragged zoom range and a rank selection go into
    the URL as they are set; a reload of that URL restores the controls, the page state and the charts."""
    page.goto(page_url(server, "st", "job-st"))
    wait_ready(page)
    assert query(page) == {}
    page.fill("#filter", "loss")
    page.select_option("#axis", "rel")
    wait_chart(page, "loss", "c.axis === 'rel'")
    page.check("#log")
    page.locator("#smooth").fill("0.6")
    page.check("#ranks")
    wait_chart(page, "loss", f"c.series === {4 + WORLD}")  # min, max, ranks, faded raw mean, mean
    box = page.locator('.card[data-key="loss"] .u-over').bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=5)
    page.mouse.up()
    page.wait_for_function("() => window.rw.page.state.range !== null")
    page.evaluate("() => window.rw.page.setRankSelection('0-1,3')")
    q = query(page)
    lo, hi = page.evaluate("() => window.rw.page.state.range")
    assert q == {
        "filter": "loss",
        "x": "rel",
        "log": "1",
        "smooth": "0.6",
        "lines": "1",
        "ranks": "0-1,3",
        "start": q["start"],
        "end": q["end"],
    }
    assert float(q["start"]) == pytest.approx(lo) and float(q["end"]) == pytest.approx(hi) and 0 < lo < hi
    url = page.url

    page.reload()
    wait_ready(page)
    assert page.url == url
    state = page.evaluate("() => window.rw.page.state")
    assert {k: state[k] for k in ("filter", "axis", "log", "smooth", "ranks", "pick")} == {
        "filter": "loss",
        "axis": "rel",
        "log": True,
        "smooth": 0.6,
        "ranks": True,
        "pick": "0-1,3",
    }
    assert state["range"] == [pytest.approx(lo), pytest.approx(hi)]
    controls = page.evaluate("""() => ({filter: filter.value, axis: axis.value, log: log.checked,
        smooth: smooth.value, ranks: ranks.checked})""")
    assert controls == {"filter": "loss", "axis": "rel", "log": True, "smooth": "0.6", "ranks": True}
    assert page.evaluate("() => window.rw.page.rankSelection()") == [0, 1, 3]
    c = wait_chart(page, "loss", "c.axis === 'rel'")
    assert c["range"] == [pytest.approx(lo), pytest.approx(hi)] and c["distr"] == 3 and c["series"] == 4 + WORLD
    assert page.locator('.card[data-key="acc"]').evaluate("n => n.style.display") == "none"
    assert page.locator("#range").inner_text().startswith("+")
    page.screenshot(path=artifact("ui-state-restored.png"))
    assert page.errors == []


def test_back_and_forward_stay_inside_the_app(page, server):
    """Links between the projects, project and group pages push history entries without reloading the page;
    Back returns to the project page, Forward to the group page with the view its URL holds."""
    page.goto(page_url(server))
    page.wait_for_selector("#projects a")
    page.evaluate("() => { window.sameDocument = 1 }")
    page.click("#projects a:text-is('st')")
    page.wait_for_selector("#groups a")
    assert urlsplit(page.url).path == "/p/st"
    page.click("#groups a:text-is('job-st')")
    wait_ready(page)
    assert urlsplit(page.url).path == "/g/st/job-st"
    page.check("#log")
    page.go_back()
    page.wait_for_selector("#groups a")
    assert urlsplit(page.url).path == "/p/st"
    page.go_forward()
    wait_ready(page)
    assert urlsplit(page.url).path == "/g/st/job-st" and query(page) == {"log": "1"}
    assert page.evaluate("() => log.checked && window.rw.page.state.log")
    page.go_back()
    page.go_back()
    page.wait_for_selector("#projects a")
    assert urlsplit(page.url).path == "/"
    assert page.evaluate("() => window.sameDocument") == 1  # never reloaded
    assert page.errors == []


def test_relative_and_wall_time_tick_labels(page, big_server):
    """Relative time labels read like "1.5s" / "1m 30s", wall time like "22:13:21" (no ":46.000"); the
    readout names the x the same way."""
    page.goto(page_url(big_server, "wide", "g64"))
    wait_ready(page)
    page.select_option("#axis", "rel")
    c = wait_chart(page, "loss", "c.axis === 'rel' && c.ticks.length > 1")
    assert all(re.fullmatch(r"-?\d+(\.\d+)?s|\d+m( \d+s)?", t) for t in c["ticks"]), c["ticks"]
    page.select_option("#axis", "time")
    c = wait_chart(page, "loss", "c.axis === 'time' && c.ticks.length > 1")
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d(\.\d+)?", t) for t in c["ticks"]), c["ticks"]
    box = page.locator('.card[data-key="loss"] .u-over').bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    text = page.locator('.card[data-key="loss"] .readout').inner_text()
    assert re.match(r"\d\d:\d\d:\d\d(\.\d+)? mean ", text), text
    page.screenshot(path=artifact("ui-state-wall-time.png"))
    assert page.errors == []


def test_label_click_ticks_its_box(page, server):
    """Clicking the words "log y" and "per-rank lines" ticks their checkboxes (labels wrap their inputs)."""
    page.goto(page_url(server, "st", "job-st"))
    wait_ready(page)
    page.get_by_text("log y", exact=True).click()
    page.get_by_text("per-rank lines", exact=True).click()
    assert page.evaluate("() => [log.checked, ranks.checked]") == [True, True]
    assert query(page) == {"log": "1", "lines": "1"}
    assert page.errors == []


@pytest.mark.parametrize("who", ["small", "wide"])
def test_no_horizontal_scroll_at_390px(browser, server, big_server, who):
    """At 390 px wide nothing scrolls sideways, with per-rank lines and the wide runs table; the toolbar is
    not sticky there (it would cover the cards)."""
    p = browser.new_page(viewport={"width": 390, "height": 844})
    try:
        errors = watch_errors(p)
        url = page_url(server, "st", "job-st") if who == "small" else page_url(big_server, "wide", "g64")
        p.goto(url + "&lines=1")
        wait_ready(p)
        widths = p.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
        assert widths[0] <= widths[1], widths
        assert p.evaluate("() => getComputedStyle(document.querySelector('.toolbar')).position") == "static"
        p.screenshot(path=artifact(f"ui-state-390px-{who}.png"), full_page=True)
        assert errors == []
    finally:
        p.close()


def test_straggler_panel_at_64_ranks(page, big_server):
    """At 64 ranks the heat map keeps every k-th rank label; "slowest" names only rank 6 (1.2× the median;
    the others are at 1.00×); the lines view has step numbers on its x axis and a hover readout."""
    page.goto(page_url(big_server, "wide", "g64") + "&smetric=_timestamp")
    wait_ready(page)
    page.wait_for_function("() => document.querySelector('#slowest').textContent.includes('rank')")
    text = page.locator("#slowest").inner_text()
    assert re.findall(r"rank (\d+) \(", text) == ["6"], text
    assert "1.20× the median rank" in text
    every = int(page.locator("#stragglers .ranklabels").get_attribute("data-every"))
    labels = page.locator("#stragglers .ranklabels div").evaluate_all("ds => ds.map(d => d.textContent)")
    assert len(labels) == 64 and 1 < every <= 4
    assert [t for t in labels if t] == [f"rank {r}" for r in range(0, 64, every)]
    page.locator("#stragglers").screenshot(path=artifact("ui-state-heatmap-64.png"))
    page.select_option("#straggler-view", "lines")
    assert query(page)["sview"] == "lines" and query(page)["smetric"] == "_timestamp"
    page.wait_for_function(
        "() => { const u = window.rw.page.straggler.u; return u && u.axes[0]._values && u.axes[0]._values.length > 1 }"
    )
    ticks = page.evaluate("() => window.rw.page.straggler.u.axes[0]._values")
    assert all(re.fullmatch(r"\d+", t) for t in ticks), ticks
    box = page.locator("#stragglers .lines .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    hover = page.locator("#stragglers .readout").inner_text()
    assert re.match(r"steps? \d+(–\d+)?: rank 6 12 ms · rank 0 10 ms", hover), hover
    page.locator("#stragglers").screenshot(path=artifact("ui-state-straggler-lines.png"))
    assert page.errors == []


def test_straggler_legend_explains_empty_cells(page, server):
    """Rank 3 stopped logging "late" halfway: its cells there have no value, are grey, and the legend says so;
    "acc" (logged by every rank at every step) has no such cell and no such legend entry."""
    page.goto(page_url(server, "st", "job-st") + "&smetric=acc")
    wait_ready(page)
    page.wait_for_function("() => document.querySelector('#slowest').textContent.startsWith('Slowest by mean acc')")
    assert page.locator("#heat-empty").count() == 0
    page.select_option("#straggler-metric", "late")
    page.wait_for_function("() => document.querySelector('#slowest').textContent.startsWith('Slowest by mean late')")
    cells = page.evaluate(
        "() => window.rw.page.straggler.data.ranks.map(r => [r.rank, r.cells.filter(v => v === null).length])"
    )
    assert [r for r, n in cells if n] == [3]
    assert page.locator("#heat-empty").inner_text() == "no value in this bucket"
    # rank 3's values (3.0) are the highest: it is named first, empty cells do not count as low values
    assert page.locator("#slowest").inner_text().split(": ", 1)[1].startswith("rank 3 (")


def test_figure_of_one_rank_is_one_full_width_tile_that_enlarges(page, server):
    """A figure logged by rank 0 alone: one tile (not one per rank with "no value"), as wide as the panel, a
    line saying the other ranks have none; a click opens it enlarged, Escape closes it."""
    page.goto(page_url(server, "st", "job-st") + "&filter=fig")
    wait_ready(page)
    card = page.locator('.mcard[data-key="fig"]')
    page.wait_for_function("() => document.querySelector('.mcard[data-key=\"fig\"]').dataset.state === 'ready'")
    assert card.locator(".mtile").evaluate_all("ts => ts.map(t => t.dataset.rank)") == ["0"]
    assert card.locator(".mabsent").inner_text() == f"{WORLD - 1} other ranks: no value at or before this step"
    tile, body = card.locator(".mtile").bounding_box(), card.locator(".mtiles").bounding_box()
    assert tile["width"] == pytest.approx(body["width"], abs=2)
    card.locator("img.mimg").click()
    big = page.locator("#lightbox img")
    big.wait_for()
    assert big.evaluate("i => i.src") == card.locator("img.mimg").evaluate("i => i.src")
    assert big.bounding_box()["width"] > 2 * card.locator("img.mimg").bounding_box()["width"]
    assert page.locator("#lightbox .lbcap").inner_text() == "step 150"
    page.screenshot(path=artifact("ui-state-lightbox.png"))
    page.keyboard.press("Escape")
    assert page.locator("#lightbox").count() == 0
    assert page.errors == []


def test_series_rel_axis_is_the_time_axis_labelled_apart(server):
    """``x=rel`` answers the same x (seconds since t0) and t0 as ``x=time``, with ``axis: "rel"``; a bad x
    names the accepted values."""
    base = "api/projects/st/groups/job-st/series?key=loss&width=0"
    status, rel = get(server, base + "&x=rel&ranks=1")
    assert status == 200
    status, wall = get(server, base + "&x=time&ranks=1")
    assert status == 200 and rel["axis"] == "rel" and wall["axis"] == "time"
    assert {k: v for k, v in rel.items() if k != "axis"} == {k: v for k, v in wall.items() if k != "axis"}
    assert rel["t0"] > 1e9 and rel["x"][0] >= 0 and len(rel["x"]) == rel["points"] == STEPS
    status, bad = get(server, base + "&x=clock")
    assert status == 400 and "step, time, rel, metric:<key>" in bad["error"]


def test_malformed_url_values_fall_back_to_defaults(page, server):
    """A hand-edited URL with bad values opens the default view for those (and keeps the good ones); the
    address is not rewritten until a control changes, then holds only valid values."""
    page.goto(page_url(server, "st", "job-st") + "&x=bogus&smooth=2&start=5&ranks=a-b&log=1&sview=pie")
    wait_ready(page)
    state = page.evaluate("() => window.rw.page.state")
    assert {k: state[k] for k in ("axis", "smooth", "range", "pick", "log", "sview")} == {
        "axis": "auto",
        "smooth": 0,
        "range": None,
        "pick": "",
        "log": True,
        "sview": "heatmap",
    }
    assert page.evaluate("() => [axis.value, smooth.value, log.checked]") == ["auto", "0", True]
    page.check("#ranks")
    assert query(page) == {"log": "1", "lines": "1"}
    assert page.errors == []
