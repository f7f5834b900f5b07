"""A big group in the browser: 8 ranks x 100,000 steps x 4 keys opens with every chart min/max-reduced to at
most two rows per pixel column and stays usable: per-rank lines, zoom to full resolution, a one-step spike
visible at every zoom. Behaviour only: how fast it opens is measured by benchmarks/ui_first_chart.py
(``python -m benchmarks --only ui_first_chart``; docs/benchmarks.md), not asserted here.

The group is written straight through the SQLite store classes (SQLiteStore transactions of 1,000 steps,
group rows reduced by the agent's own reducers: the layout the agent writes), because 800,000 log() calls
through the agent would take far longer than this test should."""

from __future__ import annotations

import pytest

from support.uihelp import BIG_SPIKE, BIG_SPIKE_STEP, artifact, page_url, served, watch_errors, write_big_group

RANKS, STEPS = 8, 100_000

SUMMARY = """() => [...window.rw.charts.values()].map(c => ({key: c.key, series: c.u ? c.u.series.length - 1 : 0,
  points: c.u ? c.u.data[0].length : 0, resolution: c.data && c.data.resolution, buckets: c.data && c.data.buckets,
  first: c.u ? c.u.data[0][0] : null, last: c.u ? c.u.data[0][c.u.data[0].length - 1] : null,
  ranks: c.data && c.data.ranks ? c.data.ranks.map(r => r.values.length) : null,
  max: c.u ? Math.max(...c.u.data[2].filter(v => v !== null)) : null}))"""


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "store.sqlite"
    write_big_group(path, "big", "g8x100k", ranks=RANKS, steps=STEPS)
    return path


def test_eight_ranks_by_100k_steps_open_reduced_and_stay_usable(browser, big_store):
    """Open with every chart min/max-reduced (two rows per bucket, at most two per pixel column, x from step 0
    to the last step) and the spike of rank 3 in the loss band; per-rank lines add 8 series of as many
    points as the chart's x; a drag zooms every chart into the dragged range; a 151-step zoom around the
    spike is every point, spike included; a double click resets the zoom."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = watch_errors(page)
    with served(big_store) as server:
        page.goto(page_url(server, "big", "g8x100k"))
        page.wait_for_function("window.rw && window.rw.ready", timeout=60_000)
        charts = page.evaluate(SUMMARY)
        assert sorted(c["key"] for c in charts) == ["acc", "grad_norm", "loss", "lr"]
        width = page.evaluate("() => window.rw.charts.get('loss').width()")
        for c in charts:
            assert c["series"] == 3 and c["resolution"] == "minmax" and c["buckets"] == width
            assert 0 < c["points"] <= 2 * width and c["points"] % 2 == 0  # two rows per non-empty bucket
            assert c["first"] == 0 and c["last"] == STEPS - 1
        assert next(c for c in charts if c["key"] == "loss")["max"] == BIG_SPIKE  # a one-step spike survives
        page.screenshot(path=artifact("ui-big.png"), full_page=True)

        # per-rank lines for every chart on screen: 8 more series each, every rank on the chart's x
        page.check("#ranks")
        page.wait_for_function(
            f"() => [...window.rw.charts.values()].every(c => c.u.series.length - 1 === 3 + {RANKS})", timeout=60_000
        )
        for c in page.evaluate(SUMMARY):
            assert c["ranks"] == [c["points"]] * RANKS and 0 < c["points"] <= 2 * width
        page.screenshot(path=artifact("ui-big-ranks.png"), full_page=True)
        page.uncheck("#ranks")
        page.wait_for_function("() => [...window.rw.charts.values()].every(c => c.u.series.length - 1 === 3)")

        # zoom by dragging from 60 % to 90 % of the plot: every chart narrows to about that range
        box = page.locator('.card[data-key="loss"] .u-over').bounding_box()
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + box["width"] * 0.6, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.9, y, steps=6)
        page.mouse.up()
        page.wait_for_function(
            "() => [...window.rw.charts.values()].every(c => c.data.range[0] > 50000)", timeout=60_000
        )
        for c in page.evaluate(SUMMARY):
            assert 0.55 * STEPS < c["first"] < 0.65 * STEPS and 0.85 * STEPS < c["last"] < 0.95 * STEPS
        page.evaluate(f"() => window.rw.page.setRange([{BIG_SPIKE_STEP - 75}, {BIG_SPIKE_STEP + 75}])")
        page.wait_for_function(
            "() => window.rw.charts.get('loss').data.resolution === 'full' && "
            "window.rw.charts.get('loss').data.points === 151",
            timeout=60_000,
        )
        loss = page.evaluate(
            "() => { const u = window.rw.charts.get('loss').u; return [Array.from(u.data[0]), Array.from(u.data[2])]; }"
        )
        assert loss[0] == list(range(BIG_SPIKE_STEP - 75, BIG_SPIKE_STEP + 76))
        assert loss[1][75] == BIG_SPIKE and max(loss[1]) == BIG_SPIKE
        page.locator('.card[data-key="loss"] .u-over').dblclick()
        page.wait_for_function(
            "() => [...window.rw.charts.values()].every(c => c.data.range[0] === 0 && c.data.resolution === 'minmax')",
            timeout=60_000,
        )
    page.close()
    assert errors == []
