"""Memory pinning by partial frames: peers that announce big frames and send them only in part cannot
grow an agent without bound. The agent's socket refuses a frame announced above the frame limit
(MAX_FRAME_BYTES) at its header; the root admits at most RANKWISE_ROOT_MAX_CONNECTIONS connections at
once (more are shut at accept and counted), so what partial frames pin is bounded by connections × limit.
Real sockets, real ZMTP, the agent's RSS measured."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys

import psutil

from support.mncluster import Cluster
from support.probes import wait_for
from support.processes import agent_pid, spawn

MB = 1 << 20


def zmtp_null_dealer(sock: socket.socket) -> None:
    """The client side of a ZMTP 3.0 NULL handshake as a DEALER (greeting, READY), written raw."""
    greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
    body = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
    sock.sendall(greeting + bytes([0x04, len(body)]) + body)


def send_partial(sock: socket.socket, announced: int, sent: int) -> bool:
    """The handshake, then a frame of ``announced`` bytes of which ``sent`` are sent; False when the peer
    dropped us on the way."""
    chunk = b"\x00" * MB
    try:
        zmtp_null_dealer(sock)
        sock.sendall(bytes([0x02]) + struct.pack(">Q", announced))
        for _ in range(sent // MB):
            sock.sendall(chunk)
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the other end closed or reset ``sock`` (waits for it, at most 30 s)."""
    sock.settimeout(30)
    try:
        while sock.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def test_agent_drops_a_peer_announcing_a_frame_over_the_limit(rankwise_env):
    """Four connections on the agent's ipc socket each announce a 100 MB frame (over the 64 MiB limit) and
    try to send 90 MB of it: the agent drops each at the frame header, its RSS grows by less than 32 MB
    (before: the whole 360 MB stayed pinned), and it still answers ``rankwise status``."""
    proc = spawn(
        [sys.executable, "-m", "agent", "--idle-timeout", "0"],
        rankwise_env.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pid = wait_for(lambda: agent_pid(rankwise_env) == proc.pid and proc.pid, what="the agent")
    endpoint = rankwise_env.agent_info()["endpoint"]
    assert endpoint.startswith("ipc://")
    before = rss(pid)
    conns, dropped = [], 0
    try:
        for _ in range(4):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(60)
            s.connect(endpoint[len("ipc://") :])
            conns.append(s)
            dropped += not send_partial(s, 100_000_000, 90 * MB)
        grown = rss(pid) - before
    finally:
        for s in conns:
            s.close()
    assert dropped == 4
    assert grown < 32 * MB, f"agent RSS grew by {grown / MB:.0f} MB"
    from support.probes import status

    assert status(rankwise_env)["pid"] == pid


def test_root_shuts_connections_beyond_its_limit(rankwise_env, tmp_path):
    """A root with RANKWISE_ROOT_MAX_CONNECTIONS=3 (plain, --insecure, so partial frames get past the
    handshake): of 10 connections each sending 40 MB of a 48 MB frame, 7 are shut at accept and counted
    as refused ``connection_limit``; ``rankwise status`` shows 3 connections and the bound on bytes in
    flight; the root's RSS grows by less than 3 × 48 MB + 40 MB (before: 10 × 40 MB)."""
    cluster = Cluster(rankwise_env, tmp_path, RANKWISE_ROOT_MAX_CONNECTIONS=3)
    cluster.root_cmd = lambda: [
        sys.executable,
        "-m",
        "agent",
        "--listen",
        cluster.listen,
        "--idle-timeout",
        "0",
        "--insecure",
    ]
    root = cluster.start_root()
    host, port = cluster.listen[len("tcp://") :].rsplit(":", 1)
    before = rss(root.pid)
    conns = []
    try:
        for i in range(10):
            try:
                s = socket.create_connection((host, int(port)), timeout=60)
            except ConnectionResetError:  # shut by the root before connect() returned here
                continue
            conns.append(s)
            if i == 2:  # the first three are in: wait for the root to count them, so which ones are shut is known
                wait_for(lambda: cluster.status()["listen"]["connections"] == 3, what="3 connections at the root")
            send_partial(s, 48 * MB, 40 * MB)
        listen = wait_for(
            lambda: (lambda ls: ls["refused"].get("connection_limit") == 7 and ls)(cluster.status()["listen"]),
            what="7 connections refused",
        )
        reset = sum(closed_by_peer(s) for s in conns[3:])
        grown = rss(root.pid) - before
    finally:
        for s in conns:
            s.close()
        cluster.stop()
    assert reset + (10 - len(conns)) == 7  # every connection past the third was reset by the root
    assert listen["connections"] == 3 and listen["max_connections"] == 3
    assert listen["max_bytes_in_flight"] == 3 * listen["max_frame_bytes"]
    assert grown < 3 * 48 * MB + 40 * MB, f"root RSS grew by {grown / MB:.0f} MB"
