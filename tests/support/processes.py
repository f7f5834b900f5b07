"""Processes of the tests: rank processes with launcher environments, the environment children get (the
repository and tests/ on PYTHONPATH, so scripts import the code under test and ``support``), agent control,
and the teardown that kills what a test left running. Runs without an agent: support/offline.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
LAUNCHER_VARS = {
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "TORCHELASTIC_RUN_ID",
    "TORCHELASTIC_RESTART_COUNT",
    "MASTER_ADDR",
    "MASTER_PORT",
    "SLURMD_NODENAME",
}


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
        return child_env(**extra)


def child_env(**extra: Any) -> dict[str, str]:
    """This process's environment plus ``extra``, with the repository and tests/ first on PYTHONPATH: a child
    imports the code under test (not an installed copy) and the helpers as ``support.X``, as pytest does."""
    env = dict(os.environ)
    env.update({k: str(v) for k, v in extra.items()})
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTS), env.get("PYTHONPATH", "")])
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


def communicate(proc: subprocess.Popen, timeout_s: float) -> tuple[str, str]:
    """``proc``'s remaining stdout and stderr once it exits, like ``Popen.communicate`` but read through the
    pipes' file objects: ``communicate`` reads the file descriptors, so lines an earlier ``readline()``
    (``read_line``) pulled into the text wrapper's buffer along with the line it returned were lost (a
    rank that printed its last line before the test read its previous one came back with empty stdout).
    Closes stdin first, as ``communicate()`` without input does (scripts waiting on it go on). Raises
    ``subprocess.TimeoutExpired`` as ``communicate`` does; the readers end when the pipes close."""
    if proc.stdin is not None and not proc.stdin.closed:
        try:
            proc.stdin.close()
        except BrokenPipeError:  # the child exited with bytes still unread: nothing to hand it
            pass
    got: dict[str, str] = {}
    readers = [
        threading.Thread(target=lambda n=name, f=f: got.__setitem__(n, f.read()), daemon=True)
        for name, f in (("stdout", proc.stdout), ("stderr", proc.stderr))
        if f is not None
    ]
    for t in readers:
        t.start()
    deadline = time.monotonic() + timeout_s
    for t in readers:
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            raise subprocess.TimeoutExpired(proc.args, timeout_s)
    proc.wait(max(1.0, deadline - time.monotonic()))
    return got.get("stdout", ""), got.get("stderr", "")


def wait_all(procs: list[subprocess.Popen], timeout_s: float = 120) -> list[tuple[int, str, str]]:
    out = []
    deadline = time.monotonic() + timeout_s
    for p in procs:
        stdout, stderr = communicate(p, max(1.0, deadline - time.monotonic()))
        out.append((p.returncode, stdout, stderr))
    return out


def run_ranks(env: RankwiseEnv, script: str, world: int, group: str, timeout_s: float = 120, **extra: Any):
    results = wait_all(start_ranks(env, script, world, group, **extra), timeout_s)
    for rank, (code, stdout, stderr) in enumerate(results):
        assert code == 0, f"rank {rank} exited {code}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    return results


def finish_live_runs(timeout_s: float = 2.0) -> None:
    """finish() every run this process still has open, each waiting at most ``timeout_s`` (test teardown:
    before its agent is stopped, so nothing waits for an agent that is gone)."""
    from client import state

    for run in list(state.LIVE_RUNS):
        run.settings = run.settings.replace(finish_timeout_s=timeout_s)
        try:
            run.finish()
        except Exception:  # noqa: BLE001 - teardown goes on whatever a run does
            pass
