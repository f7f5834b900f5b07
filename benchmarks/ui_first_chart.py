"""12. UI first chart: how long the group page of 64 ranks x 3,000 steps (quick: 16 x 1,000) takes to draw
its first chart in Chromium, with and without per-rank lines, and how many bytes it fetched.

The group is benchmarks/ui_transfer.py's (``write_group``: one key, written straight through the SQLite
store classes as the agent lays it out). Each open is cold: a new ``rankwise ui`` server
(rankwise/_ui/server.py, in this process; nothing of the group read yet) and a new browser context (no
cached static files). The system Chromium (/usr/bin/chromium) is driven through Playwright; without either
the benchmark is skipped with a message. Measured in the page, in ms since navigation start: the first chart
drawn (static/chart.js counts renders in ``window.rw.renders``; an init script notes the first) and the page
ready (``window.rw.ready``: every chart on screen and the straggler panel drawn). Bytes: the transfer sizes
(compressed, headers included) of the document and every resource the page loaded. Median of 3 opens each
(quick: 1). Issue 14's budget: the first chart within 1.5 s.
"""

from __future__ import annotations

import os
import statistics
import threading
from pathlib import Path
from typing import Any

NAME = "ui_first_chart"
TITLE = "12. UI first chart: group page of 64 ranks x 3k steps in Chromium, cold (median of 3)"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
BUDGET_MS = 1500.0  # issue 14: time to first chart

# window.rw before app.js makes it (app.js keeps an existing one): the first assignment to renders is noted
FIRST = """window.rw = { charts: new Map(), page: null }; let n = 0;
Object.defineProperty(window.rw, "renders", { configurable: true, get: () => n,
  set: (v) => { if (window.__firstChart === undefined) window.__firstChart = performance.now(); n = v; } });"""

BYTES = """() => [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")]
  .reduce((a, e) => a + (e.transferSize || 0), 0)"""


def params(quick: bool) -> dict[str, Any]:
    return {"ranks": 16, "steps": 1000, "opens": 1} if quick else {"ranks": 64, "steps": 3000, "opens": 3}


def missing() -> str | None:
    """Why the benchmark cannot run here (None: it can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (pip install -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    return None


def _open(browser: Any, store: Path, lines: bool) -> dict[str, float]:
    """One cold open of the group page: (first chart ms, ready ms, bytes)."""
    from rankwise._ui.server import make_server

    server = make_server(store, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.add_init_script(FIRST)
        page.goto(f"http://127.0.0.1:{server.port}/g/bench/transfer" + ("?lines=1" if lines else ""))
        page.wait_for_function("window.rw && window.rw.ready", timeout=120_000)
        series = page.evaluate("() => window.rw.charts.get('loss').u.series.length - 1")
        assert series == (3 + int(page.evaluate("() => window.rw.page.detail.world_size")) if lines else 3), series
        return {
            "first_chart_ms": page.evaluate("window.__firstChart"),
            "ready_ms": page.evaluate("window.rw.ready"),
            "bytes": page.evaluate(BYTES),
        }
    finally:
        context.close()
        server.shutdown()
        server.server_close()
        thread.join(10)


def run(ctx: Any) -> dict:
    from benchmarks._harness import Sandbox
    from benchmarks.ui_transfer import write_group

    p = params(ctx.quick)
    why = missing()
    if why:
        return {**p, "skipped": why, "notes": [f"skipped: {why}"]}
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {**p, "budget_ms": BUDGET_MS, "modes": {}}
    with Sandbox(NAME) as box:
        store = Path(box.data) / "store.sqlite"
        write_group(store, p["ranks"], p["steps"])
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                _open(browser, store, False)  # warm-up: Chromium's own start-up is not the page's
                for mode, lines in (("mean_band", False), ("per_rank_lines", True)):
                    opens = [_open(browser, store, lines) for _ in range(p["opens"])]
                    out["modes"][mode] = {
                        "opens": opens,
                        **{k: statistics.median(o[k] for o in opens) for k in ("first_chart_ms", "ready_ms", "bytes")},
                    }
            finally:
                browser.close()
    return out


def rows(r: dict) -> list[tuple[str, str, str]]:
    if "skipped" in r:
        return [("first chart", "skipped", r["skipped"])]
    out = []
    for mode, m in r["modes"].items():
        label = "per-rank lines" if mode == "per_rank_lines" else "mean and band"
        out.append(
            (
                f"{r['ranks']} ranks x {r['steps']} steps, {label}: first chart",
                f"{m['first_chart_ms']:.0f} ms",
                f"page ready {m['ready_ms']:.0f} ms; {m['bytes'] / 1024:.0f} KB fetched "
                f"(median of {r['opens']}; budget {r['budget_ms']:.0f} ms)",
            )
        )
    return out
