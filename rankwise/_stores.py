"""Which store a reader opens and where its files live, for ``rankwise.Api`` (rankwise/_api.py), the command
line, the web UI and the artifacts a run writes (rankwise/_artifacts.py): a SQLite file (or its directory), a
``clickhouse://`` / ``chdb://`` URL (agent/store/open.py), or, given none, what ``RANKWISE_STORE`` names, as for
the agent (agent/config.py ``store_spec``), else ``$RANKWISE_DIR/store.sqlite``."""

from __future__ import annotations

import os
from pathlib import Path

from client import paths


def is_store_url(path: object) -> bool:
    """A ``clickhouse://`` / ``chdb://`` store URL (agent/store/open.py), not a SQLite path."""
    from agent.store.open import is_url

    return is_url(path)


def chosen_store(path: str | os.PathLike | None) -> str | os.PathLike | None:
    """The store a reader opens: ``path`` when given, else the one ``RANKWISE_STORE`` names (the agent's setting,
    agent/config.py: a SQLite path or a ``clickhouse://`` / ``chdb://`` URL), so that a shell where the agent
    logs into ClickHouse reads from it too; None (unset or empty): ``$RANKWISE_DIR/store.sqlite``."""
    if path is not None:
        return path
    return os.environ.get("RANKWISE_STORE", "").strip() or None


def media_root_of(path: str | os.PathLike | None) -> Path:
    """Where media files and artifacts of the store ``path`` live: beside a SQLite store; for a URL store,
    under this process's ``$RANKWISE_DIR`` (where the agent that writes it keeps them: docs/scale.md)."""
    return paths.data_dir() if is_store_url(path) else store_path(path).parent


def store_path(path: str | os.PathLike | None) -> Path:
    if path is None:
        return paths.data_dir() / paths.STORE_FILE
    p = Path(path).expanduser()
    return p / paths.STORE_FILE if p.is_dir() else p
