"""Whole jobs through the single-node agent in process (tests/support/agentsim.py, ``role="single"``): 18
healthy noisy jobs of the shape of tests/integration/test_health_alerts.py raise nothing, though every
detector judged them; the same job made sick (a NaN rank, a silent rank, a slow rank) raises exactly its
three alerts, so the healthy ones could have failed. Times are seconds after the sim's start."""

from __future__ import annotations

import heapq

import numpy as np
import pytest

from support.agentsim import AgentSim
from support.fakespy import FakeSpy


def sim_job(monkeypatch, seed: int, sick: bool = False, seconds: float = 24.0) -> AgentSim:
    """A job of 8 ranks as the integration test's (steps of ~50 ms with lognormal jitter, 1 % of steps 8× as
    long, one rank paused 1 s once, ``hang_after_s=3``, keys ``loss`` and ``time/compute``). ``sick``: rank 2's
    loss is NaN from step 60, rank 5 is silent from t=6 to t=13, rank 6 steps 3× as slowly."""
    sim = AgentSim(monkeypatch, role="single", spy=FakeSpy(), hang_after_s=3.0)
    rng = np.random.default_rng(seed)
    ranks = [sim.join(r, 8) for r in range(8)]
    pause_rank = seed % 8
    events = [(float(rng.uniform(0, 0.05)), r, 0) for r in range(8)]
    heapq.heapify(events)
    next_turn = 0.0
    while events:
        t, r, step = heapq.heappop(events)
        while next_turn <= t:
            sim.at(next_turn)
            for rank in ranks:
                rank.send()
            sim.turn()
            next_turn += 0.1
        sim.at(t)
        dt = 0.05 * (3.0 if sick and r == 6 else 1.0) * float(rng.lognormal(0.0, 0.3))
        if rng.random() < 0.01:
            dt *= 8
        if r == pause_rank and step == 100:
            dt = 1.0
        loss = 2.0 * np.exp(-step / 2000) + float(rng.normal(0.0, 0.01))
        if sick and r == 2 and step >= 60:
            loss = np.nan
        ranks[r].log(step, **{"loss": loss, "time/compute": dt})
        nxt = t + dt
        if sick and r == 5 and 6.0 <= nxt < 13.0:
            nxt = 13.0
        if nxt < seconds:
            heapq.heappush(events, (nxt, r, step + 1))
    for rank in ranks:
        rank.finish()
        rank.send()
    sim.settle()
    return sim


@pytest.mark.parametrize("seed", range(18))
def test_a_healthy_noisy_job_raises_nothing(monkeypatch, seed):
    """Eighteen healthy jobs (seeds 0..17, see :func:`sim_job`): every detector judged them (straggler
    windows, diverged steps, hang checks) and no alert was raised."""
    sim = sim_job(monkeypatch, seed)
    d = sim.status()["detectors"]
    assert d["straggler"]["groups_checked"] >= 10 and d["diverged"]["steps_judged"] >= 40
    assert d["hang"]["checks"] >= 80
    assert sim.alerts() == []


def test_the_sick_job_in_process_raises_exactly_nan_hang_and_straggler(monkeypatch):
    """The same job with rank 2's loss NaN from step 60, rank 5 silent 7 s, rank 6 3× slower: exactly nan
    (rank 2, loss, step 60), hang (rank 5) and straggler (rank 6), in that order."""
    sim = sim_job(monkeypatch, 0, sick=True)
    found = sim.alerts()
    assert [(a["kind"], a["rank"]) for a in found] == [("nan", 2), ("hang", 5), ("straggler", 6)], found
    assert (found[0]["key"], found[0]["step"]) == ("loss", 60)
    assert 2.0 <= found[2]["details"]["factor"] <= 4.5
