"""ClickHouse *slow* under a single agent: the server is SIGSTOPped mid-stream (it keeps its sockets, the
kernel still completes connects, nothing answers) while 4 ranks log, then SIGCONTed. What must hold while
it hangs: no ``log()`` call blocks, and the agent stays an agent (its loop must never block): ``rankwise
status`` answers within its usual timeout and says the store is unavailable, naming it. After SIGCONT every
point is stored exactly once. The rank script and the checks are tests/clickhouse/test_store_down.py's.
"""

from __future__ import annotations

import json
import time

from test_store_down import WORLD, check_exactly_once, own_server, start_job, wait_line  # noqa: F401

from support.probes import status, wait_for
from support.processes import wait_all

STALL_DEADLINE_S = 60.0  # a hung server fails a commit after a few WRITE_TIMEOUT_S (agent/store/clickhouse/store.py: ping, reconnect, insert): ~20 s here


def _answers_unavailable(env) -> dict | None:
    try:
        st = status(env, timeout_s=5)
    except Exception:  # noqa: BLE001 (the agent's loop is stuck in the store: no answer)
        return None
    return st if st and st["store_state"].startswith("store unavailable") else None


def test_server_stopped_mid_stream_agent_keeps_answering(rankwise_env, own_server, tmp_path):  # noqa: F811
    """SIGSTOP of the server after 500 acknowledged steps per rank; the ranks log 1500 more each without a
    log() call taking 0.5 s; within 60 s `rankwise status` answers (5 s timeout) ``store unavailable``
    naming the server's port; after SIGCONT the status returns to ok, every rank finishes with nothing
    unacknowledged, and Api(URL) reads each of the 4 × 3000 steps once with numpy's group aggregates."""
    server = own_server
    database, url, procs = start_job(rankwise_env, server, tmp_path, finish_timeout_s=400)
    try:
        for p in procs:
            wait_line(p, "stored")
        server.pause()
        t0 = time.monotonic()
        (tmp_path / "down").touch()
        try:
            for p in procs:
                wait_line(p, "logged")
            down = wait_for(lambda: _answers_unavailable(rankwise_env), STALL_DEADLINE_S, "status: store unavailable")
            print(f"status said {down['store_state']!r} {time.monotonic() - t0:.1f} s after SIGSTOP")
            assert f"127.0.0.1:{server.tcp_port}" in down["store_state"]
        finally:
            server.resume()
        wait_for(lambda: status(rankwise_env)["store_state"] == "ok", 400, "the store back to ok after SIGCONT")
        (tmp_path / "up").touch()
        results = wait_all(procs, timeout_s=400)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    stats = [json.loads(out.splitlines()[-1]) for code, out, err in results if code == 0]
    assert len(stats) == WORLD, results
    assert [s["unacked_rows"] for s in stats] == [0] * WORLD and max(s["slowest_log_s"] for s in stats) < 0.5
    check_exactly_once(url, server, database, "job-down")
