"""The single-node agent's byte budgets, specified in process (tests/support/agentsim.py): uncommitted client
batches never pass ``pending_max_bytes`` (a batch that would is applied after a commit of the others, and while
the store refuses commits it is held: neither applied nor acknowledged, its client resends it), and the open
points of the group windows never stay past ``window_max_bytes`` (the agent reads no frame until its ticks
have sealed the oldest steps, without waiting for any rank)."""

from __future__ import annotations

from agent.apply import batch_cost
from client import wire
from support.agentsim import AgentSim
from support.grouprows import assert_group_rows, numpy_group_rows, points_of, wave

ROWS = 10  # rows per batch in these specs


def _batches(rank, n: int) -> list[int]:
    """``n`` batches of ``ROWS`` rows of ``x`` from ``rank``, each in the inbox; returns their costs."""
    costs = []
    for i in range(n):
        steps = range(i * ROWS, (i + 1) * ROWS)
        rank.log(steps, x=wave(rank.rank, steps))
        (seq,) = rank.send()
        frame = rank.unacked[seq]
        costs.append(batch_cost(wire.decode_batch(wire.unpack(frame)[1], len(frame))))
    return costs


def test_a_batch_that_would_pass_the_pending_budget_is_applied_after_a_commit_of_the_others(monkeypatch):
    """Pending budget: one rank queues 6 batches of equal cost c; ``pending_max_bytes`` is 2.5 c. A turn
    reads batches 1 and 2 (2 c uncommitted); batch 3 would make 3 c, so the agent first commits 1 and 2
    (ACK 2 at once), then applies 3 and ends the drain there (``budget_commits`` 1); the turn's commit
    acknowledges 3. Batches 4..6 wait in the socket (3 frames) and the next turn does the same (ACK 5, ACK
    6). Uncommitted bytes never passed 2 c (``pending_bytes_max``), 4 commits, steps 0..59 stored once."""
    c = _costs_equal(AgentSim(monkeypatch))
    sim = AgentSim(monkeypatch, pending_max_bytes=2 * c + c // 2)
    r0 = sim.join(0, 1)
    assert _batches(r0, 6) == [c] * 6
    sim.turn()
    assert r0.acks == [2, 3] and len(sim.inbox) == 3
    sim.turn()
    assert r0.acks == [2, 3, 5, 6] and not sim.inbox
    assert (sim.counters["budget_commits"], sim.counters["commits"]) == (2, 4)
    assert sim.status()["pending_bytes_max"] == 2 * c
    assert sim.history(r0, "x")[0].tolist() == list(range(60))


def test_while_the_store_refuses_commits_batches_past_the_pending_budget_are_held(monkeypatch):
    """Held batches: as above (budget 2.5 c) but the disk is full. Batches 1 and 2 are applied (2 c); the
    commit before batch 3 fails, so batch 3 is held (not applied, not acknowledged) and the drain ends; at
    the next turn batch 4 is held too (``held_batches`` 2) and the retried commit fails again
    (``commit_failures`` 2). Meanwhile the agent reports "disk full" and holds exactly 2 c uncommitted, and
    no ACK went out. The disk has room again at t=2: the commit stores batches 1 and 2 (ACK 2). The client
    says HELLO again and resends 3 and 4 (WELCOME: next seq 3), which are applied and acknowledged (ACK 4):
    steps 0..39 stored once each."""
    c = _costs_equal(AgentSim(monkeypatch))
    sim = AgentSim(monkeypatch, pending_max_bytes=2 * c + c // 2)
    r0 = sim.join(0, 1)
    sim.turn()  # registered before the disk fills
    sim.disk_full()
    _batches(r0, 4)
    sim.turn()
    assert len(sim.inbox) == 1 and r0.acked == 0
    sim.at(1.0)
    sim.turn()
    status = sim.status()
    assert (sim.counters["held_batches"], sim.counters["commit_failures"], status["store_state"]) == (2, 2, "disk full")
    assert status["pending_bytes"] == 2 * c and status["pending_bytes_max"] == 2 * c and r0.acked == 0
    sim.disk_full(False)
    sim.at(2.0)
    sim.turn()
    assert r0.acked == 2 and sorted(r0.unacked) == [3, 4]
    r0.resend()
    sim.at(3.0)
    sim.turn()
    assert r0.welcome["next_seq"] == 3 and r0.acked == 4 and not r0.unacked
    assert sim.status()["store_state"] == "ok"
    steps, values = sim.history(r0, "x")
    assert steps.tolist() == list(range(40)) and values.tolist() == wave(0, range(40)).tolist()


def test_past_the_window_budget_the_oldest_steps_are_sealed_without_waiting(monkeypatch):
    """Window budget (``window_max_bytes`` 800 = 50 open points of 16 bytes): rank 1 of 2 says HELLO and
    never logs, so by the ranks' watermarks nothing could be sealed; rank 0 queues 10 batches of 10 steps.
    A turn reads batches until the open points pass 800 bytes: 6 batches (960 bytes), then the tick seals
    through the end of the oldest batch (step 9) to get back to 800. Each next turn reads one batch and
    seals the next 10 steps: after turns 1..5, sealed through 9, 19, 29, 39, 49 with 4, 3, 2, 1, 0 frames
    left unread; a sixth turn changes nothing. The window never held more than 960 bytes and ends at 800;
    steps 0..49 are group rows of count 1 of 2 expected, 50..99 stay open."""
    sim = AgentSim(monkeypatch, window_max_bytes=800)
    r0, _ = sim.join(0, 2), sim.join(1, 2)
    _batches(r0, 10)
    trace = []
    for _ in range(6):
        sim.turn()
        trace.append((sim.group().sealed_through, len(sim.inbox)))
    assert trace == [(9, 4), (19, 3), (29, 2), (39, 1), (49, 0), (49, 0)]
    assert sim.max_window_bytes == 960 and sim.status()["window_bytes"] == 800
    points = {0: points_of(range(50), wave(0, range(50)))}
    assert_group_rows(sim.group_rows("x"), numpy_group_rows(points, expected=2))


def test_the_window_budget_is_shared_by_the_groups_holding_points(monkeypatch):
    """The window budget is the agent's, shared by the groups holding points (``window_max_bytes`` 1600;
    each group has a second rank that never logs). Group a's rank logs 6 batches of 10 steps (960 bytes):
    alone, within the budget, nothing is sealed. Group b's rank then logs one batch (160 bytes): with two
    groups holding points each may keep 800 bytes, so group a's oldest batch (steps 0..9) is sealed while
    group b (160 bytes) keeps all of its points; 960 bytes stay open."""
    sim = AgentSim(monkeypatch, window_max_bytes=1600)
    a, _, b, _ = sim.join(0, 2, "a"), sim.join(1, 2, "a"), sim.join(0, 2, "b"), sim.join(1, 2, "b")
    _batches(a, 6)
    sim.turn()
    assert sim.group_chunks("x", "a") == [] and sim.status()["window_bytes"] == 960
    _batches(b, 1)
    sim.turn()
    assert [sim.group(g).sealed_through for g in "ab"] == [9, -1]
    assert sim.group_chunks("x", "a") == [(list(range(10)), False)] and sim.group_chunks("x", "b") == []
    assert sim.status()["window_bytes"] == 960


def _costs_equal(sim: AgentSim) -> int:
    """The cost of one batch of ``ROWS`` rows (agent/apply.py ``batch_cost``), the same for every such batch,
    measured on a sim of its own (built before the spec's: the last sim built owns the clock)."""
    costs = _batches(sim.join(0, 1), 3)
    assert len(set(costs)) == 1, costs
    return costs[0]
