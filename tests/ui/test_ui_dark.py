"""Dark mode on every chart of the group page (theme.js; docs/ui.md "Dark mode"), in headless Chromium with
prefers-color-scheme dark, over a real job (two ranks through the real agent: a loss and a histogram every
step, rank 1 starting at step 20 so the straggler heat map has empty cells) plus system samples stored
through a real SQLiteStore transaction as the agent's sampler commits them: the straggler heat map's empty
cells and their legend swatch, the straggler lines, the system charts and the histogram heat map use the dark
colours (read from the canvases' pixels and the charts' axis colours), and the header toggle redraws them
light. Screenshots go to test-artifacts/."""

from __future__ import annotations

import numpy as np
import pytest

import rankwise
from support.uihelp import artifact, log_group, own_env, page_url, served, watch_errors

WORLD, STEPS = 2, 40
SCRIPT = """
import os, numpy as np, rankwise
rank = int(os.environ["RANK"])
run = rankwise.init(project="dk", group="dark")
rng = np.random.default_rng(rank)
for s in range(%(steps)d):
    if rank == 1 and s < 20:
        continue
    run.log({"loss": 1.0 / (s + 1) + rank, "hist": rankwise.Histogram(rng.normal(size=200) + s / 10)}, step=s)
run.finish()
""" % {"steps": STEPS}

DARK_FG, LIGHT_FG = "#d1d7e0", "#1f2328"
DARK_EMPTY, LIGHT_EMPTY = [60, 66, 76], [235, 235, 235]


@pytest.fixture(scope="module")
def store():
    """The job through the real agent, then two ranks' proc.rss_bytes and the node's host.load1 samples."""
    from agent.store.sqlite import SQLiteStore

    with own_env() as env:
        log_group(env, SCRIPT, WORLD, "dark")
        api = rankwise.Api(env.store)
        runs = api.group("dk", "dark").runs
        assert [r.state for r in runs] == ["finished"] * WORLD
        ids = [(r.rank, r._record.id, r._record.group_id) for r in runs]
        api.close()
        t = 1.7e9 + np.arange(8) * 5.0
        st = SQLiteStore(env.store)
        with st.transaction() as txn:
            for rank, rid, gid in ids:
                txn.add_system(
                    gid, rid, "node-0", {"_timestamp": t, "proc.rss_bytes": 1e8 * (rank + 1) + 1e6 * np.arange(8)}
                )
            txn.add_system(ids[0][2], None, "node-0", {"_timestamp": t, "host.load1": np.arange(8.0)})
        st.close()
        yield env.store


HEAT = """() => { const c = document.querySelector('#heatmap'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const rows = window.rw.page.straggler.data.ranks; const out = {empty: null, cells: 0};
  rows.forEach((r, y) => r.cells.forEach((v, x) => { if (v === null && out.empty === null) {
    const o = (y * c.width + x) * 4; out.empty = [d[o], d[o + 1], d[o + 2]]; } if (v === null) out.cells++; }));
  out.swatch = getComputedStyle(document.querySelector('#heat-empty i')).backgroundColor; return out; }"""

HIST = """() => { const c = document.querySelector('.mcard[data-key="hist"] canvas.hheat');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0, sum = 0;
  const line = getComputedStyle(document.documentElement).getPropertyValue('--line').trim();
  const L = [1, 3, 5].map(i => parseInt(line.slice(i, i + 2), 16)); let frame = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] === 255) { n++; sum += (d[i] + d[i + 1] + d[i + 2]) / 3; }
    else if (d[i + 3] > 0 && Math.abs(d[i] - L[0]) <= 1 && Math.abs(d[i + 1] - L[1]) <= 1 && Math.abs(d[i + 2] - L[2]) <= 1) frame++;
  }
  return {painted: n, brightness: sum / n, frame, text: c.dataset.textColor}; }"""

SYSTEM = """() => [...document.querySelectorAll('#system .scard')].map(c => c.dataset.axisColor)"""


def stroke(page, js: str) -> str:
    return page.evaluate(
        f"() => {{ const u = {js}; const s = u.axes[0].stroke; return typeof s === 'function' ? s(u, 0) : s; }}"
    )


def check(page, fg: str, empty: list[int]) -> None:
    """Every chart of the page in one theme: axis colours, empty heat-map cells (pixels and legend), the
    histogram's cells (mostly low density: near the background, dark on dark and light on light) and its
    frame in the theme's --line colour."""
    assert stroke(page, "window.rw.charts.get('loss').u") == fg
    heat = page.evaluate(HEAT)
    assert heat["cells"] > 0 and heat["empty"] == empty
    assert heat["swatch"] == f"rgb({empty[0]}, {empty[1]}, {empty[2]})"
    assert page.evaluate(SYSTEM) == [fg, fg]
    assert stroke(page, "window.rw.page.system.plots.get('rank:proc.rss_bytes').u") == fg
    hist = page.evaluate(HIST)
    assert hist["painted"] > 1000 and hist["frame"] > 500
    assert hist["brightness"] < 100 if fg == DARK_FG else hist["brightness"] > 150
    assert hist["text"] == ("#8b949e" if fg == DARK_FG else "#656d76")


def test_every_chart_follows_dark_mode_and_the_toggle(browser, store):
    """prefers-color-scheme dark: body background #0d1117; the loss chart, the system charts and the
    straggler lines have the dark axis colour; the heat map's empty cells (rank 1 before step 20) and their
    legend swatch are the dark grey; the histogram's cells are dark and its frame the dark --line colour. The
    header toggle switches every one of them to the light colours without a reload."""
    page = browser.new_page(viewport={"width": 1400, "height": 1400}, color_scheme="dark")
    errors = watch_errors(page)
    try:
        with served(store) as server:
            page.goto(page_url(server, "dk", "dark"))
            page.wait_for_function("window.rw && window.rw.ready", timeout=30_000)
            page.locator('.mcard[data-key="hist"]').scroll_into_view_if_needed()
            page.wait_for_function(
                "() => document.querySelector('.mcard[data-key=\"hist\"]').dataset.state === 'ready'", timeout=30_000
            )
            page.wait_for_function("() => window.rw.system === 2", timeout=30_000)
            assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") == "rgb(13, 17, 23)"
            check(page, DARK_FG, DARK_EMPTY)
            page.screenshot(path=artifact("ui-dark-all.png"), full_page=True)
            page.select_option("#straggler-view", "lines")
            page.wait_for_function("() => window.rw.page.straggler.u", timeout=30_000)
            assert stroke(page, "window.rw.page.straggler.u") == DARK_FG
            page.locator("#stragglers").screenshot(path=artifact("ui-dark-straggler-lines.png"))
            page.select_option("#straggler-view", "heatmap")
            page.click("#theme")
            page.wait_for_function(
                f"() => document.querySelector('#heatmap').dataset.empty === '{','.join(map(str, LIGHT_EMPTY))}'"
            )
            check(page, LIGHT_FG, LIGHT_EMPTY)
            page.screenshot(path=artifact("ui-dark-toggled-light.png"), full_page=True)
            assert errors == []
    finally:
        page.close()
