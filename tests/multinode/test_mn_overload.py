"""Client coalescing under overload (client/coalesce.py) behind a node agent: the node forwards span batches
to the root, counts their rows and moves the rank's step, and the root stores the spans so that every
call is accounted for."""

from __future__ import annotations

import numpy as np

from support.mncluster import delivered, wait_exit

ROWS = 200_000

SCRIPT = """
import rankwise
run = rankwise.init(project="mn")
for s in range(%(rows)d):
    run.log({"x": s * 0.5})
run.finish()
st = run.stats
print(st["rows_sent"], st["unacked_rows"], st["overloads"] > 0, st["coalesced_rows"] > 0)
"""


def test_coalesced_spans_reach_the_root_through_a_node_agent(cluster):
    """One rank behind a node agent logs 200k rows in a tight loop with max_queued_bytes = 1 MiB: it
    coalesces; at the root the run has every row (span counts plus rows = 200k), each span's count,
    min, max, last and mean equal the logged values of its steps, the group has a point at the rank's
    last step, and the node agent counted every row."""
    c = cluster
    c.start_root()
    proc = c.start_rank("node-a", SCRIPT % {"rows": ROWS}, 0, 1, "job-ov", RANKWISE_MAX_QUEUED_BYTES="1M")
    for code, out, err in wait_exit([proc]):
        assert code == 0, err
        assert out.split() == [str(ROWS), "0", "True", "True"]
    g = delivered(c, "mn", "job-ov", {0: ROWS})
    run = g.runs[0]
    assert (run.rows, run.step, run.state) == (ROWS, ROWS, "finished")
    cols = run.history_arrays(["_rows", "x"])
    span_steps, span_rows = cols["_rows"]
    assert int(span_rows.sum()) + len(np.setdiff1d(cols["_timestamp"][0], span_steps)) == ROWS
    sp = run.coalesced("x")
    assert len(sp["count"]) > 0
    for lo, hi, cnt, last, mean, low, high in zip(
        sp["first_step"], sp["step"], sp["count"], sp["last"], sp["mean"], sp["min"], sp["max"]
    ):
        part = np.arange(lo, hi + 1) * 0.5
        assert (cnt, last, low, high, mean) == (len(part), part[-1], part[0], part[-1], part.sum() / cnt)
    steps, values = cols["x"]
    raw = ~np.isin(steps, sp["step"])
    assert np.array_equal(values[raw], steps[raw] * 0.5)
    assert int(raw.sum()) + int(sp["count"].sum()) == ROWS
    assert c.status("node-a")["counters"]["rows"] == ROWS
