"""Store URLs of the ClickHouse store (agent/store/clickhouse/url.py): what parses into what, and bad URLs
rejected with a StoreURLError (a ValueError) naming the wrong part and the form to write."""

from __future__ import annotations

import pytest

from agent.errors import StoreURLError
from agent.store.clickhouse import ClickHouseURL, is_clickhouse_url, parse_url


def test_a_full_server_url():
    """User, password (percent-decoded), host, port, database, cluster and secure are read; the password
    never shows in repr or str."""
    u = parse_url("clickhouse://ops:p%40ss@db.example:9440/metrics?cluster=rw2&secure=1")
    assert u == ClickHouseURL(
        "server", "metrics", host="db.example", port=9440, user="ops", password="p@ss", cluster="rw2", secure=True
    )
    assert "p@ss" not in repr(u) and "p@ss" not in str(u)
    assert repr(u) == "<ClickHouseURL ops@db.example:9440/metrics cluster=rw2 secure>"


def test_defaults_and_chdb():
    """Without user: ``default``, no password, no cluster, not secure; chdb:// takes a directory."""
    assert parse_url("clickhouse://127.0.0.1:9000/rankwise") == ClickHouseURL(
        "server", "rankwise", host="127.0.0.1", port=9000
    )
    assert parse_url("chdb:///var/lib/rw") == ClickHouseURL("chdb", "rankwise", path="/var/lib/rw")
    assert parse_url("chdb://rel/dir") == ClickHouseURL("chdb", "rankwise", path="rel/dir")


@pytest.mark.parametrize(
    ("url", "part"),
    [
        ("clickhouse://127.0.0.1/rankwise", "store URL: port is missing after host '127.0.0.1'"),
        ("clickhouse://127.0.0.1:99999/rankwise", "store URL: port in '127.0.0.1:99999' is not a number"),
        ("clickhouse://127.0.0.1:x/rankwise", "store URL: port in '127.0.0.1:x' is not a number"),
        ("clickhouse://:9000/rankwise", "store URL: host is missing"),
        ("clickhouse://127.0.0.1:9000", "store URL: database is missing"),
        ("clickhouse://127.0.0.1:9000/", "store URL: database is missing"),
        ("clickhouse://127.0.0.1:9000/my-db", "store URL: database 'my-db' must be letters, digits and _"),
        ("clickhouse://127.0.0.1:9000/db?shard=1", "store URL: query has unknown parameter(s) shard"),
        ("clickhouse://127.0.0.1:9000/db?cluster=", "store URL: cluster '' must be a cluster name"),
        ("clickhouse://127.0.0.1:9000/db?secure=yes", "store URL: secure 'yes' must be 0 or 1"),
        ("clickhouse://127.0.0.1:9000/db#x", "store URL: fragment #x is not allowed"),
        ("chdb://", "store URL: chdb directory '' must be a directory path"),
        ("chdb:///d?x=1", "store URL: chdb directory '/d?x=1' must be a directory path"),
        ("mysql://h:1/db", "store URL: scheme of 'mysql://h:1/db' is not clickhouse:// or chdb://"),
    ],
)
def test_bad_urls_name_the_part_and_the_fix(url, part):
    """Each malformed URL: a StoreURLError (still a ValueError) that starts with the wrong part and ends
    with the form to write."""
    with pytest.raises(StoreURLError) as err:
        parse_url(url)
    assert isinstance(err.value, ValueError)
    assert str(err.value).startswith(part), str(err.value)
    assert str(err.value).endswith(
        "write clickhouse://[user[:password]@]host:port/database[?cluster=NAME&secure=1] or chdb://<dir>"
    )


def test_is_clickhouse_url():
    """Only clickhouse:// and chdb:// specs are ClickHouse store URLs (valid or not); paths are not."""
    assert is_clickhouse_url("clickhouse://h:1/db") and is_clickhouse_url("CHDB:///x") and is_clickhouse_url("chdb://")
    assert not is_clickhouse_url("/var/lib/rankwise/store.sqlite")
    assert not is_clickhouse_url("clickhouse") and not is_clickhouse_url("file://x")
