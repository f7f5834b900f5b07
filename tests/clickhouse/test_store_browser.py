"""The web UI's group page served from ClickHouse, in real headless Chromium: a group logged through the
real agent into ClickHouse 18.16 (RANKWISE_STORE=<URL>), the UI server over the URL, and the page's chart
of a key drawn with every step and the group mean ``rankwise.Api(URL)`` reads. Screenshot in
test-artifacts/."""

from __future__ import annotations

import numpy as np

import rankwise
from support.processes import run_ranks
from support.uihelp import artifact, page_url, served, watch_errors

WORLD, STEPS = 4, 200
SCRIPT = (
    """
import os, numpy as np, rankwise
rank = int(os.environ["RANK"])
run = rankwise.init(project="chweb")
for s in range(%d):
    run.log({"loss": float(2.0 * np.exp(-s / 60) + 0.05 * rank), "acc": float(s %% 7 + rank)})
run.finish()
"""
    % STEPS
)

CHART = """([key]) => { const c = window.rw.charts.get(key); if (!c || !c.u) return null;
  return {series: c.u.series.length - 1, points: c.u.data[0].length, x: Array.from(c.u.data[0]),
          mean: Array.from(c.u.data[c.u.data.length - 1]), resolution: c.data.resolution} }"""


def test_group_page_served_from_clickhouse(rankwise_env, clickhouse_url, browser):
    """The group page over a ClickHouse store: the loss chart holds all 200 steps, its mean line equals
    Api(URL)'s group mean (and numpy's over the logged values), and the page raised no error."""
    run_ranks(rankwise_env, SCRIPT, WORLD, "job-web", RANKWISE_STORE=clickhouse_url)
    with rankwise.Api(clickhouse_url) as api:
        mean = api.group("chweb", "job-web").history("loss")["mean"]
    logged = np.array([[2.0 * np.exp(-s / 60) + 0.05 * r for s in range(STEPS)] for r in range(WORLD)])
    np.testing.assert_allclose(mean, logged.mean(axis=0), rtol=1e-12)
    with served(clickhouse_url) as server:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = watch_errors(page)
        try:
            page.goto(page_url(server, "chweb", "job-web"))
            page.wait_for_function("window.rw && window.rw.ready", timeout=60_000)
            page.wait_for_function(
                f"([key]) => {{ const c = ({CHART})([key]); return c && c.points === {STEPS}; }}",
                arg=["loss"],
                timeout=60_000,
            )
            c = page.evaluate(CHART, ["loss"])
            page.screenshot(path=artifact("clickhouse_group_page.png"), full_page=True)
        finally:
            page.close()
    assert c["resolution"] == "full" and c["x"] == list(range(STEPS))
    np.testing.assert_allclose(c["mean"], mean, rtol=1e-12)
    assert errors == []
