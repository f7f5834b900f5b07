"""A corrupt segment in a node agent's spool (a bad disk block while the root was away): the restarted node
agent quarantines it, reports it, sends the rest; the root counts the records it will never get as lost
(drop cause ``node_records_lost``). Nothing loops, nothing else is lost, nothing is stored twice."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import rankwise
from agent import record
from agent.spool import Spool
from client import wire
from support.mncluster import wait_exit
from support.probes import raw_steps, wait_for
from support.processes import stop_agent

SCRIPT = """
import os, rankwise
rank = int(os.environ["RANK"])
run = rankwise.init(project="mncorrupt", settings={"batch_max_rows": 64})
for s in range(2000):
    run.log({"x": rank * 1e4 + s})
    if s % 50 == 0:
        run.flush(10)
run.finish()
print(run.stats["rows_sent"], run.stats["unacked_rows"])
"""


def _rows_by_run(payloads: list[bytes]) -> dict[str, list[int]]:
    """Steps of every batch in these records, per run name."""
    out: dict[str, list[int]] = {}
    for payload in payloads:
        rec = record.decode(payload)
        for kind, index, arg in rec.ops:
            if kind == "b":
                b = wire.decode_batch(wire.unpack(arg)[1])
                out.setdefault(rec.runs[index]["name"], []).extend(b.step.tolist())
    return out


def test_corrupt_spool_segment_is_quarantined_and_counted(cluster):
    """With the root down, 2 ranks log 2000 rows each into node-a's spool (4 KiB segments) and finish.
    The node agent is stopped and one byte of its second segment flipped. The root starts, then the
    node agent: it quarantines that segment (``*.corrupt``, listed in ``rankwise status``), delivers
    every other record, and the root counts exactly the quarantined segment's records as lost. Each
    run at the root holds exactly the steps of the surviving records, once."""
    c = cluster
    env = {"RANKWISE_SPOOL_SEGMENT_BYTES": 4096}
    procs = [c.start_rank("node-a", SCRIPT, r, 2, "job-c", **env) for r in range(2)]
    for code, out, err in wait_exit(procs):
        assert code == 0, err
        assert out.split() == ["2000", "0"]
    node = c.node("node-a")
    stop_agent(node)
    spool_dir = Path(node.data) / "spool"
    spool = Spool(spool_dir)
    segments = [(s.path, s.first_seq, s.last_seq) for s in spool._segments]
    records = dict(spool.replay())
    spool.close()
    assert len(segments) >= 4
    bad_path, bad_first, bad_last = segments[1]
    raw = bytearray(bad_path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad_path.write_bytes(bytes(raw))
    survivors = [p for seq, p in records.items() if not bad_first <= seq <= bad_last]

    c.start_root()
    c.start_node_agent("node-a", **env)
    st = wait_for(
        lambda: (s := c.status("node-a")) and s["upstream"]["unacked_records"] == 0 and s,
        what="the node's spool to drain",
    )
    up = st["upstream"]
    assert up["drops"] == {"spool_quarantined_segments": 1}
    assert len(up["quarantined"]) == 1 and up["quarantined"][0].startswith(bad_path.with_suffix(".corrupt").name)
    assert bad_path.with_suffix(".corrupt").exists()
    root = wait_for(lambda: (s := c.status()) and s["drops"] and s, what="the root to count the lost records")
    assert root["drops"] == {"node_records_lost": bad_last - bad_first + 1}
    assert [lk["lost_records"] for lk in root["links"]] == [bad_last - bad_first + 1]
    want = _rows_by_run(survivors)
    api = rankwise.Api(str(c.root.store))
    g = wait_for(
        lambda: (
            (g := api.group("mncorrupt", "job-c"))
            and all(r.rows == len(want.get(r.name, [])) for r in g.runs)
            and len(g.runs) == 2
            and g
        ),
        what="the surviving rows",
    )
    for run in g.runs:
        assert np.array_equal(raw_steps(c.root, "mncorrupt", "job-c", run.name, "x"), np.sort(want[run.name]))
