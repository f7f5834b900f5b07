"""Charts that say which rank (static/chart.js, ranks.js, download.js, theme.js) in real headless Chromium over
a real 8-rank job logged through the agent, where rank r logs ``a = r + step/100`` and ``b = step - r``: the
hover lists every visible rank's value at the cursor (sorted, min/max marked), the legend hides and isolates
ranks, the rank picker selects ranks, the cursor is synced across charts, smoothing is the EMA of the points
the chart holds with the factor printed, CSV/PNG downloads, and dark mode. Screenshots go to test-artifacts/."""

from __future__ import annotations

import csv
import io

import pytest

import rankwise
from support.uihelp import artifact, log_group, own_env, page_url, served, watch_errors

WORLD, STEPS, AT = 8, 40, 20
SCRIPT = """
import os, rankwise
rank = int(os.environ["RANK"])
run = rankwise.init(project="ch")
for s in range(%(steps)d):
    run.log({"a": rank + s / 100, "b": float(s - rank)})
run.finish()
""" % {"steps": STEPS}

U = "(key) => window.rw.charts.get(key).u"


@pytest.fixture(scope="module")
def store():
    with own_env() as env:
        log_group(env, SCRIPT, WORLD, "job-ch")
        yield env.store


@pytest.fixture
def page(browser):
    p = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    p.errors = watch_errors(p)
    yield p
    p.close()


@pytest.fixture
def group(store):
    api = rankwise.Api(store)
    yield api.group("ch", "job-ch")
    api.close()


def open_ranks(page, server) -> None:
    """Open the group page and turn per-rank lines on; wait until both charts have 3 + 8 series."""
    page.goto(page_url(server, "ch", "job-ch"))
    page.wait_for_function("window.rw && window.rw.ready", timeout=30_000)
    page.check("#ranks")
    page.wait_for_function(
        "() => ['a', 'b'].every(k => { const c = window.rw.charts.get(k); return c && c.u && c.u.series.length === 1 + 3 + 8; })",
        timeout=30_000,
    )


def hover(page, key: str, step: int) -> None:
    """Move the real mouse over ``key``'s chart at ``step``."""
    pos = page.evaluate(f"([k, s]) => ({U})(k).valToPos(s, 'x')", [key, step])
    box = page.locator(f'.card[data-key="{key}"] .u-over').bounding_box()
    page.mouse.move(box["x"] + pos, box["y"] + box["height"] / 2)


def shown(page, key: str) -> list[bool]:
    return page.evaluate(f"(k) => ({U})(k).series.slice(3, 11).map(s => s.show)", key)


def test_hover_lists_every_rank_sorted_with_min_and_max_and_syncs_the_cursor(page, server, group):
    """Hovering chart a at step 20 lists the 8 ranks' logged values (r + 0.2), highest first, rank 7 marked
    max and rank 0 min; chart b's cursor (uPlot cursor.sync) moves to the same step and lists b's values."""
    open_ranks(page, server)
    hover(page, "a", AT)
    page.wait_for_function("() => document.querySelectorAll('.card[data-key=\"a\"] .rv[data-rank]').length === 8")
    items = page.evaluate(
        "() => [...document.querySelectorAll('.card[data-key=\"a\"] .rv[data-rank]')]"
        ".map(e => [Number(e.dataset.rank), Number(e.dataset.value), e.className])"
    )
    logged = {r: group.run(rank=r).history_arrays(["a"])["a"] for r in range(WORLD)}
    expect = sorted(((r, float(v[1][list(v[0]).index(AT)])) for r, v in logged.items()), key=lambda t: -t[1])
    assert [(r, v) for r, v, _ in items] == expect
    assert [r for r, _ in expect] == list(range(WORLD - 1, -1, -1))
    assert items[0][2] == "rv max" and items[-1][2] == "rv min"
    assert all(c == "rv" for _, _, c in items[1:-1])
    assert "step 20" in page.locator('.card[data-key="a"] .readout').inner_text()
    # the synced cursor: chart b's cursor sits at step 20 and its readout lists b = 20 - r
    page.wait_for_function(
        f"() => {{ const u = ({U})('b'); return u.cursor.idx !== null && u.data[0][u.cursor.idx] === {AT}; }}"
    )
    page.wait_for_function("() => document.querySelectorAll('.card[data-key=\"b\"] .rv[data-rank]').length === 8")
    b_vals = page.evaluate(
        "() => [...document.querySelectorAll('.card[data-key=\"b\"] .rv[data-rank]')].map(e => [Number(e.dataset.rank), Number(e.dataset.value)])"
    )
    assert b_vals == [[r, float(AT - r)] for r in range(WORLD)]
    page.screenshot(path=artifact("ui-chart-hover.png"), full_page=False)
    assert page.errors == []


def test_legend_hides_and_isolates_and_picker_selects(page, server):
    """Clicking rank 3 in the legend hides its line (series show=false), clicking again shows it; shift-click
    on rank 5 shows rank 5 alone and shift-click again restores all; the rank picker "0-2" draws exactly ranks
    0, 1, 2 in distinct palette colours; an unreadable picker text is flagged and changes nothing."""
    open_ranks(page, server)
    chip = lambda r: page.locator(f'.card[data-key="a"] .legend .chip[data-rank="{r}"]')  # noqa: E731
    assert page.locator('.card[data-key="a"] .legend .chip').count() == WORLD
    chip(3).click()
    assert shown(page, "a") == [r != 3 for r in range(WORLD)]
    assert "off" in chip(3).get_attribute("class")
    assert page.locator('.card[data-key="a"]').get_attribute("data-shown") == "0,1,2,4,5,6,7"
    assert shown(page, "b") == [True] * WORLD  # the legend is per chart
    chip(3).click()
    assert shown(page, "a") == [True] * WORLD
    chip(5).click(modifiers=["Shift"])
    assert shown(page, "a") == [r == 5 for r in range(WORLD)]
    page.screenshot(path=artifact("ui-chart-isolate.png"), full_page=False)
    chip(5).click(modifiers=["Shift"])
    assert shown(page, "a") == [True] * WORLD
    page.fill("#pick", "0-2")
    page.press("#pick", "Enter")
    page.wait_for_function("() => document.querySelector('.card[data-key=\"b\"]').dataset.shown === '0,1,2'")
    for key in ("a", "b"):
        assert shown(page, key) == [r <= 2 for r in range(WORLD)]
    strokes = page.evaluate(f"() => ({U})('a').series.slice(3, 6).map(s => s._stroke)")
    assert len(set(strokes)) == 3 and not any(s.startswith("rgba") for s in strokes)
    assert page.locator("#pick").get_attribute("data-ranks") == "0,1,2"
    page.fill("#pick", "ranks zero")
    page.press("#pick", "Enter")
    assert "bad" in page.locator("#pick").get_attribute("class")
    assert "cannot read" in page.locator("#pick").get_attribute("title")
    assert shown(page, "a") == [r <= 2 for r in range(WORLD)]
    assert page.errors == []


def test_smoothing_is_the_ema_of_the_points_shown_with_raw_line_and_factor(page, server, group):
    """Smoothing 0.6 prints 0.6 beside the slider; the mean drawn is the debiased EMA (computed here in Python)
    of the points the chart holds; the raw mean is drawn beneath it unchanged; turning smoothing on fetches the
    series at full resolution (width=0), so the chart says the smoothing is exact."""
    page.goto(page_url(server, "ch", "job-ch"))
    page.wait_for_function("window.rw && window.rw.ready", timeout=30_000)
    asked = []
    page.on("request", lambda r: asked.append(r.url) if "/series?" in r.url and "key=a&" in r.url else None)
    page.locator("#smooth").fill("0.6")
    assert page.locator("#smooth-value").inner_text() == "0.6"
    page.wait_for_function(f"() => ({U})('a').series.length === 5")
    held = page.evaluate("() => window.rw.charts.get('a').data.mean")
    assert held == group.history("a")["mean"].tolist()
    ema, last = [], 0.0
    for n, v in enumerate(held, 1):
        last = last * 0.6 + 0.4 * v
        ema.append(last / (1 - 0.6**n))
    labels = page.evaluate(f"() => ({U})('a').series.map(s => s.label)")
    assert labels[-2:] == ["mean (raw)", "mean"]
    drawn = page.evaluate(f"() => ({U})('a').data.slice(-2).map(a => Array.from(a))")
    assert drawn[0] == held
    assert drawn[1] == pytest.approx(ema, rel=1e-12)
    assert page.locator('.card[data-key="a"]').get_attribute("data-smooth-exact") == "true"
    # smoothing asks for every point (width=0), so the EMA does not depend on the chart's width
    assert asked and all("width=0" in u for u in asked)
    page.screenshot(path=artifact("ui-chart-smooth.png"), full_page=False)
    assert page.errors == []


def test_csv_and_png_downloads(page, server, group):
    """The CSV of chart a holds x, mean, min, max and each visible rank's values exactly as stored (after the
    legend hid rank 3, no rank 3 column; the chart's lines carry 6 significant digits, the file all of them);
    the PNG is a PNG of the chart canvas's size."""
    open_ranks(page, server)
    page.locator('.card[data-key="a"] .legend .chip[data-rank="3"]').click()
    with page.expect_download() as dl:
        page.locator('.card[data-key="a"] .dl-csv').click()
    assert dl.value.suggested_filename == "job-ch-a.csv"
    rows = list(csv.reader(io.StringIO(open(dl.value.path()).read())))
    ranks = [r for r in range(WORLD) if r != 3]
    assert rows[0] == ["step", "mean", "min", "max"] + [f"rank {r}" for r in ranks]
    h = group.history("a")
    body = [[float(v) for v in row] for row in rows[1:]]
    assert [row[0] for row in body] == h["step"].tolist()
    for col, field in ((1, "mean"), (2, "min"), (3, "max")):
        assert [row[col] for row in body] == h[field].tolist()
    for i, r in enumerate(ranks):
        assert [row[4 + i] for row in body] == group.run(rank=r).history_arrays(["a"])["a"][1].tolist()
    with page.expect_download() as dl:
        page.locator('.card[data-key="a"] .dl-png').click()
    assert dl.value.suggested_filename == "job-ch-a.png"
    data = open(dl.value.path(), "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h2 = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert [w, h2] == page.evaluate(f"() => {{ const c = ({U})('a').ctx.canvas; return [c.width, c.height]; }}")
    assert page.errors == []


AXIS = f"""() => {{ const u = ({U})('a'); const s = u.axes[1].stroke;
  return typeof s === 'function' ? s(u, 1) : s; }}"""


def test_dark_mode_follows_the_browser_and_the_toggle(browser, server):
    """With prefers-color-scheme dark (Playwright's emulation) the page background and the charts' axis
    colour are dark-theme colours; the header toggle switches to light (axes redrawn dark-on-light) and the
    choice survives a reload (localStorage)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, color_scheme="dark")
    errors = watch_errors(page)
    try:
        page.goto(page_url(server, "ch", "job-ch"))
        page.wait_for_function("window.rw && window.rw.ready", timeout=30_000)
        assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") == "rgb(13, 17, 23)"
        assert page.evaluate(AXIS) == "#d1d7e0"
        page.screenshot(path=artifact("ui-chart-dark.png"), full_page=False)
        page.click("#theme")
        page.wait_for_function(f"() => ({AXIS})() === '#1f2328'")
        assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
        page.reload()
        page.wait_for_function("window.rw && window.rw.ready", timeout=30_000)
        assert page.evaluate("() => localStorage.getItem('rw-theme')") == "light"
        assert page.evaluate(AXIS) == "#1f2328"
        assert errors == []
    finally:
        page.close()


def test_64_ranks_hover_is_compact_and_nan_ranks_are_picked(tmp_path, browser):
    """At 64 ranks (a store written by the agent's own reducers, rank 5's loss NaN from step 30) the hover
    lists the four highest ranks, "… 56 more …" and the four lowest, equal to the stored values (at the 6
    significant digits the lines carry); the picker's
    "NaN ranks" selects the ranks with a non-finite value (rank 5's loss, rank 1's +inf grad_norm summary),
    and "slowest 2" the two ranks with the highest mean of the straggler panel's metric (acc here)."""
    from support.uihelp import health_values, write_health_group

    path = tmp_path / "store.sqlite"
    write_health_group(path, "hp", "wide", 64, 50, 5, 30, "finished")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = watch_errors(page)
    try:
        with served(path) as server:
            page.goto(page_url(server, "hp", "wide"))
            page.wait_for_function("window.rw && window.rw.ready", timeout=30_000)
            page.check("#ranks")
            page.wait_for_function(f"() => ({U})('loss').series.length === 1 + 3 + 64", timeout=30_000)
            hover(page, "loss", 10)
            sel = '.card[data-key="loss"] .rv'
            page.wait_for_function(f"() => document.querySelectorAll('{sel}').length === 9")
            texts = page.locator(sel).all_inner_texts()
            assert texts[4] == "… 56 more …"
            got = page.evaluate(
                f"() => [...document.querySelectorAll('{sel}[data-rank]')].map(e => [Number(e.dataset.rank), Number(e.dataset.value)])"
            )
            at10 = sorted(((r, float(health_values(r, 50, 5, 30)["loss"][10])) for r in range(64)), key=lambda t: -t[1])
            assert got == [[r, float(f"{v:.6g}")] for r, v in at10[:4] + at10[-4:]]  # lines carry 6 digits
            page.screenshot(path=artifact("ui-chart-64.png"), full_page=False)
            page.fill("#pick", "NaN ranks")
            page.press("#pick", "Enter")
            page.wait_for_function("() => document.querySelector('.card[data-key=\"loss\"]').dataset.shown === '1,5'")
            assert page.locator("#pick").get_attribute("data-ranks") == "1,5"
            # the straggler panel on acc (1 - exp(-s/200) + 0.001 rank): ranks 63 and 62 have the highest mean
            page.select_option("#straggler-metric", "acc")
            page.wait_for_function("() => (window.rw.page.straggler.data || {}).metric === 'acc'")
            page.fill("#pick", "slowest 2")
            page.press("#pick", "Enter")
            assert page.locator("#pick").get_attribute("data-ranks") == "62,63"
            page.wait_for_function("() => document.querySelector('.card[data-key=\"loss\"]').dataset.shown === '62,63'")
            assert errors == []
    finally:
        page.close()
