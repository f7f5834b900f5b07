"""A run's process forks (os.fork, multiprocessing with the fork start method): a child that logs
gets its own writer and connection, its rows join the same run, and the parent's logging,
finish() and run state are not disturbed."""

from __future__ import annotations

import json

import numpy as np

import rankwise
from support.probes import raw_steps, start_script

FORK_SCRIPT = """
import json, os, sys, rankwise
from rankwise._control import request
run = rankwise.init(project="fork")
for s in range(100):
    run.log({"p": s})
kids = []
pid = os.fork()
if pid == 0:                       # child A: logs, flushes, leaves through os._exit
    for i in range(50):
        run.log({"a": 1000 + i})
    ok = run.flush(30)
    print(json.dumps({"child": "a", "sent": run.stats["rows_sent"], "pid": os.getpid()}), flush=True)
    os._exit(0 if ok else 7)
kids.append(pid)
pid = os.fork()
if pid == 0:                       # child B: logs and exits normally; the exit hook flushes
    for i in range(50):
        run.log({"b": 2000 + i})
    print(json.dumps({"child": "b", "sent": len(range(50)), "pid": os.getpid()}), flush=True)
    sys.exit(0)
kids.append(pid)
for s in range(100, 200):          # the parent keeps logging while the children do
    run.log({"p": s})
codes = [os.waitstatus_to_exitcode(os.waitpid(k, 0)[1]) for k in kids]
before = request("status")
run.finish()
print(json.dumps({"parent": codes, "sent": run.stats["rows_sent"], "unacked": run.stats["unacked_rows"],
                  "writers": before["writers"]}), flush=True)
"""


def test_forked_children_log_through_their_own_writers(rankwise_env):
    """Parent logs p at steps 0..199; after step 99 it forks child A (logs a, flush, os._exit)
    and child B (logs b, exits normally). Each child's 50 rows are stored (steps 100..149, the
    step the run had at the fork) through its own writer (three writers known to the agent),
    the parent's 200 rows are complete and in its own stats only, and finish() marks the run
    finished: rows stored == 200 + 50 + 50 sent, each step once."""
    proc = start_script(rankwise_env, FORK_SCRIPT, {"RANKWISE_GROUP": "g-fork"})
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    parent = next(x for x in lines if "parent" in x)
    children = {x["child"]: x for x in lines if "child" in x}
    assert parent["parent"] == [0, 0]
    assert (parent["sent"], parent["unacked"], parent["writers"]) == (200, 0, 3)
    assert children["a"]["sent"] == 50 and children["b"]["sent"] == 50
    assert len({children["a"]["pid"], children["b"]["pid"], proc.pid}) == 3

    run = rankwise.Api().group("fork", "g-fork").run(rank=0)
    assert (run.state, run.exit_code, run.rows, run.step) == ("finished", 0, 300, 200)
    assert np.array_equal(raw_steps(rankwise_env, "fork", "g-fork", "rank-0", "p"), np.arange(200))
    assert np.array_equal(raw_steps(rankwise_env, "fork", "g-fork", "rank-0", "a"), np.arange(100, 150))
    assert np.array_equal(raw_steps(rankwise_env, "fork", "g-fork", "rank-0", "b"), np.arange(100, 150))
    cols = run.history_arrays(["p", "a", "b"])
    assert np.array_equal(cols["p"][1], np.arange(200))
    assert np.array_equal(cols["a"][1], 1000 + np.arange(50))
    assert np.array_equal(cols["b"][1], 2000 + np.arange(50))
    assert run.summary == {"p": 199, "a": 1049, "b": 2049}


MP_SCRIPT = """
import json, multiprocessing as mp, rankwise

def work(i, n):
    for s in range(n):
        rankwise.log({"m%d" % i: i * 1000 + s})

if __name__ == "__main__":
    run = rankwise.init(project="fork")
    for s in range(100):
        run.log({"p": s})
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=work, args=(i, 40 + i)) for i in range(3)]
    for p in procs:
        p.start()
    for s in range(100, 150):
        run.log({"p": s})
    for p in procs:
        p.join(60)
    run.finish()
    print(json.dumps({"codes": [p.exitcode for p in procs], "sent": run.stats["rows_sent"]}))
"""


def test_multiprocessing_fork_workers_rows_are_stored(rankwise_env, tmp_path):
    """Three multiprocessing workers (fork start method) log 40, 41 and 42 rows with the
    module-level rankwise.log and return; multiprocessing ends them with os._exit, and their
    rows are still delivered (flushed by a multiprocessing finalizer). Stored rows == 150 from
    the parent + 123 from the workers, every step once, and the run finishes normally."""
    script = tmp_path / "mp_script.py"
    script.write_text(MP_SCRIPT)
    proc = start_script(
        rankwise_env, f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')", {"RANKWISE_GROUP": "g-mp"}
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    result = json.loads(out.splitlines()[-1])
    assert result == {"codes": [0, 0, 0], "sent": 150}
    run = rankwise.Api().group("fork", "g-mp").run(rank=0)
    assert (run.state, run.exit_code, run.rows) == ("finished", 0, 150 + 40 + 41 + 42)
    assert np.array_equal(raw_steps(rankwise_env, "fork", "g-mp", "rank-0", "p"), np.arange(150))
    cols = run.history_arrays()
    for i in range(3):
        steps = raw_steps(rankwise_env, "fork", "g-mp", "rank-0", f"m{i}")
        assert np.array_equal(steps, np.arange(100, 140 + i))
        assert np.array_equal(cols[f"m{i}"][1], i * 1000 + np.arange(40 + i))


CHILD_EXIT_SCRIPT = """
import json, multiprocessing as mp, os, signal, sys, time, rankwise
from rankwise._control import request

def square(x):
    return x * x

if __name__ == "__main__":
    run = rankwise.init(project="fork")
    for s in range(100):
        run.log({"p": s})
    assert run.flush(30)
    silent = os.fork()
    if silent == 0:                 # never logs, exits normally: runs the exit hooks it inherited
        sys.exit(0)
    sleeper = os.fork()
    if sleeper == 0:                # stopped the way torchrun and Pool.terminate() stop workers
        time.sleep(60)
        os._exit(0)
    os.waitpid(silent, 0)
    os.kill(sleeper, signal.SIGTERM)   # its handler is the one it inherited, whenever the signal lands
    os.waitpid(sleeper, 0)
    with mp.get_context("fork").Pool(2) as pool:   # __exit__ terminates the workers
        assert pool.map(square, range(8)) == [x * x for x in range(8)]
    run.log({"p": 100})
    assert run.flush(30)
    st = request("status")
    print(json.dumps({"runs": st["runs"]}), flush=True)
    run.finish()
"""


def test_forked_children_exiting_do_not_finish_the_parents_run(rankwise_env, tmp_path):
    """Children that exit (a silent os.fork child leaving through sys.exit, a child stopped by
    SIGTERM, multiprocessing Pool workers terminated by the pool's __exit__) run the exit hooks
    they inherited; those must not finish the parent's run nor print warnings: while the parent
    still logs, the agent reports the run running, and it ends finished with 101 rows."""
    script = tmp_path / "child_exit.py"
    script.write_text(CHILD_EXIT_SCRIPT)
    proc = start_script(
        rankwise_env,
        f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')",
        {"RANKWISE_GROUP": "g-exit"},
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(out.splitlines()[-1]) == {"runs": {"running": 1}}
    assert "rankwise" not in err, err
    run = rankwise.Api().group("fork", "g-exit").run(rank=0)
    assert (run.state, run.exit_code, run.rows) == ("finished", 0, 101)
