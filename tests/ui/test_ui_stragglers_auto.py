"""The straggler panel's automatic metric: in synchronous data parallelism every rank waits for the
slowest at each all-reduce, so commit-to-commit step times are equal; the slow rank shows only in a
compute-time key. ``key=auto`` (the panel's default) must pick that key and name the slow rank."""

from __future__ import annotations

import numpy as np

import rankwise
from support.uihelp import get, log_group, own_env, served

WORLD, STEPS, SLOW_RANK = 4, 200, 2
SCRIPT = """
import os, time, rankwise
rank = int(os.environ["RANK"])
run = rankwise.init(project="sync")
for s in range(%(steps)d):
    compute_ms = 1.0 + (4.0 if rank == %(slow)d else 0.0) + (s %% 3) * 0.01
    run.log({"loss": 1.0 / (s + 1), "compute_ms": compute_ms})
    time.sleep(0.002)  # everyone waits the same at the barrier
run.finish()
""" % {"steps": STEPS, "slow": SLOW_RANK}


def test_auto_metric_picks_the_compute_time_and_names_the_slow_rank():
    """With equal step times, auto picks compute_ms (a timing-named key), reports that it chose it, and
    the slowest rank is the one whose compute time is 5x the others' (means equal numpy's)."""
    with own_env() as env:
        log_group(env, SCRIPT, WORLD, "job-sync")
        with served(env.store) as server:
            status, st = get(server, "/api/projects/sync/groups/job-sync/stragglers?width=10")
            assert status == 200
            assert st["metric"] == "compute_ms" and st["auto"] is True
            assert st["slowest"][0]["rank"] == SLOW_RANK
            g = rankwise.Api(env.store).group("sync", "job-sync")
            for entry in st["ranks"]:
                _, vals = g.run(rank=entry["rank"]).history_arrays(["compute_ms"])["compute_ms"]
                assert entry["mean"] == float(np.mean(vals))
            status, explicit = get(server, "/api/projects/sync/groups/job-sync/stragglers?key=_timestamp&width=10")
            assert explicit["metric"] == "step_time" and explicit["auto"] is False
