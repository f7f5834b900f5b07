"""Live updates from ClickHouse: the UI over a store URL follows a running group (its /events stream sends
an update when the agent commits, then the final summary and ``end``), while ranks log through the agent
they spawned with RANKWISE_STORE=<URL>."""

from __future__ import annotations

import json
import socket
import time

import rankwise
from client.errors import Error
from support.probes import wait_for
from support.processes import start_ranks, wait_all
from support.uihelp import served

LIVE = """
import os, pathlib, time, rankwise
rank = int(os.environ["RANK"])
go = pathlib.Path(os.environ["GO_FILE"])
run = rankwise.init(project="chlive")
for s in range(60):
    if s == 30:
        assert run.flush(60)
        while not go.exists():
            time.sleep(0.01)
    run.log({"loss": float(s * 10 + rank)})
run.finish()
"""


def _events(sock_file, until: str, timeout_s: float = 90.0) -> list[tuple[str, dict]]:
    """Server-sent events read until one named ``until`` (comment lines and heartbeats skipped)."""
    events, name, deadline = [], None, time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = sock_file.readline().decode()
        if not line:
            break
        line = line.rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name:
            events.append((name, json.loads(line[6:])))
            if name == until:
                return events
            name = None
    raise AssertionError(f"no {until!r} event; got {[e[0] for e in events]}")


def test_event_stream_follows_a_running_group_in_clickhouse(rankwise_env, clickhouse_url, tmp_path):
    """Two ranks stop at step 30 (flushed): /events answers with an update of a running group of 30 steps;
    released, they finish and the stream sends the finished summary (60 steps, 2 finished) and 'end'; the
    group rows read after equal the logged values' means."""
    go = tmp_path / "go"
    procs = start_ranks(rankwise_env, LIVE, 2, "job-live", GO_FILE=str(go), RANKWISE_STORE=clickhouse_url)
    try:

        def at_30() -> bool:
            try:
                with rankwise.Api(clickhouse_url) as api:
                    g = api.group("chlive", "job-live")
                    return len(g.runs) == 2 and min(r.step for r in g.runs) == 30
            except Error:  # the tables or the group not there yet
                return False

        wait_for(at_30, 90, "30 steps of both ranks in ClickHouse")
        with served(clickhouse_url) as server:
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=90)
            sock.sendall(
                f"GET /api/projects/chlive/groups/job-live/events HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                f"Authorization: token {server.token}\r\n\r\n".encode()
            )
            f = sock.makefile("rb")
            assert f.readline().startswith(b"HTTP/1.1 200")
            first = _events(f, "update")
            assert first[-1][1]["state"] == "running" and first[-1][1]["steps"] == 30
            go.touch()
            rest = _events(f, "end")
            updates = [d for name, d in rest if name == "update"]
            assert updates and updates[-1]["state"] == "finished" and updates[-1]["steps"] == 60
            assert updates[-1]["states"] == {"finished": 2}
            sock.close()
    finally:
        go.touch()
        results = wait_all(procs)
    assert [code for code, _, _ in results] == [0, 0], results
    with rankwise.Api(clickhouse_url) as api:
        h = api.group("chlive", "job-live").history("loss")
    assert h["step"].tolist() == list(range(60))
    assert h["mean"].tolist() == [s * 10 + 0.5 for s in range(60)]
