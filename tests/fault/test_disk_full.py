"""A real full disk under a real agent and a real client: RANKWISE_DIR on a small tmpfs this test mounts
(root only; skipped otherwise, with the reason), filled with a filler file while a run logs a new key,
then freed. The in-process variants (SQLITE_FULL from SQLite itself): tests/agent/test_store_trouble.py."""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

import rankwise
from support.probes import cli, status
from support.processes import agent_pid, finish_live_runs, stop_agent

BUDGET = 1 << 20  # RANKWISE_AGENT_PENDING_BYTES
BATCH_ROWS = 64  # RANKWISE_BATCH_MAX_ROWS: one batch of NOTE-sized rows stays below ONE_BATCH
NOTE = 2048  # bytes of text per row logged while the disk is full
ONE_BATCH = 256 << 10


@pytest.fixture
def small_disk(rankwise_env, monkeypatch):
    """RANKWISE_DIR on a 96 MiB tmpfs; unmounted at teardown (after the agent stopped)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the in-process variant runs everywhere)")
    mnt = Path(tempfile.mkdtemp(prefix="rwfull", dir="/tmp"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=96m,mode=0700", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if done.returncode != 0:
        mnt.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    monkeypatch.setenv("RANKWISE_DIR", str(mnt))
    rankwise_env.data = str(mnt)
    try:
        yield mnt
    finally:
        finish_live_runs()
        stop_agent(rankwise_env)
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        mnt.rmdir()


def fill(directory: Path) -> Path:
    """A file taking every free byte of the filesystem (then writes of others fail with ENOSPC)."""
    path = directory / "filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        st = os.statvfs(directory)
        try:
            os.posix_fallocate(fd, 0, st.f_bavail * st.f_frsize)
        except OSError:
            pass
        os.lseek(fd, 0, os.SEEK_END)
        chunk = b"\0" * 4096
        while True:
            try:
                os.write(fd, chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    finally:
        os.close(fd)
    return path


def wait_status(env, until, what: str, timeout_s: float = 60.0, seen: list | None = None) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        st = status(env)
        if st is not None and seen is not None:
            seen.append(st)
        if st is not None and until(st):
            return st
        assert time.monotonic() < deadline, f"timed out waiting for {what}; last status: {st}"
        time.sleep(0.05)


def test_full_disk_holds_back_clients_and_stores_every_row_under_its_key_once_space_returns(
    small_disk, rankwise_env, monkeypatch
):
    """With RANKWISE_DIR on a full filesystem a run logs a new key (and 48 MiB of text): `rankwise status`
    says "disk full", the uncommitted bytes it reports never exceed the budget + one batch, batches beyond
    it are held (not acknowledged) and the agent's RSS grows by less than half of what was logged meanwhile
    (without the budget it holds all of it). Once space returns every row is stored
    with its exact value under its own key, history() works, the agent log says so, and a second run's new
    key does not show the first run's values."""
    monkeypatch.setenv("RANKWISE_AGENT_PENDING_BYTES", str(BUDGET))
    monkeypatch.setenv("RANKWISE_BATCH_MAX_ROWS", str(BATCH_ROWS))
    monkeypatch.setenv("RANKWISE_RETRY_AFTER", "0.2")
    run = rankwise.init(project="df", group="g-full", name="a")
    for i in range(100):
        run.log({"loss": float(i)})
    assert run.flush(30)
    agent = psutil.Process(agent_pid(rankwise_env))
    baseline = agent.memory_info().rss
    peak = baseline

    filler = fill(small_disk)
    seen: list[dict] = []
    text = lambda i: f"{i:08d}" + "x" * (NOTE - 8)  # noqa: E731
    step = 100
    # a new key (acc) from the first row on, with 2 KiB of text per row (no commit of these fits in what the
    # WAL file already holds): 24 x 1024 rows, 48 MiB while the store takes nothing
    for _block in range(24):
        for _ in range(1024):
            run.log({"loss": float(step), "acc": step * 0.5, "note": text(step)})
            step += 1
        wait_status(rankwise_env, lambda s: True, "status", seen=seen)
        peak = max(peak, agent.memory_info().rss)
    logged = step
    st = wait_status(rankwise_env, lambda s: s["counters"].get("held_batches", 0) > 200, "held batches", seen=seen)
    assert st["store_state"] == "disk full"
    shown = cli(rankwise_env, "status")
    assert shown.returncode == 0 and "STORE: disk full" in shown.stdout, shown.stdout + shown.stderr
    peak = max(peak, agent.memory_info().rss)
    assert peak - baseline < 24 << 20, f"agent RSS grew by {(peak - baseline) >> 20} MiB while the disk was full"
    most = max(s.get("pending_bytes", 0) for s in seen)
    assert 0 < most <= BUDGET + ONE_BATCH, most

    filler.unlink()
    assert run.flush(60), "not every row was acknowledged after space returned"
    wait_status(rankwise_env, lambda s: s["store_state"] == "ok", "the store to be ok again")
    run.finish()
    run_b = rankwise.init(project="df", group="g-full", name="b")
    for i in range(5):
        run_b.log({"other": 100.0 + i})
    run_b.finish()

    with rankwise.Api(small_disk) as api:
        group = api.group("df", "g-full")
        a = group.run(name="a").history_arrays()
        assert a["loss"][0].tolist() == list(range(logged))
        assert a["loss"][1].tolist() == [float(i) for i in range(logged)]
        assert a["acc"][0].tolist() == list(range(100, logged))
        assert np.asarray(a["acc"][1]).tolist() == [i * 0.5 for i in range(100, logged)]
        assert a["note"][0].tolist() == list(range(100, logged))
        assert a["note"][1] == [text(i) for i in range(100, logged)]
        rows = group.run(name="a").history(["acc"])
        assert len(rows) == logged - 100 and rows[-1] == {**rows[-1], "_step": logged - 1, "acc": (logged - 1) * 0.5}
        b = group.run(name="b").history_arrays()
        assert sorted(k for k in b if not k.startswith("_")) == ["other"]
        assert np.asarray(b["other"][1]).tolist() == [100.0, 101.0, 102.0, 103.0, 104.0]
    log_text = (small_disk / "agent.log").read_text()
    assert "store writable again" in log_text and "cannot rollback" not in log_text
