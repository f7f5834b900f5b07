"""User alerts (``run.alert``, wandb's): the client checks the arguments and applies ``wait_duration``
(client/wandb_surface.py); the agent that stores raises ``Alert(kind="user")`` from the ``alert`` control op
(agent/alerts/user.py): a single agent (in-process, tests/support/agentsim.py), a root applying what node
agents forward (tests/support/mnsim.py; real processes: tests/support/mncluster.py), and a real agent
spawned by real ranks (``Group.alerts``)."""

from __future__ import annotations

import datetime
import json
import sys

import numpy as np
import pytest

import rankwise
from agent.alerts.user import UserAlerts
from agent.plugged import plug
from client.ops import CONTROL
from support import frames
from support.agentsim import AgentSim
from support.mncluster import Cluster, root_group
from support.mnsim import Sim, hello
from support.probes import wait_for
from support.processes import run_ranks, wait_all


def plugged(sim: AgentSim) -> AgentSim:
    """The sim's agent with the parts a single agent gets (agent/plugged.py), unless the harness plugged them."""
    if not isinstance(sim.ingest.applier.user_alert, UserAlerts):
        plug(sim.ingest, "single")
    return sim


def op(title: str = "disk", text: str = "full", level: str = "WARN", t: float = 1_000_000.5, step: int = 3) -> dict:
    return {"title": title, "text": text, "level": level, "wait": 60.0, "t": t, "step": step}


def test_an_alert_op_is_stored_once_even_when_its_batch_is_sent_again(monkeypatch):
    """Rank 1 of 2 logs steps 0–2 and an alert op in one batch: the store holds exactly one ``user`` alert
    with the rank, key = title, message = text, level and step of the op. The agent is killed before it
    acknowledged a second batch holding the same op again (same ``t``, a client's resend): still one alert. A
    later op with the same title and another ``t`` (past its wait_duration) is a second alert."""
    sim = plugged(AgentSim(monkeypatch))
    sim.join(0, 2)
    r1 = sim.join(1, 2)
    r1.log([0, 1, 2], x=[1.0, 2.0, 3.0])
    r1.control("alert", op())
    r1.send()
    sim.settle()
    gid = sim.group().id
    want = {
        "kind": "user",
        "level": "WARN",
        "rank": 1,
        "key": "disk",
        "step": 3,
        "time": sim.clock.now,
        "message": "full",
        "details": {"title": "disk", "wait_duration": 60.0, "sent": 1_000_000.5},
    }
    assert sim.store.alerts(gid) == [want]
    assert sim.status()["alerts"] == 1
    r1.control("alert", op())  # the same op again: what a resend after an agent restart carries
    r1.send()
    sim.restart()
    plugged(sim)
    r1.resend()
    sim.settle()
    assert sim.store.alerts(gid) == [want]
    r1.control("alert", op(text="still full", t=1_000_100.0, step=9))
    r1.send()
    sim.settle()
    assert [(a["message"], a["step"]) for a in sim.store.alerts(gid)] == [("full", 3), ("still full", 9)]


@pytest.mark.parametrize(
    "bad",
    [
        op(level="LOUD"),
        op(title=""),
        op(title="x" * 257),
        dict(op(), step=-1),
        dict(op(), t="now"),
        "disk full",
    ],
)
def test_a_malformed_alert_op_is_counted_and_raises_nothing(monkeypatch, bad):
    """An ``alert`` op not of the documented shape (agent/alerts/user.py ``checked``) raises no alert and is
    counted as malformed; the batch's rows are stored all the same."""
    sim = plugged(AgentSim(monkeypatch))
    r0 = sim.join(0, 1)
    r0.log([0], x=[1.0])
    r0.control("alert", bad)
    r0.send()
    sim.settle()
    assert sim.store.alerts(sim.group().id) == []
    assert sim.status()["malformed"] == {"alert op not a map of title, text, level, t, step, wait": 1}
    assert list(sim.history(r0, "x")[1]) == [1.0]


def test_a_node_agent_forwards_the_alert_and_the_root_raises_it(tmp_path):
    """Through a node agent: the node raises nothing (it stores no alerts), the root applies the forwarded
    batch and stores the alert, with the rank of the node's run, in its SQLite store (``Reader.alerts``)."""
    sim = Sim(tmp_path, nodes=1)
    node = sim.nodes[0]
    node.send(hello("w3", 3, 4, "job", node.name, 11))
    ctl = [["alert", op(title="loss spike", text="loss 9.1 at step 7", level="ERROR", step=7)]]
    node.send(frames.batch("w3", 1, np.arange(7), {"loss": np.ones(7)}, ctl=ctl))
    sim.cycle()
    sim.cycle()
    assert node.ingest.alerts.raised == 0
    reader, g = sim.group("job")
    got = reader.alerts(g.id)
    assert [(a["kind"], a["rank"], a["key"], a["level"], a["step"], a["message"]) for a in got] == [
        ("user", 3, "loss spike", "ERROR", 7, "loss 9.1 at step 7")
    ]


def captured(monkeypatch) -> tuple[rankwise.Run, list]:
    """A disabled run whose ops are kept in a list (what the writer's deque would get)."""
    run = rankwise.init(project="p", group="g", mode="disabled")
    ops: list = []
    monkeypatch.setattr(run, "_push", ops.append)
    return run, ops


def test_run_alert_sends_one_op_per_title_per_wait_duration(monkeypatch):
    """``run.alert`` sends an ``alert`` control op with the title, text, level (AlertLevel or its name, any
    case), wait (60 s by default, a timedelta in seconds) and ``run.step``; a second call with the same title
    within wait_duration sends nothing, another title does; ``wait_duration=0`` never suppresses."""
    run, ops = captured(monkeypatch)
    run.log({"x": 1.0})
    run.alert("a", "one", level=rankwise.AlertLevel.ERROR)
    run.alert("a", "two")
    run.alert("b", "three", level="warn", wait_duration=datetime.timedelta(minutes=2))
    run.alert("c", "four", wait_duration=0)
    run.alert("c", "five", wait_duration=0)
    alerts = [o[2] for o in ops if o[0] == CONTROL and o[1] == "alert"]
    assert [(a["title"], a["text"], a["level"], a["wait"], a["step"]) for a in alerts] == [
        ("a", "one", "ERROR", 60.0, 1),
        ("b", "three", "WARN", 120.0, 1),
        ("c", "four", "INFO", 0.0, 1),
        ("c", "five", "INFO", 0.0, 1),
    ]
    assert all(isinstance(a["t"], float) for a in alerts)
    run.finish()


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"title": 3, "text": "x"}, "title="),
        ({"title": "", "text": "x"}, "title="),
        ({"title": "t", "text": None}, "text="),
        ({"title": "t", "text": "x", "level": "LOUD"}, "level="),
        ({"title": "t", "text": "x", "level": 2}, "level="),
        ({"title": "t", "text": "x", "wait_duration": -1}, "wait_duration="),
        ({"title": "t", "text": "x", "wait_duration": "1m"}, "wait_duration="),
    ],
)
def test_run_alert_rejects_bad_arguments_naming_them(monkeypatch, kwargs, names):
    """A bad argument raises InvalidArgumentError naming it (``run.alert(level=...)``), and nothing is sent."""
    run, ops = captured(monkeypatch)
    with pytest.raises(rankwise.InvalidArgumentError, match=rf"run\.alert\({names}"):
        run.alert(**kwargs)
    assert ops == []
    run.finish()


ALERTING = """
import rankwise
run = rankwise.init(project="al")
for step in range(5):
    run.log({"loss": 1.0 / (step + 1)})
    if step == 3:
        rankwise.alert(title="plateau", text="loss flat for 3 steps", level=rankwise.AlertLevel.INFO)
run.finish()
"""


def test_module_level_alert_reaches_group_alerts_of_a_real_agent(rankwise_env):
    """Two real ranks call ``rankwise.alert`` after logging step 3: ``Group.alerts`` holds both, newest last,
    each with its rank and step 4 (``run.step`` then), and ``RunView.alerts`` only its own rank's."""
    run_ranks(rankwise_env, ALERTING, 2, "job-u")
    g = rankwise.Api(str(rankwise_env.store)).group("al", "job-u")
    got = g.alerts
    assert sorted((a["rank"], a["kind"], a["key"], a["level"], a["step"], a["message"]) for a in got) == [
        (0, "user", "plateau", "INFO", 4, "loss flat for 3 steps"),
        (1, "user", "plateau", "INFO", 4, "loss flat for 3 steps"),
    ]
    assert [a["time"] for a in got] == sorted(a["time"] for a in got)
    assert [[a["rank"] for a in r.alerts] for r in sorted(g.runs, key=lambda r: r.rank)] == [[0], [1]]


NODE_SCRIPT = """
import os, rankwise
run = rankwise.init(project="mn")
run.log({"x": 1.0})
rankwise.alert("from " + os.environ["SLURMD_NODENAME"], "rank " + os.environ["RANK"], level="ERROR")
run.finish()
"""


def test_alerts_of_ranks_behind_node_agents_are_stored_and_sent_by_the_root(rankwise_env, tmp_path):
    """Real processes: a root with RANKWISE_ALERT_CMD, two node agents, one rank on each calling
    ``rankwise.alert``: the root stores both alerts (rank, title, text, step 1) and its command gets both;
    the node agents have no alert sinks (``alert_sinks`` absent from their status)."""

    out = tmp_path / "alerts.jsonl"
    sink = tmp_path / "sink.py"
    sink.write_text("import sys\nwith open(sys.argv[1], 'ab') as f:\n    f.write(sys.stdin.buffer.read() + b'\\n')\n")
    cluster = Cluster(rankwise_env, tmp_path, RANKWISE_ALERT_CMD=f"{sys.executable} {sink} {out}")
    try:
        cluster.start_root()
        procs = [cluster.start_rank(node, NODE_SCRIPT, rank, 2, "job-mn") for rank, node in enumerate(("a", "b"))]
        assert [code for code, _, _ in wait_all(procs)] == [0, 0]

        def stored():
            g = root_group(cluster, "mn", "job-mn")
            return g is not None and len(g.alerts) == 2 and g.alerts

        got = wait_for(stored, timeout_s=60.0, what="both alerts at the root")
        assert sorted((a["rank"], a["kind"], a["key"], a["message"], a["step"], a["level"]) for a in got) == [
            (0, "user", "from a", "rank 0", 1, "ERROR"),
            (1, "user", "from b", "rank 1", 1, "ERROR"),
        ]
        sent = wait_for(lambda: len(out.read_text().splitlines()) == 2 if out.exists() else False, what="sent")
        assert sent
        lines = sorted(json.loads(line)["key"] for line in out.read_text().splitlines())
        assert lines == ["from a", "from b"]
        for node in ("a", "b"):
            assert "alert_sinks" not in cluster.status(node)
    finally:
        cluster.stop()
