"""The rank page (issue 14 point 4): ``/api/projects/P/groups/G/ranks/R`` returns one rank's record, the
exception that ended its process, its alerts, summary, config and keys (rankwise/_ui/rank.py); an unknown
rank is a 404 naming the group's ranks; ``/g/P/G/rank/R`` serves the app, whose rank page
(rankwise/_ui/static/rank.js) shows a crashed rank's exception and traceback, its state and exit code, and a
chart per key with its own line over the group's band; the group page's runs table links every row there.

The job is real: four rank processes through the real agent, rank 1 raising ``ValueError`` at step 5 (its
process exits 1). Screenshots go to test-artifacts/."""

from __future__ import annotations

import urllib.error
import urllib.request

import numpy as np
import pytest

import rankwise
from rankwise._ui.rank import spans
from support.probes import wait_for
from support.processes import start_ranks, wait_all
from support.uihelp import (
    artifact,
    auth,
    env_vars,
    get,
    own_env,
    page_url,
    served,
    wait_group,
    watch_errors,
    write_health_group,
)

PROJECT, GROUP, WORLD, STEPS, BAD, BAD_STEP = "rankpage", "job-crash", 4, 8, 1, 5

SCRIPT = """
import os
import numpy as np
import rankwise

rank = int(os.environ["RANK"])


def train_step(step):
    if rank == %(bad)d and step == %(bad_step)d:
        raise ValueError(f"loss diverged at step {step}")


run = rankwise.init(project="%(project)s", config={"lr": 0.1, "seed": rank})
for step in range(%(steps)d):
    train_step(step)
    row = {"loss": 1.0 / (step + 1) + 0.25 * rank, "lr": 0.1, "hist": rankwise.Histogram([rank, step, step + 1])}
    if rank == %(bad)d and step == 2:  # media of one rank only: the other ranks' pages have no panel for it
        row["sample"] = rankwise.Image(np.full((6, 8, 3), 200, np.uint8), caption="rank 1 step 2")
    run.log(row)
run.summary["best"] = 0.5 + rank
run.finish()
""" % {"bad": BAD, "bad_step": BAD_STEP, "project": PROJECT, "steps": STEPS}


@pytest.fixture(scope="module")
def job():
    """The four-rank job, run once for the module: (env, raw loss per rank as {step: value})."""
    with own_env() as env:
        results = wait_all(start_ranks(env, SCRIPT, WORLD, GROUP, **env_vars(env)))
        codes = [code for code, _, _ in results]
        assert codes == [0 if r != BAD else 1 for r in range(WORLD)], [err[-800:] for _, _, err in results]
        api = rankwise.Api(env.store)
        g = api.group(PROJECT, GROUP)
        wait_for(lambda: {r.state for r in g.runs} == {"finished", "failed"}, 60, "every rank's end recorded")
        raw = {r.rank: dict(zip(*(a.tolist() for a in r.history_arrays(["loss"])["loss"]))) for r in g.runs}
        api.close()
        yield env, raw


@pytest.fixture(scope="module")
def server(job):
    with served(job[0].store) as s:
        yield s


def test_spans_name_runs_of_ranks():
    """The 404 message's rank list: consecutive ranks as a range, the rest one by one."""
    assert spans([3, 0, 1, 2, 7]) == "0–3, 7"
    assert spans([0]) == "0" and spans([]) == "" and spans([0, 2, 4, 5]) == "0, 2, 4–5"


def test_rank_endpoint_returns_the_failed_ranks_record_and_exception(server, job):
    """Rank 1 of the real job: state failed, exit code 1, its own config and summary as logged, keys loss and
    lr, the exception exactly as the run stored it (ValueError "loss diverged at step 5", a traceback through
    train_step ending in that line), its alerts exactly the group's alerts of rank 1; rank 0 finished with none."""
    api = rankwise.Api(job[0].store)
    run = api.group(PROJECT, GROUP).run(rank=BAD)
    status, d = get(server, f"/api/projects/{PROJECT}/groups/{GROUP}/ranks/{BAD}")
    assert status == 200, d
    assert (d["rank"], d["project"], d["group"], d["world_size"], d["ranks"]) == (
        BAD,
        PROJECT,
        GROUP,
        WORLD,
        [0, 1, 2, 3],
    )
    assert (d["state"], d["exit_code"], d["step"], d["name"], d["node"], d["pid"]) == (
        "failed", 1, run.step, run.name, run.node, run.pid)  # fmt: skip
    assert d["step"] == BAD_STEP  # steps 0..4 logged: the record counts five
    assert d["group_state"] == "failed"
    assert d["config"] == {"lr": 0.1, "seed": BAD}
    assert "best" not in d["summary"] and d["summary"]["loss"] == pytest.approx(1.0 / BAD_STEP + 0.25 * BAD)
    assert d["keys"] == ["loss", "lr"]
    assert d["media"] == [{"key": "hist", "type": "histogram"}, {"key": "sample", "type": "image"}]
    e = d["exception"]
    assert e == run.exception
    assert (e["type"], e["message"]) == ("ValueError", f"loss diverged at step {BAD_STEP}")
    assert "in train_step" in e["traceback"]
    assert e["traceback"].endswith(f"ValueError: loss diverged at step {BAD_STEP}\n")
    # alerts are raised by the agent's detectors on their own tick: equal once both reads agree
    wait_for(
        lambda: (
            get(server, f"/api/projects/{PROJECT}/groups/{GROUP}/ranks/{BAD}")[1]["alerts"]
            == [
                a
                for a in get(server, f"/api/projects/{PROJECT}/groups/{GROUP}/alerts")[1]["alerts"]
                if a["rank"] == BAD
            ]
        ),
        30,
        "the rank's alerts equal the group's alerts of that rank",
    )
    status, ok = get(server, f"/api/projects/{PROJECT}/groups/{GROUP}/ranks/0")
    assert status == 200 and (ok["state"], ok["exit_code"], ok["exception"]) == ("finished", 0, None)
    assert ok["summary"]["best"] == 0.5 and all(a["rank"] == 0 for a in ok["alerts"])
    assert ok["media"] == [{"key": "hist", "type": "histogram"}]
    api.close()


def test_unknown_rank_is_a_404_naming_the_ranks(server):
    """Rank 9 of a four-rank group: 404 "no rank 9 in group job-crash (ranks 0–3)"; a rank that is not a
    number: 400 naming the fix; an unknown group: 404; the endpoint is listed by /api."""
    status, body = get(server, f"/api/projects/{PROJECT}/groups/{GROUP}/ranks/9")
    assert (status, body) == (404, {"error": f"no rank 9 in group {GROUP} (ranks 0–3)", "status": 404})
    status, body = get(server, f"/api/projects/{PROJECT}/groups/{GROUP}/ranks/five")
    assert status == 400 and body["error"].startswith("rank 'five' is not a rank number")
    status, body = get(server, f"/api/projects/{PROJECT}/groups/nope/ranks/0")
    assert status == 404 and "nope" in body["error"]
    assert "/api/projects/{project}/groups/{group}/ranks/{rank}[?width=400]" in get(server, "/api")[1]["endpoints"]


def rank_alerts(server, rank: int) -> list[dict]:
    return [a for a in get(server, f"/api/projects/{PROJECT}/groups/{GROUP}/alerts")[1]["alerts"] if a["rank"] == rank]


def _page_status(server, path: str) -> tuple[int, str]:
    req = urllib.request.Request(server.url + path.lstrip("/"), headers=auth(server))
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, res.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"]


def test_rank_page_path_serves_the_app(server):
    """``/g/P/G/rank/R`` is the app's page (HTML); a longer path under it is not."""
    assert _page_status(server, f"/g/{PROJECT}/{GROUP}/rank/1") == (200, "text/html; charset=utf-8")
    assert _page_status(server, f"/g/{PROJECT}/{GROUP}/rank/1/more")[0] == 404


def test_runs_table_links_to_the_rank_page_that_shows_the_exception(browser, server, job):
    """On the group page, rank 1's runs-table row links to /g/rankpage/job-crash/rank/1; following it, the rank
    page shows state failed, exit code 1, "ValueError: loss diverged at step 5" and the traceback (folded,
    opened by a click), and the loss chart draws rank 1's own values (none after step 4) between the group's
    min and max and the mean of every rank at each step, exactly."""
    raw = job[1]
    p = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = watch_errors(p)
    wait_for(lambda: rank_alerts(server, BAD), 60, "the crashed alert about the failed rank")
    alerts = rank_alerts(server, BAD)
    assert [a["kind"] for a in alerts] == ["crashed"]
    p.goto(page_url(server, PROJECT, GROUP))
    p.wait_for_function("window.rw && window.rw.ready", timeout=30_000)
    banner_links = p.locator(f'#alert-list li[data-rank="{BAD}"] a.arank')
    assert banner_links.count() == len(alerts)
    assert all(
        h == f"/g/{PROJECT}/{GROUP}/rank/{BAD}"
        for h in banner_links.evaluate_all("ls => ls.map((a) => a.getAttribute('href'))")
    )
    link = p.locator(f'#runs tr[data-rank="{BAD}"] a.ranklink')
    assert link.get_attribute("href") == f"/g/{PROJECT}/{GROUP}/rank/{BAD}"
    link.click()
    p.wait_for_url(f"**/g/{PROJECT}/{GROUP}/rank/{BAD}")
    p.wait_for_function("window.rw && window.rw.ready", timeout=30_000)
    assert p.locator("#rank-title").inner_text().startswith(f"rank {BAD}")
    assert p.locator("#rank-title .badge").inner_text() == "failed"
    assert p.locator('#facts [data-fact="exit code"] dd').inner_text() == "1"
    assert p.locator("#exception .extitle").inner_text() == f"ValueError: loss diverged at step {BAD_STEP}"
    trace = p.locator("#exception pre.traceback")
    assert trace.is_hidden()
    p.locator("#exception details.extrace summary").click()
    assert trace.is_visible()
    assert "in train_step" in trace.inner_text() and trace.inner_text().rstrip().endswith(
        f"ValueError: loss diverged at step {BAD_STEP}"
    )
    p.wait_for_function("() => { const c = window.rw.charts.get('loss'); return c && c.u; }", timeout=30_000)
    c = p.evaluate(
        "() => { const u = window.rw.charts.get('loss').u; return {labels: u.series.map((s) => s.label),"
        " data: u.data.map((d) => Array.from(d))}; }"
    )
    assert c["labels"] == ["step", "min", "max", f"rank {BAD}", "mean"]
    x, lo, hi, mine, mean = c["data"]
    assert x == list(range(STEPS))
    values = np.array([[raw[r].get(s, np.nan) for s in range(STEPS)] for r in range(WORLD)])
    assert lo == pytest.approx(np.nanmin(values, axis=0).tolist())
    assert hi == pytest.approx(np.nanmax(values, axis=0).tolist())
    assert mean == pytest.approx(np.nanmean(values, axis=0).tolist())
    assert mine[:BAD_STEP] == pytest.approx([raw[BAD][s] for s in range(BAD_STEP)])
    assert mine[BAD_STEP:] == [None] * (STEPS - BAD_STEP)
    assert p.locator('#rank-config tr[data-key="seed"] td').inner_text() == str(BAD)
    shown = p.locator("#rank-alerts li").evaluate_all(
        "ls => ls.map((li) => [li.dataset.kind, li.querySelector('.amsg').textContent])"
    )
    assert shown == [[a["kind"], a["message"]] for a in alerts]
    sample = p.locator('.mcard[data-key="sample"]')
    sample.scroll_into_view_if_needed()
    p.wait_for_function("() => document.querySelector('.mcard[data-key=\"sample\"]').dataset.state === 'ready'")
    assert sample.locator("select.mrank").input_value() == str(BAD)
    assert sample.locator(".mtile").evaluate_all("ts => ts.map((t) => t.dataset.rank)") == [str(BAD)]
    p.screenshot(path=artifact("ui-rank-page.png"), full_page=True)
    p.close()
    assert errors == []


def test_rank_system_samples_endpoint_and_page(tmp_path, browser):
    """A rank's own system samples (stored through ``Txn.add_system`` as the agent's sampler commits them,
    8 samples 5 s apart): with ``width=8`` one sample per bucket, so ``system.keys`` is exactly rank 1's RSS
    at the bucket centres (not rank 0's, not the node's host.* keys); the page draws one System card for it
    with 8 points; a rank without samples has ``{"t0": None, "keys": []}`` and no System section."""
    from agent.store.sqlite import SQLiteStore

    path = tmp_path / "store.sqlite"
    runs = write_health_group(path, "sysrank", "sys", 3, 20, -1, 0, "finished")
    t = 1.7e9 + np.arange(8) * 5.0
    rss = {r.rank: 1e8 * (r.rank + 1) + 1e6 * np.arange(8) for r in runs}
    store = SQLiteStore(path)
    with store.transaction() as txn:
        for r in runs[:2]:  # rank 2 has no samples
            txn.add_system(r.group_id, r.id, "node-0", {"_timestamp": t, "proc.rss_bytes": rss[r.rank]})
        txn.add_system(runs[0].group_id, None, "node-0", {"_timestamp": t, "host.load1": np.arange(8.0)})
    store.close()
    with served(path) as server:
        status, body = get(server, "/api/projects/sysrank/groups/sys/ranks/1?width=8")
        assert status == 200 and body["system"]["t0"] == t[0]
        (k,) = body["system"]["keys"]
        assert k["key"] == "proc.rss_bytes" and k["values"] == rss[1].tolist()
        assert k["t"] == pytest.approx((t[0] + (np.arange(8) + 0.5) * (t[-1] - t[0]) / 8).tolist())
        assert get(server, "/api/projects/sysrank/groups/sys/ranks/2")[1]["system"] == {"t0": None, "keys": []}
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = watch_errors(page)
        page.goto(page_url(server, "sysrank", "sys").replace("/g/sysrank/sys", "/g/sysrank/sys/rank/1"))
        page.wait_for_function("window.rw && window.rw.ready && window.rw.system === 1", timeout=30_000)
        assert page.locator("#system-head").is_visible()
        cards = page.locator("#system .card")
        assert cards.evaluate_all("cs => cs.map((c) => [c.dataset.key, c.dataset.points])") == [
            ["rank:proc.rss_bytes", "8"]
        ]
        page.screenshot(path=artifact("ui-rank-system.png"), full_page=True)
        page.goto(page_url(server, "sysrank", "sys").replace("/g/sysrank/sys", "/g/sysrank/sys/rank/2"))
        page.wait_for_function("window.rw && window.rw.ready && window.rw.system === 0", timeout=30_000)
        assert page.locator("#system-head").is_hidden()
        page.close()
    assert errors == []


LIVE_SCRIPT = """
import os, time
from pathlib import Path
import rankwise

rank = int(os.environ["RANK"])
go = Path(os.environ["RANK_PAGE_GO"])
run = rankwise.init(project="ranklive")
for step in range(3):
    run.log({"loss": float(step + rank)})
while not go.exists():  # the test opens the rank page while every rank is running
    time.sleep(0.02)
if rank == 1:
    raise RuntimeError("boom after go")
run.log({"loss": 10.0 + rank})
run.finish()
"""


def test_open_rank_page_follows_the_rank_until_it_fails(browser, tmp_path):
    """A rank page opened while its group runs (three steps logged, the ranks waiting for a file) shows state
    running and no exception; once the ranks go on and rank 1 raises, the same page (no reload) shows state
    failed, exit code 1 and "RuntimeError: boom after go", through the group's event stream."""
    go = tmp_path / "go"
    with own_env() as env:
        procs = start_ranks(env, LIVE_SCRIPT, 2, "job-live", RANK_PAGE_GO=str(go), **env_vars(env))
        try:
            wait_group(env.store, "ranklive", "job-live", lambda g: [r.step for r in g.runs] == [3, 3], "3 steps each")
            with served(env.store) as server:
                p = browser.new_page(viewport={"width": 1400, "height": 1000})
                errors = watch_errors(p)
                p.goto(page_url(server, "ranklive", "job-live").replace("/job-live", "/job-live/rank/1"))
                p.wait_for_function("window.rw && window.rw.ready", timeout=30_000)
                p.evaluate("() => { window.rwSamePage = true; }")
                assert p.locator("#rank-title .badge").inner_text() == "running"
                assert p.locator("#exception").inner_text() == ""
                go.touch()
                p.wait_for_function(
                    "() => document.querySelector('#rank-title .badge').textContent === 'failed'", timeout=60_000
                )
                assert p.evaluate("() => window.rwSamePage === true && window.rw.liveUpdates >= 1")
                assert p.locator("#exception .extitle").inner_text() == "RuntimeError: boom after go"
                assert p.locator('#facts [data-fact="exit code"] dd').inner_text() == "1"
                p.screenshot(path=artifact("ui-rank-live.png"), full_page=True)
                p.close()
                assert errors == []
        finally:
            go.touch()
            results = wait_all(procs)
        assert [code for code, _, _ in results] == [0, 1], [err[-800:] for _, _, err in results]
