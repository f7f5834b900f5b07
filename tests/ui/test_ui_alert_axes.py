"""Alert markers on every x axis (docs/ui.md "Alerts"): an alert is about a step; on the relative-time,
wall-time and step-metric axes its marker goes at that step's x there. The alerts endpoint's ``x=`` gives it
(rankwise/_ui/alertx.py: the same x the series endpoint gives the step's group row), and in headless Chromium
the markers of a chart follow the axis chosen. The group is written through the real SQLite store classes
(support/uihelp.py ``write_health_group``: every rank commits step s at t0 + s/64 s) with alerts stored as
the agent's detectors store them."""

from __future__ import annotations

import numpy as np
import pytest

from agent.alerts.alert import Alert
from support.uihelp import add_alerts, artifact, get, health_values, page_url, served, watch_errors, write_health_group

PROJECT, GROUP, RANKS, STEPS = "ax", "marks", 3, 100
T0 = 1.7e9
ALERT_STEPS = (10, 40, 41)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("alertaxes") / "store.sqlite"
    runs = write_health_group(path, PROJECT, GROUP, RANKS, STEPS, -1, 0, "finished")
    gid = runs[0].group_id
    alerts = [
        Alert(
            "nan", gid, T0 + 60 + i, f"rank {i}: acc is odd at step {s}", rank=i, run_id=runs[i].id, key="acc", step=s
        )
        for i, s in enumerate(ALERT_STEPS)
    ]
    alerts.append(Alert("stalled", gid, T0 + 99, "no rank progressed", level="ERROR"))  # no step: no marker
    add_alerts(path, alerts)
    return path


def loss_mean(step: int) -> float:
    return float(np.mean([health_values(r, STEPS, -1, 0)["loss"][step] for r in range(RANKS)]))


def test_alerts_endpoint_gives_each_alerts_x_on_an_axis(store):
    """``alerts?x=rel`` and ``x=time``: step/64 s (the step's commit time on the last rank minus t0);
    ``x=metric:loss``: the group mean of loss at the step (the series' x of that row); ``x=step``: the step;
    the alert without a step has x null; a bad x is a 400 naming the axes."""
    with served(store) as server:
        base = f"/api/projects/{PROJECT}/groups/{GROUP}/alerts"
        for axis in ("rel", "time"):
            status, body = get(server, f"{base}?x={axis}")
            assert status == 200
            assert [a["x"] for a in body["alerts"]] == [s / 64 for s in ALERT_STEPS] + [None]
        _, body = get(server, f"{base}?x=step")
        assert [a["x"] for a in body["alerts"]] == [*ALERT_STEPS, None]
        _, body = get(server, f"{base}?x=metric:loss")
        xs = [a["x"] for a in body["alerts"]]
        assert xs[:3] == pytest.approx([loss_mean(s) for s in ALERT_STEPS], rel=1e-12) and xs[3] is None
        _, series = get(server, f"/api/projects/{PROJECT}/groups/{GROUP}/series?key=acc&x=metric:loss&width=0")
        assert set(xs[:3]) <= set(series["x"])  # exactly the x of the rows at those steps
        _, plain = get(server, base)
        assert all("x" not in a for a in plain["alerts"])
        status, err = get(server, f"{base}?x=epochs")
        assert status == 400 and "metric:<key>" in err["error"]


MARKS = """() => { const c = window.rw.charts.get('acc');
  return [...c.card.querySelectorAll('.amark')].map(m => ({x: Number(m.dataset.x), step: Number(m.dataset.step),
    left: parseFloat(m.style.left), want: c.u.valToPos(Number(m.dataset.x), 'x')})); }"""


def test_markers_follow_the_x_axis(browser, store):
    """The acc chart's three markers sit at the alerts' steps on the step axis, at t0 + step/64 on wall time,
    at step/64 on relative time and at loss's group mean on x=metric:loss: each marker's x is that, and its
    position is the chart's pixel for that x."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = watch_errors(page)
    try:
        with served(store) as server:
            page.goto(page_url(server, PROJECT, GROUP))
            page.wait_for_function("window.rw && window.rw.ready", timeout=30_000)
            want = {
                "step": list(ALERT_STEPS),
                "time": [T0 + s / 64 for s in ALERT_STEPS],
                "rel": [s / 64 for s in ALERT_STEPS],
                "metric:loss": [loss_mean(s) for s in ALERT_STEPS],
            }
            for axis, xs in want.items():
                if axis != "step":
                    page.select_option("#axis", axis)
                page.wait_for_function(
                    f"""() => {{ const c = window.rw.charts.get('acc'); return c.data && c.data.axis === '{axis}'
                        && c.card.querySelectorAll('.amark').length === 3 }}""",
                    timeout=30_000,
                )
                marks = sorted(page.evaluate(MARKS), key=lambda m: m["step"])
                assert [m["step"] for m in marks] == list(ALERT_STEPS), axis
                assert [m["x"] for m in marks] == pytest.approx(xs, rel=1e-12), axis
                for m in marks:
                    assert m["left"] == pytest.approx(m["want"], abs=0.01), axis
                if axis == "rel":
                    page.locator('.card[data-key="acc"]').screenshot(path=artifact("ui-alert-markers-rel.png"))
            assert errors == []
    finally:
        page.close()
