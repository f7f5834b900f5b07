"""Helpers of the UI tests: a UI server on a free port in a thread, JSON GETs, the browser fixture (system
Chromium through Playwright, the ``browser`` fixture of tests/conftest.py; skipped where missing unless
RANKWISE_REQUIRE_BROWSER=1, then a failure), and a big group written straight through the SQLite store classes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from support.probes import wait_for
from support.processes import REPO, RankwiseEnv, run_ranks, stop_agent

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts"


# ---------------------------------------------------------------- server


@contextlib.contextmanager
def served(store: str | os.PathLike, **kwargs: Any) -> Iterator[Any]:
    """A ``rankwise ui`` server over ``store`` on 127.0.0.1 and a free port, with a token as ``rankwise ui``
    has (``get`` sends it, ``page_url`` carries it), stopped afterwards."""
    from rankwise._ui.server import make_server, new_token

    kwargs.setdefault("token", new_token())
    server = make_server(store, "127.0.0.1", 0, **kwargs)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def auth(server: Any) -> dict[str, str]:
    """The header that carries ``server``'s token (none for a server without one)."""
    token = getattr(server, "token", None)
    return {"Authorization": f"token {token}"} if token else {}


def page_url(server: Any, project: str | None = None, group: str | None = None) -> str:
    """The address a browser opens: the group's page (or the start page) with the server's token."""
    from rankwise._ui.address import group_url

    if project is None:
        return server.login_url
    return group_url(project, group, "127.0.0.1", server.port, server.token)


def get(server: Any, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, Any]:
    """(status, decoded JSON body) of one request to ``server``, with its token."""
    req = urllib.request.Request(
        server.url + path.lstrip("/"), headers={**auth(server), **(headers or {})}, method=method
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_group(store: Path, project: str, name: str, cond: Any, what: str, timeout_s: float = 60.0) -> Any:
    """Poll until the agent has created the store and the group and ``cond(group)`` holds; an open Api."""
    import rankwise
    from client.errors import Error

    api = None

    def ready() -> bool:
        nonlocal api
        if not store.exists():
            return False
        try:
            api = api or rankwise.Api(store)
            return bool(cond(api.group(project, name)))
        except Error:  # the schema not created yet, the group not registered yet
            return False

    wait_for(ready, timeout_s, what)
    return api


# ---------------------------------------------------------------- data through the real agent


@contextlib.contextmanager
def own_env() -> Iterator[RankwiseEnv]:
    """Directories and agent for data shared by a module's tests (the autouse fixture gives each test its
    own, empty, ones); rank processes get them through ``env_vars``."""
    data = tempfile.mkdtemp(prefix="rwud", dir="/tmp")
    runtime = tempfile.mkdtemp(prefix="rwur", dir="/tmp")
    env = RankwiseEnv(data, runtime)
    try:
        yield env
    finally:
        stop_agent(env)
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(runtime, ignore_errors=True)


def env_vars(env: RankwiseEnv) -> dict[str, str]:
    return {"RANKWISE_DIR": env.data, "RANKWISE_RUNTIME_DIR": env.runtime, "RANKWISE_AGENT_IDLE_TIMEOUT": "60"}


def log_group(env: RankwiseEnv, script: str, world: int, group: str) -> None:
    run_ranks(env, script, world, group, **env_vars(env))


# ---------------------------------------------------------------- browser


def require_browser() -> Any:
    """Playwright's sync API, or skip (fail under RANKWISE_REQUIRE_BROWSER=1) when it or Chromium is missing."""
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "the Python package playwright is not installed (pip install -e '.[test]')"
    if missing is None and not os.access(CHROMIUM, os.X_OK):
        missing = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if missing:
        if os.environ.get("RANKWISE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"RANKWISE_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    return sync_playwright


@contextlib.contextmanager
def launch_browser() -> Iterator[Any]:
    """Headless system Chromium (the ``browser`` fixture of tests/conftest.py), closed afterwards."""
    sync_playwright = require_browser()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            yield b
        finally:
            b.close()


def artifact(name: str) -> str:
    ARTIFACTS.mkdir(exist_ok=True)
    return str(ARTIFACTS / name)


def watch_errors(page: Any) -> list[str]:
    """Collect uncaught page errors and console errors: a test asserts the list stays empty."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    return errors


# ---------------------------------------------------------------- a big group, written through the store


BIG_KEYS = ("loss", "acc", "grad_norm", "lr")


def big_values(rank: int, steps: int) -> dict[str, np.ndarray]:
    """The per-rank values of the big group (deterministic), with a one-step spike in rank 3's loss."""
    rng = np.random.default_rng(rank)
    s = np.arange(steps)
    vals = {
        "loss": 2.0 * np.exp(-s / (steps / 4)) + 0.05 * rng.standard_normal(steps) + 0.01 * rank,
        "acc": 1.0 - np.exp(-s / (steps / 5)) + 0.02 * rng.standard_normal(steps),
        "grad_norm": np.abs(1.0 + 0.3 * rng.standard_normal(steps)),
        "lr": np.full(steps, 3e-4) * (1 - s / steps),
    }
    if rank == 3:
        vals["loss"][BIG_SPIKE_STEP] = BIG_SPIKE
    return vals


BIG_SPIKE_STEP, BIG_SPIKE = 77_777, 50.0


def write_big_group(
    store_path: Path, project: str, group: str, ranks: int = 8, steps: int = 100_000, chunk: int = 1000
) -> None:
    """Write a finished group as the agent would: one transaction per ``chunk`` steps holding every rank's
    history chunk of every key (and _timestamp/_runtime) and the group rows of those steps reduced by the
    agent's own reducers. Far faster than 800,000 log() calls through the agent, same layout on disk."""
    from agent.store.sqlite import SQLiteStore
    from grouping import finalize, reduce_points

    store = SQLiteStore(store_path)
    t0 = 1.7e9
    runs = []
    for rank in range(ranks):
        info = {
            "name": f"rank-{rank}",
            "run_key": f"big-{rank}",
            "rank": rank,
            "local_rank": rank,
            "node": "node-0",
            "pid": 100000 + rank,
            "config": {"lr": 3e-4, "seed": rank},
        }
        g, r, _ = store.register(project, group, ranks, info, t0)
        runs.append(r)
    values = [big_values(rank, steps) for rank in range(ranks)]
    # rank 6 is slower: 12 ms a step against 10 ms for the others
    times = [t0 + np.arange(steps) * (0.012 if rank == 6 else 0.010) for rank in range(ranks)]
    for lo in range(0, steps, chunk):
        s = np.arange(lo, min(steps, lo + chunk), dtype=np.int64)
        with store.transaction() as txn:
            for rank, r in enumerate(runs):
                txn.add_history(r.id, "_timestamp", s, times[rank][s], False)
                txn.add_history(r.id, "_runtime", s, times[rank][s] - t0, False)
                for key in BIG_KEYS:
                    txn.add_history(r.id, key, s, values[rank][key][s], False)
            for key in BIG_KEYS:
                points = reduce_points(
                    np.tile(s, ranks),
                    np.repeat(np.arange(ranks, dtype=np.int64), len(s)),
                    np.concatenate([values[rank][key][s] for rank in range(ranks)]),
                )
                txn.add_group_rows(g.id, key, finalize(points, ranks), False)
    with store.transaction() as txn:
        for rank, r in enumerate(runs):
            r.state, r.exit_code, r.step, r.rows = "finished", 0, steps, steps
            r.runtime = float(times[rank][-1] - t0)
            r.finished = float(times[rank][-1])
            r.summary = {k: float(values[rank][k][-1]) for k in BIG_KEYS}
            txn.put_run(r)
        g.sealed_through = steps - 1
        txn.put_group(g)
    store.close()


# ---------------------------------------------------------------- a group with a NaN rank and alerts


def health_values(rank: int, steps: int, nan_rank: int, nan_step: int) -> dict[str, np.ndarray]:
    """Per-rank values of the health group: ``nan_rank``'s loss is NaN from ``nan_step`` on."""
    s = np.arange(steps)
    loss = 2.0 * np.exp(-s / 150) + 0.01 * rank + 0.001 * np.sin(s + rank)
    if rank == nan_rank:
        loss[nan_step:] = np.nan
    return {"loss": loss, "acc": 1.0 - np.exp(-s / 200) + 0.001 * rank}


def write_health_group(
    store_path: Path, project: str, group: str, ranks: int, steps: int, nan_rank: int, nan_step: int, state: str
) -> list[Any]:
    """A group written as the agent would (group rows by the agent's own reducers), whose ``nan_rank`` logs a
    NaN loss from ``nan_step`` on; summaries: that rank's loss NaN, rank 1's grad_norm +inf, rank 0 alone has
    val_acc (the others' is missing). Runs end in ``state``; returns the run records."""
    from agent.store.sqlite import SQLiteStore
    from grouping import finalize, reduce_points

    store = SQLiteStore(store_path)
    t0 = 1.7e9
    runs, g = [], None
    for rank in range(ranks):
        info = {"name": f"rank-{rank}", "run_key": f"{group}-{rank}", "rank": rank, "local_rank": rank}
        g, r, _ = store.register(project, group, ranks, {**info, "node": "node-0", "pid": 200000 + rank}, t0)
        runs.append(r)
    values = [health_values(rank, steps, nan_rank, nan_step) for rank in range(ranks)]
    s = np.arange(steps, dtype=np.int64)
    with store.transaction() as txn:
        for rank, r in enumerate(runs):
            txn.add_history(r.id, "_timestamp", s, t0 + s / 64, False)  # exact in float64: even step times
            for key in ("loss", "acc"):
                txn.add_history(r.id, key, s, values[rank][key], False)
        for key in ("loss", "acc"):
            points = reduce_points(
                np.tile(s, ranks),
                np.repeat(np.arange(ranks, dtype=np.int64), steps),
                np.concatenate([values[rank][key] for rank in range(ranks)]),
            )
            txn.add_group_rows(g.id, key, finalize(points, ranks), False)
        for rank, r in enumerate(runs):
            r.state, r.step, r.rows, r.runtime = state, steps, steps, steps / 64
            r.exit_code = 0 if state == "finished" else None
            r.summary = {"loss": float(values[rank]["loss"][-1]), "grad_norm": float("inf") if rank == 1 else 1.0}
            if rank == 0:
                r.summary["val_acc"] = 0.5
            if rank == 3:
                del r.summary["grad_norm"]
            txn.put_run(r)
        g.sealed_through = steps - 1
        txn.put_group(g)
    store.close()
    return runs


def add_alerts(store_path: Path, alerts: list[Any]) -> None:
    """Store ``alerts`` (agent/alerts/alert.py) through a real SQLiteStore transaction, as the agent does."""
    from agent.store.sqlite import SQLiteStore

    store = SQLiteStore(store_path)
    try:
        with store.transaction() as txn:
            for a in alerts:
                txn.add_alert(a)
    finally:
        store.close()
