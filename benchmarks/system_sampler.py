"""10. What the agent's system sampler costs: 8 ranks, each with 2 DataLoader-style workers, at a 1 s interval.

The agent core (agent/ingest.py over the memory store) registers 8 real rank processes (each a Python
process that forked two children, as a DataLoader's workers are); the sampler (agent/system/sampler.py)
samples them and the host, and the benchmark reads the CPU time of its own process (``time.process_time``:
user + system, all threads) around each sample, as the agent does for ``rankwise status``. At an interval of
1 s, CPU seconds per sample × 100 is the % of one core the sampler takes (goal ≤ 1 %): measured as the agent
runs at 1 s (USS, ``/proc/PID/smaps_rollup``, every 5th sample: agent/system/sampler.py ``USS_PERIOD_S``),
and apart: USS every sample, no USS, and the share of the process-table
scan (one read of every process's ``/proc/PID/stat`` per tick), which grows with the processes on the
machine (their count is reported). The commit that stores the samples is the agent's commit path, not
counted here.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NAME = "system_sampler"
TITLE = "10. System sampler: CPU of the agent per sample, 8 ranks × 2 workers, 1 s interval"
RANKS = 8

_RANK = """
import multiprocessing as mp, sys, time
def work(stop):
    buf = bytearray(16 << 20)
    for i in range(0, len(buf), 4096):
        buf[i] = 1
    stop.wait(600)
ctx = mp.get_context("fork")
stop = ctx.Event()
kids = [ctx.Process(target=work, args=(stop,), daemon=True) for _ in range(2)]
for k in kids:
    k.start()
print("ready", flush=True)
sys.stdin.read()
stop.set()
"""


def params(quick: bool) -> dict[str, int]:
    return {"samples": 10 if quick else 60}


def _measure(ingest: Any, sampler: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.process_time()
        sampler.sample(time.time(), time.monotonic())
        out.append(time.process_time() - t0)
        ingest.next_commit.system.clear()  # the commit is the agent's, not the sampler's
    return out


def run(ctx: Any) -> dict[str, Any]:
    import numpy as np

    from agent.config import AgentConfig
    from agent.ingest import Ingest
    from agent.sinks.memory import MemorySink
    from agent.store.memory import MemoryStore
    from agent.system import proc
    from agent.system.sampler import SystemSampler
    from benchmarks._harness import REPO
    from client import wire

    p = params(ctx.quick)
    ranks = [
        subprocess.Popen(
            [sys.executable, "-c", _RANK], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO
        )
        for _ in range(RANKS)
    ]
    try:
        for r in ranks:
            assert r.stdout is not None and r.stdout.readline().strip() == "ready"
        with tempfile.TemporaryDirectory(prefix="rwbench") as tmp:
            cfg = AgentConfig(data_dir=Path(tmp), runtime_dir=Path(tmp), system_interval_s=0)
            ingest = Ingest(MemoryStore(), cfg, node="bench", sink=MemorySink())
            for i, r in enumerate(ranks):
                run_fields = {
                    "project": "bench",
                    "group": "sys",
                    "name": f"rank-{i}",
                    "rank": i,
                    "world_size": RANKS,
                    "local_rank": i,
                    "node": "bench",
                    "launcher": "none",
                    "resume": "allow",
                    "started": 1.0,
                    "run_id": f"sys-{i}",
                }
                ingest.handle(
                    b"p%d" % i, wire.pack(wire.HELLO, {"w": f"w{i}", "pid": r.pid, "run": run_fields, "h": 1})
                )
            out: dict[str, Any] = {"params": p, "ranks": RANKS, "processes_sampled": RANKS * 3}
            for label, uss_every in (("with_uss", 1), ("without_uss", 1 << 30), ("default", None)):
                sampler = SystemSampler(ingest, 1.0, nvml=None, uss_every=uss_every)
                sampler.sample(time.time(), time.monotonic())  # warm: psutil objects, baselines
                if label != "with_uss":
                    sampler.sample(time.time(), time.monotonic())  # its first tick read USS: start after it
                cpu = np.array(_measure(ingest, sampler, p["samples"]))
                out[label] = {
                    "cpu_ms_median": float(np.median(cpu) * 1e3),
                    "cpu_ms_p90": float(np.quantile(cpu, 0.9) * 1e3),
                    "cpu_ms_mean": float(cpu.mean() * 1e3),
                    "uss_every": sampler.procs.uss_every,
                }
            t0 = time.process_time()
            for _ in range(p["samples"]):
                proc.children_map()
            out["scan_ms"] = (time.process_time() - t0) / p["samples"] * 1e3
            out["machine_processes"] = sum(len(v) for v in proc.children_map().values())
            # the agent's configuration at a 1 s interval (USS every 5th sample): mean CPU per second
            out["percent_of_core_at_1s"] = out["default"]["cpu_ms_mean"] / 10.0
            out["notes"] = [
                f"{out['machine_processes']} processes on this machine: the process-table scan is "
                f"{out['scan_ms']:.2f} ms of each sample"
            ]
            return out
    finally:
        for r in ranks:
            try:
                assert r.stdin is not None
                r.stdin.close()
                r.wait(timeout=30)
            except Exception:
                r.kill()


def rows(r: dict) -> list:
    return [
        (
            "CPU per sample, USS every sample (median)",
            f"{r['with_uss']['cpu_ms_median']:.2f} ms",
            f"p90 {r['with_uss']['cpu_ms_p90']:.2f} ms",
        ),
        (
            "CPU per sample, no USS (median)",
            f"{r['without_uss']['cpu_ms_median']:.2f} ms",
            f"p90 {r['without_uss']['cpu_ms_p90']:.2f} ms",
        ),
        ("process-table scan per sample", f"{r['scan_ms']:.2f} ms", f"{r['machine_processes']} processes"),
        (
            "CPU per sample at 1 s as configured (mean)",
            f"{r['default']['cpu_ms_mean']:.2f} ms",
            f"USS every {r['default']['uss_every']} samples",
        ),
        ("% of one core at a 1 s interval", f"{r['percent_of_core_at_1s']:.2f} %", "goal ≤ 1 %"),
    ]
