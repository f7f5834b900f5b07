"""Reading alerts: ``rankwise alerts [GROUP]`` (rankwise/_alerts_cli.py) over a store a real agent wrote
(user alerts of real ranks: agent/alerts/user.py), its filters and errors, and the alert sinks' line of
``rankwise status``."""

from __future__ import annotations

import json
import time

import rankwise
from support.probes import cli, wait_for
from support.processes import run_ranks

SCRIPT = """
import os, rankwise
rank = int(os.environ["RANK"])
run = rankwise.init(project="rd")
run.log({"x": 1.0})
if rank == 1:
    run.alert("slow \\x1b[31mdisk", "rank 1 waits on I/O", level="WARN")
run.log({"x": 2.0})
if rank == 0:
    run.alert("done", "epoch 1 over", level="INFO")
run.finish()
"""


def stored(rankwise_env) -> list[dict]:
    run_ranks(rankwise_env, SCRIPT, 2, "job-read")
    return rankwise.Api(str(rankwise_env.store)).group("rd", "job-read").alerts


def test_alerts_prints_time_level_kind_rank_key_step_and_message(rankwise_env):
    """The text table has one row per alert, oldest first, each cell as stored (the time in local time, the
    key's escape character escaped for the terminal); ``--json`` prints ``Group.alerts`` with project and
    group; ``--kind user`` keeps both, ``--kind nan`` none ("no alerts for group ...")."""
    alerts = stored(rankwise_env)
    assert len(alerts) == 2
    out = cli(rankwise_env, "alerts", "job-read")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["time", "level", "kind", "rank", "key", "step", "message"]
    rows = lines[2:]
    assert len(rows) == 2
    for line, a in zip(rows, alerts):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(a["time"]))
        key = a["key"].replace("\x1b", "\\x1b")
        assert line.startswith(when)
        assert line.split()[2:5] == [a["level"], "user", str(a["rank"])]
        assert key in line and f" {a['step']} " in line and line.endswith(a["message"])
    assert "\x1b" not in out.stdout
    out = cli(rankwise_env, "alerts", "job-read", "--json", "--project", "rd")
    assert json.loads(out.stdout) == [dict(a, project="rd", group="job-read") for a in alerts]
    out = cli(rankwise_env, "alerts", "--kind", "user,crashed", "--json")
    assert [a["key"] for a in json.loads(out.stdout)] == [a["key"] for a in alerts]
    out = cli(rankwise_env, "alerts", "job-read", "--kind", "nan")
    assert (out.returncode, out.stdout) == (0, "no alerts for group rd/job-read\n")


def test_follow_prints_one_line_per_alert_and_ends_with_the_group(rankwise_env):
    """``--follow`` on a group that has finished prints each alert as one line (a JSON object per line with
    ``--json``) and exits 0 once the group is settled (rankwise/_settle.py)."""
    alerts = stored(rankwise_env)
    out = cli(rankwise_env, "alerts", "job-read", "--follow", "--json", "--interval", "0.1")
    assert out.returncode == 0, out.stderr
    assert [json.loads(line) for line in out.stdout.splitlines()] == [
        dict(a, project="rd", group="job-read") for a in alerts
    ]
    out = cli(rankwise_env, "alerts", "job-read", "--follow", "--interval", "0.1")
    assert [line.split("  ")[1:3] for line in out.stdout.splitlines()] == [[a["level"], "user"] for a in alerts]


def test_alerts_of_a_missing_group_exits_1_with_the_closest_names(rankwise_env):
    """A group name that is not there: exit 1, "no group named 'job-raed'; did you mean 'job-read'?"; a bad
    ``--kind`` exits 1 naming the kinds there are."""
    stored(rankwise_env)
    out = cli(rankwise_env, "alerts", "job-raed")
    assert out.returncode == 1
    assert out.stderr.strip() == "rankwise alerts: no group named 'job-raed'; did you mean 'job-read'?"
    out = cli(rankwise_env, "alerts", "job-read", "--kind", "loud")
    assert out.returncode == 1
    assert "--kind 'loud': choose among nan, diverged, hang, stalled, straggler, crashed, user" in out.stderr


def test_status_shows_each_alert_sink(rankwise_env):
    """With RANKWISE_ALERT_CMD set to a command that accepts every alert, ``rankwise status`` says how many
    alerts the sink sent (2), failed and dropped."""
    run_ranks(rankwise_env, SCRIPT, 2, "job-read", RANKWISE_ALERT_CMD="true")
    out = wait_for(
        lambda: (o := cli(rankwise_env, "status")) and "alert sink cmd: 2 sent" in o.stdout and o,
        what="the sink's line",
    )
    assert "alert sink cmd: 2 sent, 0 failed, 0 dropped\n" in out.stdout
