"""The system sampler: a part (agent/sinks/base.py ``Part``) of every agent (agent/plugged.py).

Every ``system_interval_s`` seconds (``RANKWISE_SYSTEM_INTERVAL``, default 5, 0 = off; agent/config.py) a
tick samples, in the agent's loop, every running rank whose process runs on this machine (its process
tree: agent/system/proc.py), the machine (agent/system/host.py) and its GPUs when NVML is there
(agent/system/gpu.py, attributed to ranks by agent/system/attribution.py). All rows of one tick share one
``_timestamp`` (the tick's wall time). They go into the agent's next commit (agent/nextcommit.py
``add_system``): a sample never makes a commit of its own at a busy agent; an idle one commits them, one
small commit per interval. A single agent stores them (``Txn.add_system``); a node agent's spool sink
sends them to the root as system ops (agent/record.py), which the root stores (agent/system/forward.py). A
root samples only the ranks of its own machine that talk to it directly (``Ingest.is_local``: no node agent in
between) and stores them as a single agent does; a root serving none samples nothing.

Host rows are stored under every group with a rank sampled on this machine in that tick; a tick with no
live local rank samples nothing (an agent between jobs writes no system rows). What the sampling costs
(CPU seconds of the agent's own process around it) is in ``rankwise status`` (``system``) and in the
``system_sampler`` benchmark (benchmarks/system_sampler.py).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil

from agent.sinks.base import Part
from agent.system.attribution import RankGpuView, attribute
from agent.system.gpu import Gpus, load_nvml
from agent.system.host import HostSampler
from agent.system.proc import ProcTrees

if TYPE_CHECKING:
    from agent.ingest import Ingest
    from agent.runs import RunState

log = logging.getLogger("rankwise.agent")
# USS reads /proc/PID/smaps_rollup, which walks the process's page tables: ~0.5 ms per process, 3/4 of a
# sample's cost (benchmarks/system_sampler.py). It is read at most every USS_PERIOD_S seconds: every sample at
# the default 5 s interval, every 5th at 1 s (docs/system.md)
USS_PERIOD_S = 5.0
_UNREAD = object()


class SystemSampler(Part):
    """Samples local ranks, the host and GPUs into the next commit every ``interval_s`` seconds."""

    def __init__(self, ingest: Ingest, interval_s: float, nvml: Any = _UNREAD, uss_every: int | None = None):
        if not interval_s >= 0:
            raise ValueError(f"interval_s must be >= 0 seconds (0: off), got {interval_s!r}")
        self.ingest = ingest
        self.interval_s = interval_s
        if uss_every is None:  # USS at most every USS_PERIOD_S seconds
            uss_every = max(1, round(USS_PERIOD_S / interval_s)) if interval_s > 0 else 1
        self.procs = ProcTrees(uss_every)
        self.host = HostSampler(ingest.cfg.data_dir)
        self._nvml = nvml  # _UNREAD: pynvml, imported at the first sample (never at import)
        self.gpus: Gpus | None = None
        self._env: dict[int, str | None] = {}  # rank pid -> its CUDA_VISIBLE_DEVICES (read once)
        self.attributed: dict[int, str] = {}  # run id -> "pid" or "env": how its GPU was found
        self._next = ingest.clock() + interval_s  # the first sample one interval after the agent started
        self.samples = 0
        self.rows = 0
        self.cpu_s = 0.0  # CPU time of the agent's process spent sampling
        self.failures = 0

    def __repr__(self) -> str:
        return (
            f"<SystemSampler every {self.interval_s}s samples={self.samples} rows={self.rows} "
            f"cpu={self.cpu_s:.3f}s failures={self.failures}>"
        )

    def tick(self, now: float) -> None:
        if self.interval_s <= 0:
            return
        mono = self.ingest.clock()
        if mono < self._next:
            return
        self._next = mono + self.interval_s
        t0 = time.process_time()
        try:
            self.sample(now, mono)
        except Exception as exc:  # a sampler bug must not stop the agent's loop: counted, logged a few times
            self.failures += 1
            if self.failures <= 3:
                log.warning("system sample failed: %s", exc, exc_info=True)
        self.cpu_s += time.process_time() - t0

    def _local_runs(self) -> list[RunState]:
        ing = self.ingest
        return [r for r in ing.runs.values() if r.running and ing.is_local(r)]

    def sample(self, now: float, mono: float) -> int:
        """One sample of every live local rank and the host into the next commit; returns the ranks sampled."""
        runs = self._local_runs()
        if not runs:
            return 0
        rows = self.procs.sample({r.record.pid for r in runs}, mono, now)
        live = [r for r in runs if r.record.pid in rows]
        if not live:
            return 0
        host = self.host.sample(mono)
        ranks = {r.record.id: dict(rows[r.record.pid]) for r in live}
        self._gpus(live, host, ranks)
        nc, node = self.ingest.next_commit, self.ingest.node
        stamp = np.array([now], np.float64)
        for r in live:
            row = ranks[r.record.id]
            cols = {"_timestamp": stamp, **{k: np.array([v], np.float64) for k, v in row.items()}}
            nc.add_system(r.group.record.id, r.record.id, r.record.node, cols)
        host_cols = {"_timestamp": stamp, **{k: np.array([v], np.float64) for k, v in host.items()}}
        for gid in dict.fromkeys(r.group.record.id for r in live):
            nc.add_system(gid, None, node, host_cols)
        self.samples += 1
        self.rows += len(live) + 1
        return len(live)

    def _gpus(self, live: list[RunState], host: dict[str, float], ranks: dict[int, dict[str, float]]) -> None:
        if self.gpus is None:
            # nvmlInit can take seconds (driver load, persistence mode off): it runs on a thread of its own and
            # the samples carry GPU keys once it is done (agent/system/gpu.py Gpus.ready)
            self.gpus = Gpus(None)
            threading.Thread(target=self._start_gpus, args=(self.gpus,), name="rankwise-nvml", daemon=True).start()
        if not (self.gpus.ready.is_set() and self.gpus.started):
            return
        devices = self.gpus.read()
        for d in devices:
            host.update({f"gpu.{d.index}.{k}": v for k, v in d.metrics.items()})
        views = [
            RankGpuView(
                r.record.id,
                frozenset(self.procs.trees.get(r.record.pid, [r.record.pid])),
                r.record.local_rank,
                self._cuda_visible(r.record.pid),
            )
            for r in live
        ]
        self.attributed = {}
        for run_id, (d, how) in attribute(views, devices).items():
            ranks[run_id].update({f"gpu.{k}": v for k, v in d.metrics.items()})
            ranks[run_id]["gpu.index"] = float(d.index)
            self.attributed[run_id] = how
        self._env = {pid: v for pid, v in self._env.items() if pid in self.procs.trees}

    def _start_gpus(self, gpus: Gpus) -> None:
        """Off the loop: import pynvml unless a module was given, then nvmlInit (``gpus.ready`` set either way)."""
        nvml = self._nvml
        if nvml is _UNREAD:
            nvml, why = load_nvml()
            gpus.note = why
        elif nvml is None:
            gpus.note = "GPU sampling off (no NVML module given)"
        gpus.nvml = nvml
        gpus.start()

    def _cuda_visible(self, pid: int) -> str | None:
        if pid not in self._env:
            try:
                self._env[pid] = psutil.Process(pid).environ().get("CUDA_VISIBLE_DEVICES")
            except (psutil.Error, OSError):
                self._env[pid] = None  # another user's process: attributed by LOCAL_RANK alone
        return self._env[pid]

    def status(self, snap: dict[str, Any]) -> None:
        snap["system"] = {
            "interval_s": self.interval_s,
            "uss_every": self.procs.uss_every,
            "samples": self.samples,
            "rows": self.rows,
            "cpu_s": round(self.cpu_s, 4),
            "cpu_s_per_sample": round(self.cpu_s / self.samples, 6) if self.samples else None,
            "failures": self.failures,
            "skipped_processes": self.procs.skipped,
            "disk": self.host.disk,
            "gpu": "not sampled yet" if self.gpus is None else self.gpus.note,
            "gpu_attribution": dict(sorted(self.attributed.items())),
        }
