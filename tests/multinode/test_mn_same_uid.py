"""A root listening on loopback without Curve keys admits node agents of its own user only: it is a
CurveZMQ server with a key pair kept in a 0700 folder (RANKWISE_LINK_DIR), node agents of the same user
pick the key up by themselves, and a peer of another user (or any peer without the key) never gets an
answer nor anything stored; the root counts it as refused."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np

from support.mncluster import check_exactly_once, wait_exit
from support.probes import wait_for

RANK = """
import rankwise
run = rankwise.init(project="uid")
for s in range(50):
    run.log({"x": float(s)})
run.finish()
"""

# connects as uid 65534 (or as this user without the key) and says HELLO in plain ZMTP; prints what came back
ROGUE = """
import json, os, sys
import msgpack, zmq
key_file, endpoint, drop = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
if drop:
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
try:
    open(key_file).read()
    key = "read"
except PermissionError:
    key = "denied"
ctx = zmq.Context()
sock = ctx.socket(zmq.DEALER)
sock.setsockopt(zmq.LINGER, 0)
sock.connect(endpoint)
sock.send(msgpack.packb([1, "nhello", {"a": "rogue-agent", "i": "x", "n": "rogue", "h": 1}]), zmq.NOBLOCK)
print(json.dumps({"key": key}), flush=True)
sys.stdin.readline()                      # the test saw the root refuse the handshake
print(json.dumps({"reply": sock.poll(0) != 0}), flush=True)
"""


def _refused(cluster) -> int:
    s = cluster.status() or {}
    return sum(v for k, v in s.get("listen", {}).get("refused", {}).items())


def test_keyless_loopback_root_admits_only_its_own_user(cluster, tmp_path, monkeypatch):
    """A same-user node agent forwards every row to a keyless loopback root (status: auth "same user" on
    both ends); the root's key file is 0600 in a 0700 folder; a plain peer of uid 65534 cannot read the
    key, gets no answer to its HELLO and is counted refused, and so is a plain peer of the same user."""
    links = tmp_path / "links"
    monkeypatch.setenv("RANKWISE_LINK_DIR", str(links))
    cluster.start_root()
    port = int(cluster.listen.rsplit(":", 1)[1])
    key_files = list(links.glob(f"*-{port}.json"))
    assert len(key_files) == 1
    assert stat.S_IMODE(key_files[0].stat().st_mode) == 0o600 and stat.S_IMODE(links.stat().st_mode) == 0o700
    listen = cluster.status()["listen"]
    assert listen["auth"] == "same user" and listen["curve"] is True
    results = wait_exit([cluster.start_rank("a", RANK, r, 2, "g-uid") for r in range(2)])
    assert [code for code, _, _ in results] == [0, 0], results
    check_exactly_once(cluster, "uid", "g-uid", {0: 50, 1: 50}, lambda rank, s: s.astype(float))
    assert cluster.status("a")["upstream"]["auth"] == "same user"

    for drop in ((True,) if os.getuid() == 0 else ()) + (False,):
        before = _refused(cluster)
        rogue = subprocess.Popen(
            [sys.executable, "-c", ROGUE, str(key_files[0]), cluster.listen, "1" if drop else "0"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            first = json.loads(rogue.stdout.readline() or "{}")
            assert first == {"key": "denied" if drop else "read"}, rogue.stderr.read()
            wait_for(lambda: _refused(cluster) > before, timeout_s=30, what="the root to refuse the plain peer")
            out, err = rogue.communicate("go\n", timeout=30)
        finally:
            if rogue.poll() is None:
                rogue.kill()
        assert json.loads(out) == {"reply": False}, err
    assert "rogue-agent" not in {lk["agent"] for lk in cluster.status()["links"]}
    g = check_exactly_once(cluster, "uid", "g-uid", {0: 50, 1: 50}, lambda rank, s: s.astype(float))
    assert [r.node for r in g.runs] == ["a", "a"] and np.array_equal(g.history("x")["count"], np.full(50, 2))


def test_node_agent_started_before_the_root_waits_for_its_key(cluster, tmp_path, monkeypatch):
    """A node agent whose ranks start before the root exists (no key published yet) keeps everything in its
    spool, picks up the key once the root publishes it, and delivers every row."""
    monkeypatch.setenv("RANKWISE_LINK_DIR", str(tmp_path / "links"))
    results = wait_exit([cluster.start_rank("b", RANK, 0, 1, "g-late")])
    assert [code for code, _, _ in results] == [0], results
    assert cluster.status("b")["upstream"]["auth"] == "waiting for the root's key"
    cluster.start_root()
    check_exactly_once(cluster, "uid", "g-late", {0: 50}, lambda rank, s: s.astype(float))
    assert cluster.status("b")["upstream"]["auth"] == "same user"
