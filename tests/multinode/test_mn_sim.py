"""Hierarchical aggregation, in one process (tests/support/mnsim.py): node agents seal partials over
their own ranks, the root merges them; the root's group rows must equal numpy over every rank, for
any number of nodes, and stay exact when a node agent or the root restarts, a rank joins late,
updates a step after its node sealed it, or crashes."""

from __future__ import annotations

import numpy as np
import pytest

from client import wire
from support.frames import T0, batch
from support.mnsim import Sim, assert_rows_equal, hello, numpy_rows


class Client:
    """A rank's writer as the node sees it: seq numbers, unacknowledged frames, replay after a restart."""

    def __init__(
        self, node, rank: int, world: int, group: str = "g", pid: int | None = None, writer: str | None = None
    ):
        self.node, self.rank, self.world, self.group = node, rank, world, group
        self.writer = writer or f"w{rank}"
        self.pid = pid if pid is not None else 1000 + rank
        self.seq = 0
        self.unacked: dict[int, bytes] = {}
        self.welcome: dict | None = None
        self.say_hello()

    def say_hello(self, reconnect: bool = False) -> None:
        self.absorb(
            self.node.send(
                hello(self.writer, self.rank, self.world, self.group, self.node.name, self.pid, reconnect=reconnect)
            )
        )

    def log(self, steps, values, late=None, ctl=None) -> None:
        self.seq += 1
        frame = batch(self.writer, self.seq, steps, {"x": values} if len(steps) else {}, late=late, ctl=ctl)
        self.unacked[self.seq] = frame
        self.absorb(self.node.send(frame))

    def absorb(self, replies) -> None:
        for _, frame in replies:
            kind, body = wire.unpack(frame)
            if body.get("w") != self.writer:
                continue
            if kind == wire.ACK:
                for s in [s for s in self.unacked if s <= body["s"]]:
                    del self.unacked[s]
            elif kind == wire.WELCOME:
                self.welcome = body

    def replay(self, node) -> None:
        """The agent restarted: HELLO again, resend what is unacknowledged, in order."""
        self.node = node
        self.say_hello(reconnect=True)
        for s in sorted(self.unacked):
            self.absorb(self.node.send(self.unacked[s]))


def _stream(sim: Sim, clients: list[Client], values: dict, steps: int, rng, until=None, cycle=True) -> None:
    pos = {c.rank: max(values[c.rank], default=-1) + 1 for c in clients}
    while any(pos[c.rank] < steps for c in clients):
        for i in rng.permutation(len(clients)):
            c = clients[i]
            if pos[c.rank] >= steps:
                continue
            k = int(rng.integers(1, 6))
            s = np.arange(pos[c.rank], min(steps, pos[c.rank] + k))
            v = np.round(rng.normal(size=len(s)) * 100, int(rng.integers(0, 3)))  # rounding makes ties
            if rng.random() < 0.02:
                v[0] = np.nan
            c.log(s, v)
            values[c.rank].update(zip(s.tolist(), v.tolist()))
            pos[c.rank] = int(s[-1]) + 1
        if cycle:
            sim.cycle()
            for c in clients:
                c.absorb(c.node.replies)
        if until is not None and until():
            return


def _finish(sim: Sim, clients: list[Client], turns: int = 4) -> None:
    for c in clients:
        c.log([], [], ctl=[["finish", {"exit_code": 0}]])
    for _ in range(turns):
        sim.cycle()
        for c in clients:
            c.absorb(c.node.replies)


def _rows(sim: Sim, group: str = "g", key: str = "x") -> dict:
    reader, g = sim.group(group)
    return reader.group_history(g.id, key)


@pytest.mark.parametrize("n_nodes", [1, 2, 3, 5])
def test_root_rows_equal_numpy_for_any_number_of_nodes(tmp_path, n_nodes):
    """10 ranks spread over 1, 2, 3 or 5 node agents log 80 steps in random batch sizes and
    interleavings (values rounded so that ties occur, a few NaNs). Every step's root group row
    equals numpy over the 10 ranks (count, min, max, argmin/argmax rank exactly; mean and std to
    1e-12), each produced once from merged node partials: no recomputation, no revision."""
    rng = np.random.default_rng(n_nodes)
    sim = Sim(tmp_path, nodes=n_nodes)
    world = 10
    clients = [Client(sim.nodes[r % n_nodes], r, world) for r in range(world)]
    values = {r: {} for r in range(world)}
    _stream(sim, clients, values, 80, rng)
    _finish(sim, clients)
    assert_rows_equal(_rows(sim), numpy_rows(values), world)
    c = sim.root.counters.values
    assert c["partials"] > 0
    assert c.get("group_rows_recomputed", 0) == 0 and c.get("group_revisions", 0) == 0
    reader, g = sim.group("g")
    assert [r.state for r in reader.runs(g.id)] == ["finished"] * world
    assert [r.rows for r in reader.runs(g.id)] == [80] * world


def test_node_agent_restart_keeps_rows_exact(tmp_path):
    """Node 0 of 2 is killed three times mid-stream: with batches applied but not committed (its
    clients replay them); right after a commit whose ACKs its clients never saw (its catalog knows
    the writers' seqs: it acknowledges at once, nothing is resent); and the same with its catalog
    deleted (it accepts the replays, the root drops them as duplicates). The root notices each new
    node instance, stops trusting partials of the steps seen so far and recomputes them from
    stored per-rank values: every row equals numpy over the 6 ranks, every run holds each step once."""
    rng = np.random.default_rng(7)
    sim = Sim(tmp_path, nodes=2)
    world = 6
    clients = [Client(sim.nodes[r % 2], r, world) for r in range(world)]
    values = {r: {} for r in range(world)}
    node0 = sim.nodes[0]
    _stream(sim, clients, values, 30, rng)
    mine = [c for c in clients if c.node is node0]
    for c in mine:  # applied in the node's memory, not committed: lost with it
        s = np.arange(max(values[c.rank]) + 1, max(values[c.rank]) + 4)
        c.log(s, s * 1.5 + c.rank)
        values[c.rank].update(zip(s.tolist(), (s * 1.5 + c.rank).tolist()))
    node0.kill()
    for c in mine:
        c.replay(node0)
    _stream(sim, clients, values, 60, rng)
    for c in mine:
        s = np.arange(max(values[c.rank]) + 1, max(values[c.rank]) + 3)
        c.log(s, s * 2.5 - c.rank)
        values[c.rank].update(zip(s.tolist(), (s * 2.5 - c.rank).tolist()))
    node0.turn()  # spooled and acknowledged, but the clients never see the ACKs
    node0.kill()
    for c in mine:
        assert c.unacked
        c.replay(node0)
        assert not c.unacked  # the WELCOME's ACK covered them
    _stream(sim, clients, values, 75, rng)
    for c in mine:
        s = np.arange(max(values[c.rank]) + 1, max(values[c.rank]) + 3)
        c.log(s, s * 0.5 + c.rank)
        values[c.rank].update(zip(s.tolist(), (s * 0.5 + c.rank).tolist()))
    node0.turn()
    sim.carry(node0)
    sim.root_turn()
    (node0.dir / "node.sqlite").unlink()
    node0.kill()
    for c in mine:
        assert c.unacked
        c.replay(node0)
    _stream(sim, clients, values, 90, rng)
    _finish(sim, clients)
    assert_rows_equal(_rows(sim), numpy_rows(values), world)
    c = sim.root.counters.values
    assert c["node_restarts"] == 3
    assert c["duplicate_batches"] == len(mine)
    assert node0.ingest.counters.values["writers_rebased"] == len(mine)
    assert c["group_rows_recomputed"] > 0
    reader, g = sim.group("g")
    for run in reader.runs(g.id):
        steps, _ = reader.run_history(run.id, ["x"])["x"]
        assert np.array_equal(np.sort(steps), np.arange(90)), run.name
        assert run.rows == 90


def test_root_restart_recomputes_what_it_had_open(tmp_path):
    """The root dies twice: once having applied records it had not committed (the new root resumes from
    the (node agent, seq) stored with its last commit and the nodes resend them), once having
    committed node 0's rows and partials of 20 steps it could not seal yet (node 1 was behind): the
    partials died with it, so the new root recomputes those steps from stored per-rank values.
    Every row equals numpy, no batch is stored twice."""
    rng = np.random.default_rng(11)
    sim = Sim(tmp_path, nodes=2)
    world = 4
    clients = [Client(sim.nodes[r % 2], r, world) for r in range(world)]
    values = {r: {} for r in range(world)}
    _stream(sim, clients, values, 40, rng)
    for node in sim.nodes:
        node.turn()
        sim.carry(node)  # applied in the root's memory only
    sim.kill_root()
    _stream(sim, clients, values, 60, rng)
    for _ in range(3):
        sim.cycle()
    _stream(sim, clients, values, 80, rng, cycle=False)
    node0, node1 = sim.nodes
    for _ in range(3):
        node0.turn()
        node1.turn()
        sim.carry(node0)  # node 1's records stay in its spool: the root cannot seal past step 59
        sim.root_turn()
        sim.now += 0.1
    reader, g = sim.group("g")
    assert 59 <= g.sealed_through < 79 and sim.root.groups[g.id].partials.n_chunks
    sim.kill_root()
    _stream(sim, clients, values, 100, rng)
    _finish(sim, clients)
    assert_rows_equal(_rows(sim), numpy_rows(values), world)
    assert sim.root.counters.values["group_rows_recomputed"] >= 20
    reader, g = sim.group("g")
    for run in reader.runs(g.id):
        assert run.rows == 100
        steps = np.concatenate(
            [
                np.frombuffer(r[0], "<i8")
                for r in sim.store.con.execute(
                    "SELECT h.steps FROM history h JOIN keys k ON k.id=h.key_id WHERE h.run_id=? AND k.name='x'",
                    (run.id,),
                )
            ]
        )
        assert np.array_equal(np.sort(steps), np.arange(100)), run.name  # each step stored once


def test_late_joiner_and_timeouts_end_exact(tmp_path):
    """With a 1 s join grace and seal timeout, rank 3 (node 1) says hello only after both nodes and the
    root have sealed 40 steps without it. Its points are late at its node (late marks) and at the
    root (revisions, counted as late rows); the final rows cover all 4 ranks and equal numpy."""
    rng = np.random.default_rng(3)
    sim = Sim(tmp_path, nodes=2, join_grace_s=1.0, seal_timeout_s=1.0)
    world = 4
    clients = [Client(sim.nodes[r % 2], r, world) for r in range(3)]
    values = {r: {} for r in range(world)}
    _stream(sim, clients, values, 40, rng)
    for _ in range(15):
        sim.cycle()
    reader, g = sim.group("g")
    assert g.sealed_through >= 39 and set(_rows(sim)["count"]) == {3}
    late = Client(sim.nodes[1], 3, world)
    clients.append(late)
    _stream(sim, clients, values, 60, rng)
    _finish(sim, clients)
    assert_rows_equal(_rows(sim), numpy_rows(values), world)
    reader, g = sim.group("g")
    assert g.late_rows >= 40
    assert sim.root.counters.values["group_revisions"] >= 40


def test_update_of_a_sealed_step_replaces_the_value(tmp_path):
    """A rank logs a late update of step 5 (``log(step=5)`` after step 30) once every level has sealed
    step 5: the node sends a late mark, the root recomputes the row from stored values, where the
    latest value of (rank, step) wins: the row equals numpy with the new value."""
    rng = np.random.default_rng(5)
    sim = Sim(tmp_path, nodes=2)
    world = 4
    clients = [Client(sim.nodes[r % 2], r, world) for r in range(world)]
    values = {r: {} for r in range(world)}
    _stream(sim, clients, values, 30, rng)
    for _ in range(3):
        sim.cycle()
    assert sim.group("g")[1].sealed_through >= 5
    clients[1].log([5], [1e6], late=[True])
    values[1][5] = 1e6
    _stream(sim, clients, values, 40, rng)
    _finish(sim, clients)
    rows = _rows(sim)
    assert_rows_equal(rows, numpy_rows(values), world)
    assert rows["max"][5] == 1e6 and rows["max_rank"][5] == 1


def test_crashed_rank_is_not_waited_for(tmp_path):
    """Rank 2's process vanishes after 20 steps (its node checks pids); the node reports the crash, the
    root marks the run crashed, and rows after step 19 are sealed without it while the other ranks
    still run: count 4 up to step 19, 3 after, values equal numpy."""
    rng = np.random.default_rng(9)
    sim = Sim(tmp_path, nodes=2)
    world = 4
    clients = [Client(sim.nodes[r % 2], r, world) for r in range(world)]
    values = {r: {} for r in range(world)}
    _stream(sim, clients, values, 20, rng)
    sim.nodes[0].dead_pids.add(clients[2].pid)
    rest = [c for c in clients if c.rank != 2]
    _stream(sim, rest, values, 50, rng)
    for _ in range(3):
        sim.cycle()
    reader, g = sim.group("g")
    assert [r.state for r in reader.runs(g.id)] == ["running", "running", "crashed", "running"]
    assert g.sealed_through >= 48  # while ranks 0, 1, 3 are running
    _finish(sim, rest)
    rows = _rows(sim)
    assert_rows_equal(rows, numpy_rows(values), world)
    assert np.array_equal(rows["count"], np.where(np.arange(50) < 20, 4, 3))


class _RootLookup:
    """A connected upstream whose lookups the root answers at once."""

    ready = True

    def __init__(self, sim: Sim, node):
        self.sim, self.node = sim, node

    def lookup(self, writer, project, group, name):
        run, ws = self.sim.root.lookup(project, group, name, writer)
        self.node.ingest.found(writer, run, ws, self.sim.now)

    def appended(self, seq, payload):
        pass


def test_rank_restarted_on_another_node_resumes(tmp_path):
    """Rank 0 logs 25 steps behind node 0 and fails; torchrun restarts it behind node 1, which has never
    seen it: node 1 asks the root, gets the run's resume point, and answers the HELLO with
    resumed=True and step 25. The run continues (2 incarnations, 45 rows, one run for rank 0) and
    its steps 25..44 follow under node 1's partials."""
    sim = Sim(tmp_path, nodes=2)
    a = Client(sim.nodes[0], 0, 1, group="elastic")
    a.log(np.arange(25), np.arange(25.0))
    a.log([], [], ctl=[["finish", {"exit_code": 1}]])
    for _ in range(3):
        sim.cycle()
    sim.nodes[1].ingest.upstream = _RootLookup(sim, sim.nodes[1])
    b = Client(sim.nodes[1], 0, 1, group="elastic", pid=5000, writer="w0-again")
    assert b.welcome is None
    b.absorb(sim.nodes[1].ingest.outbox)
    assert b.welcome["resumed"] is True and b.welcome["step"] == 25
    b.log(np.arange(25, 45), np.arange(25.0, 45.0))
    b.log([], [], ctl=[["finish", {"exit_code": 0}]])
    for _ in range(3):
        sim.cycle()
    reader, g = sim.group("elastic")
    (run,) = reader.runs(g.id)
    assert (run.state, run.rows, run.incarnations, run.step, run.node) == ("finished", 45, 2, 45, "node1")
    rows = reader.group_history(g.id, "x")
    assert np.array_equal(rows["step"], np.arange(45)) and np.array_equal(rows["mean"], np.arange(45.0))


def test_backlog_after_an_outage_is_paced_by_its_own_times(tmp_path):
    """The root's row budget (5 rows/s, 2 s burst) applies to forwarded rows by the time they were
    committed, not when they arrive: 100 rows logged at 1 row/s while the root was away, delivered at
    once, are all kept row for row (no coalesced span). Rows logged faster than the budget still
    coalesce: 100 rows within one second become spans covering all 100."""
    sim = Sim(tmp_path, nodes=1, rows_per_s=5.0)
    slow_rank = Client(sim.nodes[0], 0, 2, group="paced")
    fast_rank = Client(sim.nodes[0], 1, 2, group="paced")
    for first in range(0, 100, 10):
        slow_rank.log(np.arange(first, first + 10), np.arange(first, first + 10.0))  # times T0 + step: 1 row/s
    fast = batch("w1", 1, np.arange(100), {"x": np.arange(100.0)}, t=T0 + np.arange(100) * 0.01)
    fast_rank.node.send(fast)  # 100 rows in one second
    sim.nodes[0].turn()
    sim.now += 500.0  # the root was away; now everything arrives in one go
    sim.carry(sim.nodes[0])
    sim.root_turn()
    reader, g = sim.group("paced")
    slow, fast_run = reader.runs(g.id)
    assert slow.rows == 100 and reader.run_spans(slow.id) == {}
    steps, values = reader.run_history(slow.id, ["x"])["x"]
    assert np.array_equal(steps, np.arange(100)) and np.array_equal(values, np.arange(100.0))
    spans = reader.run_spans(fast_run.id)["x"]
    assert fast_run.rows == 100 and int(spans["count"].sum()) == 100 and len(spans["count"]) < 100


def test_node_agents_are_acknowledged_only_after_the_root_fsynced(tmp_path, monkeypatch):
    """A node agent deletes what the root acknowledged, so an acknowledgement must follow an fsync of the
    root's store: the ack a commit made true goes out right after one fsync of store's WAL (and, the first
    time, its directory); within RANKWISE_SPOOL_FSYNC of that sync the next ack is held, with no fsync,
    until the interval passes (here: forced, as at shutdown); then one more fsync, and the ack says
    "stored through 2"."""
    import os

    from agent import linkwire

    sim = Sim(tmp_path, nodes=1, spool_fsync_s=3600.0)
    node = sim.nodes[0]
    wal = str(sim.store.path) + "-wal"
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))

    def forward(steps):
        c.log(steps, np.asarray(steps, float))
        node.turn()
        sim.carry(node)
        sim.root.commit(sim.now)
        synced.clear()  # the node's spool fsyncs too: count only the root's

    c = Client(node, 0, 1)
    forward([0, 1, 2])
    assert sim.root.acks_owed
    acks = sim.root.durable_link_acks()
    assert synced == [wal, str(tmp_path)] and sim.root.acks_owed == {}
    assert [linkwire.unpack(frame)[1]["s"] for _, frame in acks] == [1]

    forward([3])
    assert sim.root.durable_link_acks() == [] and synced == [] and len(sim.root.acks_owed) == 1
    acks = sim.root.durable_link_acks(force=True)
    assert synced == [wal] and [linkwire.unpack(frame)[1]["s"] for _, frame in acks] == [2]
    assert sim.root.counters.values["store_syncs"] == 2
