"""A straggling rank (SIGSTOP for several seconds) behind a node agent: neither its node agent nor the root
holds its group's windows open without bound (seal timeout, or the byte budget), rows are sealed without
it meanwhile, and when it resumes its data is stored and the rows it belongs to are revised: at the end
every row equals numpy over all ranks, nothing lost, nothing twice."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from support.mncluster import Cluster, check_exactly_once, root_group, slow, wait_exit
from support.probes import read_line, wait_for
from support.rankscripts import log_until_file

SCRIPT = log_until_file("mnst", min_rows=300, started_after=100, pause_s=0.002)


@pytest.fixture(params=["seal-timeout", "byte-budget"])
def straggler_cluster(request, rankwise_env, tmp_path):
    """Early sealing by a 0.5 s seal timeout, or by a 16 KiB window budget per group (timeout 10 min)."""
    if request.param == "seal-timeout":
        settings = {"RANKWISE_SEAL_TIMEOUT": "0.5"}
    else:
        settings = {"RANKWISE_SEAL_TIMEOUT": "600", "RANKWISE_WINDOW_MAX_BYTES": str(16 << 10)}
    c = Cluster(rankwise_env, tmp_path, **settings)
    c.rank_env = settings
    yield c
    c.stop()


def _straggle(c, tmp_path, stall_s: float) -> None:
    c.start_root()
    stop = tmp_path / "stop"
    procs = [
        c.start_rank("node-a" if r < 2 else "node-b", SCRIPT, r, 4, "job-st", RW_STOP=stop, **c.rank_env)
        for r in range(4)
    ]
    for p in procs:
        assert read_line(p, what="started") == "started"
    os.kill(procs[1].pid, signal.SIGSTOP)
    try:
        # rows are sealed without the stopped rank while it is stopped: 3 of 4 ranks
        wait_for(
            lambda: (g := root_group(c, "mnst", "job-st")) and 3 in g.history("x")["count"],
            timeout_s=60,
            what="rows sealed without the straggler",
        )
        window = c.status("node-a")["window_bytes"]
        time.sleep(stall_s)  # the length of the stall, not an assertion
    finally:
        os.kill(procs[1].pid, signal.SIGCONT)
    time.sleep(0.5)
    stop.touch()
    counts = {}
    for rank, (code, out, err) in enumerate(wait_exit(procs)):
        assert code == 0, err
        n, sent, unacked = map(int, out.split())
        assert (sent, unacked) == (n, 0)
        counts[rank] = n
    g = check_exactly_once(c, "mnst", "job-st", counts, lambda r, s: r * 1000.0 + s)
    assert g.late_rows > 0  # the straggler's rows came after their steps were sealed
    assert c.status()["counters"]["group_revisions"] > 0
    assert int(np.min(g.history("x")["count"][: min(counts.values())])) == 4
    if "RANKWISE_WINDOW_MAX_BYTES" in c.rank_env:
        assert window <= (16 << 10) + (64 << 10)  # the budget, plus at most one drain's points before sealing


def test_straggler_for_a_few_seconds(straggler_cluster, tmp_path):
    """Rank 1 (node-a) of 4 is SIGSTOPped for 3 s mid-stream; rows are sealed without it meanwhile, and
    in the end every row covers all 4 ranks and equals numpy; the late rows are counted."""
    _straggle(straggler_cluster, tmp_path, 3.0)


@slow
def test_straggler_for_long(straggler_cluster, tmp_path):
    """Long variant: a 15 s stall."""
    _straggle(straggler_cluster, tmp_path, 15.0)
