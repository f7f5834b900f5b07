"""Alerts reach people and programs: a real agent (spawned by real rank processes) hands every stored alert
to ``RANKWISE_ALERT_WEBHOOK`` (a local HTTP server here) and ``RANKWISE_ALERT_CMD`` (a command writing its
stdin to a file), off its loop thread (agent/alerts/notify.py, agent/alerts/senders.py). The alerts are
user alerts (``run.alert``: agent/alerts/user.py), the one kind a script raises at will."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from support.probes import pid_gone, status, wait_for
from support.processes import agent_pid, run_ranks, start_ranks, stop_agent, wait_all


class Hook:
    """A webhook on 127.0.0.1:<free port>: records each POST's JSON body; ``answers`` (HTTP codes) are used
    in turn, then 200; while ``gate`` is clear every request waits for it (a slow sink)."""

    def __init__(self, answers: tuple[int, ...] = ()):
        self.bodies: list[dict] = []
        self.answers = list(answers)
        self.gate = threading.Event()
        self.gate.set()
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with hook.lock:
                    hook.bodies.append(body)
                    code = hook.answers.pop(0) if hook.answers else 200
                hook.gate.wait(60)
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self) -> list[dict]:
        with self.lock:
            return list(self.bodies)

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


def writer_cmd(tmp_path: Path) -> tuple[str, Path]:
    """A RANKWISE_ALERT_CMD that appends its stdin (one alert) and a newline to a file."""
    script = tmp_path / "sink.py"
    out = tmp_path / "alerts.jsonl"
    script.write_text("import sys\nwith open(sys.argv[1], 'ab') as f:\n    f.write(sys.stdin.buffer.read() + b'\\n')\n")
    return f"{sys.executable} {script} {out}", out


def lines(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line]
    except FileNotFoundError:
        return []


TWO_RANKS = """
import os, rankwise
rank = int(os.environ["RANK"])
run = rankwise.init(project="al")
run.log({"x": 1.0})
run.log({"x": 2.0})
if rank == 0:
    run.alert("disk", "scratch is 95% full", level=rankwise.AlertLevel.WARN)
    run.alert("disk", "still full", level="WARN")  # within wait_duration (60 s): not sent
else:
    run.alert("lr", "lr schedule ended", level="ERROR", wait_duration=0)
run.log({"x": 3.0})
run.finish()
"""


def test_each_alert_reaches_the_webhook_and_the_command_as_exact_json(rankwise_env, tmp_path):
    """Two ranks alert once each (rank 0's second alert falls within its wait_duration): the webhook gets
    exactly two POSTs and the command exactly two stdin documents, each the alert's fields (kind, level, rank,
    key = title, step = run.step at the call, message = text, details, project and group) and, for the
    webhook, Slack's ``text`` line; ``rankwise status`` counts 2 sent, 0 failed, 0 dropped per sink."""
    hook = Hook()
    cmd, out = writer_cmd(tmp_path)
    t0 = time.time()
    try:
        run_ranks(rankwise_env, TWO_RANKS, 2, "job-a", RANKWISE_ALERT_WEBHOOK=hook.url, RANKWISE_ALERT_CMD=cmd)
        posted = wait_for(lambda: len(hook.received()) == 2 and hook.received(), what="two webhook POSTs")
        written = wait_for(lambda: len(lines(out)) == 2 and lines(out), what="two command runs")
        counted = {"sent": 2, "failed": 0, "dropped": 0, "queued": 0, "last_error": ""}
        wait_for(lambda: status(rankwise_env)["alert_sinks"] == {"cmd": counted, "webhook": counted}, what="counts")
    finally:
        hook.close()
    t1 = time.time()
    expected = {
        0: {
            "project": "al",
            "group": "job-a",
            "kind": "user",
            "level": "WARN",
            "rank": 0,
            "key": "disk",
            "step": 2,
            "message": "scratch is 95% full",
            "details": {"title": "disk", "wait_duration": 60.0},
        },
        1: {
            "project": "al",
            "group": "job-a",
            "kind": "user",
            "level": "ERROR",
            "rank": 1,
            "key": "lr",
            "step": 2,
            "message": "lr schedule ended",
            "details": {"title": "lr", "wait_duration": 0.0},
        },
    }
    for got in (posted, written):
        for alert in got:
            assert t0 <= alert.pop("time") <= t1
            assert t0 <= alert["details"].pop("sent") <= t1
        by_rank = {a["rank"]: a for a in got}
        assert len(by_rank) == 2
        if got is posted:
            assert by_rank[0].pop("text") == "[WARN] user in al/job-a: scratch is 95% full"
            assert by_rank[1].pop("text") == "[ERROR] user in al/job-a: lr schedule ended"
        assert by_rank == expected


ONE_ALERT = """
import rankwise
run = rankwise.init(project="al")
run.log({"x": 1.0})
run.alert("a", "first")
print("flushed", run.flush(30.0), flush=True)
run.finish()
"""


def test_a_slow_webhook_never_delays_a_commit(rankwise_env):
    """While the webhook holds the agent's POST (it does not answer until the test lets it), the rank's
    ``flush()`` returns True (its rows are committed and acknowledged) and the rank finishes; once the webhook
    answers, the alert counts as sent."""
    hook = Hook()
    hook.gate.clear()
    try:
        results = run_ranks(rankwise_env, ONE_ALERT, 1, "job-slow", RANKWISE_ALERT_WEBHOOK=hook.url)
        assert "flushed True" in results[0][1]
        wait_for(lambda: len(hook.received()) == 1, what="the POST (held)")
        assert status(rankwise_env)["alert_sinks"]["webhook"]["sent"] == 0
        hook.gate.set()
        wait_for(lambda: status(rankwise_env)["alert_sinks"]["webhook"]["sent"] == 1, what="sent after release")
    finally:
        hook.close()


def test_a_failing_webhook_is_retried_then_counted_as_failed(rankwise_env):
    """Two 503 answers, then 200: the same alert is POSTed three times and counts as sent once. A second job's
    webhook answers 400: no retry, one POST, counted as failed with the HTTP status as ``last_error``."""
    hook = Hook(answers=(503, 503))
    try:
        run_ranks(rankwise_env, ONE_ALERT, 1, "job-retry", RANKWISE_ALERT_WEBHOOK=hook.url)
        wait_for(lambda: status(rankwise_env)["alert_sinks"]["webhook"]["sent"] == 1, what="sent after retries")
        bodies = hook.received()
        assert len(bodies) == 3 and bodies[0] == bodies[1] == bodies[2]
    finally:
        hook.close()
    stop_agent(rankwise_env)
    hook = Hook(answers=(400,))
    try:
        run_ranks(rankwise_env, ONE_ALERT, 1, "job-bad", RANKWISE_ALERT_WEBHOOK=hook.url)
        sink = wait_for(
            lambda: (s := status(rankwise_env)["alert_sinks"]["webhook"])["failed"] == 1 and s, what="failed"
        )
        assert len(hook.received()) == 1
        assert (sink["sent"], sink["dropped"]) == (0, 0)
        assert sink["last_error"].startswith(f"POST {hook.url}: HTTP 400 Bad Request after 1 tries")
    finally:
        hook.close()


def test_a_failing_command_is_counted_with_its_last_stderr_line(rankwise_env):
    """A command that writes two lines to stderr and exits 3 counts as failed, ``last_error`` naming the exit
    status and the last line."""
    cmd = f"{sys.executable} -c \"import sys; sys.stderr.write('first\\nno route to pager\\n'); sys.exit(3)\""
    run_ranks(rankwise_env, ONE_ALERT, 1, "job-cmd", RANKWISE_ALERT_CMD=cmd)
    sink = wait_for(lambda: (s := status(rankwise_env)["alert_sinks"]["cmd"])["failed"] == 1 and s, what="failed")
    assert sink["sent"] == 0
    assert sink["last_error"] == f"{sys.executable} exited 3: no route to pager"


THREE_ALERTS = """
import rankwise
run = rankwise.init(project="al")
for i in range(3):
    run.log({"x": float(i)})
    run.alert(f"t{i}", f"alert {i}")
run.finish()
"""


def test_alerts_queued_at_agent_exit_are_sent_before_it_exits(rankwise_env):
    """The webhook holds the first of three alerts until 1 s after the agent got SIGTERM, so the other two
    are still queued when it shuts down: it sends all three before it exits (within its drain bound,
    RANKWISE_ALERT_DRAIN, 20 s here; with 0 the webhook receives only the first)."""
    hook = Hook()
    hook.gate.clear()
    try:
        procs = start_ranks(
            rankwise_env, THREE_ALERTS, 1, "job-exit", RANKWISE_ALERT_WEBHOOK=hook.url, RANKWISE_ALERT_DRAIN=20
        )
        results = wait_all(procs)
        assert results[0][0] == 0, results[0][2][-800:]
        wait_for(lambda: len(hook.received()) == 1, what="the first POST (held)")
        pid = agent_pid(rankwise_env)
        os.kill(pid, signal.SIGTERM)
        threading.Timer(1.0, hook.gate.set).start()
        wait_for(lambda: pid_gone(pid), timeout_s=30.0, what="the agent's exit")
        assert sorted(b["key"] for b in hook.received()) == ["t0", "t1", "t2"]
    finally:
        hook.close()
