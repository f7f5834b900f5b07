"""What every benchmark shares: a private sandbox (data + runtime dir, its own agent), worker
processes with a start barrier, statistics, agent CPU/RSS sampling and loss checks.

Measured code never runs in the orchestrating process: it runs in fresh workers
(``python -m benchmarks._worker module:function``) so that imports, garbage and
threads of one measurement cannot disturb the next. A worker writes its result
as JSON to a file (stdout may be taken over by a compared tool's console
capture); it says READY on stdout and waits for a line on stdin when the
benchmark needs several workers to start at the same instant.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
READY = "@@RANKWISE-BENCH-READY"

# launcher variables a rank would otherwise inherit from the shell running the benchmark
_SCRUB_PREFIXES = ("RANKWISE_", "WANDB_", "MLFLOW_", "SLURM_", "OMPI_", "PMI_", "PMIX_", "TORCHELASTIC_")
_SCRUB = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT"}


class BenchError(RuntimeError):
    """A benchmark could not produce its numbers (a worker failed, data went missing)."""


# ---------------------------------------------------------------- sandbox


def clean_env(**extra: Any) -> dict[str, str]:
    """The parent's environment without launcher / rankwise / compared tools' variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB and not k.startswith(_SCRUB_PREFIXES)}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Sandbox:
    """A private RANKWISE_DIR / RANKWISE_RUNTIME_DIR (short /tmp paths: ipc socket paths are limited
    to ~107 bytes) and the agent serving it. ``close`` stops whichever agent holds its lock (one we
    started, or one a client spawned) and removes both directories."""

    def __init__(self, label: str = "bench", store: str | None = None):
        self.label = label
        self.store_spec = store  # RANKWISE_STORE for the agent (a ClickHouse URL); None: its own SQLite file
        self.data = tempfile.mkdtemp(prefix="rwb-", dir="/tmp")
        self.runtime = tempfile.mkdtemp(prefix="rwbr-", dir="/tmp")
        self.scratch = tempfile.mkdtemp(prefix="rwbs-", dir="/tmp")  # worker args/results, other tools' dirs
        self._workers: list[Worker] = []

    def __repr__(self) -> str:
        return f"<Sandbox {self.label} data={self.data} runtime={self.runtime} agent={self.agent_pid()}>"

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def env(self, **extra: Any) -> dict[str, str]:
        return clean_env(
            RANKWISE_DIR=self.data,
            RANKWISE_RUNTIME_DIR=self.runtime,
            # a client-spawned agent must outlive pauses between phases; close() stops it
            RANKWISE_AGENT_IDLE_TIMEOUT=300,
            # throughput is measured on every point: no row budget (with the default one a tight loop
            # is coalesced into spans, see README "Rate limiting"); a benchmark may pass its own
            **{"RANKWISE_ROWS_PER_S": 0, **({"RANKWISE_STORE": self.store_spec} if self.store_spec else {}), **extra},
        )

    @property
    def reads(self) -> str:
        """What ``rankwise.Api`` opens to read what this sandbox's agent stored."""
        return self.store_spec or self.data

    @property
    def store(self) -> Path:
        return Path(self.data) / "store.sqlite"

    # -------------------------------------------------------- agent

    def agent_pid(self) -> int | None:
        from client import spawn

        runtime = Path(self.runtime)
        if not spawn.lock_is_held(runtime / "agent.lock"):
            return None
        info = spawn.read_info(runtime)
        if info is not None:
            return int(info["pid"])
        try:  # starting up: the lock file holds the pid before agent.json exists
            return int((runtime / "agent.lock").read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def start_agent(self, timeout_s: float = 30.0) -> int:
        """Start the agent the way a client would (``python -m agent --detach``); returns its pid."""
        cmd = [
            sys.executable,
            "-m",
            "agent",
            "--detach",
            "--dir",
            self.data,
            "--runtime-dir",
            self.runtime,
            "--idle-timeout",
            "300",
        ]
        subprocess.run(
            cmd,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout_s,
            check=False,
            cwd=str(REPO),
        )
        deadline = time.monotonic() + timeout_s
        while True:
            from client import spawn

            info = spawn.agent_ready(Path(self.runtime))
            if info is not None:
                return int(info["pid"])
            if time.monotonic() > deadline:
                raise BenchError(f"agent did not become ready in {timeout_s:.0f} s (see {self.data}/agent.log)")
            time.sleep(0.01)

    def stop_agent(self, timeout_s: float = 15.0) -> None:
        """Ask the agent to stop (clean shutdown order); SIGTERM, then SIGKILL if it does not go."""
        pid = self.agent_pid()
        if pid is None:
            return
        from rankwise._control import request, wait_stopped

        request("stop", runtime_dir=self.runtime, timeout_s=2.0)
        if wait_stopped(self.runtime, timeout_s):
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            if wait_stopped(self.runtime, 5.0):
                return

    def close(self) -> None:
        for w in self._workers:
            w.kill()
        try:
            self.stop_agent()
        finally:
            for d in (self.data, self.runtime, self.scratch):
                shutil.rmtree(d, ignore_errors=True)

    # -------------------------------------------------------- workers

    def worker(self, target: str, args: dict, env: dict | None = None, new_session: bool = False) -> Worker:
        w = Worker(self, target, args, env or self.env(), new_session)
        self._workers.append(w)
        return w


class Worker:
    """One ``python -m benchmarks._worker`` process running ``target`` (``module:function``)."""

    def __init__(self, box: Sandbox, target: str, args: dict, env: dict, new_session: bool):
        self.target = target
        fd, self.result_path = tempfile.mkstemp(prefix="res-", suffix=".json", dir=box.scratch)
        os.close(fd)
        os.unlink(self.result_path)
        args = dict(args, _out=self.result_path)
        fd, args_path = tempfile.mkstemp(prefix="args-", suffix=".json", dir=box.scratch)
        with os.fdopen(fd, "w") as fh:
            json.dump(args, fh)
        self.stderr_path = args_path.replace("args-", "err-")
        self._stderr = open(self.stderr_path, "wb")
        self.new_session = new_session
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._worker", target, args_path],
            env=env,
            cwd=str(REPO),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            start_new_session=new_session,
        )
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    def __repr__(self) -> str:
        return f"<Worker {self.target} pid={self.proc.pid} rc={self.proc.returncode}>"

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # drained to the end so chatty tools never block on a full pipe
            if line.strip() == READY.encode():
                self.ready.set()

    def go(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(b"go\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def stderr_tail(self, n: int = 1500) -> str:
        try:
            return Path(self.stderr_path).read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready.wait(0.05):
            if self.proc.poll() is not None:
                raise BenchError(f"{self.target} exited ({self.proc.returncode}) before ready:\n{self.stderr_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"{self.target} not ready after {timeout_s:.0f} s:\n{self.stderr_tail()}")

    def result(self, timeout_s: float) -> dict:
        """Wait for the worker to exit and return its result; kill it (its whole session) on timeout."""
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BenchError(f"{self.target} did not finish within {timeout_s:.0f} s:\n{self.stderr_tail()}") from None
        self._stderr.close()
        try:
            with open(self.result_path) as fh:
                return json.load(fh)
        except (OSError, ValueError):
            raise BenchError(
                f"{self.target} exited {self.proc.returncode} without a result:\n{self.stderr_tail()}"
            ) from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.new_session:
                    os.killpg(self.proc.pid, signal.SIGKILL)  # the tool's helper processes too
                else:
                    self.proc.kill()
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
        if not self._stderr.closed:
            self._stderr.close()


class Busy:
    """``n`` processes spinning on the CPU (``while True: pass``): contention like dataloader workers
    beside a training process. ``start()`` … ``stop()``; stopped by their own pids."""

    def __init__(self, n: int):
        self.n = n
        self.procs: list[subprocess.Popen] = []

    def __repr__(self) -> str:
        return f"<Busy n={self.n} running={sum(p.poll() is None for p in self.procs)}>"

    _SPIN = "import sys\nsys.stdout.write('spinning\\n')\nsys.stdout.flush()\nwhile True: pass"

    def start(self, timeout_s: float = 30.0) -> Busy:
        """Start them and return once every one of them is spinning (said so on stdout)."""
        for _ in range(self.n):
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", self._SPIN],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
            )
        deadline = time.monotonic() + timeout_s
        for p in self.procs:
            assert p.stdout is not None
            line = p.stdout.readline()  # a spinner that died gives EOF at once: no hang
            if not line.startswith(b"spinning") or time.monotonic() > deadline:
                self.stop()
                raise BenchError(f"busy process {p.pid} did not start (exit {p.poll()})")
        return self

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            if p.stdout is not None:
                p.stdout.close()
        self.procs = []


def start_together(workers: list[Worker], ready_timeout_s: float) -> float:
    """Wait until every worker is READY, then release them at once; returns the release time
    (``time.perf_counter()``, CLOCK_MONOTONIC: comparable with the workers' clocks on Linux)."""
    for w in workers:
        w.wait_ready(ready_timeout_s)
    t = time.perf_counter()
    for w in workers:
        w.go()
    return t


def results(workers: list[Worker], timeout_s: float) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    return [w.result(max(1.0, deadline - time.monotonic())) for w in workers]


# ---------------------------------------------------------------- process resources


def peak_rss_bytes(pid: int) -> int | None:
    """The kernel's high-water mark of resident memory (VmHWM) of ``pid``; None where unavailable."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class ProcWatch:
    """CPU time and RSS of one process over a window: ``start()`` … ``stop()`` → dict.
    RSS is sampled every ``interval_s`` (the peak also comes from VmHWM when available)."""

    def __init__(self, pid: int, interval_s: float = 0.05):
        import psutil

        self.proc = psutil.Process(pid)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._peak = 0
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._cpu0 = 0.0
        self._io0: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<ProcWatch pid={self.proc.pid} peak_rss={self._peak}B running={self._thread is not None}>"

    def _cpu(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._peak = max(self._peak, self.proc.memory_info().rss)
            except Exception:  # the process went away: keep what we have
                return

    def _io(self) -> dict[str, int]:
        try:  # Linux: bytes handed to write()/read() (chars) and bytes that reached the disk
            c = self.proc.io_counters()
        except (AttributeError, OSError, Exception):
            return {}
        return {k: getattr(c, k) for k in ("write_chars", "write_bytes", "read_chars") if hasattr(c, k)}

    def start(self) -> ProcWatch:
        self._t0 = time.perf_counter()
        self._io0 = self._io()
        self._cpu0 = self._cpu()
        self._peak = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def stop(self, t_end: float | None = None) -> dict[str, Any]:
        cpu = self._cpu() - self._cpu0
        wall = (time.perf_counter() if t_end is None else t_end) - self._t0
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        rss = self.proc.memory_info().rss
        hwm = peak_rss_bytes(self.proc.pid)
        io1 = self._io()
        io = {f"{k}_mb": (io1[k] - self._io0.get(k, 0)) / 2**20 for k in io1}
        return {
            **io,
            "cpu_s": cpu,
            "wall_s": wall,
            "cpu_percent": 100.0 * cpu / wall if wall > 0 else 0.0,
            "rss_mb": rss / 2**20,
            "peak_rss_mb": max(self._peak, rss, hwm or 0) / 2**20,
            "peak_rss_source": "VmHWM" if hwm else "sampled",
        }


def agent_counters(box: Sandbox) -> dict[str, Any]:
    """The agent's own counters (``rankwise status``): frames, batches, commits, time in commit, drops."""
    from rankwise._control import request

    reply = request("status", runtime_dir=box.runtime, timeout_s=5.0) or {}
    return {
        "counters": dict(reply.get("counters") or {}),
        "malformed": dict(reply.get("malformed") or {}),
        "drops": dict(reply.get("drops") or {}),
    }


# ---------------------------------------------------------------- loss checks


def stored_counts(box: Sandbox, project: str, group: str, keys: Sequence[str]) -> dict[int, dict[str, Any]]:
    """Per rank, what the store holds: committed rows, points per key, and whether every key's
    steps are exactly 0..rows-1 (nothing lost, nothing duplicated). Read through ``rankwise.Api``."""
    import rankwise

    api = rankwise.Api(box.reads)
    try:
        out: dict[int, dict[str, Any]] = {}
        for run in api.group(project, group).runs:
            cols = run.history_arrays(list(keys))
            points = {k: int(len(cols[k][0])) if k in cols else 0 for k in keys}
            exact = all(k in cols and np.array_equal(np.asarray(cols[k][0]), np.arange(run.rows)) for k in keys)
            out[run.rank] = {"rows": int(run.rows), "points": points, "steps_exact": exact, "state": run.state}
        return out
    finally:
        api.close()


def check_loss(box: Sandbox, project: str, group: str, keys: Sequence[str], sent: dict[int, int]) -> dict[str, Any]:
    """Compare rows sent per rank (``sent``) with the store; ``lost`` counts points missing."""
    stored = stored_counts(box, project, group, keys)
    lost = 0
    for rank, n in sent.items():
        got = stored.get(rank)
        lost += n * len(keys) if got is None else sum(max(0, n - got["points"][k]) for k in keys)
    extra = sum(max(0, got["points"][k] - sent.get(rank, 0)) for rank, got in stored.items() for k in keys)
    exact = all(
        rank in stored and stored[rank]["rows"] == n and stored[rank]["steps_exact"] for rank, n in sent.items()
    )
    return {
        "sent_rows": int(sum(sent.values())),
        "stored_rows": int(sum(v["rows"] for v in stored.values())),
        "sent_points": int(sum(sent.values()) * len(keys)),
        "stored_points": int(sum(sum(v["points"].values()) for v in stored.values())),
        "lost_points": int(lost),
        "extra_points": int(extra),
        "exact": bool(exact),
        "states": sorted({v["state"] for v in stored.values()}),
    }
