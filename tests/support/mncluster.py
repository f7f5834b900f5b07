"""A root agent and "nodes" on loopback, as real processes, for multi-node integration and fault tests.

The root runs in the test's own RANKWISE_DIR / RANKWISE_RUNTIME_DIR (conftest stops it), started by
hand with ``python -m agent --listen tcp://127.0.0.1:PORT``. Each "node" is a pair of short private
directories of its own: its ranks get RANKWISE_DIR / RANKWISE_RUNTIME_DIR pointing there,
RANKWISE_UPSTREAM pointing at the root and SLURMD_NODENAME set to the node's name, so the node
agent they start (as any first ``init()`` does) forwards to the root and the runs carry the node's
name. With ``curve=True`` keys are made with ``rankwise keygen`` and every agent uses them.
Used by tests/multinode/ and the multi-node fault tests (tests/fault/test_mn_*.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rankwise
from support.probes import agent_log, cli, raw_steps, status, wait_for
from support.processes import RankwiseEnv, agent_pid, reap_spawned, stop_agent, torchrun_env

LONG = os.environ.get("RANKWISE_LONG_TESTS") == "1"


def slow(test: Any) -> Any:
    """A long variant: marked ``slow`` and skipped unless RANKWISE_LONG_TESTS=1."""
    return pytest.mark.slow(pytest.mark.skipif(not LONG, reason="long variant: set RANKWISE_LONG_TESTS=1")(test))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, env: RankwiseEnv, tmp: Path, curve: bool = False, **root_env: Any):
        self.root = env
        self.tmp = Path(tmp)
        self.listen = f"tcp://127.0.0.1:{free_port()}"
        self.root_env = {k: str(v) for k, v in root_env.items()}
        self.nodes: dict[str, RankwiseEnv] = {}
        self.procs: list[subprocess.Popen] = []
        self.root_proc: subprocess.Popen | None = None
        self.keys: Path | None = None
        if curve:
            self.keys = self.tmp / "keys"
            allow = self.keys / "allow"
            allow.mkdir(parents=True)
            for name in ("root", "node-a", "node-b", "node-c"):
                out = cli(env, "keygen", name, "--dir", str(self.keys))
                assert out.returncode == 0, out.stderr
                if name != "root":
                    shutil.copy(self.keys / f"{name}.key", allow / f"{name}.key")

    def __repr__(self) -> str:
        root = "not started" if self.root_proc is None else f"pid {self.root_proc.pid}"
        return (
            f"Cluster({self.listen}, root {root}, nodes {sorted(self.nodes)}, {len(self.procs)} processes, "
            f"curve={self.keys is not None})"
        )

    # ------------------------------------------------------------ the root

    def root_cmd(self) -> list[str]:
        cmd = [sys.executable, "-m", "agent", "--listen", self.listen, "--idle-timeout", "0"]
        if self.keys is not None:
            cmd += ["--curve-secret", str(self.keys / "root.key_secret"), "--allow", str(self.keys / "allow")]
        return cmd

    def start_root(self) -> subprocess.Popen:
        log = open(self.tmp / "root.out", "ab")
        proc = subprocess.Popen(
            self.root_cmd(), env=self.root.env(**self.root_env), stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        self.root_proc = proc
        wait_for(lambda: agent_pid(self.root) == proc.pid or proc.poll() is not None, what="the root to serve")
        assert proc.poll() is None, (self.tmp / "root.out").read_text()
        return proc

    # ------------------------------------------------------------ nodes

    def node(self, name: str) -> RankwiseEnv:
        if name not in self.nodes:
            data = tempfile.mkdtemp(prefix="rwn", dir="/tmp")
            runtime = tempfile.mkdtemp(prefix="rwq", dir="/tmp")
            self.nodes[name] = RankwiseEnv(data, runtime)
        return self.nodes[name]

    def node_env(self, name: str, **extra: Any) -> dict[str, str]:
        n = self.node(name)
        env = {
            "RANKWISE_DIR": n.data,
            "RANKWISE_RUNTIME_DIR": n.runtime,
            "RANKWISE_UPSTREAM": self.listen,
            "SLURMD_NODENAME": name,
            "RANKWISE_UPSTREAM_RETRY": "0.5",
        }
        if self.keys is not None:
            env["RANKWISE_CURVE_SECRET"] = str(self.keys / f"{name}.key_secret")
            env["RANKWISE_ROOT_KEY"] = str(self.keys / "root.key")
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def start_node_agent(self, name: str, **extra: Any) -> subprocess.Popen:
        """A node agent started by hand in the foreground (ranks would otherwise start it themselves)."""
        n = self.node(name)
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent"],
            env=self.root.env(**self.node_env(name, **extra)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(proc)
        wait_for(lambda: agent_pid(n) == proc.pid or proc.poll() is not None, what=f"node agent {name}")
        assert proc.poll() is None
        return proc

    def start_rank(self, node: str, script: str, rank: int, world: int, group: str, **extra: Any) -> subprocess.Popen:
        env = dict(torchrun_env(rank, world, group, LOCAL_RANK=rank % 4, **extra), **self.node_env(node))
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(script)],
            env=self.root.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def start_root_rank(self, script: str, rank: int, world: int, group: str, **extra: Any) -> subprocess.Popen:
        """A rank on the root's own machine: it talks to the root over the root's ipc socket, no node agent."""
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(script)],
            env=self.root.env(**torchrun_env(rank, world, group, LOCAL_RANK=rank % 4, **extra)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def status(self, name: str | None = None) -> dict | None:
        return status(self.root if name is None else self.node(name))

    def stop(self) -> None:
        reap_spawned()  # first: processes a script forked could otherwise start a node agent after this
        for p in self.procs:  # the whole process group: a rank's forked children could start a node agent
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            p.wait()
        for n in self.nodes.values():
            stop_agent(n)
        if self.root_proc is not None and self.root_proc.poll() is None:
            self.root_proc.terminate()
            try:
                self.root_proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.root_proc.kill()
        for n in self.nodes.values():
            shutil.rmtree(n.data, ignore_errors=True)
            shutil.rmtree(n.runtime, ignore_errors=True)

    def logs(self) -> str:
        parts = [f"--- root\n{agent_log(self.root)[-4000:]}"]
        parts += [f"--- {name}\n{agent_log(n)[-4000:]}" for name, n in self.nodes.items()]
        return "\n".join(parts)


def root_group(cluster: Cluster, project: str, group: str) -> Any:
    """The group at the root, None while it has not arrived."""
    from rankwise._api import NotFound

    try:
        return rankwise.Api(str(cluster.root.store)).group(project, group)
    except NotFound:
        return None


def delivered(cluster: Cluster, project: str, group: str, counts: dict[int, int], keys=("x",)) -> Any:
    """Every run finished (or as told) with its rows at the root and the group sealed through the end."""

    def done():
        g = root_group(cluster, project, group)
        if g is None:
            return None
        runs = g.runs
        if len(runs) < len(counts) or any(r.state == "running" for r in runs):
            return None
        if any(r.rows != counts[r.rank] for r in runs):
            return None
        last = max(counts.values()) - 1
        for key in keys:
            h = g.history(key)
            if not len(h["step"]) or int(h["step"][-1]) < last:
                return None
        return g

    try:
        return wait_for(done, timeout_s=90, what="everything at the root", interval_s=0.1)
    except AssertionError:
        g = root_group(cluster, project, group)
        runs = [] if g is None else [(r.rank, r.state, r.rows, counts.get(r.rank)) for r in g.runs]
        sealed = None if g is None else {k: len(g.history(k)["step"]) for k in keys}
        ups = {name: (status(n) or {}).get("upstream") for name, n in cluster.nodes.items()}
        import shutil

        # the root's files outlive the test's own directories (pytest keeps the last runs' tmp_path)
        shutil.copytree(cluster.root.data, cluster.tmp / "root-data-at-failure", dirs_exist_ok=True)
        raise AssertionError(
            f"not everything at the root: runs {runs}, group rows {sealed}, status {cluster.status()}, "
            f"upstreams {ups}\n{cluster.logs()}"
        ) from None


def check_exactly_once(cluster: Cluster, project: str, group: str, counts: dict[int, int], value, key: str = "x"):
    """sent == stored, no duplicates (raw store rows), and the root's group rows equal numpy over the ranks
    that reported each step. ``value(rank, steps)`` gives the logged values."""
    g = delivered(cluster, project, group, counts)
    world = g.world_size
    for r in g.runs:
        n = counts[r.rank]
        for k in (key, "_timestamp"):
            assert np.array_equal(raw_steps(cluster.root, project, group, r.name, k), np.arange(n)), (r.name, k)
        assert np.array_equal(r.history_arrays([key])[key][1], value(r.rank, np.arange(n)))
    h = g.history(key)
    steps = np.arange(max(counts.values()))
    table = np.full((world, len(steps)), np.nan)
    for rank, n in counts.items():
        table[rank, :n] = value(rank, np.arange(n))
    present = ~np.isnan(table)
    assert np.array_equal(h["step"], steps)
    assert np.array_equal(h["count"], present.sum(axis=0))
    assert np.array_equal(h["expected"], np.full(len(steps), world))
    assert np.array_equal(h["min"], np.nanmin(table, axis=0))
    assert np.array_equal(h["max"], np.nanmax(table, axis=0))
    assert np.array_equal(h["min_rank"], np.nanargmin(table, axis=0))
    assert np.array_equal(h["max_rank"], np.nanargmax(table, axis=0))
    np.testing.assert_allclose(h["mean"], np.nanmean(table, axis=0), rtol=1e-12)
    np.testing.assert_allclose(h["std"], np.nanstd(table, axis=0), rtol=1e-9, atol=1e-9)
    return g


def wait_exit(procs: list[subprocess.Popen], timeout_s: float = 120) -> list[tuple[int, str, str]]:
    out = []
    deadline = time.monotonic() + timeout_s
    for p in procs:
        stdout, stderr = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        out.append((p.returncode, stdout, stderr))
    return out
