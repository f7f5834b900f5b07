"""Readers given no store open the one ``RANKWISE_STORE`` names, as the agent does: a shell that logs into another
SQLite file (or a ClickHouse URL: tests/clickhouse/test_store_open.py) reads from it with ``Api()``, the CLI and
``rankwise ui`` without repeating it; an explicit store still wins."""

from __future__ import annotations

import pytest

import rankwise
from rankwise._api import chosen_store
from rankwise._ui.data import UIData
from rankwise.errors import NotFound
from support.probes import cli


def test_readers_follow_rankwise_store_when_given_none(rankwise_env, monkeypatch, tmp_path):
    """With RANKWISE_STORE=<tmp>/elsewhere.sqlite a run's agent writes that file; ``Api()`` reads the run's value
    from it, ``rankwise show`` (no --store) prints its group, the UI's data names it; the default file under
    $RANKWISE_DIR is not created, so ``Api(<that directory>)`` is NotFound; an empty RANKWISE_STORE means the
    default."""
    elsewhere = tmp_path / "elsewhere.sqlite"
    monkeypatch.setenv("RANKWISE_STORE", str(elsewhere))
    run = rankwise.init(project="envp", group="g-env", rank=0, world_size=1)
    run.log({"loss": 0.25})
    run.finish()
    assert elsewhere.exists()
    with rankwise.Api() as api:
        assert api.path == elsewhere
        assert api.group("envp", "g-env").history("loss")["mean"].tolist() == [0.25]
    out = cli(rankwise_env, "show", "g-env", "--project", "envp")
    assert out.returncode == 0 and "group envp/g-env: 1 of 1 ranks" in out.stdout, (out.stdout, out.stderr)
    assert UIData(None).label == str(elsewhere)
    with pytest.raises(NotFound, match="no store at"):
        rankwise.Api(rankwise_env.data)
    assert chosen_store("/explicit.sqlite") == "/explicit.sqlite"
    monkeypatch.setenv("RANKWISE_STORE", " ")
    assert chosen_store(None) is None
