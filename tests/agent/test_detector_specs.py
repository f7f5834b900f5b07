"""The detectors specified in process (tests/support/agentsim.py with ``role="single"``: the real Ingest,
the parts agent/plugged.py plugs, an injected clock, no sleeps): the first-NaN step with late rows and
spans, no repeat after an agent restart, hang vs stalled and the derived threshold, the stack of a hung
rank, straggler thresholds, diverged, crashed, bounded state (whole jobs: tests/agent/test_detector_jobs.py).
Times are seconds after the sim's start; the sim's row times are its clock's."""

from __future__ import annotations

import heapq
from concurrent.futures import Future

import numpy as np
import pytest

from agent.alerts.detectors.hang import FLOOR_S
from agent.alerts.detectors.pyspy import NOT_INSTALLED, Spy
from support.agentsim import AgentSim, SimRank
from support.fakespy import FakeSpy


def kinds(sim: AgentSim, group: str = "g") -> list[tuple]:
    return [(a["kind"], a["rank"], a["key"], a["step"]) for a in sim.alerts(group)]


def joined(sim: AgentSim, world: int) -> list[SimRank]:
    ranks = [sim.join(r, world) for r in range(world)]
    for r in ranks:
        r.steps = 0
    sim.settle()
    return ranks


# ---------------------------------------------------------------- nan


def test_nan_names_the_lowest_non_finite_step_of_a_commit_late_rows_included_once_per_rank_and_key(monkeypatch):
    """Rank 1 logs steps 0..9 of ``loss`` (NaN at 7 and 9) and, in the same commit, a late update of step 3 to
    +Inf: one alert, step 3, value "+Inf", level ERROR. Later NaNs of the same key add nothing; rank 1's
    ``acc`` going -Inf at step 12 is a second alert; integer and finite keys (rank 0) never alert."""
    sim = AgentSim(monkeypatch, role="single")
    r0, r1 = sim.join(0, 2), sim.join(1, 2)
    loss = np.ones(10)
    loss[[7, 9]] = np.nan
    r0.log(range(10), loss=np.ones(10), n=np.arange(10))
    r1.log(range(10), loss=loss)
    r1.late(3, loss=float("inf"))
    r0.send(), r1.send()
    sim.settle()
    assert kinds(sim) == [("nan", 1, "loss", 3)]
    (alert,) = sim.alerts()
    assert (alert["level"], alert["details"]["value"]) == ("ERROR", "+Inf")
    assert alert["message"] == "rank 1 logged loss = +Inf at step 3 (its first non-finite loss)"
    r1.log(range(10, 13), loss=np.nan, acc=[1.0, 1.0, -np.inf])
    r1.send()
    sim.settle()
    assert kinds(sim) == [("nan", 1, "loss", 3), ("nan", 1, "acc", 12)]
    assert sim.alerts()[1]["details"]["value"] == "-Inf"


def test_nan_in_coalesced_spans_names_the_stored_row_and_the_span(monkeypatch):
    """Rows coalesced into spans of 4 by the client (client/coalesce.py): steps 0..11 with a NaN at step 6
    fall in spans [0-3], [4-7], [8-11]; the alert names step 7 (the stored row of the span holding the NaN)
    and the span's first step 4 and its 4 rows in ``details``."""
    sim = AgentSim(monkeypatch, role="single")
    r0 = sim.join(0, 1)
    loss = np.arange(12.0)
    loss[6] = np.nan
    r0.spans(range(12), 4, loss=loss)
    r0.send()
    sim.settle()
    assert kinds(sim) == [("nan", 0, "loss", 7)]
    d = sim.alerts()[0]["details"]
    assert (d["span_first_step"], d["span_rows"], d["value"]) == (4, 4, "NaN")


def test_nan_is_not_raised_again_by_an_agent_restarted_over_the_store(monkeypatch):
    """Rank 0 logs a NaN at step 2: one alert. The agent is killed and restarted over the same store; the rank
    resends and logs NaNs again at steps 5..6: the new agent raises nothing (it read the stored alert: its
    ``alerts`` counter stays 0) and the store holds the one alert, step 2."""
    sim = AgentSim(monkeypatch, role="single")
    r0 = sim.join(0, 1)
    r0.log(range(3), loss=[1.0, 1.0, np.nan])
    r0.send()
    sim.settle()
    assert kinds(sim) == [("nan", 0, "loss", 2)]
    sim.restart()
    r0.resend()
    r0.log(range(3, 7), loss=[1.0, 1.0, np.nan, np.nan])
    r0.send()
    sim.settle()
    assert kinds(sim) == [("nan", 0, "loss", 2)]
    assert sim.counters["alerts"] == 0


# ---------------------------------------------------------------- hang, stalled


def test_hang_is_one_rank_silent_for_hang_after_while_others_go_on_one_alert_per_episode(monkeypatch):
    """``hang_after_s=2``; 4 ranks log a step every 0.1 s. Rank 1 stops after t=1 (its last step 9 at 0.9):
    no alert at t=2.8 (1.9 s silent), one ``hang`` alert for rank 1 at step 9 by t=3.0, with the fake
    dump's stack; nothing more while it stays silent to t=6. It resumes (t=6..7), then stops again: a
    second alert at its new step. No other rank is named, no ``stalled``."""
    spy = FakeSpy()
    sim = AgentSim(monkeypatch, role="single", spy=spy, hang_after_s=2.0)
    ranks = joined(sim, 4)
    step_all(sim, ranks, 0.0, 1.0)
    step_all(sim, [ranks[i] for i in (0, 2, 3)], 1.0, 2.8)
    assert kinds(sim) == []
    step_all(sim, [ranks[i] for i in (0, 2, 3)], 2.8, 3.1)
    assert kinds(sim) == [("hang", 1, None, 9)]
    (alert,) = sim.alerts()
    assert alert["details"]["stack"] == f"Thread {ranks[1].pid}: train_step (train.py:42)"
    assert alert["details"]["hang_after_s"] == 2.0 and spy.started == [ranks[1].pid]
    step_all(sim, [ranks[i] for i in (0, 2, 3)], 3.1, 6.0)
    assert len(sim.alerts()) == 1
    step_all(sim, ranks, 6.0, 7.0)
    step_all(sim, [ranks[i] for i in (0, 2, 3)], 7.0, 9.5)
    assert kinds(sim) == [("hang", 1, None, 9), ("hang", 1, None, ranks[1].steps - 1)]


def test_a_hang_stored_before_an_agent_restart_is_not_raised_or_notified_again(monkeypatch):
    """Rank 1 hangs at step 9: one ``hang`` alert, handed to the notifiers once. The agent is killed and
    restarted over the store while rank 1 stays silent at step 9 and the others go on: the new agent sees the
    same hang (same identity, token "9") and raises nothing (its ``alerts`` counter 0, its notifiers not called,
    no second py-spy dump) and the store holds the one alert. When rank 1 then resumes and hangs at a new step,
    that alert is raised and notified."""
    spy = FakeSpy()
    sim = AgentSim(monkeypatch, role="single", spy=spy, hang_after_s=2.0)
    first: list = []
    sim.ingest.alerts.notifiers.append(first.append)
    ranks = joined(sim, 4)
    step_all(sim, ranks, 0.0, 1.0)
    step_all(sim, [ranks[i] for i in (0, 2, 3)], 1.0, 3.1)
    assert kinds(sim) == [("hang", 1, None, 9)] and [[a.kind for a in c] for c in first] == [["hang"]]
    sim.restart()
    notified: list = []
    sim.ingest.alerts.notifiers.append(notified.append)
    for r in ranks:
        r.resend()
    sim.settle()
    step_all(sim, [ranks[i] for i in (0, 2, 3)], 3.1, 8.0)
    assert kinds(sim) == [("hang", 1, None, 9)]
    assert sim.counters["alerts"] == 0 and notified == [] and spy.started == [ranks[1].pid]
    step_all(sim, ranks, 8.0, 9.0)
    step_all(sim, [ranks[i] for i in (0, 2, 3)], 9.0, 11.5)
    assert kinds(sim) == [("hang", 1, None, 9), ("hang", 1, None, ranks[1].steps - 1)]
    assert [(a.kind, a.step) for c in notified for a in c] == [("hang", ranks[1].steps - 1)]


def test_stalled_is_every_running_rank_silent_for_hang_after_and_names_no_rank(monkeypatch):
    """``hang_after_s=2``; 4 ranks log to t=1 (step 9), then none: one ``stalled`` alert (rank None, step 9)
    once 2 s passed, no ``hang``; it stays one while the group stays silent to t=10."""
    sim = AgentSim(monkeypatch, role="single", hang_after_s=2.0)
    ranks = joined(sim, 4)
    step_all(sim, ranks, 0.0, 1.0)
    step_all(sim, [], 1.0, 2.8)
    assert kinds(sim) == []
    step_all(sim, [], 2.8, 10.0)
    assert kinds(sim) == [("stalled", None, None, 9)]
    assert sim.alerts()[0]["level"] == "ERROR"


def test_derived_hang_after_is_factor_times_the_median_commit_interval_with_a_floor(monkeypatch):
    """No ``hang_after_s``: ranks committing every 10 s make it 20 × 10 = 200 s (over the 120 s floor):
    rank 1 silent for 190 s is no hang, for 205 s it is. Committing every 0.1 s, the floor (120 s) decides."""
    sim = AgentSim(monkeypatch, role="single", spy=FakeSpy())
    ranks = joined(sim, 4)
    step_all(sim, ranks, 0.0, 100.0, every=10.0)
    hang = next(p for p in sim.ingest.parts if type(p).__name__ == "HangDetector")
    gid = sim.ingest.runs[next(iter(sim.ingest.runs))].group.record.id
    assert hang.hang_after(gid) == pytest.approx(200.0)
    step_all(sim, [ranks[i] for i in (0, 2, 3)], 100.0, 280.0, every=10.0)
    sim.at(280.0), sim.turn()
    assert kinds(sim) == []
    step_all(sim, [ranks[i] for i in (0, 2, 3)], 280.0, 300.0, every=5.0)
    assert [k[:2] for k in kinds(sim)] == [("hang", 1)]

    fast = AgentSim(monkeypatch, role="single")
    ranks = joined(fast, 4)
    step_all(fast, ranks, 0.0, 5.0)
    hang = next(p for p in fast.ingest.parts if type(p).__name__ == "HangDetector")
    assert hang.hang_after(next(iter(fast.ingest.groups))) == FLOOR_S


def test_a_hang_alert_waits_for_its_dump_and_says_when_there_is_no_py_spy(monkeypatch):
    """The dump runs off the loop (a future): the alert is raised when it completes, with its details. Without
    py-spy (``Spy(exe="")``) the alert says "py-spy not installed"; a rank forwarded by a node agent (a root's
    run with ``via``) runs on another machine: no dump, and the alert says so."""
    spy = FakeSpy()
    spy.next = Future()
    sim = AgentSim(monkeypatch, role="single", spy=spy, hang_after_s=1.0)
    ranks = joined(sim, 3)
    step_all(sim, ranks, 0.0, 0.5)
    step_all(sim, ranks[:2], 0.5, 2.0)
    assert kinds(sim) == [] and spy.started == [ranks[2].pid]
    spy.next = None
    (future,) = [f for f, _ in next(p for p in sim.ingest.parts if hasattr(p, "dumping")).dumping]
    future.set_result({"py_spy": "dumped", "stack": "S"})
    step_all(sim, ranks[:2], 2.0, 2.3)
    assert [(a["kind"], a["rank"], a["details"]["stack"]) for a in sim.alerts()] == [("hang", 2, "S")]

    assert Spy(exe="").start(123).result() == {"py_spy": NOT_INSTALLED}
    remote = AgentSim(monkeypatch, role="single", spy=FakeSpy(), hang_after_s=1.0)
    ranks = joined(remote, 3)
    next(r for r in remote.ingest.runs.values() if r.record.rank == 2).via = "node-b"
    step_all(remote, ranks, 0.0, 0.5)
    step_all(remote, ranks[:2], 0.5, 2.0)
    (alert,) = remote.alerts()
    assert alert["details"]["py_spy"] == "rank runs on another machine (simnode): no stack here"


def step_all(sim: AgentSim, ranks: list[SimRank], start: float, end: float, every: float = 0.1) -> None:
    """Turns every ``every`` s from ``start`` (included) to ``end`` (excluded); each of ``ranks`` logs its next
    step (x = 1.0) just before each turn."""
    for t in np.arange(start, end - 1e-9, every):
        sim.at(float(t))
        for r in ranks:
            r.log(r.steps, x=1.0)
            r.steps += 1
            r.send()
        sim.turn()


# ---------------------------------------------------------------- straggler, diverged, crashed


def paced(monkeypatch, periods: list[float], seconds: float, extra: dict | None = None, **keys) -> AgentSim:
    """Ranks stepping at exactly ``periods[r]`` seconds per step until ``seconds``, turns every 0.1 s; ``x`` the
    value each rank logs (``keys["x"][r]``, else 1.0), ``extra[r]`` more keys rank r logs at each step."""
    sim = AgentSim(monkeypatch, role="single", spy=FakeSpy())
    ranks = joined(sim, len(periods))
    events = [(0.0, r) for r in range(len(periods))]
    next_turn = 0.0
    while events:
        t, r = heapq.heappop(events)
        while next_turn <= t:
            sim.at(next_turn)
            for rank in ranks:
                rank.send()
            sim.turn()
            next_turn += 0.1
        sim.at(t)
        more = (extra or {}).get(r, {})
        ranks[r].log(ranks[r].steps, x=float(keys.get("x", [1.0] * len(periods))[r]), **more)
        ranks[r].steps += 1
        if t + periods[r] < seconds:
            heapq.heappush(events, (t + periods[r], r))
    sim.settle()
    return sim


def test_straggler_needs_1_5x_the_median_over_50_steps_and_10_s(monkeypatch):
    """Five ranks at 20 ms per step, one at 28 ms (1.4×) for 20 s: nothing. One at 32 ms (1.6×): a
    ``straggler`` alert for it, factor 1.6, ``timing`` the commit interval, once. One at 100 ms (5×) but
    only for 9.5 s: nothing yet (its window is under 10 s)."""
    assert paced(monkeypatch, [0.02] * 5 + [0.028], 20.0).alerts() == []
    sim = paced(monkeypatch, [0.02] * 5 + [0.032], 20.0)
    (alert,) = sim.alerts()
    assert (alert["kind"], alert["rank"], alert["key"], alert["details"]["timing"]) == (
        "straggler",
        5,
        None,
        "_timestamp",
    )
    assert alert["details"]["factor"] == pytest.approx(1.6, abs=0.01) and alert["details"]["window_steps"] >= 50
    assert paced(monkeypatch, [0.02] * 5 + [0.1], 9.5).alerts() == []


def test_a_straggler_alert_names_the_cpu_saturation_and_gpu_throttling_logged_for_its_rank(monkeypatch):
    """The slow rank's ``proc.cpu_percent`` is 99 and its ``gpu.clock_throttle_reasons`` 4 (keys the system
    sampler logs): its straggler message says "CPU saturated (99% of a core)" and "GPU clock throttled"; a
    fast rank's 99 % says nothing (no alert about it)."""
    signals = {"proc.cpu_percent": 99.0, "gpu.clock_throttle_reasons": 4.0}
    sim = paced(monkeypatch, [0.02] * 4 + [0.04], 12.0, extra={0: {"proc.cpu_percent": 99.0}, 4: signals})
    (alert,) = sim.alerts()
    assert alert["rank"] == 4 and alert["details"]["signals"] == [
        "GPU clock throttled (gpu.clock_throttle_reasons=4)",
        "CPU saturated (99% of a core)",
    ]
    assert alert["message"].endswith(
        "; GPU clock throttled (gpu.clock_throttle_reasons=4), CPU saturated (99% of a core)"
    )


def test_straggler_signals_come_from_the_system_stream_too(monkeypatch):
    """The system sampler's samples reach the detector in the commit's system stream (``nc.system``, not the
    history): the last ``proc.cpu_percent`` and ``gpu.*throttle*`` of a rank's samples are the signals its
    straggler message would name; host rows and other keys are not."""
    from agent.alerts.detectors.straggler import StragglerDetector
    from agent.nextcommit import NextCommit

    sim = AgentSim(monkeypatch, role="single", spy=FakeSpy())
    joined(sim, 2)
    (detector,) = [p for p in sim.ingest.parts if isinstance(p, StragglerDetector)]
    run = next(r for r in sim.ingest.runs.values() if r.record.rank == 1)
    gid = run.group.record.id
    nc = NextCommit()
    cols = {"_timestamp": np.array([1.0, 2.0]), "proc.cpu_percent": np.array([50.0, 97.0])}
    nc.add_system(gid, run.record.id, "n", dict(cols, **{"gpu.throttle.hw_slowdown": np.array([0.0, 1.0])}))
    nc.add_system(gid, None, "n", {"_timestamp": np.array([2.0]), "host.cpu_percent": np.array([99.0])})
    detector.committed(nc)
    assert detector.signals == {run.record.id: {"proc.cpu_percent": 97.0, "gpu.throttle.hw_slowdown": 1.0}}


def test_diverged_is_a_rank_far_from_the_others_for_five_sampled_steps(monkeypatch):
    """Six ranks log x ≈ 1 (rank-specific offsets of ±1 %), rank 4 logs 3.0: one ``diverged`` alert for rank 4,
    key x, at the fifth sampled step (step 32: steps divisible by 8). With rank 4 at 1.3 (under half the
    typical value away, the floor of the spread) nothing is said."""
    xs = [1.0, 1.01, 0.99, 1.005, 3.0, 0.995]
    sim = paced(monkeypatch, [0.05] * 6, 5.0, x=xs)
    assert kinds(sim) == [("diverged", 4, "x", 32)]
    assert sim.alerts()[0]["details"]["median_others"] == pytest.approx(1.0)
    xs[4] = 1.3
    assert paced(monkeypatch, [0.05] * 6, 5.0, x=xs).alerts() == []


TB = 'Traceback (most recent call last):\n  File "train.py", line 9, in <module>\nOSError: disk gone\n'


def test_crashed_names_the_exception_and_the_exit_status_once_per_run(monkeypatch):
    """Rank 0's process vanishes (the agent sees its pid gone): ``crashed`` "exit status unknown". Rank 1
    finishes with exit code 3 and an exception: ``crashed`` with its type and message and "exit code 3".
    Rank 2 finishes cleanly: nothing."""
    sim = AgentSim(monkeypatch, role="single")
    ranks = joined(sim, 3)
    step_all(sim, ranks, 0.0, 0.5)
    sim.kill(ranks[0])
    ranks[1].control(
        "finish", {"exit_code": 3, "t": 0.6, "exception": {"type": "OSError", "message": "disk gone", "traceback": TB}}
    )
    ranks[2].finish()
    for r in ranks[1:]:
        r.send()
    sim.at(1.0)
    sim.settle()
    found = {a["rank"]: a for a in sim.alerts()}
    assert sorted(found) == [0, 1] and {a["kind"] for a in found.values()} == {"crashed"}
    assert found[0]["message"] == "rank 0 crashed at step 4: the process vanished; exit status unknown"
    assert found[1]["message"] == "rank 1 failed at step 4: OSError: disk gone; exit code 3"
    assert found[1]["details"]["exception"] == {"type": "OSError", "message": "disk gone"}
    assert found[1]["details"]["traceback"] == TB and found[0]["details"]["exit_code"] is None


def test_rows_of_3000_keys_keep_the_detectors_state_bounded(monkeypatch):
    """Four ranks log 3 rows of 3000 keys (a NaN in key k7 of rank 1): one ``nan`` alert; the diverged
    detector follows 256 keys and remembers at most 1024 per group (the rest counted as skipped); the
    straggler detector follows no timing key; nothing else is raised."""
    from agent.alerts.detectors.diverged import MAX_KEYS, MAX_TABLE

    sim = AgentSim(monkeypatch, role="single")
    ranks = joined(sim, 4)
    for step in range(3):
        sim.at(step * 0.1)
        for r in ranks:
            row = {f"k{k}": 1.0 for k in range(3_000)}
            if r.rank == 1 and step == 2:
                row["k7"] = np.nan
            r.log(step, **row)
            r.send()
        sim.turn()
    sim.settle(turns=1000)  # wide batches are applied a slice of columns per turn (agent/slices.py)
    assert kinds(sim) == [("nan", 1, "k7", 2)]
    diverged = next(p for p in sim.ingest.parts if type(p).__name__ == "DivergedDetector")
    (table,) = diverged.keys.values()
    assert sum(s is not None for s in table.values()) == MAX_KEYS and len(table) <= MAX_TABLE
    assert diverged.counters["keys_skipped"] > 0
    straggler = next(p for p in sim.ingest.parts if type(p).__name__ == "StragglerDetector")
    assert straggler.keys == {} and all(not keys for keys in straggler.timing_keys.values())


def test_a_root_names_the_nan_rank_of_a_node_agent_and_its_crash(tmp_path):
    """Two node agents and a root in one process (tests/support/mnsim.py): four ranks, two per node, log x at
    steps 0..9, rank 3 (on node1) NaN from step 5; rank 2 then ends with exit code 7. The root, which holds
    the store, stores exactly ``nan`` rank 3 / x / step 5 and ``crashed`` rank 2 ("exit code 7")."""
    from support.frames import batch
    from support.mnsim import Sim, hello

    sim = Sim(tmp_path, nodes=2)
    for rank in range(4):
        node = sim.nodes[rank // 2]
        node.send(hello(f"w{rank}", rank, 4, "g", node.name, 1000 + rank))
        x = np.arange(10.0)
        if rank == 3:
            x[5:] = np.nan
        node.send(batch(f"w{rank}", 1, np.arange(10), {"x": x}))
    sim.nodes[1].send(batch("w2", 2, [], {}, ctl=[["finish", {"exit_code": 7}]]))
    for _ in range(6):
        sim.cycle()
    reader, g = sim.group("g")
    found = [(a["kind"], a["rank"], a["key"], a["step"]) for a in reader.alerts(g.id)]
    assert sorted(found, key=str) == [("crashed", 2, None, 9), ("nan", 3, "x", 5)]
    crashed = next(a for a in reader.alerts(g.id) if a["kind"] == "crashed")
    assert crashed["message"] == "rank 2 failed at step 9: no exception reported; exit code 7"
