"""A big group in the browser: 8 ranks x 100,000 steps x 4 keys opens in under 2 s (measured in the page
with performance.now from navigation start to the charts and the straggler panel on screen drawn, with a
cold server cache; the faster of two such opens) and stays responsive: per-rank lines, zoom to full
resolution, a one-step spike visible at every zoom.

The group is written straight through the SQLite store classes (SQLiteStore transactions of 1,000 steps,
group rows reduced by the agent's own reducers: the layout the agent writes), because 800,000 log() calls
through the agent would take far longer than this test should. Timings are written to
test-artifacts/ui-big-timing.json; the 2 s budget to open is the one timing this test asserts."""

from __future__ import annotations

import json

import pytest

from support.uihelp import BIG_SPIKE, BIG_SPIKE_STEP, artifact, page_url, served, watch_errors, write_big_group

RANKS, STEPS = 8, 100_000
OPEN_BUDGET_MS = 2000
OPENS = 2  # cold opens, each on a new server (nothing of the group read yet); the faster counts, as
# benchmarks take the minimum: the other half of a 2-core CI machine runs other tests at the same time.
# The second open has the page's static files in the browser cache, as anyone has who opened the UI before.

LONG_TASKS = """window.__longtasks = [];
new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__longtasks.push(e.duration); })
  .observe({ type: "longtask", buffered: true });"""

SUMMARY = """() => [...window.rw.charts.values()].map(c => ({key: c.key, series: c.u ? c.u.series.length - 1 : 0,
  points: c.u ? c.u.data[0].length : 0, resolution: c.data && c.data.resolution,
  max: c.u ? Math.max(...c.u.data[2].filter(v => v !== null)) : null}))"""


# where the open time went: page marks, and each request's start and end (ms since navigation)
PHASES = """() => Object.fromEntries([
  ...performance.getEntriesByType("mark").map(m => [m.name, Math.round(m.startTime)]),
  ...performance.getEntriesByType("resource").filter(r => r.name.includes("/api/"))
     .map(r => [decodeURIComponent(r.name.split("/g8x100k")[1] || "/detail"), [Math.round(r.startTime), Math.round(r.responseEnd)]])])"""


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "store.sqlite"
    write_big_group(path, "big", "g8x100k", ranks=RANKS, steps=STEPS)
    return path


def open_cold(page, server) -> tuple[float, dict]:
    """Open the group page on a server that has not read the group yet: (ms to ready, phases)."""
    page.goto(page_url(server))  # the browser's own start-up is not the group's open time
    page.wait_for_selector("#projects")
    page.goto(page_url(server, "big", "g8x100k"))
    page.wait_for_function("window.rw && window.rw.ready", timeout=60_000)
    return page.evaluate("window.rw.ready"), page.evaluate(PHASES)


def test_eight_ranks_by_100k_steps_open_fast_and_stay_responsive(browser, big_store):
    """Open (cold server cache) under 2 s with every chart min/max-reduced to at most two rows per pixel
    and the spike of rank 3 in the loss band; per-rank lines, zoom and reset complete; a 151-step zoom
    around the spike is every point."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = watch_errors(page)
    page.add_init_script(LONG_TASKS)
    timings = {}
    opens = []
    for _ in range(OPENS - 1):
        with served(big_store) as server:
            opens.append(open_cold(page, server))
    with served(big_store) as server:
        opens.append(open_cold(page, server))
        timings["open_ms"], phases = min(opens, key=lambda o: o[0])
        timings["open_ms_each"] = [round(o[0], 1) for o in opens]
        charts = page.evaluate(SUMMARY)
        assert sorted(c["key"] for c in charts) == ["acc", "grad_norm", "loss", "lr"]
        width = page.evaluate("() => window.rw.charts.get('loss').width()")
        for c in charts:
            assert c["series"] == 3 and c["resolution"] == "minmax"
            assert 0 < c["points"] <= 2 * width
        assert next(c for c in charts if c["key"] == "loss")["max"] == BIG_SPIKE  # a one-step spike survives
        page.screenshot(path=artifact("ui-big.png"), full_page=True)

        # per-rank lines for every chart on screen: 8 more series each
        t0 = page.evaluate("() => performance.now()")
        page.check("#ranks")
        page.wait_for_function(
            f"() => [...window.rw.charts.values()].every(c => c.u.series.length - 1 === 3 + {RANKS})", timeout=60_000
        )
        timings["per_rank_lines_ms"] = page.evaluate("() => performance.now()") - t0
        page.screenshot(path=artifact("ui-big-ranks.png"), full_page=True)
        page.uncheck("#ranks")
        page.wait_for_function("() => [...window.rw.charts.values()].every(c => c.u.series.length - 1 === 3)")

        # zoom by dragging, then to 151 steps around the spike: every point, spike included
        box = page.locator('.card[data-key="loss"] .u-over').bounding_box()
        y = box["y"] + box["height"] / 2
        t0 = page.evaluate("() => performance.now()")
        page.mouse.move(box["x"] + box["width"] * 0.6, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.9, y, steps=6)
        page.mouse.up()
        page.wait_for_function(
            "() => [...window.rw.charts.values()].every(c => c.data.range[0] > 50000)", timeout=60_000
        )
        timings["drag_zoom_ms"] = page.evaluate("() => performance.now()") - t0
        t0 = page.evaluate("() => performance.now()")
        page.evaluate(f"() => window.rw.page.setRange([{BIG_SPIKE_STEP - 75}, {BIG_SPIKE_STEP + 75}])")
        page.wait_for_function(
            "() => window.rw.charts.get('loss').data.resolution === 'full' && "
            "window.rw.charts.get('loss').data.points === 151",
            timeout=60_000,
        )
        timings["zoom_to_full_resolution_ms"] = page.evaluate("() => performance.now()") - t0
        loss = page.evaluate(
            "() => { const u = window.rw.charts.get('loss').u; return [Array.from(u.data[0]), Array.from(u.data[2])]; }"
        )
        assert loss[0] == list(range(BIG_SPIKE_STEP - 75, BIG_SPIKE_STEP + 76))
        assert loss[1][75] == BIG_SPIKE and max(loss[1]) == BIG_SPIKE
        t0 = page.evaluate("() => performance.now()")
        page.locator('.card[data-key="loss"] .u-over').dblclick()
        page.wait_for_function(
            "() => [...window.rw.charts.values()].every(c => c.data.range[0] === 0 && c.data.resolution === 'minmax')",
            timeout=60_000,
        )
        timings["reset_zoom_ms"] = page.evaluate("() => performance.now()") - t0
        timings["longest_task_ms"] = page.evaluate("() => Math.max(0, ...window.__longtasks)")
    page.close()
    timings = {k: (round(v, 1) if isinstance(v, float) else v) for k, v in timings.items()}
    with open(artifact("ui-big-timing.json"), "w") as f:
        json.dump({"ranks": RANKS, "steps": STEPS, "keys": 4, **timings, "open_phases_ms": phases}, f, indent=1)
    print(f"8x100k group in the browser: {timings}")
    assert errors == []
    assert timings["open_ms"] < OPEN_BUDGET_MS, f"opening took {timings['open_ms']:.0f} ms (budget {OPEN_BUDGET_MS} ms)"
