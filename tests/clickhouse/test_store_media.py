"""Media files of a store chosen by RANKWISE_STORE stay on the filesystem where readers look for them: under
$RANKWISE_DIR for a ClickHouse URL (the store holds the references), beside the file for a SQLite store
put elsewhere. Real ranks log images through the agent they spawn; ``rankwise.Api`` on the same spec
reads every reference and the exact bytes of its file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import rankwise
from support.processes import run_ranks

STEPS = 6
SCRIPT = (
    """
import numpy as np, rankwise
run = rankwise.init(project="chmedia")
for s in range(%d):
    px = np.full((8, 8, 3), 30 * s, dtype=np.uint8)
    run.log({"img": rankwise.Image(px), "x": float(s)})
run.finish()
"""
    % STEPS
)


@pytest.fixture(params=["clickhouse", "sqlite-elsewhere"])
def spec(request, tmp_path) -> str:
    if request.param == "clickhouse":
        return request.getfixturevalue("clickhouse_url")
    (tmp_path / "elsewhere").mkdir()
    return str(tmp_path / "elsewhere")  # a directory: its store.sqlite, as for readers


def test_media_files_where_readers_find_them(rankwise_env, spec):
    """Six images through the real agent with RANKWISE_STORE=<spec>: Api(spec) reads six references whose
    files hold the exact PNG bytes ``rankwise.Image`` makes, under $RANKWISE_DIR/media for the URL, under
    the other directory's media/ for the SQLite store (which is that directory's store.sqlite)."""
    run_ranks(rankwise_env, SCRIPT, 1, "job-media", RANKWISE_STORE=spec)
    url = "://" in spec
    expected_root = Path(rankwise_env.data) if url else Path(spec)
    if not url:
        assert (Path(spec) / "store.sqlite").exists() and not (Path(rankwise_env.data) / "store.sqlite").exists()
    with rankwise.Api(spec) as api:
        assert api.media_root == expected_root
        rows = api.group("chmedia", "job-media").run(rank=0).history()
        assert [r["x"] for r in rows] == [float(s) for s in range(STEPS)]
        for s, row in enumerate(rows):
            want = rankwise.Image(np.full((8, 8, 3), 30 * s, dtype=np.uint8))._to_wire()
            ref = row["img"]
            assert ref["sha256"] == want["sha256"]
            path = api.media_path(ref)
            assert path.is_relative_to(expected_root / "media")
            assert path.read_bytes() == want["bytes"]
