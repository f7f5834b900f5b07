"""Two node agents and a root on loopback, as real processes with CurveZMQ keys: 4 ranks behind each
node agent, the root's group rows equal numpy over all 8 ranks at every step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import rankwise
from support.mncluster import check_exactly_once, root_group, wait_exit
from support.probes import cli, wait_for

STEPS = 400

SCRIPT = """
import math, os, rankwise
rank = int(os.environ["RANK"])
run = rankwise.init(project="mn")
for s in range(%(steps)d):
    run.log({"x": math.sin(rank * 0.7 + s * 0.05) * (rank + 1) + s, "k": (rank * 13 + s) %% 7})
run.finish()
print(run.stats["rows_sent"], run.stats["unacked_rows"])
"""


def x_of(rank: int, steps: np.ndarray) -> np.ndarray:
    return np.sin(rank * 0.7 + steps * 0.05) * (rank + 1) + steps


def test_two_node_agents_and_a_root_equal_numpy(curve_cluster):
    """A root with Curve keys and an allow-list; node-a and node-b each serve 4 ranks of one 8-rank job
    (each node agent started by its ranks' first init(), forwarding to the root with its key). Every
    rank's 400 rows are at the root exactly once; for both keys every step's group row equals numpy
    over all 8 ranks (count 8 of 8, exact min/max and their ranks, mean and std); the runs carry their
    node's name; both node agents report their upstream connected with nothing left in the spool, and
    the root its two node agents, nothing lost, nothing refused."""
    c = curve_cluster
    c.start_root()
    procs = [c.start_rank("node-a" if r < 4 else "node-b", SCRIPT % {"steps": STEPS}, r, 8, "job-2n") for r in range(8)]
    for code, out, err in wait_exit(procs):
        assert code == 0, err
        assert out.split() == [str(STEPS), "0"]
    g = check_exactly_once(c, "mn", "job-2n", {r: STEPS for r in range(8)}, x_of)
    assert [(r.rank, r.node, r.state) for r in g.runs] == [
        (r, "node-a" if r < 4 else "node-b", "finished") for r in range(8)
    ]
    k = g.history("k")
    table = (np.arange(8)[:, None] * 13 + np.arange(STEPS)[None, :]) % 7
    assert np.array_equal(k["count"], np.full(STEPS, 8))
    assert np.array_equal(k["min"], table.min(axis=0)) and np.array_equal(k["min_rank"], table.argmin(axis=0))
    assert np.array_equal(k["max"], table.max(axis=0)) and np.array_equal(k["max_rank"], table.argmax(axis=0))
    np.testing.assert_allclose(k["mean"], table.mean(axis=0), rtol=1e-12)

    for name in ("node-a", "node-b"):
        st = wait_for(
            lambda: (s := c.status(name)) and s["upstream"]["unacked_records"] == 0 and s,
            what=f"{name} to have everything acknowledged",
        )
        up = st["upstream"]
        assert st["role"] == "node" and st["node"] == name
        assert up["connected"] and up["spool_bytes"] == 0 and up["lag_s"] == 0.0 and up["drops"] == {}
        assert st["counters"]["rows"] == 4 * STEPS
        text = cli(c.node(name), "status", "--runtime-dir", c.node(name).runtime).stdout
        assert f"upstream {c.listen} (connected): lag 0.0s, 0 record(s) unacknowledged" in text
    root = c.status()
    assert root["role"] == "root" and sorted(lk["node"] for lk in root["links"]) == ["node-a", "node-b"]
    assert all(lk["lost_records"] == 0 and lk["applied"] == lk["stored"] for lk in root["links"])
    assert root["listen"]["curve"] is True and root["listen"]["refused"] == {"not_allowed": 0}
    assert root["listen"]["allowed_handshakes"] >= 2
    assert root["counters"]["rows"] == 8 * STEPS and root["malformed"] == {} and root["drops"] == {}
    assert root["counters"].get("group_revisions", 0) == 0
    shown = json.loads(cli(c.root, "show", "job-2n", "--json").stdout)
    assert {row["key"]: row["ranks"] for row in shown["keys"]} == {"k": "8/8", "x": "8/8"}
    assert rankwise.Api(str(c.root.store)).group("mn", "job-2n").late_rows == 0


MEDIA = """
import os, numpy as np, rankwise
rank = int(os.environ["RANK"])
run = rankwise.init(project="mnmedia")
for s in range(3):
    run.log({"img": rankwise.Image(np.full((4, 6), 10 * rank + s, np.uint8)), "x": float(s)})
run.finish()
print(run.stats["rows_sent"], run.stats["unacked_rows"])
"""


def test_media_bytes_reach_the_root_media_store(cluster):
    """Ranks behind two node agents log images: the bytes travel inside the forwarded batches and are
    stored content-addressed in the root's data directory (the node agents keep none); each stored
    reference names a file whose bytes are the image the rank encoded."""
    c = cluster
    c.start_root()
    procs = [c.start_rank("node-a" if r < 2 else "node-b", MEDIA, r, 4, "job-media") for r in range(4)]
    for code, _out, err in wait_exit(procs):
        assert code == 0, err
    g = check_exactly_once(c, "mnmedia", "job-media", {r: 3 for r in range(4)}, lambda r, s: s.astype(float))
    root_media = Path(c.root.data)
    for run in g.runs:
        rows = run.history()
        assert [row["_step"] for row in rows] == [0, 1, 2]
        for row in rows:
            ref = row["img"]
            want = rankwise.Image(np.full((4, 6), 10 * run.rank + row["_step"], np.uint8))._to_wire()["bytes"]
            assert "bytes" not in ref and (root_media / ref["path"]).read_bytes() == want
    for name in ("node-a", "node-b"):
        assert not (Path(c.node(name).data) / "media").exists()


FIRST = """
import sys, rankwise
run = rankwise.init(project="mnel")
for s in range(100):
    run.log({"x": float(s)})
assert run.flush(30)
sys.exit(1)
"""

SECOND = """
import rankwise
run = rankwise.init(project="mnel")
print(run.resumed, run.step, flush=True)
for s in range(run.step, run.step + 50):
    run.log({"x": float(s)})
run.finish()
"""


def test_rank_restarted_behind_another_node_agent_resumes(cluster):
    """torchrun restarts a failed rank on another node: node-b has never seen the run, asks the root for
    its resume point and answers the rank's HELLO with it. The rank continues at step 100 (resumed),
    and the root has one run for the rank: 2 incarnations, 150 rows, steps 0..149 once, finished on
    node-b."""
    c = cluster
    c.start_root()
    ((code, _, err),) = wait_exit([c.start_rank("node-a", FIRST, 0, 1, "job-el")])
    assert code == 1, err
    wait_for(
        lambda: (g := root_group(c, "mnel", "job-el")) and g.runs[0].state == "failed" and g.runs[0].rows == 100,
        what="the failed run at the root",
    )
    ((code, out, err),) = wait_exit([c.start_rank("node-b", SECOND, 0, 1, "job-el", TORCHELASTIC_RESTART_COUNT=1)])
    assert code == 0, err
    assert out.split() == ["True", "100"]
    g = check_exactly_once(c, "mnel", "job-el", {0: 150}, lambda r, s: s.astype(float))
    (run,) = g.runs
    assert (run.state, run.incarnations, run.node) == ("finished", 2, "node-b")
    assert c.status("node-b")["counters"]["lookups_found"] == 1
