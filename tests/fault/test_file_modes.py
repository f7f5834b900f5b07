"""Other local users read nothing: every file the agent creates (store, WAL/SHM, media, log, agent.json,
spool, quarantine) is 0600 and every folder 0700, whatever the umask of the job that started it and even
in a pre-existing data directory left open (0755), which the agent log and ``rankwise status`` warn about."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from support.processes import run_ranks

SCRIPT = """
import os
os.umask(0o022)                  # a login shell's umask: files 0644, folders 0755 unless the agent says otherwise
import numpy as np, rankwise
run = rankwise.init(project="modes", config={"api_key": "sk-secret"})
for s in range(20):
    run.log({"loss": float(s), "img": rankwise.Image(np.full((8, 8, 3), s, dtype=np.uint8))})
run.finish()
"""

NOBODY = """
import json, os, sys
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
out = {}
for path in sys.argv[1:]:
    try:
        with open(path, "rb") as f:
            f.read(16)
        out[path] = "read"
    except PermissionError:
        out[path] = "denied"
print(json.dumps(out))
"""


def modes(root: Path) -> dict[str, int]:
    """Mode bits of everything under ``root`` (not ``root`` itself), by relative path."""
    return {str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode) for p in root.rglob("*") if not p.is_symlink()}


def test_agent_files_are_private_in_an_open_data_dir(rankwise_env):
    """In a data dir left at 0755, a job with umask 022 logs scalars, images and a secret in its config: the
    agent's files are 0600 and its folders 0700; the agent log and ``rankwise status`` (stderr) warn that
    the data directory is open; a process of another user (uid 65534) can read neither the store nor a
    media file."""
    data = Path(rankwise_env.data)
    os.chmod(data, 0o755)
    run_ranks(rankwise_env, SCRIPT, 1, "job-modes")
    status = subprocess.run(
        [sys.executable, "-m", "rankwise._cli", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        env=rankwise_env.env(),
    )
    assert status.returncode == 0, status.stderr
    assert f"warning: data directory {data} is open to other users (mode 0755)" in status.stderr
    assert f"chmod 700 {data}" in status.stderr
    log = (data / "agent.log").read_text()
    assert f"data directory {data} is open to other users (mode 0755)" in log
    found = modes(data) | {f"runtime/{k}": v for k, v in modes(Path(rankwise_env.runtime)).items()}
    media = sorted(k for k in found if k.startswith("media/") and k.endswith(".png"))
    assert len(media) == 20, found
    for name in ("store.sqlite", "store.sqlite-wal", "store.sqlite-shm", "agent.log", "runtime/agent.json"):
        assert found.get(name) == 0o600, (name, found.get(name))
    loose = {
        k: oct(v)
        for k, v in found.items()
        if v
        != (
            0o700
            if (data / k).is_dir() or (Path(rankwise_env.runtime) / k.removeprefix("runtime/")).is_dir()
            else 0o600
        )
    }
    assert loose == {}, loose
    if os.getuid() != 0:
        pytest.skip("the other-user check needs root to become uid 65534")
    targets = [str(data / "store.sqlite"), str(data / "store.sqlite-wal"), str(data / media[0])]
    res = subprocess.run([sys.executable, "-c", NOBODY, *targets], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {t: "denied" for t in targets}


def test_spool_and_quarantine_files_are_0600_under_any_umask(tmp_path):
    """A node agent's spool segments and its acked mark are 0600, its folder 0700, with umask 022."""
    from agent.spool import Spool

    old = os.umask(0o022)
    try:
        spool = Spool(tmp_path / "spool")
        for _ in range(3):
            spool.append(b"x" * 100)
        spool.maybe_fsync(force=True)
        spool.ack(2)
        spool.close()
    finally:
        os.umask(old)
    found = modes(tmp_path)
    assert found.pop("spool") == 0o700
    assert found and set(found.values()) == {0o600}, found


def test_keygen_secret_is_0600_and_public_key_0644(tmp_path):
    """``rankwise keygen`` with umask 022: the secret key 0600 (never readable by others), the public 0644."""
    from agent.keys import keygen

    old = os.umask(0o022)
    try:
        public, secret = keygen(tmp_path / "keys", "root")
    finally:
        os.umask(old)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and stat.S_IMODE(public.stat().st_mode) == 0o644


def test_client_spill_files_and_new_data_dir_are_private(tmp_path):
    """A training process's spill segments are 0600 and the folders it creates for them, the data
    directory included when it does not exist yet, 0700, with umask 022."""
    from client.spill import SpillFifo

    old = os.umask(0o022)
    try:
        fifo = SpillFifo(tmp_path / "data" / "spill", "w1", segment_bytes=64)
        for _ in range(3):
            assert fifo.push(b"x" * 100)
    finally:
        os.umask(old)
    found = modes(tmp_path)
    assert found.pop("data") == 0o700 and found.pop("data/spill") == 0o700
    assert len(found) == 3 and set(found.values()) == {0o600}, found
