"""The issue's acceptance check for the views: `rankwise demo` (what `make demo` runs) ends by printing
the URL of its group page, and that page, served by `rankwise ui`, shows the 8-rank demo with mean and
min–max band per key, per-rank lines on demand, and the deliberately slow rank named in the straggler
panel — in real Chromium."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

import rankwise
from rankwise._ui.address import group_url
from support.uihelp import artifact, env_vars, own_env, page_url, served, watch_errors

SLOW_RANK = 5  # rankwise demo's default --slow-rank


@pytest.fixture(scope="module")
def demo():
    """One `rankwise demo` (8 ranks, 120 steps) in a private store; yields (store path, project, group, stdout)."""
    with own_env() as env:
        out = subprocess.run(
            [sys.executable, "-m", "rankwise._cli", "demo", "--steps", "120"],
            env={**os.environ, **env_vars(env)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        yield env.store, out.stdout


def test_demo_prints_its_group_page_url_and_the_page_shows_the_job(demo, browser):
    """The demo's last lines give the group page URL; opened on `rankwise ui`, the page has one chart per
    key (mean with a min–max band, one point per step), per-rank lines for all 8 ranks on demand, and
    the straggler panel (default metric: auto) names the slow rank first, from its compute time."""
    store, stdout = demo
    match = re.search(
        r"^ui:\s+rankwise ui, open the address it prints \(it carries the token\), then "
        r"(http://\S+/g/(\S+)/(\S+))$",
        stdout,
        re.M,
    )
    assert match, stdout
    url, project, name = match.groups()
    g = rankwise.Api(store).group(project, name)
    assert len(g.runs) == 8 and g.state == "finished"
    with served(store) as server:
        assert url.replace(":8765/", f":{server.port}/") == group_url(project, name, "127.0.0.1", server.port)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        errors = watch_errors(page)
        page.goto(page_url(server))  # what the user does first: the address rankwise ui printed
        page.goto(url.replace(":8765/", f":{server.port}/"))  # then the demo's address, logged in by the cookie
        page.wait_for_function("window.rw && window.rw.ready", timeout=30_000)
        for key in ("loss", "acc", "grad_norm", "lr", "step_time_ms", "compute_ms"):
            points = page.evaluate(
                "([k]) => { const c = window.rw.charts.get(k); return c && c.u ? c.u.data[0].length : null }", [key]
            )
            assert points == len(g.history(key)["step"]) == 120, key
        page.wait_for_function("() => document.querySelector('#slowest').textContent.includes('rank')")
        slowest = page.locator("#slowest").inner_text()
        assert slowest.startswith("Slowest by mean compute_ms (chosen automatically): "), slowest
        assert slowest.split(": ", 1)[1].startswith(f"rank {SLOW_RANK} "), slowest
        page.check("#ranks")
        page.wait_for_function(
            "() => { const c = window.rw.charts.get('loss'); return c && c.u && c.u.series.length - 1 === 3 + 8 }",
            timeout=30_000,
        )
        labels = page.evaluate("() => window.rw.charts.get('loss').u.series.map(s => s.label)")
        assert labels[3:11] == [f"rank {r}" for r in range(8)]  # x, min, max, the ranks, then the mean
        page.screenshot(path=artifact("ui-demo.png"), full_page=True)
        assert errors == []
        page.close()
