"""Rate limiting by coalescing: a rank calling log() in a tight loop never blocks, the agent's memory
stays bounded, and the stored rows account for every call: spans carry their first step, row count,
last, mean, min and max, checked exactly against the values the rank logged."""

from __future__ import annotations

import json
import threading

import numpy as np
import psutil

import rankwise
from support.probes import read_line, start_script
from support.processes import agent_pid, communicate

SCRIPT = """
import json, time, rankwise
t_start = time.perf_counter()
run = rankwise.init(project="rl", group="g-rl")
run.define_metric("exact", rate_limit=False)
print("ready", flush=True)
calls, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < 3.0:        # a tight loop for several seconds
    run.log({"x": float(calls), "exact": calls})
    calls += 1
run.finish()
print(json.dumps({"calls": calls, "stats": run.stats, "elapsed": time.perf_counter() - t_start}), flush=True)
"""


def test_tight_loop_coalesces_and_every_call_is_accounted_for(rankwise_env):
    """With a 500 rows/s budget, a 3 s tight loop (hundreds of thousands of calls) is stored as at most the
    budget's row records (one _timestamp each: its burst, 500 a second, and a span per batch beyond). Every record is either a logged row or a span whose
    _rows says how many calls it stands for: the sum equals the calls. For x (x = call index, steps consecutive) each span's
    first step, count, last, min, max and mean are exact; the key that opted out (define_metric
    rate_limit=False) has every value. The agent's RSS stays under 200 MB throughout, and sent ==
    acknowledged (the loop never waited for the agent)."""
    # the agent's rate limiter is under test: the client must not coalesce first (its op queue over
    # max_queued_bytes: client/coalesce.py, tested in tests/client/test_overload_coalescing.py)
    rank = start_script(rankwise_env, SCRIPT, {"RANKWISE_ROWS_PER_S": "500", "RANKWISE_MAX_QUEUED_BYTES": "4G"})
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        pid = agent_pid(rankwise_env)
        proc = psutil.Process(pid)
        while not stop.wait(0.05):
            try:
                peak[0] = max(peak[0], proc.memory_info().rss)
            except psutil.NoSuchProcess:
                return

    try:
        assert read_line(rank, what="ready") == "ready"
        sampler = threading.Thread(target=sample)
        sampler.start()
        out, err = communicate(rank, 120)
    finally:
        stop.set()
        if rank.poll() is None:
            rank.kill()
    sampler.join()
    assert rank.returncode == 0, err
    result = json.loads(out.splitlines()[-1])
    calls = result["calls"]
    assert result["stats"]["unacked_rows"] == 0 and result["stats"]["rows_sent"] == calls
    assert calls > 20000  # the loop really was tight, so the budget had to act
    assert 0 < peak[0] < 200 << 20

    run = rankwise.Api().group("rl", "g-rl").run(rank=0)
    assert (run.state, run.rows, run.step) == ("finished", calls, calls)
    cols = run.history_arrays(["_rows"])
    ts_steps = cols["_timestamp"][0]  # one stored row record per step that has a time
    span_steps, span_rows = cols["_rows"]
    represented = int(span_rows.sum()) + len(np.setdiff1d(ts_steps, span_steps))
    assert represented == calls
    # coalesced for real, as the budget says: the agent's token bucket (500 rows/s, 2 s burst) lets through at
    # most its burst plus 500 rows a second of the run's life, and each batch past it becomes at least one
    # span (however loaded the machine, whatever the call rate)
    assert len(ts_steps) <= 1000 + 500 * result["elapsed"] + result["stats"]["batches_sent"] < calls
    spans = run.coalesced("x")
    first, last, count = spans["first_step"], spans["step"], spans["count"]
    assert len(count) and (count > 1).any()
    assert np.array_equal(count, last - first + 1)
    assert np.array_equal(spans["min"], first.astype(float)) and np.array_equal(spans["max"], last.astype(float))
    assert np.array_equal(spans["last"], last.astype(float))
    np.testing.assert_allclose(spans["mean"], (first + last) / 2.0, rtol=1e-12)
    x_steps, _ = run.history_arrays(["x"])["x"]
    assert count.sum() + len(np.setdiff1d(x_steps, last)) == calls
    steps, values = run.history_arrays(["exact"])["exact"]
    assert np.array_equal(steps, np.arange(calls)) and np.array_equal(values, np.arange(calls))
    assert run.coalesced("exact") == {}
    # the group rows are computed from the raw values: one per step
    g = rankwise.Api().group("rl", "g-rl")
    assert np.array_equal(g.history("x")["step"], np.arange(calls))


def test_under_the_budget_nothing_is_coalesced(rankwise_env):
    """A run logging below its budget keeps every row as logged (no _rows, no spans)."""
    rank = start_script(
        rankwise_env,
        "import rankwise\nrun = rankwise.init(project='rl', group='g-slow')\n"
        "for s in range(300):\n    run.log({'x': s})\nrun.finish()\n",
        {"RANKWISE_ROWS_PER_S": "1000"},
    )
    out, err = communicate(rank, 60)
    assert rank.returncode == 0, err
    run = rankwise.Api().group("rl", "g-slow").run(rank=0)
    rows = run.history()
    assert len(rows) == 300 and all("_rows" not in r for r in rows)
    assert run.coalesced() == {}
