"""The alert notifier's bounds (agent/alerts/notify.py, agent/alerts/senders.py), with real threads and
processes: a full queue drops and counts, a sink that hangs is given up at close within ``drain_s``, a
command that does not exit is killed at its timeout, and a bad setting leaves the sink out of the agent."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from agent.alerts.alert import Alert
from agent.alerts.notify import Notifier, plug_notifiers
from agent.alerts.senders import SendFailed, command_sender
from agent.config import AgentConfig
from support.agentsim import AgentSim
from support.probes import wait_for


def alert(i: int) -> Alert:
    return Alert(kind="user", group_id=1, time=100.0 + i, message=f"m{i}", rank=0, key=f"k{i}", step=i)


def test_a_full_queue_drops_and_counts_and_close_gives_up_on_a_hung_sink_within_its_bound():
    """The sender blocks on its first alert; with a queue of 2, four more alerts queue 2 and drop 2 (counted),
    and ``notify`` never waits. ``close`` with ``drain_s`` 0.3 returns within a few seconds although the sink
    still hangs, counting the 2 queued as dropped; after it, new alerts are dropped too."""
    release = threading.Event()
    seen: list[str] = []

    def send(item: dict) -> None:
        seen.append(item["key"])
        release.wait(30)

    n = Notifier("hung", send, queue_max=2, drain_s=0.3)
    n.notify([alert(0)])
    wait_for(lambda: seen == ["k0"], what="the sender holding k0")
    started = time.monotonic()
    n.notify([alert(i) for i in range(1, 5)])
    assert time.monotonic() - started < 1.0
    snap: dict = {}
    n.status(snap)
    assert snap["alert_sinks"]["hung"] == {"sent": 0, "failed": 0, "dropped": 2, "queued": 3, "last_error": ""}
    started = time.monotonic()
    n.close()
    assert time.monotonic() - started < 5.0
    n.notify([alert(9)])
    assert (n.sent, n.dropped, seen) == (0, 5, ["k0"])
    release.set()
    wait_for(lambda: not n.thread.is_alive(), what="the worker's end")
    assert (n.sent, n.failed) == (1, 0)
    assert repr(n).startswith("<Notifier hung sent=1 failed=0 dropped=5 queued=0")


def test_a_failing_sender_is_counted_and_the_worker_goes_on():
    """A sender raising SendFailed (then any exception) counts failures with the last error; the next alert is
    sent all the same."""
    calls = []

    def send(item: dict) -> None:
        calls.append(item["key"])
        if item["key"] == "k0":
            raise SendFailed("pager said no")
        if item["key"] == "k1":
            raise RuntimeError("bug")

    n = Notifier("flaky", send)
    n.notify([alert(0), alert(1), alert(2)])
    wait_for(lambda: n.sent + n.failed == 3, what="three attempts")
    assert (calls, n.sent, n.failed, n.last_error) == (["k0", "k1", "k2"], 1, 2, "RuntimeError: bug")
    n.close()


def test_a_command_that_does_not_exit_is_killed_at_its_timeout(tmp_path: Path):
    """A command sleeping 60 s with a 0.5 s timeout fails within a few seconds, saying it was killed."""
    send = command_sender(f"{sys.executable} -c 'import time; time.sleep(60)'", 0.5, threading.Event())
    started = time.monotonic()
    try:
        send({"kind": "user"})
        raise AssertionError("the command did not time out")
    except SendFailed as exc:
        assert str(exc) == f"{sys.executable} did not exit within 0.5 s (killed)"
    assert time.monotonic() - started < 10.0


def test_bad_sink_settings_leave_the_sink_out_and_log_why(monkeypatch, caplog):
    """An empty command and a webhook that is not http(s) are logged and not plugged; the agent runs."""
    sim = AgentSim(monkeypatch)
    cfg = AgentConfig(data_dir=Path("d"), runtime_dir=Path("r"), alert_cmd="  ", alert_webhook="ftp://x/y")
    with caplog.at_level("ERROR", logger="rankwise.agent"):
        assert plug_notifiers(sim.ingest, cfg) == []
    assert "alert sink cmd not started: RANKWISE_ALERT_CMD='  ' names no command" in caplog.text
    assert "alert sink webhook not started: RANKWISE_ALERT_WEBHOOK='ftp://x/y' is not an http" in caplog.text
    assert sim.ingest.alerts.notifiers == []
