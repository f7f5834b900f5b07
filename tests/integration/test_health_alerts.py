"""The detectors decide issue 13 on real jobs: 8 rank processes through the real agent and its SQLite store.

One faulty job (rank 2's loss turns NaN at a known step, rank 5 is frozen by SIGSTOP until its hang alert is
stored, rank 6 computes 3× slower) gets exactly the alerts nan (rank 2, loss, that step), hang (rank 5) and
straggler (rank 6); healthy jobs of the same shape with noisy timings get none (two real ones here, eighteen
in process in tests/agent/test_detector_specs.py); a rank that raises and one killed by SIGKILL each get one
``crashed`` alert naming the exception, resp. the unknown exit status, and nothing else is said.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from agent.alerts.detectors.pyspy import find_py_spy
from agent.store.sqlite_reader import SQLiteReader
from support.mncluster import slow
from support.probes import read_line, status, wait_for
from support.processes import RankwiseEnv, start_ranks, wait_all

HANG_AFTER = "3"  # seconds (RANKWISE_HANG_AFTER); healthy pauses below are at most 1 s
NAN_RANK, NAN_AT, FROZEN, SLOW = 2, 60, 5, 6

# Every rank: steps of ~10 ms (lognormal jitter, the slow rank 3× as long, the unlucky step 8× as long), a
# per-rank ``time/compute`` key, a loss that decreases with the step plus noise. ``started`` once 20 rows are
# acknowledged; runs until the file RW_STOP exists. RW_PAUSE_RANK pauses 1 s once at step 300 (a GC pause).
SCRIPT = """
import math, os, random, time
from pathlib import Path
import rankwise

rank = int(os.environ["RANK"])
slow = int(os.environ.get("RW_SLOW_RANK", "-1")) == rank
nan_rank = int(os.environ.get("RW_NAN_RANK", "-1"))
nan_at = int(os.environ.get("RW_NAN_AT", "0"))
pause_rank = int(os.environ.get("RW_PAUSE_RANK", "-1"))
stop = Path(os.environ["RW_STOP"])
rng = random.Random(int(os.environ.get("RW_SEED", "0")) * 100 + rank)
run = rankwise.init(project="health")
step = 0
while not stop.exists() or step < 100:
    dt = 0.01 * (3.0 if slow else 1.0) * rng.lognormvariate(0.0, 0.3)
    if rng.random() < 0.01:
        dt *= 8  # an occasional slow step
    if rank == pause_rank and step == 300:
        dt = 1.0  # a GC-like pause, shorter than the hang threshold
    t0 = time.perf_counter()
    time.sleep(dt)
    loss = 2.0 * math.exp(-step / 2000) + rng.gauss(0.0, 0.01)
    if rank == nan_rank and step >= nan_at:
        loss = float("nan")
    run.log({"loss": loss, "time/compute": time.perf_counter() - t0}, step=step)
    if step == 20:
        assert run.flush(60)
        print("started", flush=True)
    step += 1
run.finish()
print("steps", step, flush=True)
"""


def alerts(env: RankwiseEnv, group: str) -> list[dict]:
    """The group's stored alerts (``Reader.alerts``), [] before the group or the store exists."""
    if not env.store.exists():
        return []
    reader = SQLiteReader(env.store)
    try:
        g = reader.group("health", group)
        return [] if g is None else reader.alerts(g.id)
    finally:
        reader.close()


def about(found: list[dict]) -> list[tuple]:
    return sorted((a["kind"], a["rank"]) for a in found)


def start_job(env: RankwiseEnv, tmp: Path, group: str, **extra) -> tuple[list, Path]:
    stop = tmp / f"stop-{group}"
    procs = start_ranks(env, SCRIPT, 8, group, RW_STOP=stop, RANKWISE_HANG_AFTER=HANG_AFTER, **extra)
    for rank, p in enumerate(procs):
        assert read_line(p, 120, f"rank {rank} started") == "started"
    return procs, stop


def finish_job(procs: list, stop: Path) -> None:
    stop.touch()
    results = wait_all(procs, 120)
    for rank, (code, out, err) in enumerate(results):
        assert code == 0, f"rank {rank} exited {code}: {err[-1500:]}"
        assert out.splitlines()[-1].startswith("steps"), out


def test_nan_hang_and_straggler_ranks_are_named_and_no_other(rankwise_env, tmp_path):
    """Rank 2's loss is NaN from step 60, rank 5 is SIGSTOPped until its ``hang`` alert is stored (then
    SIGCONT), rank 6 sleeps 3× as long per step. Stored alerts, exactly: ``nan`` rank 2 / ``loss`` / step 60
    (level ERROR, value NaN); ``hang`` rank 5 at the step it froze at or before, with its Python stack
    (py-spy dump) in its details; ``straggler`` rank 6 with a factor ≥ 1.5 (near 3). All ranks finish with code 0."""
    procs, stop = start_job(
        rankwise_env, tmp_path, "job-sick", RW_NAN_RANK=NAN_RANK, RW_NAN_AT=NAN_AT, RW_SLOW_RANK=SLOW
    )
    os.kill(procs[FROZEN].pid, signal.SIGSTOP)
    try:
        wait_for(lambda: ("hang", FROZEN) in about(alerts(rankwise_env, "job-sick")), 90, "the hang alert")
    finally:
        os.kill(procs[FROZEN].pid, signal.SIGCONT)
    wait_for(lambda: ("straggler", SLOW) in about(alerts(rankwise_env, "job-sick")), 120, "the straggler alert")
    wait_for(lambda: ("nan", NAN_RANK) in about(alerts(rankwise_env, "job-sick")), 30, "the nan alert")
    finish_job(procs, stop)

    found = alerts(rankwise_env, "job-sick")
    assert about(found) == [("hang", FROZEN), ("nan", NAN_RANK), ("straggler", SLOW)], found
    by_kind = {a["kind"]: a for a in found}
    nan = by_kind["nan"]
    assert (nan["key"], nan["step"], nan["level"], nan["details"]["value"]) == ("loss", NAN_AT, "ERROR", "NaN")
    assert f"step {NAN_AT}" in nan["message"] and "rank 2" in nan["message"]
    hang = by_kind["hang"]
    assert hang["key"] is None and hang["step"] >= 20 and "rank 5" in hang["message"]
    assert hang["details"]["hang_after_s"] == 3.0 and hang["details"]["silent_s"] >= 3.0
    # py-spy (the test extra pins it) dumps the frozen rank: its main thread stands in the script's loop
    if find_py_spy() is None:
        assert hang["details"]["py_spy"] == "py-spy not installed"
    else:
        assert hang["details"]["py_spy"] == "dumped", hang["details"]
        assert f"Process {procs[FROZEN].pid}:" in hang["details"]["stack"] and "<module>" in hang["details"]["stack"]
    straggler = by_kind["straggler"]
    assert straggler["key"] in (None, "time/compute") and "rank 6" in straggler["message"]
    assert 2.0 <= straggler["details"]["factor"] <= 4.5, straggler


def healthy_jobs(env: RankwiseEnv, tmp: Path, seeds: list[int]) -> None:
    """Jobs of 8 healthy ranks at once, one per seed (lognormal step jitter, 1 % of steps 8× slow, one rank of
    each paused 1 s once: under the 3 s hang threshold), run until every detector has judged them (ten more
    straggler checks per job of windows ≥ 10 s, 25 more diverged steps judged per job): no alert for any."""

    def judged() -> tuple[int, int]:
        d = (status(env) or {}).get("detectors", {})
        return d.get("straggler", {}).get("groups_checked", 0), d.get("diverged", {}).get("steps_judged", 0)

    checked0, steps0 = judged() if env.store.exists() else (0, 0)
    jobs = [start_job(env, tmp, f"job-ok{s}", RW_SEED=s, RW_PAUSE_RANK=s % 8) for s in seeds]

    def done() -> bool:
        checked, steps = judged()
        return checked - checked0 >= 10 * len(seeds) and steps - steps0 >= 25 * len(seeds)

    wait_for(done, 120, "straggler and diverged checks of every job")
    for procs, stop in jobs:
        finish_job(procs, stop)
    for s in seeds:
        assert alerts(env, f"job-ok{s}") == [], f"healthy job {s}"


def test_two_healthy_noisy_jobs_raise_nothing(rankwise_env, tmp_path):
    """Two healthy noisy jobs at once (:func:`healthy_jobs`): no alert at all for either group."""
    healthy_jobs(rankwise_env, tmp_path, [1, 2])


@slow
def test_twenty_healthy_noisy_jobs_raise_nothing(rankwise_env, tmp_path):
    """Twenty healthy noisy jobs of real processes, two at a time (:func:`healthy_jobs`, seeds 1..20, the
    paused rank varying with the seed): no alert at all (the issue's count; the in-process variant of
    tests/agent/test_detector_jobs.py runs eighteen in seconds)."""
    for first in range(1, 21, 2):
        healthy_jobs(rankwise_env, tmp_path, [first, first + 1])


CRASH = """
import os, time
import rankwise

rank = int(os.environ["RANK"])
run = rankwise.init(project="health")
for step in range(5):
    run.log({"loss": 1.0 / (step + 1)}, step=step)
assert run.flush(60)
if rank == 1:
    raise RuntimeError("CUDA error: an illegal memory access was encountered")
if rank == 2:
    print("ready", flush=True)
    time.sleep(600)  # killed by the test
run.finish()
"""


def test_a_rank_that_raises_and_one_killed_get_crashed_alerts(rankwise_env):
    """Four ranks log five steps; rank 1 raises RuntimeError (exit 1), rank 2 is killed by SIGKILL, 0 and 3
    finish. Exactly two alerts: ``crashed`` rank 1 (its ``failed`` state, exception type and message, exit
    code 1) and ``crashed`` rank 2 (``crashed``: the process vanished, "exit status unknown"), both at step 4."""
    procs = start_ranks(rankwise_env, CRASH, 4, "job-crash")
    assert read_line(procs[2], 120, "rank 2 ready") == "ready"
    os.kill(procs[2].pid, signal.SIGKILL)
    codes = [code for code, _, _ in wait_all(procs, 120)]
    assert codes == [0, 1, -9, 0]
    wait_for(lambda: len(alerts(rankwise_env, "job-crash")) >= 2, 60, "two crashed alerts")
    found = {a["rank"]: a for a in alerts(rankwise_env, "job-crash")}
    assert sorted(found) == [1, 2] and {a["kind"] for a in found.values()} == {"crashed"}
    one, two = found[1], found[2]
    assert one["details"]["exception"] == {
        "type": "RuntimeError",
        "message": "CUDA error: an illegal memory access was encountered",
    }
    assert "RuntimeError: CUDA error" in one["message"] and "exit code 1" in one["message"]
    assert one["details"]["traceback"].endswith("an illegal memory access was encountered\n")
    assert (one["step"], one["level"], one["details"]["state"]) == (4, "ERROR", "failed")
    assert "exit status unknown" in two["message"] and two["details"]["exit_status"] == "exit status unknown"
    assert (two["step"], two["details"]["state"]) == (4, "crashed")
