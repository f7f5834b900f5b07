"""SIGKILL of a forwarding node agent at random points while 8 ranks stream to a root: the ranks start a
new node agent (as the first init() does), say HELLO again and replay what was not acknowledged; the
new node agent resends its spool; the root de-duplicates and recomputes the group rows the dead
agent had open. Counting every row: sent == stored, no duplicates, rows equal numpy."""

from __future__ import annotations

import random
import time

import pytest

from support.mncluster import check_exactly_once, slow, wait_exit
from support.probes import kill9, pid_gone, wait_for
from support.processes import agent_pid
from support.rankscripts import log_until_file

SCRIPT = log_until_file(
    "mnkill", '{"x": rank * 100000.0 + s}', min_rows=200, chunk=2, pause_s=0.002, extra_stats=("agent_restarts",)
)


def _kill_node_agent_repeatedly(c, tmp_path, kills: int, seed: int) -> None:
    c.start_root()
    stop = tmp_path / "stop"
    env = {"RW_STOP": stop, "RANKWISE_RETRY_AFTER": 0.2, "RANKWISE_FINISH_TIMEOUT": 60}
    procs = [c.start_rank("node-a", SCRIPT, r, 8, "job-nk", **env) for r in range(8)]
    node = c.node("node-a")
    rng = random.Random(seed)
    dead: list[int] = []
    # every rank streaming before the first kill (so that each of them sees its node agent restart)
    wait_for(lambda: (s := c.status("node-a")) and len(s["running"]) == 8, timeout_s=60, what="8 ranks streaming")
    for _ in range(kills):
        pid = wait_for(lambda: (p := agent_pid(node)) not in (None, *dead) and p, timeout_s=60, what="a node agent")
        time.sleep(rng.uniform(0.3, 1.5))  # a random point of the stream, not an assertion
        kill9(pid)
        wait_for(lambda: pid_gone(pid), what="the node agent to die")
        dead.append(pid)
    wait_for(lambda: (p := agent_pid(node)) not in (None, *dead) and p, timeout_s=60, what="the last node agent")
    time.sleep(rng.uniform(0.2, 0.8))
    stop.touch()
    counts = {}
    for rank, (code, out, err) in enumerate(wait_exit(procs, timeout_s=180)):
        assert code == 0, err
        n, sent, unacked, restarts = map(int, out.split())
        assert (sent, unacked) == (n, 0)
        assert restarts >= 1  # the rank saw a new node agent instance
        counts[rank] = n
    check_exactly_once(c, "mnkill", "job-nk", counts, lambda r, s: r * 100000.0 + s)
    root = c.status()
    assert root["counters"]["node_restarts"] == kills
    assert root["drops"] == {} and root["malformed"] == {}
    assert [lk["lost_records"] for lk in root["links"]] == [0]


def test_node_agent_killed_twice_during_an_8_rank_stream(cluster, tmp_path):
    """Two SIGKILLs of the node agent at random moments of an 8-rank stream; the ranks respawn it each
    time. Every rank's rows are stored once at the root and the group rows equal numpy."""
    _kill_node_agent_repeatedly(cluster, tmp_path, kills=2, seed=1)


@pytest.mark.parametrize("seed", [2, 3])
@slow
def test_node_agent_killed_many_times(cluster, tmp_path, seed):
    """Long variant: eight SIGKILLs at random moments, two random seeds."""
    _kill_node_agent_repeatedly(cluster, tmp_path, kills=8, seed=seed)
