"""The root is not running when the job starts. The node agents acknowledge their ranks from their spools
until the spool's byte quota is full; then they hold new batches back (the ranks keep them, log() never
blocks) and say so in ``rankwise status``. Once the root starts, the spools drain, the held batches
follow, and every row is stored once."""

from __future__ import annotations

from support.mncluster import check_exactly_once, wait_exit
from support.probes import cli, read_line, wait_for

STEPS, QUOTA = 12000, 256 << 10

SCRIPT = """
import os, time, rankwise
from pathlib import Path
rank = int(os.environ["RANK"])
run = rankwise.init(project="mnlate")
for s in range(%(steps)d):
    run.log({"x": rank * 1e6 + s})
    if s %% 100 == 0:
        time.sleep(0.001)
print("logged", flush=True)
go = Path(os.environ["RW_GO"])
while not go.exists():
    time.sleep(0.01)
run.finish()
st = run.stats
print(st["rows_sent"], st["unacked_rows"], flush=True)
"""


def test_root_started_late_with_a_full_spool(cluster, tmp_path):
    """Root down: 2 node agents x 2 ranks log 12000 rows each. Each node's spool stays within its 256 KiB
    quota, the node counts batches held back, reports its upstream not connected with a positive lag
    and unacknowledged records, and the ranks still finish logging. Then the root starts: every rank
    finishes with nothing unacknowledged, every row is at the root once, rows equal numpy."""
    c = cluster
    go = tmp_path / "go"
    procs = [
        c.start_rank(
            "node-a" if r < 2 else "node-b",
            SCRIPT % {"steps": STEPS},
            r,
            4,
            "job-late",
            RW_GO=go,
            RANKWISE_SPOOL_BYTES=QUOTA,
            RANKWISE_SPOOL_SEGMENT_BYTES=32 << 10,
            RANKWISE_FINISH_TIMEOUT=90,
            RANKWISE_RETRY_AFTER=0.5,
        )
        for r in range(4)
    ]
    for p in procs:
        assert read_line(p, timeout_s=60, what="all rows logged") == "logged"
    for name in ("node-a", "node-b"):
        st = wait_for(
            lambda: (s := c.status(name)) and s["counters"].get("deferred_spool_full", 0) > 0 and s,
            what=f"{name} to hold batches back",
        )
        up = st["upstream"]
        assert up["connected"] is False and up["lag_s"] > 0 and up["unacked_records"] > 0
        assert 0 < up["spool_bytes"] <= QUOTA and up["quota_full"] > 0
        text = cli(c.node(name), "status", "--runtime-dir", c.node(name).runtime).stdout
        assert "(NOT connected (the spool keeps everything))" in text and "held back while the spool was full" in text
    c.start_root()
    go.touch()
    for code, out, err in wait_exit(procs, timeout_s=120):
        assert code == 0, err
        assert out.split()[-2:] == [str(STEPS), "0"]
    check_exactly_once(c, "mnlate", "job-late", {r: STEPS for r in range(4)}, lambda r, s: r * 1e6 + s)
    for name in ("node-a", "node-b"):
        up = wait_for(
            lambda: (s := c.status(name)) and s["upstream"]["unacked_records"] == 0 and s["upstream"],
            what=f"{name}'s spool to drain",
        )
        assert up["connected"] and up["spool_bytes"] == 0 and up["drops"] == {}
