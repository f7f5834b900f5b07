"""Store selection (agent/store/open.py) everywhere a store is named: a path opens SQLite without loading
anything of ClickHouse, a ``clickhouse://`` / ``chdb://`` URL opens the ClickHouse classes, a malformed URL
or an unknown scheme is a bad argument naming the form, an unreachable server a StoreError naming the URL
without its password; the agent's RANKWISE_STORE / ``--store``, ``rankwise.Api(URL)`` and the CLI's
``--store URL`` go through it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import rankwise
from agent.config import resolve
from agent.errors import StoreError
from agent.store.open import check, is_url, open_reader, open_store, redact
from agent.store.sqlite import SQLiteStore
from agent.store.sqlite_reader import SQLiteReader
from client.errors import InvalidArgumentError
from support.chserver import free_port
from support.probes import rankwise_cmd
from support.processes import child_env


def test_redact_hides_only_the_password():
    """A URL's password becomes ``***`` (user, host, port, database and query stay); paths are untouched."""
    assert redact("clickhouse://bob:s3cr%40t@db1:9000/rw?cluster=c") == "clickhouse://bob:***@db1:9000/rw?cluster=c"
    assert redact("clickhouse://bob@db1:9000/rw") == "clickhouse://bob@db1:9000/rw"
    assert redact("clickhouse://db1:9000/rw") == "clickhouse://db1:9000/rw"
    assert redact("/data/with:colon@at/store.sqlite") == "/data/with:colon@at/store.sqlite"
    assert redact(None) == ""
    assert [is_url(s) for s in ("chdb:///tmp/x", "clickhouse://h:1/d", "/tmp/x", "store.sqlite", None)] == [
        True,
        True,
        False,
        False,
        False,
    ]


def test_a_path_opens_sqlite_and_loads_nothing_of_clickhouse(tmp_path):
    """open_store / open_reader of a path: the SQLite classes; in a fresh interpreter neither the ClickHouse
    package nor its driver nor chdb is imported by that (sqlite users never pay for them)."""
    store = open_store(tmp_path / "store.sqlite", 1 << 20)
    assert isinstance(store, SQLiteStore) and store.wal_max_bytes == 1 << 20
    store.close()
    reader = open_reader(str(tmp_path / "store.sqlite"))
    assert isinstance(reader, SQLiteReader)
    reader.close()
    code = f"""
import sys
from agent.store.open import open_reader, open_store
open_store({str(tmp_path / "b.sqlite")!r}).close()
open_reader({str(tmp_path / "b.sqlite")!r}).close()
loaded = sorted(m for m in sys.modules if m.startswith(("agent.store.clickhouse", "clickhouse_driver", "chdb")))
print(loaded)
"""
    out = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("mysql://u:pw@h:1/db", "unknown scheme mysql://"),
        ("clickhouse://u:pw@127.0.0.1/db", "port"),
        ("clickhouse://u:pw@127.0.0.1:9000/", "database"),
        ("clickhouse://u:pw@127.0.0.1:9000/db?shard=1", "unknown parameter"),
    ],
)
def test_bad_url_is_a_bad_argument_naming_the_form(spec, words):
    """A malformed URL or an unknown scheme: InvalidArgumentError naming what is wrong and the URL form to
    write, the password never in the message; from check(), open_store() and open_reader() alike."""
    for call in (check, open_store, open_reader):
        with pytest.raises(InvalidArgumentError) as info:
            call(spec)
        message = str(info.value)
        assert words in message and "clickhouse://[user[:password]@]host:port/database" in message
        assert "pw" not in message.replace("password", "")


def test_unreachable_server_is_a_store_error_naming_the_url(monkeypatch):
    """Nothing listens on the port: StoreError "cannot open the store at clickhouse://bob:***@127.0.0.1:P/rw"
    from the store and the reader, the password nowhere in it; rankwise.Api(URL) raises it too."""
    port = free_port()
    url = f"clickhouse://bob:s3cret@127.0.0.1:{port}/rw"
    for call in (open_store, open_reader, rankwise.Api):
        with pytest.raises(StoreError) as info:
            call(url)
        message = str(info.value)
        assert f"cannot open the store at clickhouse://bob:***@127.0.0.1:{port}/rw" in message, message
        assert "s3cret" not in message


def test_agent_setting_and_flag(monkeypatch):
    """RANKWISE_STORE sets the agent's store (a field of agent/config.py), ``--store`` overrides it; the label
    for logs and status hides the password; without either the store is $RANKWISE_DIR/store.sqlite; a
    malformed URL is rejected when the settings are read."""
    url = "clickhouse://bob:s3cret@127.0.0.1:9000/rw?cluster=rw2"
    cfg = resolve({"RANKWISE_STORE": url, "RANKWISE_DIR": "/tmp/rwx"})
    assert cfg.store == url and cfg.store_spec == url
    assert cfg.store_label == "clickhouse://bob:***@127.0.0.1:9000/rw?cluster=rw2"
    assert resolve({"RANKWISE_STORE": url}, store="chdb:///tmp/other").store == "chdb:///tmp/other"
    plain = resolve({"RANKWISE_DIR": "/tmp/rwx"})
    assert plain.store is None and str(plain.store_spec) == "/tmp/rwx/store.sqlite" == plain.store_label
    with pytest.raises(InvalidArgumentError, match="port"):
        resolve({"RANKWISE_STORE": "clickhouse://127.0.0.1/rw"})


def test_agent_command_rejects_a_bad_store_url():
    """``python -m agent --store <malformed URL>``: exit 2 (bad options) with the reason on stderr."""
    out = subprocess.run(
        [sys.executable, "-m", "agent", "--store", "clickhouse://u:pw@127.0.0.1/rw"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out
    assert "rankwise agent:" in out.stderr and "port" in out.stderr and ":pw@" not in out.stderr


@pytest.mark.parametrize("command", ["runs", "show", "tail", "export", "alerts", "ui"])
def test_cli_store_url_unreachable_exits_1_naming_it(rankwise_env, command):
    """``rankwise <command> --store clickhouse://bob:s3cret@127.0.0.1:<closed port>/rw``: exit 1, one line
    naming the URL with its password hidden (never the password), no traceback."""
    from support.probes import cli

    port = free_port()
    extra = ["--port", "0"] if command == "ui" else []
    out = cli(rankwise_env, command, "--store", f"clickhouse://bob:s3cret@127.0.0.1:{port}/rw", *extra)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert f"rankwise {command}: cannot open the store at clickhouse://bob:***@127.0.0.1:{port}/rw" in out.stderr
    assert "s3cret" not in out.stderr + out.stdout
    assert "Traceback" not in out.stderr


def test_api_media_root_of_a_url_store_is_rankwise_dir(rankwise_env, clickhouse_url):
    """A database without the store's tables: Api(URL) says there is no rankwise store there yet. Once a
    store was opened on it, Api(URL) reads it (empty), its path is the URL and its media and artifacts live
    on the filesystem under $RANKWISE_DIR (docs/scale.md)."""
    from agent.store.clickhouse import ClickHouseReader, ClickHouseStore

    with pytest.raises(StoreError, match=f"cannot open the store at {clickhouse_url}: no rankwise store"):
        rankwise.Api(clickhouse_url)
    store = open_store(clickhouse_url)
    assert isinstance(store, ClickHouseStore)
    store.close()
    reader = open_reader(clickhouse_url)
    assert isinstance(reader, ClickHouseReader)
    reader.close()
    api = rankwise.Api(clickhouse_url)
    try:
        assert str(api.media_root) == rankwise_env.data
        assert api.path == clickhouse_url and clickhouse_url in repr(api)
        assert api.projects() == []
    finally:
        api.close()


def test_chdb_url_opens_the_clickhouse_classes(tmp_path):
    """``chdb://<dir>``: the in-process engine behind the same classes (store and reader of one directory)."""
    from agent.store.clickhouse import ClickHouseReader, ClickHouseStore

    url = f"chdb://{tmp_path / 'ch'}"
    store = open_store(url)
    try:
        assert isinstance(store, ClickHouseStore)
        reader = open_reader(url)
        assert isinstance(reader, ClickHouseReader) and reader.projects() == []
        reader.close()
    finally:
        store.close()


def test_agent_with_an_unreachable_store_exits_1_without_the_password(rankwise_env):
    """``python -m agent --store clickhouse://bob:s3cret@127.0.0.1:<closed port>/rw``: the agent cannot start
    (exit 1) and says why on stderr and in its log, naming the URL with ``***`` for the password."""
    port = free_port()
    out = subprocess.run(
        [sys.executable, "-m", "agent", "--store", f"clickhouse://bob:s3cret@127.0.0.1:{port}/rw"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1, out
    log = (Path(rankwise_env.data) / "agent.log").read_text()
    for text in (out.stderr, log):
        assert f"agent could not start: cannot open the store at clickhouse://bob:***@127.0.0.1:{port}/rw" in text
        assert "s3cret" not in text


FIRST_RUN = """
import rankwise
run = rankwise.init(project="later")
run.log({"x": 2.5})
run.finish()
"""


def test_ui_over_an_empty_database_waits_for_the_first_run(rankwise_env, clickhouse_url):
    """``rankwise ui --store URL`` on a database without the store's tables starts (as over a SQLite path that
    does not exist yet) and answers 503 "no store in <URL> yet"; once a run has logged into it through the agent
    the same server serves it, without a restart. The reader's error is StoreEmpty, a StoreError."""
    from agent.errors import StoreEmpty
    from support.processes import run_ranks
    from support.uihelp import get, served

    with pytest.raises(StoreEmpty):
        open_reader(clickhouse_url)
    with served(clickhouse_url) as server:
        status, body = get(server, "/api/projects")
        assert status == 503 and body["error"].startswith(f"no store in {clickhouse_url} yet"), body
        run_ranks(rankwise_env, FIRST_RUN, 1, "g-first", RANKWISE_STORE=clickhouse_url)
        status, projects = get(server, "/api/projects")
        assert status == 200 and [p["name"] for p in projects] == ["later"]
        status, s = get(server, "/api/projects/later/groups/g-first/series?key=x")
        assert status == 200 and s["x"] == [0] and s["mean"] == [2.5]


def test_demo_into_clickhouse_shows_its_group_and_hints_at_the_url(rankwise_env, clickhouse_server):
    """``rankwise demo`` with RANKWISE_STORE=<URL with a password>: the ranks log into ClickHouse and the demo
    reads its group view from there (it read the default SQLite file and failed with "no store"): exit 0, the
    group table of 2 finished ranks, and its hints carry ``--store`` / ``Api(...)`` with the URL, password
    shown as ***; Api(URL) reads the 2 runs of 30 steps, and ``rankwise show`` with the same environment and no
    ``--store`` reads them from ClickHouse too."""
    from support.chserver import random_database

    database = random_database()
    clickhouse_server.execute(f"CREATE DATABASE {database}")
    url = clickhouse_server.password_url(database)
    shown = url.replace(url.split("//")[1].split("@")[0].split(":")[1], "***")
    out = subprocess.run(
        [*rankwise_cmd(), "demo", "--ranks", "2", "--steps", "30", "--group", "g-demo"],
        env=rankwise_env.env(RANKWISE_STORE=url),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    assert "group demo/g-demo: 2 of 2 ranks, finished" in out.stdout
    assert f"look:   rankwise show g-demo --project demo --store {shown}\n" in out.stdout
    assert f"python: rankwise.Api('{shown}').group('demo', 'g-demo')" in out.stdout
    assert f"ui:     rankwise ui --store {shown}, open" in out.stdout
    assert ":***@" in shown and url not in out.stdout + out.stderr
    with rankwise.Api(url) as api:
        runs = api.group("demo", "g-demo").runs
        assert sorted((r.rank, r.state, r.step) for r in runs) == [(0, "finished", 30), (1, "finished", 30)]
    # the same shell's readers, given no store, follow RANKWISE_STORE (rankwise/_stores.py chosen_store)
    show = subprocess.run(
        [*rankwise_cmd(), "show", "g-demo", "--project", "demo"],
        env=rankwise_env.env(RANKWISE_STORE=url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert show.returncode == 0 and "group demo/g-demo: 2 of 2 ranks" in show.stdout, (show.stdout, show.stderr)
