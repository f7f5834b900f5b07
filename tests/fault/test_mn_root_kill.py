"""SIGKILL of the root while two node agents stream to it: the node agents keep acknowledging their ranks
from their spools, notice the silence, and when a new root is up on the same port say HELLO again and
resend from the record seq it stored with its last commit. Exactly-once across root restarts: sent ==
stored, no duplicates, group rows equal numpy (the steps the dead root had open are recomputed)."""

from __future__ import annotations

import random
import time

import pytest

from support.mncluster import check_exactly_once, slow, wait_exit
from support.probes import kill9, pid_gone, wait_for
from support.rankscripts import log_until_file

SCRIPT = log_until_file("mnroot", '{"x": rank * 100000.0 + s * 0.5}', min_rows=200, chunk=2, pause_s=0.002)


def _kill_root_repeatedly(c, tmp_path, kills: int, seed: int, world: int = 4) -> None:
    rng = random.Random(seed)
    root = c.start_root()
    stop = tmp_path / "stop"
    procs = [
        c.start_rank("node-a" if r < world // 2 else "node-b", SCRIPT, r, world, "job-rk", RW_STOP=stop)
        for r in range(world)
    ]
    wait_for(lambda: (s := c.status()) and len(s["links"]) == 2, what="both node agents at the root")
    for _ in range(kills):
        time.sleep(rng.uniform(0.3, 1.2))  # a random point of the stream, not an assertion
        kill9(root)
        wait_for(lambda: pid_gone(root.pid), what="the root to die")
        root.wait()
        time.sleep(rng.uniform(0.0, 1.0))  # the root is away for a while
        root = c.start_root()
    time.sleep(rng.uniform(0.2, 0.6))
    stop.touch()
    counts = {}
    for rank, (code, out, err) in enumerate(wait_exit(procs, timeout_s=180)):
        assert code == 0, err
        n, sent, unacked = map(int, out.split())
        assert (sent, unacked) == (n, 0)
        counts[rank] = n
    check_exactly_once(c, "mnroot", "job-rk", counts, lambda r, s: r * 100000.0 + s * 0.5)
    for name in ("node-a", "node-b"):
        up = wait_for(
            lambda: (s := c.status(name)) and s["upstream"]["unacked_records"] == 0 and s["upstream"],
            what=f"{name}'s spool to drain",
        )
        assert up["counters"]["welcomes"] >= 2 and up["drops"] == {}  # welcomed again by a new root
    st = c.status()
    assert st["drops"] == {} and st["malformed"] == {}
    assert all(lk["lost_records"] == 0 for lk in st["links"])


def test_root_killed_during_a_two_node_stream(cluster, tmp_path):
    """One SIGKILL of the root at a random moment of a 2-node, 4-rank stream, restarted after a random
    pause: every row stored once, group rows equal numpy, nothing counted as lost."""
    _kill_root_repeatedly(cluster, tmp_path, kills=1, seed=1)


@pytest.mark.parametrize("seed", [2, 3])
@slow
def test_root_killed_many_times(cluster, tmp_path, seed):
    """Long variant: four SIGKILLs of the root, 8 ranks, two random seeds."""
    _kill_root_repeatedly(cluster, tmp_path, kills=4, seed=seed, world=8)
