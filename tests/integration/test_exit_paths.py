"""Scripts that never call finish(): the exit hooks finish the run with the process's exit code,
deliver every row (the pending one included), and the process exits without hanging."""

from __future__ import annotations

import signal

import numpy as np
import pytest

import rankwise
from support.probes import raw_steps, read_line, start_script, wait_for
from support.processes import communicate

BODY = """
import sys, rankwise
run = rankwise.init(project="exit")
for s in range(300):
    run.log({"x": s * 0.5})
run.log({"tail": 7}, commit=False)      # pending: committed by the exit hook's finish
"""

ENDINGS = {
    "falls-off-the-end": ("", 0, "finished", 0),
    "raises": ("raise RuntimeError('boom')", 1, "failed", 1),
    "sys-exit-3": ("sys.exit(3)", 3, "failed", 3),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_exit_without_finish(rankwise_env, ending):
    """A script logs 300 rows plus a pending row and then ends without finish() (normal end,
    uncaught exception, sys.exit(3)): the process exits with its own status within the
    subprocess timeout, the run is finished / failed / failed with exit code 0 / 1 / 3, and all
    301 rows are stored once (the pending row at step 300)."""
    tail, rc, state, code = ENDINGS[ending]
    group = f"g-{ending}"
    proc = start_script(rankwise_env, BODY + tail, {"RANKWISE_GROUP": group})
    out, err = communicate(proc, 60)
    assert proc.returncode == rc, err
    if rc == 1:
        assert "RuntimeError: boom" in err
    assert "timed out" not in err
    _check_run(rankwise_env, group, state, code)


def test_sigterm_kills_at_once_and_the_run_becomes_crashed(rankwise_env):
    """By default SIGTERM keeps the kernel's action: the process dies at once (status -15), the agent
    sees its pid gone and marks the run crashed, committing its pending row; every row the agent had
    acknowledged (all of them: the script flushed) is stored."""
    script = BODY + "assert run.flush(30)\nprint('logged', flush=True)\nimport time\ntime.sleep(120)\n"
    proc = start_script(rankwise_env, script, {"RANKWISE_GROUP": "g-kill"})
    try:
        assert read_line(proc, what="logged") == "logged"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGTERM
    wait_for(lambda: rankwise.Api().group("exit", "g-kill").run(rank=0).state == "crashed", what="crashed state")
    _check_run(rankwise_env, "g-kill", "crashed", None)


def test_opt_in_sigterm_handler_finishes_the_run_as_failed(rankwise_env):
    """With RANKWISE_HANDLE_SIGTERM=1 the handler finishes the run with code 143 (128 + SIGTERM),
    delivers every row, then lets the signal kill the process (status -15)."""
    script = BODY + "print('logged', flush=True)\nimport time\ntime.sleep(120)\n"
    proc = start_script(rankwise_env, script, {"RANKWISE_GROUP": "g-term", "RANKWISE_HANDLE_SIGTERM": "1"})
    try:
        assert read_line(proc, what="logged") == "logged"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGTERM
    _check_run(rankwise_env, "g-term", "failed", 143)


def _check_run(env, group: str, state: str, code: int) -> None:
    run = rankwise.Api().group("exit", group).run(rank=0)
    assert (run.state, run.exit_code, run.rows, run.step) == (state, code, 301, 301)
    assert np.array_equal(raw_steps(env, "exit", group, "rank-0", "x"), np.arange(300))
    assert np.array_equal(raw_steps(env, "exit", group, "rank-0", "tail"), [300])
    assert np.array_equal(raw_steps(env, "exit", group, "rank-0", "_timestamp"), np.arange(301))
    cols = run.history_arrays(["x", "tail"])
    assert np.array_equal(cols["x"][1], np.arange(300) * 0.5)
    assert list(cols["tail"][1]) == [7]
