"""When the single-node agent seals a group's steps into group rows (agent/groups.py), specified in process
(tests/support/agentsim.py): a silent rank, ranks that have not said HELLO (join grace, a job that is over),
the seal timeout, late points revising sealed rows, and a rank whose process died. Times are seconds after
the sim's start; every group row is compared with numpy over the raw values the ranks sent."""

from __future__ import annotations

import numpy as np

from support.agentsim import AgentSim
from support.grouprows import assert_group_rows, numpy_group_rows, points_of, wave


def _log(rank, steps) -> dict[int, float]:
    """The rank logs ``x = wave(rank, step)`` at ``steps`` and sends it; returns its raw points."""
    rank.log(steps, x=wave(rank.rank, steps))
    rank.send()
    return points_of(steps, wave(rank.rank, steps))


def test_a_silent_rank_is_waited_for_silence_s_then_sealed_past(monkeypatch):
    """Silence (``silence_s=10``): ranks 0 and 1 of 3 log steps 0..9 at t=0, rank 2 steps 0..4 and then
    nothing. At t=0 steps 0..4 are sealed (count 3) and the group waits for rank 2 at step 4; ranks 0 and 1
    log steps 10..11 at t=6. At t=10 rank 2 has been silent exactly ``silence_s``: still waited for, nothing
    more is sealed. At t=10.5 it is not: steps 5..11 are sealed with count 2 of 3 expected, in a second
    chunk, no revision. Rank 2 stays "running" (silent is not crashed)."""
    sim = AgentSim(monkeypatch, silence_s=10.0)
    r0, r1, r2 = (sim.join(r, 3) for r in range(3))
    points = {0: _log(r0, range(10)), 1: _log(r1, range(10)), 2: _log(r2, range(5))}
    sim.turn()
    assert sim.group_chunks("x") == [(list(range(5)), False)]
    sim.at(6.0)
    points[0].update(_log(r0, [10, 11]))
    points[1].update(_log(r1, [10, 11]))
    sim.turn()
    sim.at(10.0)
    sim.turn()
    assert sim.group_chunks("x") == [(list(range(5)), False)]
    sim.at(10.5)
    sim.turn()
    assert sim.group_chunks("x") == [(list(range(5)), False), (list(range(5, 12)), False)]
    assert_group_rows(sim.group_rows("x"), numpy_group_rows(points, expected=3))
    assert sim.group().sealed_through == 11
    assert [sim.run(r).state for r in (r0, r1, r2)] == ["running"] * 3


def test_ranks_that_never_said_hello_are_waited_for_the_join_grace(monkeypatch):
    """Join grace (``join_grace_s=30``): ranks 0..2 of a world of 4 say HELLO and log steps 0..4 at t=0;
    rank 3 has not said HELLO. Nothing is sealed at t=0 nor at t=29.9 (the group appeared at t=0); at
    t=30 steps 0..4 are sealed with count 3 of 4. Rank 3 joins at t=31 and logs steps 0..5: its points of
    0..4 are late, so those rows are revised (a second chunk of steps 0..4 flagged as a revision, count 4;
    ``group_revisions`` 5, the group's ``late_rows`` 5); step 5 stays open (ranks 0..2 are at step 4)."""
    sim = AgentSim(monkeypatch, join_grace_s=30.0)
    ranks = [sim.join(r, 4) for r in range(3)]
    points = {r.rank: _log(r, range(5)) for r in ranks}
    for t in (0.0, 29.9):
        sim.at(t)
        sim.turn()
        assert sim.group_chunks("x") == [], t
    sim.at(30.0)
    sim.turn()
    assert sim.group_chunks("x") == [(list(range(5)), False)]
    assert_group_rows(sim.group_rows("x"), numpy_group_rows(points, expected=4))
    sim.at(31.0)
    r3 = sim.join(3, 4)
    points[3] = _log(r3, range(6))
    sim.turn()
    assert sim.group_chunks("x") == [(list(range(5)), False), (list(range(5)), True)]
    del points[3][5]
    assert_group_rows(sim.group_rows("x"), numpy_group_rows(points, expected=4))
    assert sim.counters["group_revisions"] == 5 and sim.group().late_rows == 5
    assert sim.group().sealed_through == 4


def test_the_last_rank_to_say_hello_ends_the_wait_without_the_grace(monkeypatch):
    """Join grace, the other way out: rank 0 of 2 logs steps 0..4 at t=0; at t=5 rank 1 says HELLO
    (now every rank of the world has): the group waits for its first commit, not for the grace (1000 s),
    and at t=6, when it logs steps 0..4, they are sealed at once with count 2, in one chunk, no revision."""
    sim = AgentSim(monkeypatch)
    r0 = sim.join(0, 2)
    points = {0: _log(r0, range(5))}
    sim.turn()
    sim.at(5.0)
    r1 = sim.join(1, 2)
    sim.turn()
    assert sim.group_chunks("x") == []
    sim.at(6.0)
    points[1] = _log(r1, range(5))
    sim.turn()
    assert sim.group_chunks("x") == [(list(range(5)), False)]
    assert_group_rows(sim.group_rows("x"), numpy_group_rows(points, expected=2))
    assert sim.counters.get("group_revisions", 0) == 0


def test_a_job_whose_ranks_are_done_and_launcher_gone_is_sealed_before_the_grace(monkeypatch):
    """Job over (agent/groups.py ``job_over``): a world of 4 where only rank 0 logs (HF Trainer style).
    Rank 0, started by launcher L, logs steps 0..4 and finishes at t=0. While L lives another rank could
    still start: nothing is sealed at t=0 nor t=1 (``join_grace_s=30``). L exits; at the next turn (t=2) the
    job is over and steps 0..4 are sealed at once with count 1 of 4 expected; the run is "finished"."""
    sim = AgentSim(monkeypatch, join_grace_s=30.0)
    launcher = sim.pids.spawn()
    r0 = sim.join(0, 4, launcher=launcher)
    points = {0: _log(r0, range(5))}
    r0.finish()
    r0.send()
    for t in (0.0, 1.0):
        sim.at(t)
        sim.turn()
        assert sim.group_chunks("x") == [], t
    sim.pids.kill(launcher)
    sim.at(2.0)
    sim.turn()
    assert sim.group_chunks("x") == [(list(range(5)), False)]
    assert_group_rows(sim.group_rows("x"), numpy_group_rows(points, expected=4))
    assert sim.run(r0).state == "finished"


def test_the_seal_timeout_seals_a_step_after_seal_timeout_s_and_a_laggard_revises_it(monkeypatch):
    """Seal timeout (``seal_timeout_s=30``): of 2 live ranks, rank 0 logs steps 0..9 at t=0 and 10..14 at
    t=20, rank 1 only steps 0..2 at t=0. Steps 0..2 are sealed at t=0 (count 2). Rank 1 is alive and not
    silent, so steps 3..9 wait until t=30, when the points that arrived at t=0 are 30 s old: steps 3..9 are
    sealed with count 1 (nothing at t=29.9); steps 10..14, arrived at t=20, at t=50 (nothing at t=49.9).
    When rank 1 catches up at t=60 with steps 3..14, its points are late: steps 3..14 are revised, count 2."""
    sim = AgentSim(monkeypatch, seal_timeout_s=30.0)
    r0, r1 = sim.join(0, 2), sim.join(1, 2)
    points = {0: _log(r0, range(10)), 1: _log(r1, range(3))}
    sim.turn()
    sim.at(20.0)
    points[0].update(_log(r0, range(10, 15)))
    chunks = [(list(range(3)), False)]
    for t, sealed in ((20.0, None), (29.9, None), (30.0, range(3, 10)), (49.9, None), (50.0, range(10, 15))):
        sim.at(t)
        sim.turn()
        chunks += [] if sealed is None else [(list(sealed), False)]
        assert sim.group_chunks("x") == chunks, t
    assert_group_rows(sim.group_rows("x"), numpy_group_rows(points, expected=2))
    sim.at(60.0)
    points[1].update(_log(r1, range(3, 15)))
    sim.turn()
    assert sim.group_chunks("x") == chunks + [(list(range(3, 15)), True)]
    assert_group_rows(sim.group_rows("x"), numpy_group_rows(points, expected=2))
    assert sim.group().late_rows == 12


def test_a_late_update_revises_the_sealed_group_row_of_its_step(monkeypatch):
    """Late revisions: ranks 0 and 1 of 2 log steps 0..9 at t=0: one chunk of rows 0..9 (count 2, not a
    revision). At t=1 rank 1 updates steps 3 and 7 late (``log({"x": ...}, step=3)`` below its current
    step) to 1000.5 and -1000.25. The commit that stores them recomputes those two group rows from the
    stored per-rank values: a second chunk of steps [3, 7] flagged as a revision, whose mean, max/min and
    ranks now follow the new values; ``group_revisions`` 2, the group's ``late_rows`` 2; rank 1's run keeps
    10 rows and counts 2 late ones, its history holds the new values at steps 3 and 7."""
    sim = AgentSim(monkeypatch)
    r0, r1 = sim.join(0, 2), sim.join(1, 2)
    points = {0: _log(r0, range(10)), 1: _log(r1, range(10))}
    sim.turn()
    assert sim.group_chunks("x") == [(list(range(10)), False)]
    sim.at(1.0)
    r1.late(3, x=1000.5)
    r1.late(7, x=-1000.25)
    r1.send()
    points[1].update({3: 1000.5, 7: -1000.25})
    sim.turn()
    assert sim.group_chunks("x") == [(list(range(10)), False), ([3, 7], True)]
    rows = sim.group_rows("x")
    assert_group_rows(rows, numpy_group_rows(points, expected=2))
    assert rows["max_rank"][3] == 1 and rows["min_rank"][7] == 1
    assert sim.counters["group_revisions"] == 2 and sim.group().late_rows == 2
    assert (sim.run(r1).rows, sim.run(r1).late) == (10, 2)
    steps, values = sim.history(r1, "x")
    assert steps.tolist() == list(range(10)) and (values[3], values[7]) == (1000.5, -1000.25)


def test_a_rank_whose_pid_is_gone_is_crashed_at_the_next_liveness_check_and_sealed_past(monkeypatch):
    """Crash detection (``liveness_interval_s=5``): rank 0 of 2 logs steps 0..4 and leaves a pending row
    at step 5 (``commit=False``), rank 1 logs steps 0..9, at t=0 (pids checked: alive; steps 0..4 sealed,
    count 2). Rank 0's process dies at t=1; the next check is at t=5, so at t=1 and t=4.9 its run is still
    "running" and nothing more is sealed. At t=5 the run is "crashed" (``crashed_runs`` 1), its pending
    row is committed (6 rows, step 6: nothing dropped) and the group is no longer waiting for it: steps
    5..9 are sealed, step 5 with count 2 (rank 0's pending row and rank 1), steps 6..9 with count 1."""
    sim = AgentSim(monkeypatch, liveness_interval_s=5.0)
    r0, r1 = sim.join(0, 2), sim.join(1, 2)
    r0.log(range(5), x=wave(0, range(5)))
    r0.pend(5, x=-7.5)
    r0.send()
    points = {0: {**points_of(range(5), wave(0, range(5))), 5: -7.5}, 1: _log(r1, range(10))}
    sim.turn()
    assert sim.group_chunks("x") == [(list(range(5)), False)]
    sim.kill(r0)
    for t in (1.0, 4.9):
        sim.at(t)
        sim.turn()
        assert sim.run(r0).state == "running" and sim.group_chunks("x") == [(list(range(5)), False)], t
    sim.at(5.0)
    sim.turn()
    assert sim.run(r0).state == "crashed" and sim.counters["crashed_runs"] == 1
    assert (sim.run(r0).rows, sim.run(r0).step) == (6, 6)
    assert sim.history(r0, "x")[1][5] == -7.5
    assert sim.group_chunks("x") == [(list(range(5)), False), (list(range(5, 10)), False)]
    assert_group_rows(sim.group_rows("x"), numpy_group_rows(points, expected=2))
    assert sim.group_rows("x")["count"].tolist() == [2] * 6 + [1] * 4
    assert np.isclose(sim.group_rows("x")["mean"][5], (-7.5 + wave(1, [5])[0]) / 2)


def test_finished_and_failed_ranks_are_not_waited_for(monkeypatch):
    """Done ranks: in a world of 3 at t=0, rank 1 logs steps 0..4 and finishes, rank 2 logs steps 0..2 and
    fails (exit code 1), rank 0 logs steps 0..9 and runs on. Only rank 0 is waited for: steps 0..9 are
    sealed in the first turn, in one chunk, with count 3 at steps 0..2, 2 at 3..4 and 1 at 5..9."""
    sim = AgentSim(monkeypatch)
    r0, r1, r2 = (sim.join(r, 3) for r in range(3))
    points = {0: _log(r0, range(10)), 1: _log(r1, range(5)), 2: _log(r2, range(3))}
    r1.finish()
    r2.finish(exit_code=1)
    r1.send()
    r2.send()
    sim.turn()
    assert sim.group_chunks("x") == [(list(range(10)), False)]
    assert sim.group_rows("x")["count"].tolist() == [3] * 3 + [2] * 2 + [1] * 5
    assert_group_rows(sim.group_rows("x"), numpy_group_rows(points, expected=3))
    assert [sim.run(r).state for r in (r0, r1, r2)] == ["running", "finished", "failed"]


def test_a_wide_row_is_applied_and_sealed_in_slices_and_never_sealed_from_part_of_its_points(monkeypatch):
    """Wide rows (agent/apply.py ``SLICE_KEYS`` 500, agent/groups.py): ranks 0 and 1 of 2 each log one row
    of 600 keys at step 0; rank 1 finishes with it. A loop turn applies 500 columns of queued batches:
    rank 0's row over turns 1..2 (ACK at turn 2), rank 1's over turns 2..3. At turn 3 (both rows applied,
    rank 1 done) step 0 is sealed for keys 0..499 (500 keys per tick); at turn 4 for keys 500..599, and
    only then does the group's ``sealed_through`` move from -1 to 0. Rank 1's ACK waits for that last
    slice (its finish() promises its group rows are stored). Before turn 4 rank 0 updates step 0 of keys 0
    and 599 late (500.5, -500.5): key 0 was sealed in this pass, so its row is recomputed (one revision,
    ``group_revisions`` 1); key 599 was not, so its first row already holds the new value. Every group row
    has count 2 and equals numpy over the values the ranks sent."""
    sim = AgentSim(monkeypatch)
    r0, r1 = sim.join(0, 2), sim.join(1, 2)
    keys = [f"k{i:03d}" for i in range(600)]
    values = {r: dict(zip(keys, wave(r, range(600)).tolist())) for r in (0, 1)}
    for r in (r0, r1):
        r.log(0, **values[r.rank])
    r1.finish()
    r0.send()
    r1.send()
    trace = []
    for turn in range(1, 6):
        if turn == 4:
            r0.late(0, k000=500.5, k599=-500.5)
            r0.send()
        sim.turn()
        trace.append((sim.group_chunk_count(), sim.group().sealed_through, r0.acked, r1.acked))
    assert trace == [(0, -1, 0, 0), (0, -1, 1, 0), (500, -1, 1, 0), (601, 0, 2, 1), (601, 0, 2, 1)]
    assert sim.counters["sliced_batches"] == 2 and sim.counters["group_revisions"] == 1
    assert sim.group_chunks("k000") == [([0], False), ([0], True)] and sim.group_chunks("k599") == [([0], False)]
    values[0].update(k000=500.5, k599=-500.5)
    for key in ("k000", "k001", "k499", "k500", "k598", "k599"):
        want = numpy_group_rows({r: {0: values[r][key]} for r in (0, 1)}, expected=2)
        assert_group_rows(sim.group_rows(key), want)


def test_after_a_restart_the_unsealed_points_are_taken_back_and_sealed_as_before(monkeypatch):
    """Restart (``Ingest.recover``): ranks 0 and 1 of 2 log steps 0..9 and 0..4 at t=0 (steps 0..4 sealed,
    both batches acknowledged). Rank 0 sends steps 10..11, and the agent dies before reading them. The new
    agent (t=1) takes back both running runs and rank 0's stored points of steps 5..9 (above the seal).
    The ranks say HELLO again: rank 0 is told to go on from seq 2 and resends its unacknowledged batch.
    Rank 1 then logs steps 5..11: steps 5..11 are sealed with count 2, exactly as without the restart (no
    revision, no late row), and rank 0's history holds steps 0..11 once each."""
    sim = AgentSim(monkeypatch)
    r0, r1 = sim.join(0, 2), sim.join(1, 2)
    points = {0: _log(r0, range(10)), 1: _log(r1, range(5))}
    sim.turn()
    assert (r0.acked, r1.acked) == (1, 1) and sim.group_chunks("x") == [(list(range(5)), False)]
    points[0].update(_log(r0, [10, 11]))
    sim.at(1.0)
    sim.restart()
    r0.resend()
    r1.resend()
    sim.turn()
    assert r0.welcome["next_seq"] == 2 and r0.acked == 2
    points[1].update(_log(r1, range(5, 12)))
    sim.turn()
    assert sim.group_chunks("x") == [(list(range(5)), False), (list(range(5, 12)), False)]
    assert_group_rows(sim.group_rows("x"), numpy_group_rows(points, expected=2))
    assert sim.group().late_rows == 0 and sim.history(r0, "x")[0].tolist() == list(range(12))
