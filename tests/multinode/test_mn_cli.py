"""The command line of multi-node: ``rankwise keygen``, the role flags of ``rankwise agent`` and their
checks, ``rankwise status`` of a root and of a node agent whose key the root does not accept."""

from __future__ import annotations

import stat
import subprocess
import sys

import rankwise
from support.mncluster import Cluster, free_port, wait_exit
from support.probes import cli, wait_for

SCRIPT = """
import rankwise
run = rankwise.init(project="mncli")
for s in range(50):
    run.log({"x": float(s)})
run.finish()
print(run.stats["rows_sent"], run.stats["unacked_rows"], flush=True)
"""


def test_keygen_writes_a_private_secret_and_refuses_to_overwrite(rankwise_env, tmp_path):
    """``rankwise keygen node1 --dir D`` writes node1.key (public) and node1.key_secret (mode 0600) that
    zmq.auth reads back as a key pair, prints how to use them; a second run with the same name fails
    with exit status 1 and names the file instead of overwriting it."""
    out = cli(rankwise_env, "keygen", "node1", "--dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "--curve-secret" in out.stdout and "RANKWISE_ROOT_KEY" in out.stdout
    import zmq.auth

    public, secret = zmq.auth.load_certificate(str(tmp_path / "node1.key_secret"))
    assert zmq.auth.load_certificate(str(tmp_path / "node1.key")) == (public, None) and len(secret) == 40
    assert stat.S_IMODE((tmp_path / "node1.key_secret").stat().st_mode) == 0o600
    again = cli(rankwise_env, "keygen", "node1", "--dir", str(tmp_path))
    assert again.returncode == 1 and "node1.key exists" in again.stderr


def _agent(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], env=env.env(), capture_output=True, text=True, timeout=60
    )


def test_role_flags_are_checked(rankwise_env, tmp_path):
    """``--listen`` with ``--upstream`` (two roles), an endpoint that is not tcp://, Curve half
    configured, and plain TCP on a non-loopback address without ``--insecure`` are refused before
    anything is bound, each naming the fix; no agent is left running."""
    port = free_port()
    cases = [
        (["--listen", f"tcp://127.0.0.1:{port}", "--upstream", f"tcp://127.0.0.1:{port}"], 2, "exclude each other"),
        (["--upstream", "ipc:///tmp/x"], 2, "expected tcp://HOST:PORT"),
        (["--listen", f"tcp://127.0.0.1:{port}", "--curve-secret", str(tmp_path / "k")], 2, "--allow DIR"),
        (["--upstream", f"tcp://127.0.0.1:{port}", "--curve-secret", str(tmp_path / "k")], 2, "--root-key FILE"),
        (["--listen", f"tcp://10.255.255.1:{port}"], 1, "pass --insecure"),
    ]
    for args, code, message in cases:
        done = _agent(rankwise_env, *args)
        assert done.returncode == code, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
    assert rankwise_env.agent_info() is None


def test_node_agent_with_a_key_the_root_does_not_allow(rankwise_env, tmp_path):
    """node-c's key is not in the root's allow-list: its rank is still acknowledged from the node's spool
    (log and finish succeed), but nothing reaches the root: the node agent reports its upstream not
    connected with the records waiting, the root counts the refused handshakes and has no node agent
    and no data. ``rankwise status`` of the root says so."""
    c = Cluster(rankwise_env, tmp_path, curve=True)
    try:
        (c.keys / "allow" / "node-c.key").unlink()
        c.start_root()
        ((code, out, err),) = wait_exit([c.start_rank("node-c", SCRIPT, 0, 1, "job-nokey")])
        assert code == 0, err
        assert out.split() == ["50", "0"]
        st = wait_for(
            lambda: (s := c.status()) and s["listen"]["refused"].get("not_allowed", 0) >= 1 and s,
            what="the root to refuse node-c",
        )
        assert st["links"] == [] and st["counters"].get("rows", 0) == 0
        up = c.status("node-c")["upstream"]
        assert up["connected"] is False and up["unacked_records"] > 0
        assert rankwise.Api(str(c.root.store)).groups() == []
        text = cli(c.root, "status").stdout
        assert f"node agents on {c.listen} (Curve): 0; refused connections:" in text and "not_allowed" in text
    finally:
        c.stop()
