"""The root is gone for good: a node agent with nothing running does not stay on the compute node forever.
After RANKWISE_UPSTREAM_LINGER seconds without a word from the root it exits, keeping its spool; the next
node agent on that machine sends the spool once a root is there, and every row is stored once."""

from __future__ import annotations

from pathlib import Path

from support.mncluster import check_exactly_once, wait_exit
from support.probes import agent_log, wait_for
from support.processes import agent_pid

ROWS = 50

SCRIPT = """
import rankwise
run = rankwise.init(project="mngone")
for s in range(%(rows)d):
    run.log({"x": float(s)})
run.finish()
st = run.stats
print(st["rows_sent"], st["unacked_rows"])
"""


def test_node_agent_gives_up_on_a_silent_root_and_keeps_its_spool(cluster):
    """No root: a rank logs 50 rows and finishes (acknowledged from the node's spool). Its node agent,
    idle after 0.5 s, keeps trying for the 2 s linger, then exits saying where the records are; the
    spool keeps them. A root starts, a new node agent on the same machine sends them: 50 rows, once."""
    c = cluster
    ((code, out, err),) = wait_exit(
        [
            c.start_rank(
                "node-a",
                SCRIPT % {"rows": ROWS},
                0,
                1,
                "job-gone",
                RANKWISE_UPSTREAM_LINGER=2,
                RANKWISE_AGENT_IDLE_TIMEOUT=0.5,
            )
        ]
    )
    assert code == 0, err
    assert out.split() == [str(ROWS), "0"]
    node = c.node("node-a")
    wait_for(lambda: agent_pid(node) is None, timeout_s=30, what="the node agent to give up and exit")
    assert "has not answered for" in agent_log(node) and "record(s) kept in" in agent_log(node)
    spool = Path(node.data) / "spool"
    assert any(p.name.startswith("seg-") for p in spool.iterdir())

    c.start_root()
    c.start_node_agent("node-a")
    check_exactly_once(c, "mngone", "job-gone", {0: ROWS}, lambda r, s: s.astype(float))
