"""Real processes: a root and two node agents on loopback (tests/support/mncluster.py), one rank behind
each node agent, sampled every 0.2 s; the samples travel in the spool records and are stored at the root. A
rank on the root's own machine, talking to the root directly, is sampled by the root."""

from __future__ import annotations

import numpy as np

from support.mncluster import root_group, wait_exit
from support.probes import wait_for

SCRIPT = """
import os, time, rankwise
from pathlib import Path
run = rankwise.init(project="mnsys")
stop = Path(os.environ["RW_STOP"])
s = 0
while not stop.exists():
    run.log({"x": float(s)})
    s += 1
    time.sleep(0.02)
run.finish()
print(s)
"""


def _both_sampled(cluster):
    g = root_group(cluster, "mnsys", "job-sys2")
    if g is None or len(g.runs) < 2:
        return None
    if not all(len(r.system_arrays().get("_timestamp", ())) >= 2 for r in g.runs):
        return None
    return g if sorted(g.system()) == ["node-a", "node-b"] else None


def test_node_agents_samples_reach_the_root(cluster, tmp_path):
    """Each node agent (started by its rank's init(), RANKWISE_SYSTEM_INTERVAL=0.2) samples its rank and
    machine; at the root every rank has system rows under its own run (proc.rss_bytes, proc.cpu_percent
    from the second sample) and each node's host rows are in Group.system() under the node's name; the
    root counts no malformed record."""
    cluster.start_root()
    stop = tmp_path / "stop"
    procs = [
        cluster.start_rank(node, SCRIPT, rank, 2, "job-sys2", RANKWISE_SYSTEM_INTERVAL="0.2", RW_STOP=str(stop))
        for rank, node in enumerate(("node-a", "node-b"))
    ]
    try:
        g = wait_for(lambda: _both_sampled(cluster), 120, "system rows of both ranks at the root")
    finally:
        stop.touch()
    for code, _out, err in wait_exit(procs):
        assert code == 0, err
    assert [(r.rank, r.node) for r in g.runs] == [(0, "node-a"), (1, "node-b")]
    for r in g.runs:
        cols = r.system_arrays()
        assert np.all(cols["proc.rss_bytes"] > 10 << 20)  # a Python process with numpy and zmq loaded
        assert np.isnan(cols["proc.cpu_percent"][0]) and np.all(cols["proc.cpu_percent"][1:] >= 0)
    for node, cols in g.system().items():
        assert len(cols["_timestamp"]) >= 2 and np.all(cols["host.memory_total_bytes"] > 0), node
    st = cluster.status()
    assert st is not None and st["malformed"] == {} and st["counters"]["system_ops"] >= 4


def test_a_rank_on_the_roots_machine_is_sampled_by_the_root(rankwise_env, tmp_path):
    """Rank 0 talks to the root directly (its own machine, no node agent), rank 1 goes through node-a; root and
    node agent sample every 0.2 s: both runs get system rows at the root (rank 0's from the root's own sampler,
    a real process of > 10 MB) and Group.system() has host rows for the root's machine and for node-a."""
    from support.mncluster import Cluster

    cluster = Cluster(rankwise_env, tmp_path, RANKWISE_SYSTEM_INTERVAL="0.2")
    try:
        cluster.start_root()
        stop = tmp_path / "stop"
        procs = [
            cluster.start_root_rank(SCRIPT, 0, 2, "job-sysroot", RW_STOP=str(stop)),
            cluster.start_rank(
                "node-a", SCRIPT, 1, 2, "job-sysroot", RANKWISE_SYSTEM_INTERVAL="0.2", RW_STOP=str(stop)
            ),
        ]

        def sampled():
            g = root_group(cluster, "mnsys", "job-sysroot")
            if g is None or len(g.runs) < 2 or len(g.system()) < 2:
                return None
            return g if all(len(r.system_arrays().get("_timestamp", ())) >= 2 for r in g.runs) else None

        try:
            g = wait_for(sampled, 120, "system rows of the root's rank and the node's rank")
        finally:
            stop.touch()
        for code, _out, err in wait_exit(procs):
            assert code == 0, err
        runs = sorted(g.runs, key=lambda r: r.rank)
        assert runs[1].node == "node-a" and runs[0].node != "node-a"
        assert sorted(g.system()) == sorted([runs[0].node, "node-a"])
        for r in runs:
            assert np.all(r.system_arrays()["proc.rss_bytes"] > 10 << 20), r.rank
    finally:
        cluster.stop()
