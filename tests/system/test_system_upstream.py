"""A node agent's system samples reach the root (tests/support/mnsim.py: node agents and a root in one
process, real spool records): stored at the root under the right rank and node; system ops in a record are
validated like any record data."""

from __future__ import annotations

import subprocess
import sys

import msgpack
import numpy as np
import pytest

from agent import record
from agent.system.forward import system_ops
from agent.system.sampler import SystemSampler
from client.errors import ProtocolError
from support.mnsim import Sim, hello
from support.probes import read_line
from support.processes import child_env, spawn

_PARENT = (
    "import subprocess, sys, time; "
    "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
    "print(c.pid, flush=True); time.sleep(300)"
)

_RANKS = (_PARENT, "import time; time.sleep(300)")


def _sampler(node) -> SystemSampler:
    return next(p for p in node.ingest.parts if isinstance(p, SystemSampler))


def test_node_samples_are_stored_at_the_root_under_their_rank(tmp_path):
    """Two node agents, one rank each (real processes; rank 0 has a child). Each node samples twice, its
    records go up: the root has two system rows per rank with the rank's own process-tree figures (rank 0
    counts its child, rank 1 none), host rows per node under the group, and nothing else."""
    sim = Sim(tmp_path, nodes=2, system_interval_s=1000.0)  # samples taken by the test, not by ticks
    procs = [spawn([sys.executable, "-c", code], child_env(), stdout=subprocess.PIPE, text=True) for code in _RANKS]
    read_line(procs[0], 60, "the child's pid")
    for rank, (node, proc) in enumerate(zip(sim.nodes, procs, strict=True)):
        node.send(hello(f"w{rank}", rank, 2, "g", node.name, proc.pid))
    sim.cycle()
    times = [sim.now, sim.now + 1.0]
    for k, t in enumerate(times):
        for node in sim.nodes:
            assert _sampler(node).sample(t, 100.0 + k) == 1
        sim.cycle()
    reader, g = sim.group("g")
    runs = reader.runs(g.id)
    assert [(r.rank, r.node) for r in runs] == [(0, "node0"), (1, "node1")]
    for r, children in zip(runs, (1.0, 0.0), strict=True):
        cols = reader.run_system(r.id)
        assert cols["_timestamp"].tolist() == times
        assert cols["proc.children"].tolist() == [children, children]
        assert np.all(cols["proc.rss_bytes"] > 0)
        assert np.isnan(cols["proc.cpu_percent"][0]) and cols["proc.cpu_percent"][1] >= 0
    hosts = reader.group_system(g.id)
    assert sorted(hosts) == ["node0", "node1"]
    for cols in hosts.values():
        assert cols["_timestamp"].tolist() == times
        assert np.all(cols["host.memory_total_bytes"] > 0)
    assert sim.root.ingest.counters.malformed == {}


def _record_with(op: list) -> bytes:
    run = {
        "project": "p",
        "group": "g",
        "name": "rank-0",
        "rank": 0,
        "world_size": 1,
        "local_rank": 0,
        "node": "n",
        "pid": 1,
    }
    return record.encode("i", "n", 1.0, [run], [], [op], [], [], [])


def test_system_op_round_trip_and_validation():
    """A system op decodes to the columns it was built from; an op without _timestamp, with columns of
    different lengths, with a non-bool host flag or bytes that are not float64s is a ProtocolError."""
    cols = {"_timestamp": np.array([1.0, 2.0]), "proc.rss_bytes": np.array([3.0, np.nan])}
    rec = record.decode(_record_with(["s", 0, *record.system_op_fields(False, cols)]))
    ((kind, ri, (host, got)),) = rec.ops
    assert (kind, ri, host) == ("s", 0, False)
    assert got["_timestamp"].tolist() == [1.0, 2.0] and got["proc.rss_bytes"][0] == 3.0
    assert np.isnan(got["proc.rss_bytes"][1])
    f8 = np.array([1.0]).tobytes()
    for bad in (
        ["s", 0, True, {"proc.x": f8}],
        ["s", 0, True, {"_timestamp": f8, "proc.x": f8 * 2}],
        ["s", 0, 1, {"_timestamp": f8}],
        ["s", 0, True, {"_timestamp": b"abc"}],
        ["s", 0, True],
    ):
        with pytest.raises(ProtocolError):
            record.decode(_record_with(bad))
    assert msgpack  # the record format is msgpack (agent/record.py)


def test_system_ops_skip_what_the_node_no_longer_holds(tmp_path):
    """Samples of a run or group the node's registry no longer holds (cleared since the sample) make no op;
    the others become one op per rank and one per group's host rows, naming a run of that group."""
    sim = Sim(tmp_path, nodes=1, system_interval_s=1000.0)
    (node,) = sim.nodes
    node.send(hello("w0", 0, 1, "g", node.name, 1234))
    ing = node.ingest
    (run,) = ing.runs.values()
    gid = run.group.record.id
    t = {"_timestamp": np.array([1.0])}
    ing.next_commit.add_system(gid, run.record.id, node.name, dict(t, **{"proc.x": np.array([2.0])}))
    ing.next_commit.add_system(gid, None, node.name, dict(t, **{"host.y": np.array([3.0])}))
    ing.next_commit.add_system(gid + 99, None, node.name, t)
    ing.next_commit.add_system(gid, run.record.id + 99, node.name, t)
    ops = system_ops(ing.next_commit, ing)
    assert [(r, host, sorted(c)) for r, host, c in ops] == [
        (run.record.id, False, ["_timestamp", "proc.x"]),
        (run.record.id, True, ["_timestamp", "host.y"]),
    ]
