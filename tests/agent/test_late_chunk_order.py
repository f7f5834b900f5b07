"""A late update overwrites the row it names even when the commit that carries it also carries newer
on-time rows of the same key that were drained after an earlier late update (batch boundaries inside a
block of calls): within one commit the agent writes on-time chunks before late ones, so "later chunks win
per step" keeps the late value. Both stores alike."""

from __future__ import annotations

import numpy as np
import pytest

from agent.nextcommit import NextCommit
from agent.store import MemoryStore, SQLiteStore

RUN = {"run_key": "k", "local_rank": 0, "node": "n", "pid": 1, "name": "rank-0", "rank": 0}


@pytest.fixture(params=["sqlite", "memory"])
def store(request, tmp_path):
    s = SQLiteStore(tmp_path / "s.sqlite") if request.param == "sqlite" else MemoryStore()
    yield s
    s.close()


def _steps(*s: int) -> np.ndarray:
    return np.array(s, dtype=np.int64)


def test_a_late_overwrite_wins_over_on_time_rows_folded_into_the_same_commit(store):
    """Commit 1 stores row 0 (n=7). Commit 2 folds, in this order, batch A = a late update of row 0 (n=-1)
    and batch B = on-time rows 20, 21 (n=5, 6) then a late update of row 20 (n=-5), as the agent's apply
    adds them. Read back: row 0 holds -1, row 20 holds -5 (the late values), row 21 holds 6."""
    _, run, _ = store.register("p", "g", 1, dict(RUN), 0.0)
    first = NextCommit()
    first.add_history(run.id, "n", _steps(0), np.array([7.0]), False)
    with store.transaction() as txn:
        first.write(txn)
    second = NextCommit()
    second.add_history(run.id, "n", _steps(0), np.array([-1.0]), True)  # batch A: late only
    second.add_history(run.id, "n", _steps(20, 21), np.array([5.0, 6.0]), False)  # batch B: on time …
    second.add_history(run.id, "n", _steps(20), np.array([-5.0]), True)  # … and its late update
    with store.transaction() as txn:
        second.write(txn)
    reader = store.reader()
    steps, values = reader.run_history(run.id, ["n"])["n"]
    assert list(zip(np.asarray(steps).tolist(), np.asarray(values).tolist())) == [(0, -1.0), (20, -5.0), (21, 6.0)]
