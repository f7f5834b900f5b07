"""System metrics end to end: real rank processes with a DataLoader-style child, a real agent sampling them
every 0.2 s, the SQLite store, and the public views (``RunView.system``, ``Group.system``,
``Group.system_history``)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import rankwise
from support.probes import cli, wait_for
from support.processes import start_ranks, wait_all

CHILD_MB = 160

# the child is forked before rankwise.init (as a DataLoader's workers are, with no writer of their own) and
# touches every page of its buffer, so its RSS and USS really hold CHILD_MB
SCRIPT = """
import os, time, multiprocessing as mp
from pathlib import Path

def hold(n, ready, stop):
    buf = bytearray(n)
    for i in range(0, n, 4096):
        buf[i] = 1
    ready.set()
    stop.wait(300)

ctx = mp.get_context("fork")
ready, stop = ctx.Event(), ctx.Event()
child = ctx.Process(target=hold, args=(%(mb)d << 20, ready, stop), daemon=True)
child.start()
assert ready.wait(120)
import rankwise
run = rankwise.init(project="sys")
stopfile = Path(os.environ["RW_STOP"])
s = 0
while not stopfile.exists():
    run.log({"loss": float(s)})
    s += 1
    time.sleep(0.02)
run.finish()
stop.set()
child.join(60)
print(s, child.pid, flush=True)
"""


def _ranks_sampled(group_name: str, world: int):
    """Every rank has a system row holding its child's memory and a CPU figure (None until then)."""
    try:
        group = rankwise.Api().group("sys", group_name)
    except Exception:
        return None
    runs = group.runs
    if len(runs) < world:
        return None
    for run in runs:
        rows = run.system()
        if not any("proc.cpu_percent" in r and r.get("proc.rss_bytes", 0) >= CHILD_MB << 20 for r in rows):
            return None
    return group


@pytest.mark.parametrize("world", [3])
def test_every_rank_has_system_rows_with_its_childs_memory(rankwise_env, monkeypatch, tmp_path, world):
    """Each rank forks a child holding CHILD_MB MB; with RANKWISE_SYSTEM_INTERVAL=0.2 every rank gets system
    rows whose proc.rss_bytes and proc.uss_bytes (the first sample's, then every 5 s) include the child's
    memory (>= CHILD_MB MB), whose
    proc.children counts it, with proc.cpu_percent from the second sample on; the node's host rows are in
    Group.system(); Group.system_history reduces a rank metric over the ranks exactly as numpy does; `rankwise
    status` prints the sampler's line."""
    monkeypatch.setenv("RANKWISE_SYSTEM_INTERVAL", "0.2")
    stop = tmp_path / "stop"
    procs = start_ranks(rankwise_env, SCRIPT % {"mb": CHILD_MB}, world, "job-sys", RW_STOP=str(stop))
    try:
        group = wait_for(lambda: _ranks_sampled("job-sys", world), 120, "system rows of every rank")
        shown = cli(rankwise_env, "status")
    finally:
        stop.touch()
    # the sampler's line in `rankwise status` (its JSON has the same numbers under "system")
    assert shown.returncode == 0, shown.stderr
    line = next(x for x in shown.stdout.splitlines() if x.startswith("system sampler: "))
    m = re.fullmatch(
        r"system sampler: every 0\.2 s, (\d+) samples \((\d+) rows\), [\d.]+ ms CPU a sample; GPUs: .+", line
    )
    assert m and int(m[1]) >= 2 and int(m[2]) >= 2 * int(m[1]), line  # a sample: a rank row or more, a host row
    results = wait_all(procs, 120)
    for rank, (code, out, err) in enumerate(results):
        assert code == 0, f"rank {rank} exited {code}\n{out}\n{err}"
    runs = group.runs
    assert [r.rank for r in runs] == list(range(world))
    for run in runs:
        cols = run.system_arrays()
        t = cols["_timestamp"]
        assert len(t) >= 2 and np.all(np.diff(t) > 0)
        # the child holds its memory from before init() until after finish(): every sample counts it
        assert np.all(cols["proc.rss_bytes"] >= CHILD_MB << 20)
        assert np.all(cols["proc.children"] >= 1)
        uss = cols["proc.uss_bytes"]  # read every 25th sample at 0.2 s (at most every 5 s), the first included
        assert not np.isnan(uss[0]) and np.all(uss[~np.isnan(uss)] >= CHILD_MB << 20)
        assert np.all(cols["proc.threads"] >= 1) and np.all(cols["proc.open_files"] >= 3)
        cpu = cols["proc.cpu_percent"]
        assert np.isnan(cpu[0])  # the first sample of a rank has no baseline
        assert np.all((cpu[1:] >= 0) & (cpu[1:] < 100.0 * 64))
        rows = run.system()
        assert [r["_timestamp"] for r in rows] == t.tolist()
        assert "proc.cpu_percent" not in rows[0] and "proc.cpu_percent" in rows[-1]
    hosts = group.system()
    assert list(hosts) == group.nodes
    host = hosts[group.nodes[0]]
    assert len(host["_timestamp"]) >= 2
    assert np.all(host["host.memory_total_bytes"] > host["host.memory_available_bytes"])
    assert np.all(host["host.disk_free_bytes"] > 0) and np.all(host["host.cpu_count"] >= 1)
    assert np.all((host["host.cpu_percent"][1:] >= 0) & (host["host.cpu_percent"][1:] <= 100))
    # every rank row's time is a host row's time: one tick samples them all
    assert set(runs[0].system_arrays()["_timestamp"].tolist()) <= set(host["_timestamp"].tolist())

    gr = group.system_history("proc.rss_bytes", interval=0.2)
    per_rank = {r.rank: r.system_arrays() for r in runs}
    buckets: dict[int, dict[int, float]] = {}
    for rank, cols in per_rank.items():
        for t, v in zip(cols["_timestamp"], cols["proc.rss_bytes"], strict=True):
            buckets.setdefault(int(np.floor(t / 0.2)), {})[rank] = v
    assert gr["step"].tolist() == sorted(buckets)
    for i, step in enumerate(gr["step"].tolist()):
        vals = np.array([buckets[step][r] for r in sorted(buckets[step])])
        assert gr["count"][i] == len(vals) and gr["expected"][i] == world
        assert gr["mean"][i] == pytest.approx(vals.mean(), rel=1e-12)
        assert gr["min"][i] == vals.min() and gr["max"][i] == vals.max()
        assert gr["std"][i] == pytest.approx(vals.std(), rel=1e-9, abs=1e-6)
