"""A stalled agent (SIGSTOP, as under a debugger or heavy swapping) must not stall training: log()
keeps returning while nothing is acknowledged, and once the agent runs again every row arrives."""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np

import rankwise
from support.probes import raw_steps, read_line, start_script, status
from support.processes import agent_pid, communicate

SCRIPT = """
import json, signal, rankwise
run = rankwise.init(project="stall", group="g-stall")
calls = 0
marks = {}
def mark(signum, frame):
    marks[signum] = calls
signal.signal(signal.SIGUSR1, mark)
signal.signal(signal.SIGUSR2, mark)
while calls < 2000:
    run.log({"x": calls})
    calls += 1
assert run.flush(30)
print("started", flush=True)
announced = False
while signal.SIGUSR2 not in marks or calls < marks[signal.SIGUSR2] + 2000:   # a tight loop
    run.log({"x": calls})
    calls += 1
    if not announced and signal.SIGUSR1 in marks:
        announced = True
        print("stalled", flush=True)
run.finish()
print(json.dumps({"calls": calls, "during": marks[signal.SIGUSR2] - marks[signal.SIGUSR1],
                  "sent": run.stats["rows_sent"], "unacked": run.stats["unacked_rows"],
                  "resent": run.stats["rows_resent"], "hellos": run.stats["hellos"]}), flush=True)
"""


def test_log_never_blocks_while_the_agent_is_stopped(rankwise_env):
    """A rank logs in a tight loop; the agent is SIGSTOPped for about a second (bracketed by
    SIGUSR1/SIGUSR2 to the rank, which record its call count) and then SIGCONTinued. The rank
    made log() calls during the stall (count > 0: it was not blocked), finish() returns, every
    call is stored exactly once (as its own row or inside one span the client coalesced it into when the
    loop outran delivery, with exact count/last/min/max), and the agent counts no malformed frames. With the retry
    period at 0.2 s the writer says HELLO again during the stall; the connection never broke, so
    the queued HELLOs' answers replay nothing (no resend storm)."""
    rank = start_script(rankwise_env, SCRIPT, {"RANKWISE_RETRY_AFTER": "0.2"})
    agent = None
    try:
        assert read_line(rank, what="started") == "started"
        agent = agent_pid(rankwise_env)
        os.kill(agent, signal.SIGSTOP)
        rank.send_signal(signal.SIGUSR1)
        assert read_line(rank, what="the rank to see the stall begin") == "stalled"
        time.sleep(1.0)  # the length of the stall, not an assertion
        rank.send_signal(signal.SIGUSR2)
        os.kill(agent, signal.SIGCONT)
        out, err = communicate(rank, 120)
    finally:
        if agent is not None:
            os.kill(agent, signal.SIGCONT)
        if rank.poll() is None:
            rank.kill()
    assert rank.returncode == 0, err
    result = json.loads(out.splitlines()[-1])
    calls = result["calls"]
    assert result["during"] > 0
    assert (result["sent"], result["unacked"]) == (calls, 0)
    assert result["hellos"] > 1  # the stall was long enough to make the writer ask again
    assert result["resent"] == 0

    run = rankwise.Api().group("stall", "g-stall").run(rank=0)
    assert (run.state, run.rows, run.step) == ("finished", calls, calls)
    # a tight loop outruns the I/O thread, more so while nothing is acknowledged: past max_queued_bytes the
    # client folds rows into spans (client/coalesce.py). Every call is still there exactly once: as a row
    # of its own, or inside one span (x == the call's index, so a span's aggregates are known exactly)
    sp = run.coalesced("x")
    ends = sp.get("step", np.empty(0, np.int64))
    stored = raw_steps(rankwise_env, "stall", "g-stall", "rank-0", "x")  # rows and span ends, duplicates kept
    assert np.array_equal(np.unique(stored), stored)  # nothing stored twice
    own = np.setdiff1d(stored, ends)
    covered = np.zeros(calls, dtype=np.int64)
    covered[own] += 1
    for lo, hi, n, last, lowest, highest in zip(
        sp.get("first_step", []), ends, sp.get("count", []), sp.get("last", []), sp.get("min", []), sp.get("max", [])
    ):
        assert (n, last, lowest, highest) == (hi - lo + 1, hi, lo, hi)
        covered[lo : hi + 1] += 1
    assert np.array_equal(covered, np.ones(calls, dtype=np.int64))
    steps, values = run.history_arrays(["x"])["x"]
    assert np.array_equal(values, steps)  # a row's value is its call index; a span's row holds its last
    st = status(rankwise_env)
    assert st["malformed"] == {}
    assert st["counters"]["rows"] == calls
