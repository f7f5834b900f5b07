"""Readers given no store open the one ``RANKWISE_STORE`` names, as the agent does: a shell that logs into another
SQLite file (or a ClickHouse URL: tests/clickhouse/test_store_open.py) reads from it with ``Api()``, the CLI and
``rankwise ui`` without repeating it; an explicit store still wins."""

from __future__ import annotations

from pathlib import Path

import pytest

import rankwise
from rankwise._stores import chosen_store
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


def test_artifacts_go_where_readers_of_rankwise_store_look(rankwise_env, monkeypatch, tmp_path):
    """With RANKWISE_STORE naming a SQLite file in another directory, an artifact a run logs is stored beside that
    file (where the agent keeps its media and readers look: rankwise/_stores.py ``media_root_of``), so ``Api()`` and
    ``rankwise artifacts`` list it and read its bytes back; nothing goes under $RANKWISE_DIR."""
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("RANKWISE_STORE", str(other / "elsewhere.sqlite"))
    (tmp_path / "weights.bin").write_bytes(b"\x00\x01weights")
    run = rankwise.init(project="envp", group="g-art", rank=0, world_size=1)
    run.log({"loss": 1.0})
    art = rankwise.Artifact("model", type="model")
    art.add_file(str(tmp_path / "weights.bin"))
    run.log_artifact(art)
    run.finish()
    with rankwise.Api() as api:
        assert [a.name for a in api.artifacts("envp")] == ["model:v0"]
        root = api.artifact("envp/model:latest").download(root=str(tmp_path / "dl"))
    assert (tmp_path / "dl" / "weights.bin").read_bytes() == b"\x00\x01weights" and root == str(tmp_path / "dl")
    out = cli(rankwise_env, "artifacts", "envp")
    assert out.returncode == 0 and "model" in out.stdout, (out.stdout, out.stderr)
    from rankwise._artifact_store import ArtifactStore

    assert list(ArtifactStore(other).names("envp")) == [("envp", "model")]
    assert list(ArtifactStore(Path(rankwise_env.data)).names("envp")) == []
