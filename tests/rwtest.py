"""Helpers shared by the tests: rank processes with launcher environments, agent control,
and decoding a run's batches without any agent (for unit tests of log() semantics)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
LAUNCHER_VARS = {
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "TORCHELASTIC_RUN_ID",
    "TORCHELASTIC_RESTART_COUNT", "MASTER_ADDR", "MASTER_PORT", "SLURMD_NODENAME",
}  # fmt: skip


@dataclass
class RankwiseEnv:
    data: str
    runtime: str

    @property
    def store(self) -> Path:
        return Path(self.data) / "store.sqlite"

    def agent_info(self) -> dict | None:
        try:
            return json.loads((Path(self.runtime) / "agent.json").read_text())
        except (OSError, ValueError):
            return None

    def env(self, **extra: Any) -> dict[str, str]:
        env = dict(os.environ)
        env.update({k: str(v) for k, v in extra.items()})
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        return env


def agent_pid(env: RankwiseEnv) -> int | None:
    info = env.agent_info()
    if info is None:
        return None
    from client import spawn

    return info["pid"] if spawn.lock_is_held(Path(env.runtime) / "agent.lock") else None


def stop_agent(env: RankwiseEnv, timeout_s: float = 10.0) -> None:
    """SIGTERM the agent of ``env`` and wait for it to exit (SIGKILL after ``timeout_s``)."""
    from client import spawn

    info = env.agent_info()
    lock = Path(env.runtime) / "agent.lock"
    if info is None or not spawn.lock_is_held(lock):
        return
    try:
        os.kill(info["pid"], signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while spawn.lock_is_held(lock):
        if time.monotonic() > deadline:
            os.kill(info["pid"], signal.SIGKILL)
            time.sleep(0.2)
            break
        time.sleep(0.02)


# every process a test starts, so that teardown can kill what a failed test left running
_SPAWNED: list[subprocess.Popen] = []


def spawn(args: list[str], env: dict[str, str], **popen: Any) -> subprocess.Popen:
    """Popen in a session of its own (its forked children die with it at teardown), tracked."""
    popen.setdefault("start_new_session", True)
    proc = subprocess.Popen(args, env=env, **popen)
    _SPAWNED.append(proc)
    return proc


def reap_spawned() -> None:
    """Kill the process group of every tracked process (a test that failed or timed out): also when its
    leader is gone, since forked children outlive it and could still start an agent."""
    while _SPAWNED:
        proc = _SPAWNED.pop()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def torchrun_env(rank: int, world: int, group: str, **extra: Any) -> dict[str, str]:
    env = {
        "RANK": str(rank),
        "WORLD_SIZE": str(world),
        "LOCAL_RANK": str(rank),
        "LOCAL_WORLD_SIZE": str(world),
        "TORCHELASTIC_RUN_ID": group,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_ranks(env: RankwiseEnv, script: str, world: int, group: str, **extra: Any) -> list[subprocess.Popen]:
    """Start ``world`` processes running ``script`` with torchrun's environment; all at once."""
    code = textwrap.dedent(script)
    return [
        spawn(
            [sys.executable, "-c", code],
            env.env(**torchrun_env(rank, world, group, **extra)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(world)
    ]


def wait_all(procs: list[subprocess.Popen], timeout_s: float = 120) -> list[tuple[int, str, str]]:
    out = []
    deadline = time.monotonic() + timeout_s
    for p in procs:
        stdout, stderr = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        out.append((p.returncode, stdout, stderr))
    return out


def run_ranks(env: RankwiseEnv, script: str, world: int, group: str, timeout_s: float = 120, **extra: Any):
    results = wait_all(start_ranks(env, script, world, group, **extra), timeout_s)
    for rank, (code, stdout, stderr) in enumerate(results):
        assert code == 0, f"rank {rank} exited {code}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    return results


# ---------------------------------------------------------------- without an agent


def offline_run(**kwargs: Any):
    """A Run whose writer is never started: its batches stay in the outbox for :func:`drain_batches`."""
    from client import settings as settings_mod
    from client.run import Run
    from client.transport import Writer

    kwargs.setdefault("project", "unit")
    kwargs.setdefault("group", "g")
    config = kwargs.pop("config", None)  # before resolve(), which rejects unknown settings
    run = Run(settings_mod.resolve(**kwargs), config)
    run._writer = Writer(run.settings, run._hello_run())
    run._push = run._writer.ops.extend
    return run


def drain_batches(run) -> list:
    """Every batch the run's writer has produced so far, decoded by the agent-side decoder."""
    from client import wire

    run._writer.sync()
    batches = []
    while run._writer._outbox:
        _, frame, _ = run._writer._outbox.popleft()
        kind, body = wire.unpack(frame)
        assert kind == wire.BATCH
        batches.append(wire.decode_batch(body, len(frame)))
    return batches


def rows_of(batches: list) -> list[dict[str, Any]]:
    """Committed rows in commit order as dicts with _step, _late and the keys."""
    rows = []
    for b in batches:
        base = len(rows)
        for i in range(b.n):
            rows.append({"_step": int(b.step[i]), "_late": bool(b.late[i]) if b.late is not None else False})
        for col in b.columns:
            idx = range(b.n) if col.rows is None else col.rows.tolist()
            vals = col.values.tolist() if isinstance(col.values, np.ndarray) else col.values
            for i, v in zip(idx, vals):
                rows[base + i][col.key] = v
    return rows


class SlowCounter:
    """Wraps a run's ``_log_slow`` to count the ``log()`` calls that did not take the fast path."""

    def __init__(self, run: Any):
        self.calls = 0
        self._slow = run._log_slow
        run._log_slow = self

    def __call__(self, data: Any, step: Any, commit: Any) -> None:
        self.calls += 1
        self._slow(data, step, commit)


def finish_live_runs(timeout_s: float = 2.0) -> None:
    """finish() every run this process still has open, each waiting at most ``timeout_s`` (test teardown:
    before its agent is stopped, so nothing waits for an agent that is gone)."""
    from client import run as run_mod

    for run in list(run_mod._LIVE_RUNS):
        run.settings = run.settings.replace(finish_timeout_s=timeout_s)
        try:
            run.finish()
        except Exception:  # noqa: BLE001 - teardown goes on whatever a run does
            pass
