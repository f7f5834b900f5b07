"""The media panels of the group page in real headless Chromium (Playwright, system /usr/bin/chromium) over
the group of test_ui_media_api (3 ranks × 6 steps of every media type, logged through the real agent): the
image panel shows the stored image of the chosen step and rank, the histogram heat map, a rankwise.plot chart,
a table with image cells, a skipped value marked as such, and the other players. Screenshots go to
test-artifacts/."""

from __future__ import annotations

import pytest
from test_ui_media_api import BUDGET, SCRIPT, STEPS, WORLD

import rankwise
from support.processes import run_ranks
from support.uihelp import artifact, env_vars, own_env, page_url, served, watch_errors


@pytest.fixture(scope="module")
def store():
    with own_env() as env:
        run_ranks(env, SCRIPT, WORLD, "job-mui", **env_vars(env), RANKWISE_MEDIA_BYTES_PER_S=BUDGET)
        yield env.store


@pytest.fixture
def group(store):
    api = rankwise.Api(store)
    yield api.group("mui", "job-mui")
    api.close()


@pytest.fixture
def page(browser, server):
    p = browser.new_page(viewport={"width": 1400, "height": 1000})
    p.errors = watch_errors(p)
    p.goto(page_url(server, "mui", "job-mui"))
    p.wait_for_function("window.rw && window.rw.ready", timeout=30_000)
    yield p
    p.close()


def card(page, key: str):
    return page.locator(f'.mcard[data-key="{key}"]')


def ready(page, key: str, step: int | None = None) -> None:
    """Scroll the panel of ``key`` into view and wait until it has rendered (the given step)."""
    card(page, key).scroll_into_view_if_needed()
    cond = "c && c.dataset.state === 'ready'" + (f" && c.dataset.step === '{step}'" if step is not None else "")
    page.wait_for_function(
        f"() => {{ const c = document.querySelector('.mcard[data-key=\"{key}\"]'); return {cond}; }}", timeout=30_000
    )


def set_step(page, key: str, step: int) -> None:
    """Move the panel's step slider to ``step`` as a user would (an input event on the range)."""
    page.evaluate(
        """([key, step]) => { const p = window.rw.panels.get(key); const i = p.steps.indexOf(step);
             p.slider.value = String(i); p.slider.dispatchEvent(new Event('input')); }""",
        [key, step],
    )
    ready(page, key, step)


def painted(page, selector: str) -> int:
    """How many pixels of the first canvas matching ``selector`` differ from its background (its top-left
    pixel, which every panel leaves as margin)."""
    return page.evaluate(
        """(sel) => { const c = document.querySelector(sel); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             let n = 0; for (let i = 4; i < d.length; i += 4)
               if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2] || d[i + 3] !== d[3]) n++;
             return n; }""",
        selector,
    )


def test_image_panel_shows_the_stored_image_of_the_chosen_step_and_rank(page, group):
    """With all ranks the panel shows one tile per rank side by side; moving the slider to a step and
    choosing a rank shows that rank's stored image of that step: the <img> src is the file's url and its
    decoded width and height are the stored image's (which differ per rank and step)."""
    ready(page, "img", STEPS - 1)
    assert card(page, "img").locator(".mtile").count() == WORLD
    tops = [card(page, "img").locator(f'.mtile[data-rank="{r}"]').bounding_box()["y"] for r in range(WORLD)]
    assert max(tops) - min(tops) < 2  # side by side
    set_step(page, "img", 2)
    for r in range(WORLD):
        ((_, ref),) = group.media("img", step=2)[r]
        img = card(page, "img").locator(f'.mtile[data-rank="{r}"] img')
        img.evaluate("(i) => i.decode()")
        assert img.get_attribute("src") == "/" + ref["path"]
        assert (
            img.evaluate("(i) => [i.naturalWidth, i.naturalHeight]") == [ref["width"], ref["height"]] == [14 + r, 8 + r]
        )
    card(page, "img").locator("select.mrank").select_option("1")
    ready(page, "img", 2)
    tiles = card(page, "img").locator(".mtile")
    page.wait_for_function("() => document.querySelectorAll('.mcard[data-key=\"img\"] .mtile').length === 1")
    assert tiles.get_attribute("data-rank") == "1" and tiles.get_attribute("data-step") == "2"
    set_step(page, "img", 4)
    ((_, ref),) = group.media("img", step=4)[1]
    img = tiles.locator("img")
    img.evaluate("(i) => i.decode()")
    assert img.get_attribute("src") == "/" + ref["path"]
    assert img.evaluate("(i) => i.naturalWidth") == ref["width"] == 10 + 8 + 1
    assert tiles.locator("figcaption").inner_text() == "rank 1 step 4"
    card(page, "img").screenshot(path=artifact("ui-media-image.png"))
    assert page.errors == []


def test_histogram_panel_draws_the_merged_heat_map(page, group):
    """The histogram panel draws one column per step of the merged group histogram (every bin with counts
    painted), and switching to one rank draws that rank's histograms."""
    ready(page, "hist")
    canvas = card(page, "hist").locator("canvas.hheat")
    merged = group.histograms("hist")
    assert canvas.get_attribute("data-columns") == str(len(merged)) == str(STEPS)
    assert int(canvas.get_attribute("data-bins")) == sum(sum(1 for v in h["values"] if v > 0) for _, h in merged)
    assert painted(page, '.mcard[data-key="hist"] canvas.hheat') > 2000
    assert "merged over the ranks" in card(page, "hist").locator(".meta").inner_text()
    card(page, "hist").locator("select.hrank").select_option("2")
    page.wait_for_function(
        "() => { const p = window.rw.panels.get('hist'); return p.data && p.data.rank === 2 && p.card.dataset.state === 'ready'; }"
    )
    own = group.histograms("hist", rank=2)
    assert int(canvas.get_attribute("data-bins")) == sum(sum(1 for v in h["values"] if v > 0) for _, h in own)
    assert "rank 2" in card(page, "hist").locator(".meta").inner_text()
    card(page, "hist").screenshot(path=artifact("ui-media-histogram.png"))
    assert page.errors == []


def test_rankwise_plot_charts_render(page, group):
    """The PR curve of rankwise.plot is drawn per rank with one line per class and every curve point; the
    confusion matrix as a 3×3 grid of cells."""
    ready(page, "pr")
    curves = card(page, "pr").locator('canvas.mplot[data-kind="pr_curve"]')
    assert curves.count() == WORLD
    chart = group.media("pr", step=2)[0][0][1]
    classes = chart["data"]["classes"]
    assert curves.first.get_attribute("data-series") == str(len(classes))
    assert curves.first.get_attribute("data-points") == str(sum(len(c["recall"]) for c in classes))
    assert painted(page, '.mcard[data-key="pr"] canvas.mplot') > 500
    ready(page, "cm")
    cm = card(page, "cm").locator('canvas.mplot[data-kind="confusion_matrix"]').first
    assert cm.get_attribute("data-points") == "9"
    assert painted(page, '.mcard[data-key="cm"] canvas.mplot') > 500
    card(page, "pr").screenshot(path=artifact("ui-media-pr.png"))
    assert page.errors == []


def test_table_renders_rows_and_image_cells(page, group):
    """The table panel renders the stored table of the rank: its columns, its rows' numbers and an image in
    every image cell, loaded from the cell's file."""
    ready(page, "tab")
    table = card(page, "tab").locator(".mtable table").first
    assert table.locator("th").all_inner_texts() == ["id", "score", "thumb"]
    rows = table.locator("tbody tr")
    assert rows.count() == 5
    stored = group.media("tab", step=1)[0][0][1]
    for i in range(5):
        cells = rows.nth(i).locator("td")
        assert cells.nth(0).inner_text() == str(i) and float(cells.nth(1).inner_text()) == stored["data"][i][1] == i / 4
        img = cells.nth(2).locator("img")
        img.evaluate("(i) => i.decode()")
        assert img.get_attribute("src") == "/" + stored["data"][i][2]["path"]
        assert img.evaluate("(i) => i.naturalWidth") == 6
    card(page, "tab").screenshot(path=artifact("ui-media-table.png"))
    assert page.errors == []


def test_skipped_value_shows_as_skipped(page):
    """The image over the byte budget shows as skipped (with the reason and its size), not as a broken image;
    ranks without the key get no tile of their own (issue 14): one line says how many have no value."""
    ready(page, "big")
    skip = card(page, "big").locator('.mtile[data-rank="0"] .mskip')
    assert skip.get_attribute("data-skipped") == "byte budget"
    text = skip.inner_text()
    assert "skipped (byte budget)" in text and "not stored" in text and "KiB" in text
    assert card(page, "big").locator("img").count() == 0
    assert card(page, "big").locator('.mtile[data-rank="1"]').count() == 0
    assert (
        card(page, "big").locator(".mabsent").inner_text()
        == f"{WORLD - 1} other rank{'s' if WORLD > 2 else ''}: no value at or before this step"
    )
    card(page, "big").screenshot(path=artifact("ui-media-skipped.png"))
    assert page.errors == []


def test_players_html_3d_and_plotly(page, group):
    """Audio and video get players on their files, HTML a sandboxed iframe (scripts allowed, no same origin),
    the point cloud and the OBJ cube (12 triangles) a drawn canvas and a download link, the plotly figure its
    scatter trace drawn."""
    ready(page, "sound")
    audio = card(page, "sound").locator("audio").first
    assert audio.get_attribute("src") == "/" + group.media("sound")[0][0][1]["path"]
    page.wait_for_function("() => document.querySelector('.mcard[data-key=\"sound\"] audio').readyState >= 1")
    assert audio.evaluate("(a) => a.duration") == pytest.approx(0.5, abs=0.01)
    ready(page, "clip")
    assert card(page, "clip").locator("img.mimg").first.evaluate("(i) => i.decode().then(() => i.naturalWidth)") == 8
    ready(page, "page")
    frame = card(page, "page").locator("iframe.mhtml")
    assert frame.get_attribute("sandbox") == "allow-scripts"
    inner = page.frame_locator('.mcard[data-key="page"] iframe.mhtml').locator("#x")
    assert inner.inner_text() == "hello 0"
    ready(page, "cloud")
    page.wait_for_selector('.mcard[data-key="cloud"] canvas.view3d')
    canvas = card(page, "cloud").locator("canvas.view3d")
    assert canvas.get_attribute("data-points") == "300"
    assert painted(page, '.mcard[data-key="cloud"] canvas.view3d') > 300
    link = card(page, "cloud").locator("a[download]")
    assert link.get_attribute("href") == "/" + group.media("cloud")[0][0][1]["path"]
    ready(page, "mesh")
    page.wait_for_selector('.mcard[data-key="mesh"] canvas.view3d')
    assert card(page, "mesh").locator("canvas.view3d").get_attribute("data-triangles") == "12"
    assert painted(page, '.mcard[data-key="mesh"] canvas.view3d') > 2000
    ready(page, "fig")
    fig = card(page, "fig").locator('.mplotly[data-drawn="1"] canvas.mplot')
    assert fig.get_attribute("data-points") == "3"
    card(page, "cloud").screenshot(path=artifact("ui-media-3d.png"))
    page.screenshot(path=artifact("ui-media-group.png"), full_page=True)
    assert page.errors == []


def test_key_filter_applies_to_media_panels(page):
    """The toolbar's key filter hides media panels whose key does not match."""
    page.fill("#filter", "hist")
    page.wait_for_function("() => document.querySelector('.mcard[data-key=\"img\"]').style.display === 'none'")
    assert card(page, "hist").is_visible()
    page.fill("#filter", "")
    page.wait_for_function("() => document.querySelector('.mcard[data-key=\"img\"]').style.display === ''")
    assert page.errors == []


LIVE = """
import os, time, numpy as np, rankwise as wandb
run = wandb.init(project="mlive")
def log(s):
    run.log({"img": wandb.Image(np.full((4, 4 + s), 20 * s, np.uint8), caption=f"step {s}")})
for s in range(3):
    log(s)
while not os.path.exists(os.environ["GO_FILE"]):
    time.sleep(0.02)
for s in range(3, 6):
    log(s)
run.finish()
"""


def test_live_media_panel_follows_new_steps(browser, rankwise_env, tmp_path):
    """On a running group the image panel, left at the latest step, moves to new steps as they are stored
    (server-sent events, no reload) and ends on the last one, showing its file."""
    from support.processes import start_ranks, wait_all
    from support.uihelp import wait_group

    go = tmp_path / "go"
    procs = start_ranks(rankwise_env, LIVE, 1, "job-mlive", GO_FILE=str(go))
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors = watch_errors(page)
    try:
        api = wait_group(
            rankwise_env.store,
            "mlive",
            "job-mlive",
            lambda g: [s for s, _ in g.run(rank=0).media("img")] == [0, 1, 2],
            "3 stored images",
        )
        with served(rankwise_env.data) as server:
            page.goto(page_url(server, "mlive", "job-mlive"))
            page.wait_for_function("window.rw && window.rw.ready", timeout=30_000)
            ready(page, "img", 2)
            page.evaluate("() => { window.notReloaded = true; }")
            go.touch()
            ready(page, "img", 5)
            assert page.evaluate("() => window.notReloaded === true")
            ((_, ref),) = api.group("mlive", "job-mlive").media("img", step=5)[0]
            img = card(page, "img").locator("img")
            img.evaluate("(i) => i.decode()")
            assert img.get_attribute("src") == "/" + ref["path"] and img.evaluate("(i) => i.naturalWidth") == 9
            assert page.evaluate("() => window.rw.panels.get('img').steps") == list(range(6))
        api.close()
    finally:
        go.touch()
        wait_all(procs)
        page.close()
    assert errors == []


def test_error_values_show_as_errors(browser, tmp_path):
    """A media value the client could not encode (stored as ``{"_type", "error"}``) shows as an error box with
    the message, in a list of images and in a table cell too, and the page has no error of its own."""
    import numpy as np

    from agent.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "store.sqlite")
    info = {"name": "rank-0", "run_key": "e0", "rank": 0, "local_rank": 0, "node": "n", "pid": 1}
    _, run, _ = store.register("merr", "job-err", 1, info, 1.7e9)
    bad = {"_type": "image", "error": "ValueError: cannot encode", "caption": "c"}
    with store.transaction() as txn:
        steps = np.array([0], np.int64)
        txn.add_history(run.id, "bad", steps, [bad], False)
        txn.add_history(run.id, "badlist", steps, [[bad, bad]], False)
        txn.add_history(run.id, "badtab", steps, [{"_type": "table", "columns": ["x"], "data": [[bad]]}], False)
    store.close()
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors = watch_errors(page)
    with served(tmp_path) as server:
        page.goto(page_url(server, "merr", "job-err"))
        page.wait_for_function("window.rw && window.rw.ready", timeout=30_000)
        for key, n in (("bad", 1), ("badlist", 2), ("badtab", 1)):
            ready(page, key)
            boxes = card(page, key).locator(".merr")
            assert boxes.count() == n
            assert "ValueError: cannot encode" in boxes.first.inner_text()
    page.close()
    assert errors == []
