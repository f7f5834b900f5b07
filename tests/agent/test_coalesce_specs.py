"""Coalescing in the single-node agent, specified in process (tests/support/agentsim.py): rows over a run's
row budget become spans (agent/ratelimit.py) while keys that opted out stay row for row, and spans a client
coalesced under overload (client/coalesce.py, agent/clientspans.py) are stored like the agent's own. Group
rows come from the raw values the agent saw, compared with numpy."""

from __future__ import annotations

import numpy as np

from support.agentsim import AgentSim
from support.grouprows import assert_group_rows, numpy_group_rows, points_of, wave


def _span_fields(values: np.ndarray, size: int) -> dict[str, list[float]]:
    """last, mean, min, max of consecutive slices of ``size`` values, by numpy."""
    parts = values.reshape(-1, size)
    return {
        "last": parts[:, -1].tolist(),
        "mean": parts.mean(axis=1).tolist(),
        "min": parts.min(axis=1).tolist(),
        "max": parts.max(axis=1).tolist(),
    }


def test_rows_over_the_row_budget_become_spans_and_group_rows_stay_exact(monkeypatch):
    """Agent rate limit (``rows_per_s=10``: a bucket of 20 rows, refilled at 10 a second): a run of a world
    of 1 defines ``y`` with ``rate_limit=False``, then at t=0 sends 15 rows (steps 0..14: they fit, 5 tokens
    left) and 30 rows (steps 15..44: over the budget, they become 5 spans of 6 rows, ending at steps 20, 26,
    32, 38, 44), and at t=1 10 rows (steps 45..54: refilled, kept). Stored ``x``: row for row at 0..14 and
    45..54, one span row per span with its last value, and the spans' first step, count 6, last, mean, min,
    max equal numpy over the raw values (``_rows`` 6, ``_first_step`` 15, 21, ...). ``y`` is stored at all
    55 steps. The run counts 55 rows; ``coalesced`` is {rows: 30, spans: 5}, ``coalesced_rows`` 25. Group
    rows are computed from the raw values: every step 0..54, count 1."""
    sim = AgentSim(monkeypatch, rows_per_s=10.0)
    r0 = sim.join(0, 1)
    r0.control("define", {"name": "y", "rate_limit": False})
    for steps in (range(15), range(15, 45)):
        r0.log(steps, x=wave(0, steps), y=wave(5, steps))
        r0.send()
    sim.turn()
    sim.at(1.0)
    r0.log(range(45, 55), x=wave(0, range(45, 55)), y=wave(5, range(45, 55)))
    r0.send()
    sim.turn()
    ends = [20, 26, 32, 38, 44]
    raw = wave(0, range(55))
    spans = sim.spans(r0, "x")
    assert spans["step"].tolist() == ends and spans["first_step"].tolist() == [15, 21, 27, 33, 39]
    assert spans["count"].tolist() == [6] * 5
    for f, want in _span_fields(raw[15:45], 6).items():
        np.testing.assert_allclose(spans[f], want, rtol=1e-12, err_msg=f)
    steps, values = sim.history(r0, "x")
    kept = list(range(15)) + list(range(45, 55))
    assert steps.tolist() == sorted(kept + ends)
    assert values.tolist() == [float(raw[s]) for s in sorted(kept + ends)]
    assert sim.history(r0, "_rows")[0].tolist() == ends and sim.history(r0, "_rows")[1].tolist() == [6] * 5
    assert sim.history(r0, "_first_step")[1].tolist() == [15, 21, 27, 33, 39]
    assert sim.history(r0, "y")[0].tolist() == list(range(55))
    run = sim.run(r0)
    assert run.rows == 55 and run.meta["coalesced"] == {"rows": 30, "spans": 5}
    assert sim.counters["coalesced_rows"] == 25
    assert_group_rows(sim.group_rows("x"), numpy_group_rows({0: points_of(range(55), raw)}, expected=1))


def test_spans_a_client_coalesced_are_stored_as_spans_and_give_their_last_values_to_group_rows(monkeypatch):
    """Client-coalesced spans (overload): rank 0 of 2 logs steps 0..9 as rows; rank 1's client folded its
    steps 0..9 into 2 spans of 5 rows (0..4, 5..9), ``y`` kept row for row (``rate_limit=False``). Rank 1's
    ``x`` is stored as 2 span rows at steps 4 and 9 (first step 0 and 5, count 5, last/mean/min/max equal
    numpy over its values; ``_rows`` 5, 5) and its ``y`` at all 10 steps; its run counts 10 rows,
    ``coalesced`` {rows: 10, spans: 2}; ``client_spans`` 2, ``client_coalesced_rows`` 10. Its watermark is
    step 9, so steps 0..9 are sealed in the first turn (both batches acknowledged). The agent never saw
    rank 1's raw ``x``: its group rows hold rank 1's last value of each span, at steps 4 and 9 (count 2),
    and rank 0 alone elsewhere (count 1); those of ``y`` hold both ranks at every step."""
    sim = AgentSim(monkeypatch)
    r0, r1 = sim.join(0, 2), sim.join(1, 2)
    steps = range(10)
    r0.log(steps, x=wave(0, steps), y=wave(2, steps))
    r0.send()
    x1, y1 = wave(1, steps), wave(3, steps)
    r1.spans(steps, 5, raw=("y",), x=x1, y=y1)
    r1.send()
    assert sim.settle() == 1 and (r0.acked, r1.acked) == (1, 1)
    spans = sim.spans(r1, "x")
    assert spans["step"].tolist() == [4, 9] and spans["first_step"].tolist() == [0, 5]
    assert spans["count"].tolist() == [5, 5]
    for f, want in _span_fields(x1, 5).items():
        np.testing.assert_allclose(spans[f], want, rtol=1e-12, err_msg=f)
    assert sim.history(r1, "_rows")[1].tolist() == [5, 5]
    assert sim.history(r1, "y")[0].tolist() == list(range(10))
    run = sim.run(r1)
    assert run.rows == 10 and run.meta["coalesced"] == {"rows": 10, "spans": 2}
    assert (sim.counters["client_spans"], sim.counters["client_coalesced_rows"]) == (2, 10)
    assert sim.group_chunks("x") == [(list(range(10)), False)]
    x_points = {0: points_of(steps, wave(0, steps)), 1: {4: float(x1[4]), 9: float(x1[9])}}
    assert_group_rows(sim.group_rows("x"), numpy_group_rows(x_points, expected=2))
    assert sim.group_rows("x")["count"].tolist() == [1, 1, 1, 1, 2, 1, 1, 1, 1, 2]
    y_points = {0: points_of(steps, wave(2, steps)), 1: points_of(steps, y1)}
    assert_group_rows(sim.group_rows("y"), numpy_group_rows(y_points, expected=2))
