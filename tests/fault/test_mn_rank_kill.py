"""SIGKILL of one rank behind a forwarding node agent: its node agent sees the pid gone and tells the root;
the run becomes crashed with what was acknowledged stored, and the root seals group rows without it
while the other ranks still run."""

from __future__ import annotations

import numpy as np

from support.mncluster import check_exactly_once, root_group, wait_exit
from support.probes import kill9, raw_steps, read_line, wait_for

WORLD, VICTIM, STEPS, ACKED = 4, 3, 300, 60

SCRIPT = """
import os, time
from pathlib import Path
import rankwise
rank = int(os.environ["RANK"])
run = rankwise.init(project="mnrk")
def log_until(stop):
    while run.step < stop:
        run.log({"x": rank * 1000.0 + run.step})
if rank == %(victim)d:
    log_until(%(acked)d)
    assert run.flush(30)
    print("acked", flush=True)
    while run.step < %(steps)d - 10:
        run.log({"x": rank * 1000.0 + run.step})
        time.sleep(0.002)
    time.sleep(600)
def wait(name):
    path = Path(os.environ["RW_DIR"]) / name
    while not path.exists():
        time.sleep(0.005)
log_until(100)
wait("killed")
log_until(200)
assert run.flush(30)
print("mid", flush=True)
wait("go")
log_until(%(steps)d)
run.finish()
print(run.stats["rows_sent"], run.stats["unacked_rows"], flush=True)
"""


def test_killed_rank_behind_a_node_agent(cluster, tmp_path):
    """4 ranks on 2 node agents log x = rank*1000 + step; rank 3 (node-b) has 60 rows acknowledged,
    streams on and is SIGKILLed. With seal timeout and silence at 10 minutes, the root has rows
    through step 199 while ranks 0-2 are alive and waiting (only the crash report can allow that);
    then they finish 300 steps. Rank 3 is crashed with a prefix 0..n-1 (n >= 60) stored once, the
    others finished with 300 rows, and every row covers 4 ranks where rank 3 reported, 3 after,
    equal to numpy."""
    c = cluster
    c.root_env.update(RANKWISE_SEAL_TIMEOUT="600", RANKWISE_SILENCE="600")
    c.start_root()
    env = {"RW_DIR": tmp_path, "RANKWISE_SEAL_TIMEOUT": 600, "RANKWISE_SILENCE": 600}
    script = SCRIPT % {"victim": VICTIM, "acked": ACKED, "steps": STEPS}
    procs = [c.start_rank("node-a" if r < 2 else "node-b", script, r, WORLD, "job-rk", **env) for r in range(WORLD)]
    victim = procs[VICTIM]
    others = [p for r, p in enumerate(procs) if r != VICTIM]
    assert read_line(victim, what="acked") == "acked"
    kill9(victim)
    assert victim.wait(timeout=30) == -9
    (tmp_path / "killed").touch()
    for p in others:
        assert read_line(p, what="mid") == "mid"
    wait_for(
        lambda: (g := root_group(c, "mnrk", "job-rk")) and len(h := g.history("x")["step"]) and h[-1] >= 199,
        timeout_s=60,
        what="root rows through step 199 without the killed rank",
    )
    assert all(p.poll() is None for p in others)
    assert root_group(c, "mnrk", "job-rk").run(rank=VICTIM).state == "crashed"
    (tmp_path / "go").touch()
    for code, out, err in wait_exit(others):
        assert code == 0, err
        assert out.split() == [str(STEPS), "0"]
    n = len(raw_steps(c.root, "mnrk", "job-rk", f"rank-{VICTIM}", "x"))
    assert n >= ACKED
    g = check_exactly_once(c, "mnrk", "job-rk", {0: STEPS, 1: STEPS, 2: STEPS, VICTIM: n}, lambda r, s: r * 1000.0 + s)
    assert [(r.rank, r.state, r.node) for r in g.runs] == [
        (0, "finished", "node-a"),
        (1, "finished", "node-a"),
        (2, "finished", "node-b"),
        (3, "crashed", "node-b"),
    ]
    assert np.array_equal(g.history("x")["count"], np.where(np.arange(STEPS) < n, 4, 3))
    assert c.status("node-b")["counters"]["crashed_runs"] == 1
