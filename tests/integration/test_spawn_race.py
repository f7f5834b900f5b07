"""Eight ranks call init() at the same instant on a node with no agent: they serialise on the
spawn lock, exactly one agent is started, and every rank's rows reach it."""

from __future__ import annotations

import json

import numpy as np

import rankwise
from support.probes import agent_log, agent_processes, raw_steps, wait_for
from support.processes import start_ranks, wait_all

WORLD, STEPS = 8, 500

SCRIPT = """
import json, os, sys, time
from pathlib import Path
import rankwise
from client import spawn
go = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ["RW_GO_FILE"])
print("ready", flush=True)
while not go.exists():          # every rank is imported and waiting: init() starts together
    time.sleep(0.001)
run = rankwise.init(project="race")
rank = run.rank
for s in range(%(steps)d):
    run.log({"x": rank * 100000 + s})
info = spawn.read_info(run.settings.runtime_dir)
run.finish()
print(json.dumps({"agent": info["pid"], "sent": run.stats["rows_sent"], "acked": run.stats["unacked_rows"] == 0}))
"""


def test_eight_simultaneous_inits_start_exactly_one_agent(rankwise_env, tmp_path):
    """No agent is running; 8 ranks released by one go-file call init() together. Exactly one
    agent process exists for this runtime dir (psutil, while the ranks run and after), only one
    agent ever served (agent.log), every rank talked to that agent, and each run's 500 rows are
    stored exactly once with the logged values."""
    go = tmp_path / "go"
    assert agent_processes(rankwise_env) == []
    procs = start_ranks(rankwise_env, SCRIPT % {"steps": STEPS}, WORLD, "race-1", RW_GO_FILE=go)
    for p in procs:
        line = p.stdout.readline().strip()
        assert line == "ready", f"rank did not start: {line!r} {p.stderr.read() if not line else ''}"
    go.touch()
    # while the ranks run: one agent (wait_for also tolerates the instant before --detach's parent exits)
    wait_for(lambda: len(agent_processes(rankwise_env)) == 1, what="exactly one agent process")
    results = wait_all(procs, timeout_s=120)
    for rank, (code, out, err) in enumerate(results):
        assert code == 0, f"rank {rank} exited {code}\n{out}\n{err}"
    reports = [json.loads(out.strip().splitlines()[-1]) for _, out, _ in results]

    agents = agent_processes(rankwise_env)
    assert len(agents) == 1, [a.cmdline() for a in agents]
    agent_pid = agents[0].pid
    assert {r["agent"] for r in reports} == {agent_pid}
    assert [r["sent"] for r in reports] == [STEPS] * WORLD
    assert all(r["acked"] for r in reports)
    log = agent_log(rankwise_env)
    assert log.count(" serving ") == 1, log
    assert "another agent holds" not in log, log

    group = rankwise.Api().group("race", "race-1")
    runs = group.runs
    assert [r.rank for r in runs] == list(range(WORLD))
    assert {r.state for r in runs} == {"finished"}
    for run in runs:
        assert run.rows == STEPS
        assert np.array_equal(raw_steps(rankwise_env, "race", "race-1", run.name, "x"), np.arange(STEPS))
        steps, values = run.history_arrays(["x"])["x"]
        assert np.array_equal(values, run.rank * 100000 + np.arange(STEPS))
