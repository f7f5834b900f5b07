"""The node → root link over real loopback TCP, in one process: a node's spool and Upstream talk to a
RootLink over the Sim's root ingest, so a test decides exactly when the root commits, fsyncs or dies."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq
from test_mn_sim import Client

from agent.rootlink import RootLink
from agent.upstream import Upstream
from support.mnsim import Sim

AGENT = "node0-agent"


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def _root_link(ctx, sim: Sim) -> RootLink:
    return RootLink(ctx, sim.root, sim.root.cfg.replace(listen="tcp://127.0.0.1:0"))


def _exchange(up: Upstream, link: RootLink, until, commit: bool, timeout_s: float = 10.0) -> None:
    """Pump both ends (the root committing and acknowledging, or not) until ``until()`` holds."""
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, f"timed out: {up!r} {link!r}"
        up.pump()
        if link.sock.poll(20):
            link.handle({link.sock: zmq.POLLIN})
        if commit:
            link.ingest.commit()
            link.flush()
        if up.sock.poll(5):
            up.handle()


def test_a_welcome_never_deletes_what_the_root_has_not_made_durable(tmp_path, ctx):
    """A node sends records 1..3; the root applies them but has not committed when the node says HELLO
    again (its retry timer): the welcome says "next 4" (no resend) but "acked 0", so the spool keeps
    all three. The root is killed before its commit: the new root welcomes "next 1", the node resends
    from its spool, and every row arrives once; only after the new root's commit and fsync does the
    node delete its records."""
    sim = Sim(tmp_path, nodes=1)
    node = sim.nodes[0]
    c = Client(node, 0, 1)
    for s in range(3):
        c.log(np.arange(10 * s, 10 * s + 10), np.arange(10 * s, 10 * s + 10, dtype=float))
        node.turn()
    node.spool.maybe_fsync(force=True)
    assert (node.spool.last_seq, node.spool.acked_seq) == (3, 0)

    link = _root_link(ctx, sim)
    up = Upstream(ctx, link.endpoint, node.spool, AGENT, "inst-1", node.name, retry_after_s=0.2)
    try:
        _exchange(up, link, lambda: AGENT in sim.root.links and sim.root.links[AGENT].applied == 3, commit=False)
        up.welcomed, up._hello_pending = False, True  # what the node's retry timer does
        welcomes = up.counters["welcomes"]
        _exchange(up, link, lambda: up.counters["welcomes"] > welcomes, commit=False)
        assert up._next == 4 and node.spool.acked_seq == 0  # not resent, not deleted

        sim.kill_root()  # SIGKILL before the commit: records 1..3 existed in its memory only
        link.close()
        link = _root_link(ctx, sim)
        up.reconnect(link.endpoint)
        up.welcomed, up._hello_pending = False, True
        _exchange(up, link, lambda: node.spool.acked_seq == 3, commit=True)
    finally:
        up.sock.close(linger=0)
        link.close()
    assert sim.root.links[AGENT].synced == 3 and sim.root.counters.values["store_syncs"] >= 1
    reader, g = sim.group("g")
    (run,) = reader.runs(g.id)
    steps, values = reader.run_history(run.id, ["x"])["x"]
    assert np.array_equal(steps, np.arange(30)) and np.array_equal(values, np.arange(30, dtype=float))
    assert run.rows == 30 and sim.root.counters.values.get("duplicate_records", 0) == 0


def _streamed(tmp_path, ctx, batches: int = 3):
    sim = Sim(tmp_path, nodes=1)
    node = sim.nodes[0]
    c = Client(node, 0, 1)
    for s in range(batches):
        c.log(np.arange(10 * s, 10 * s + 10), np.arange(10 * s, 10 * s + 10, dtype=float))
        node.turn()
    node.spool.maybe_fsync(force=True)
    link = _root_link(ctx, sim)
    up = Upstream(ctx, link.endpoint, node.spool, AGENT, "inst-1", node.name, retry_after_s=0.2)
    return sim, node, link, up


def test_records_a_welcome_left_unacknowledged_are_acknowledged_after_the_commit(tmp_path, ctx):
    """The welcome came between the root's apply and its commit ("next 4, acked 0"): nothing is in flight
    any more, yet the node keeps records 1..3 and the root's next commit and fsync acknowledge them to
    the node's current connection, so its spool drains without any resend."""
    sim, node, link, up = _streamed(tmp_path, ctx)
    try:
        _exchange(up, link, lambda: AGENT in sim.root.links and sim.root.links[AGENT].applied == 3, commit=False)
        up.welcomed, up._hello_pending = False, True
        welcomes = up.counters["welcomes"]
        _exchange(up, link, lambda: up.counters["welcomes"] > welcomes, commit=False)
        assert (up._next, node.spool.acked_seq, len(up._inflight)) == (4, 0, 0)
        _exchange(up, link, lambda: node.spool.acked_seq == 3, commit=True)
        assert up.counters["records_resent"] == 0 and up.counters["welcomes"] == welcomes + 1
    finally:
        up.sock.close(linger=0)
        link.close()


def test_a_lost_acknowledgement_is_asked_for_again(tmp_path, ctx):
    """A welcome came between the root's apply and its commit (nothing in flight, records 1..3 still
    unacknowledged), then the root commits and fsyncs them but its acknowledgement never reaches the node
    (dropped here): the node, asked nothing yet owed an answer, says HELLO again after its retry period
    and the welcome's "acked 3" lets it delete them; nothing is stored twice."""
    sim, node, link, up = _streamed(tmp_path, ctx)
    try:
        _exchange(up, link, lambda: AGENT in sim.root.links and sim.root.links[AGENT].applied == 3, commit=False)
        up.welcomed, up._hello_pending = False, True
        _exchange(up, link, lambda: up.welcomed, commit=False)
        assert (up._next, node.spool.acked_seq, len(up._inflight)) == (4, 0, 0)
        sim.root.commit()
        assert sim.root.durable_link_acks(force=True)  # ... and lost
        assert sim.root.links[AGENT].synced == 3 and node.spool.acked_seq == 0
        welcomes = up.counters["welcomes"]
        _exchange(up, link, lambda: node.spool.acked_seq == 3, commit=True)
        assert up.counters["welcomes"] == welcomes + 1 and up.counters["retries"] >= 1
    finally:
        up.sock.close(linger=0)
        link.close()
    reader, g = sim.group("g")
    (run,) = reader.runs(g.id)
    assert run.rows == 30 and sim.root.counters.values.get("duplicate_batches", 0) == 0
