"""The single-node agent's life around the data, specified in process (tests/support/agentsim.py): when it
may exit for being idle, and what a malformed frame does to it (counted by cause, answered with nothing,
the other writers served as if it never came). Times are seconds after the sim's start."""

from __future__ import annotations

import msgpack
import numpy as np

from support.agentsim import AgentSim


def test_the_agent_is_idle_only_without_running_runs_after_idle_timeout_s_of_silence(monkeypatch):
    """``idle_timeout_s=60`` (agent/ingest.py ``idle``): a rank logs steps 0..2 at t=0 and nothing more; at
    t=100 the agent has heard nothing for 100 s but the run is running: not idle. The rank finishes at t=100
    (its last frame): at t=160, exactly 60 s later, still not idle (the timeout must be passed); at t=160.5
    idle. With ``idle_timeout_s=0`` (never exit) the same finished run leaves the agent running for ever."""
    sim = AgentSim(monkeypatch, idle_timeout_s=60.0)
    r0 = sim.join(0, 1)
    r0.log(range(3), x=[1.0, 2.0, 3.0])
    r0.send()
    sim.settle()
    sim.at(100.0)
    sim.turn()
    assert not sim.ingest.idle(), "a running run keeps the agent"
    r0.finish()
    r0.send()
    sim.settle()
    assert sim.run(r0).state == "finished"
    sim.at(160.0)
    assert not sim.ingest.idle(), "idle_timeout_s is not passed yet at exactly 60 s"
    sim.at(160.5)
    assert sim.ingest.idle()

    never = AgentSim(monkeypatch, idle_timeout_s=0.0)
    r = never.join(0, 1)
    r.finish()
    r.send()
    never.settle()
    never.at(1e6)
    assert never.run(r).state == "finished" and not never.ingest.idle()


def test_malformed_frames_are_counted_by_cause_answered_with_nothing_and_the_loop_goes_on(monkeypatch):
    """Between a rank's HELLO and its batches (steps 0..4 of ``x``), a rogue peer sends four frames the wire
    decoder refuses (client/wire.py ``unpack``): another protocol version, an unknown kind twice (two kinds:
    one cause, the peer's literal stripped, agent/malformed.py), and a map instead of
    ``[version, kind, body]``. The agent answers none of them (the sim has no rogue rank to route a reply to:
    a reply would fail the turn), counts them by cause in ``rankwise status`` (``malformed``: 1, 2, 1 = 4 =
    ``frames`` − the rank's HELLO and its batch), and the rank's batch is stored and acknowledged as usual."""
    sim = AgentSim(monkeypatch)
    r0 = sim.join(0, 1)
    rogue = [
        msgpack.packb([2, "batch", {}]),
        msgpack.packb([1, "bogus", {}]),
        msgpack.packb([1, "nonsense", {}]),
        msgpack.packb({"version": 1}),
    ]
    sim.inbox.extend((b"rogue", frame) for frame in rogue)
    r0.log(range(5), x=np.arange(5) * 0.5)
    seqs = r0.send()
    sim.settle()
    status = sim.status()
    assert status["malformed"] == {
        "protocol version …, expected …": 1,
        "unknown message kind …": 2,
        "frame is not [version, kind, body]": 1,
    }
    assert status["counters"]["frames"] == len(rogue) + 1 + len(seqs)
    assert r0.acked == seqs[-1] and not r0.unacked
    steps, values = sim.history(r0, "x")
    assert steps.tolist() == [0, 1, 2, 3, 4] and list(values) == [0.0, 0.5, 1.0, 1.5, 2.0]


def test_a_finish_op_keeps_a_well_formed_exception_and_counts_any_other(monkeypatch):
    """A finish op's ``exception`` (client/failure.py ``checked``): rank 0's (type, message, traceback, thread)
    is kept in its run's meta as sent; rank 1's lacks its traceback and rank 2's message is one character over
    its 4096: both runs still fail with their exit codes, keep no exception, and the agent counts two frames
    of the cause "finish exception not a map of bounded strings"."""
    sim = AgentSim(monkeypatch)
    good = {"type": "ValueError", "message": "boom", "traceback": "Traceback ...\nValueError: boom\n", "thread": "t"}
    sent = [good, {"type": "ValueError", "message": "boom"}, dict(good, message="m" * 4097)]
    ranks = [sim.join(r, 3) for r in range(3)]
    for rank, exception in zip(ranks, sent):
        rank.control("finish", {"exit_code": 1 + rank.rank, "t": sim.clock.now, "exception": exception})
        rank.send()
    sim.settle()
    runs = [sim.run(r) for r in ranks]
    assert [(r.state, r.exit_code) for r in runs] == [("failed", 1), ("failed", 2), ("failed", 3)]
    assert [r.meta.get("exception") for r in runs] == [good, None, None]
    assert sim.status()["malformed"] == {"finish exception not a map of bounded strings": 2}
