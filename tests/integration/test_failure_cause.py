"""A failed rank says why: the exception that ended its process (or one of its threads) travels with its
finish op (client/failure.py, client/state.py hooks) and is kept with the run (``RunView.exception``,
``rankwise runs --json``), for real training processes started like torchrun's."""

from __future__ import annotations

import json

import rankwise
from support.probes import cli
from support.processes import start_ranks, wait_all

# Each rank fails (or not) its own way, after logging three steps:
#   0 raises ValueError in a function of the script (uncaught: the process exits 1);
#   1 loses its "loader" thread to a RuntimeError, then exits 3 (sys.exit);
#   2 raises KeyError inside ``with init() as run`` and catches it outside (the process exits 0);
#   3 exits 2 without an exception;  4 finishes.
SCRIPT = """
import os, sys, threading
import rankwise

rank = int(os.environ["RANK"])


def train_step(step):
    if rank == 0 and step == 3:
        raise ValueError(f"loss diverged at step {step}")


def load():
    raise RuntimeError("loader died")


if rank == 2:
    try:
        with rankwise.init(project="fail") as run:
            run.log({"x": 1.0})
            raise KeyError("missing batch")
    except KeyError:
        sys.exit(0)
run = rankwise.init(project="fail")
for step in range(4):
    train_step(step)
    if step < 3:
        run.log({"x": float(step)})
if rank == 1:
    t = threading.Thread(target=load, name="loader")
    t.start()
    t.join()
    sys.exit(3)
if rank == 3:
    sys.exit(2)
"""


def test_a_failed_rank_carries_its_exception_type_message_and_traceback(rankwise_env):
    """Five ranks (script above): rank 0 is ``failed`` with exit code 1 and exception ``ValueError`` /
    ``loss diverged at step 3`` whose traceback names ``train_step`` and ends with that line; rank 1 exits 3
    with the thread's ``RuntimeError: loader died`` (``thread`` "loader"); rank 2 is failed with exit code 1
    by its with-block (``KeyError`` "'missing batch'") though its process exited 0; rank 3 (``sys.exit(2)``)
    is failed with no exception; rank 4 finished, no exception. ``rankwise runs --json`` shows the same."""
    results = wait_all(start_ranks(rankwise_env, SCRIPT, 5, "job-fail"))
    assert [code for code, _, _ in results] == [1, 3, 0, 2, 0], [err[-800:] for _, _, err in results]
    runs = {r.rank: r for r in rankwise.Api(str(rankwise_env.store)).group("fail", "job-fail").runs}
    assert [(runs[r].state, runs[r].exit_code) for r in range(5)] == [
        ("failed", 1),
        ("failed", 3),
        ("failed", 1),
        ("failed", 2),
        ("finished", 0),
    ]
    e0 = runs[0].exception
    assert (e0["type"], e0["message"]) == ("ValueError", "loss diverged at step 3") and "thread" not in e0
    assert "in train_step" in e0["traceback"]
    assert e0["traceback"].endswith("ValueError: loss diverged at step 3\n")
    e1 = runs[1].exception
    assert (e1["type"], e1["message"], e1["thread"]) == ("RuntimeError", "loader died", "loader")
    assert "in load" in e1["traceback"]
    e2 = runs[2].exception
    assert (e2["type"], e2["message"]) == ("KeyError", "'missing batch'")
    assert runs[3].exception is None and runs[4].exception is None

    shown = json.loads(cli(rankwise_env, "runs", "job-fail", "--project", "fail", "--json").stdout)
    assert [r["exception"] for r in sorted(shown, key=lambda r: r["rank"])] == [runs[r].exception for r in range(5)]


RESUME = """
import os, sys
import rankwise

run = rankwise.init(project="fail", name="resumable", resume="allow")
run.log({"x": 1.0})
if os.environ.get("FAIL") == "1":
    raise OSError("disk gone")
"""


def test_a_resumed_run_that_finishes_forgets_its_last_failure(rankwise_env):
    """A run fails (``OSError: disk gone``), then the same run resumes (``resume="allow"``) and finishes:
    it is ``finished`` with exit code 0 and no exception (the failure belonged to the incarnation before)."""
    ((code, _, err),) = wait_all(start_ranks(rankwise_env, RESUME, 1, "job-resume", FAIL="1"))
    assert code == 1, err[-800:]
    (run,) = rankwise.Api(str(rankwise_env.store)).group("fail", "job-resume").runs
    assert (run.state, run.exception["type"], run.exception["message"]) == ("failed", "OSError", "disk gone")
    ((code, _, err),) = wait_all(start_ranks(rankwise_env, RESUME, 1, "job-resume", FAIL="0"))
    assert code == 0, err[-800:]
    (run,) = rankwise.Api(str(rankwise_env.store)).group("fail", "job-resume").runs
    assert (run.state, run.exit_code, run.incarnations, run.exception) == ("finished", 0, 2, None)
