"""Probes for integration and fault-injection tests: polling, agent processes, raw store counts.

Everything here observes; nothing sleeps to make an assertion true. ``wait_for`` polls a
condition against a generous deadline (machines running the suite are shared and slow): the one
polling helper of the tests. ``raw_steps`` reads the store's history table directly, without the
readers' "last write wins" folding, so a duplicated batch shows up as a duplicated step.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import psutil

from support.processes import RankwiseEnv, spawn

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T], timeout_s: float = 30.0, what: str = "condition", interval_s: float = 0.02
) -> T:
    """Poll ``condition`` until it returns something truthy and return that; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} (last value {value!r})")
        time.sleep(interval_s)


def agent_processes(env: RankwiseEnv) -> list[psutil.Process]:
    """Live processes running ``python -m agent`` for ``env``'s runtime directory (zombies excluded)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            cmd = proc.info["cmdline"] or []
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "-m" in cmd and "agent" in cmd and cmd.index("agent") == cmd.index("-m") + 1 and env.runtime in cmd:
            found.append(proc)
    return found


def pid_gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def agent_log(env: RankwiseEnv) -> str:
    try:
        return (Path(env.data) / "agent.log").read_text()
    except FileNotFoundError:
        return ""


def status(env: RankwiseEnv, timeout_s: float = 5.0) -> dict | None:
    """The running agent's STATUS reply (what ``rankwise status --json`` prints), None without an agent."""
    from rankwise._control import request

    return request("status", runtime_dir=env.runtime, timeout_s=timeout_s)


def rankwise_cmd() -> list[str]:
    """The installed ``rankwise`` console script (the command users type), else ``python -m``."""
    script = Path(sys.executable).with_name("rankwise")
    return [str(script)] if script.exists() else [sys.executable, "-m", "rankwise._cli"]


def cli(env: RankwiseEnv, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(rankwise_cmd() + list(args), env=env.env(), capture_output=True, text=True, timeout=timeout_s)


def status_json(env: RankwiseEnv) -> dict:
    """``rankwise status --json``, parsed; fails the test when the command fails."""
    out = cli(env, "status", "--json")
    assert out.returncode == 0, f"rankwise status --json exited {out.returncode}: {out.stderr}"
    return json.loads(out.stdout)


def start_script(
    env: RankwiseEnv, script: str, extra_env: dict[str, Any] | None = None, **popen: Any
) -> subprocess.Popen:
    """One Python process running ``script`` (dedented) with ``env``'s environment plus ``extra_env``."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return spawn([sys.executable, "-c", textwrap.dedent(script)], env.env(**(extra_env or {})), text=True, **popen)


def read_line(proc: subprocess.Popen, timeout_s: float = 30.0, what: str = "a line") -> str:
    """The next line of ``proc``'s stdout, failing (with its stderr) if it exits or stays silent.

    The line is read by ``readline()`` in a thread: a select on the file descriptor would wait for output
    the text wrapper may already hold (a ``readline()`` reads what the pipe has, several lines at once).
    Lines read ahead stay in that buffer for the next ``read_line`` and for ``communicate`` (processes.py)."""
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    if reader.is_alive():
        raise AssertionError(f"no output from pid {proc.pid} within {timeout_s:.0f} s (waiting for {what})")
    if not got[0]:
        proc.wait(timeout=timeout_s)
        raise AssertionError(f"pid {proc.pid} exited {proc.returncode} before {what}:\n{proc.stderr.read()}")
    return got[0].strip()


def kill9(proc: subprocess.Popen | int) -> None:
    pid = proc if isinstance(proc, int) else proc.pid
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------- the store, without the readers' folding


def _connect(env: RankwiseEnv) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{env.store}?mode=ro", uri=True, timeout=30)


def run_id(env: RankwiseEnv, project: str, group: str, name: str) -> int:
    with _connect(env) as con:
        row = con.execute(
            "SELECT r.id FROM runs r JOIN groups g ON g.id = r.group_id WHERE g.project=? AND g.name=? AND r.name=?",
            (project, group, name),
        ).fetchone()
    assert row is not None, f"no run {project}/{group}/{name} in {env.store}"
    return int(row[0])


def raw_steps(env: RankwiseEnv, project: str, group: str, name: str, key: str) -> np.ndarray:
    """Every stored step of ``key`` for one run, as written (duplicates kept), in step order."""
    rid = run_id(env, project, group, name)
    with _connect(env) as con:
        rows = con.execute(
            "SELECT h.steps FROM history h JOIN keys k ON k.id = h.key_id WHERE h.run_id=? AND k.name=? ORDER BY h.id",
            (rid, key),
        ).fetchall()
    if not rows:
        return np.empty(0, np.int64)
    return np.sort(np.concatenate([np.frombuffer(r[0], "<i8") for r in rows]))


def group_runs(env: RankwiseEnv, project: str, group: str) -> list[tuple[str, int, str]]:
    """(name, rank, state) of every run of a group, straight from the store."""
    with _connect(env) as con:
        return con.execute(
            "SELECT r.name, r.rank, r.state FROM runs r JOIN groups g ON g.id = r.group_id "
            "WHERE g.project=? AND g.name=? ORDER BY r.rank, r.id",
            (project, group),
        ).fetchall()
