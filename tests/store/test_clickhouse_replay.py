"""Exactly once into ClickHouse (agent/store/clickhouse/txn.py): a commit written again — after an INSERT
failed half-way, after the writing process was killed -9 — is never read twice, and the writers' sequence
numbers are stored last. Run against chdb and a clickhouse-server 18.16."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from agent.errors import StoreError
from agent.store.clickhouse import ClickHouseStore
from support.chfixtures import require_package

RUN = {"run_key": "k", "local_rank": 0, "node": "n0", "pid": 1}


@pytest.fixture(params=["chdb", "clickhouse"])
def url(request, tmp_path) -> str:
    """A store URL of a fresh, empty store: chdb in a directory of this test, or a database of its own on
    the test server."""
    if request.param == "chdb":
        require_package("chdb")
        return f"chdb://{tmp_path / 'chdb'}"
    return request.getfixturevalue("clickhouse_url")


def write(store, run_ids, commit_no: int, seq: int, fail_on: str | None = None) -> None:
    """Commit ``commit_no`` as the agent would: 10 steps of loss (and a late revision of the previous
    commit's last step), a group row, the run record and the writer's seq. ``fail_on``: the INSERT into
    that table fails (as if the process died there)."""
    if fail_on:
        real = store.conn.insert

        def insert(table, columns, types):
            if table.endswith("." + fail_on):
                raise StoreError(f"injected: INSERT into {table} failed")
            real(table, columns, types)

        store.conn.insert = insert
    steps = np.arange(commit_no * 10, commit_no * 10 + 10)
    try:
        with store.transaction() as txn:
            for rank, rid in enumerate(run_ids):
                txn.add_history(rid, "loss", steps, steps * 1.0 + rank, False)
                txn.add_history(rid, "_timestamp", steps, steps + 1000.0 * commit_no, False)
                if commit_no:
                    txn.add_history(rid, "loss", steps[:1] - 1, np.array([-1.0 - rank]), True)
            rows = {f: np.zeros(10) for f in ("mean", "min", "max", "std")}
            rows.update({f: np.full(10, 2) for f in ("count", "expected", "max_rank", "nan_count")})
            rows.update(step=steps, min_rank=np.zeros(10, int), nan_rank=np.full(10, -1))
            rows["mean"] = steps + 0.5
            txn.add_group_rows(store.group_of(run_ids[0]), "loss", rows, False)
            for rank in (0, 1):
                run = store.find_run("p", "g", f"rank-{rank}")
                run.step, run.rows = int(steps[-1]) + 1, int(steps[-1]) + 1
                txn.put_run(run)
            # one system sample per rank and the node's host row, at the commit's time (a root stores the
            # samples its node agents send: a replayed record brings the same ones again)
            stamp = {"_timestamp": np.array([1000.0 * commit_no])}
            for rank, rid in enumerate(run_ids):
                txn.add_system(store.group_of(rid), rid, "n0", {**stamp, "proc.rss_bytes": np.array([rank + 1.0])})
            txn.add_system(store.group_of(run_ids[0]), None, "n0", {**stamp, "host.load1": np.array([0.5])})
            txn.put_writer("w", run_ids[0], seq)
    finally:
        if fail_on:
            store.conn.insert = real


def expected_loss(commits: int, rank: int) -> list[float]:
    values = np.arange(commits * 10) * 1.0 + rank
    for c in range(1, commits):
        values[c * 10 - 1] = -1.0 - rank
    return values.tolist()


def check(store, gid: int, run_ids: list[int], commits: int) -> None:
    """Every read gives each step once, with the values of the last write, and each system sample once."""
    reader = store.reader()
    try:
        for rank, rid in enumerate(run_ids):
            h = reader.run_history(rid)
            assert h["loss"][0].tolist() == list(range(commits * 10))
            assert h["loss"][1].tolist() == expected_loss(commits, rank)
            assert h["_timestamp"][1].tolist() == [s + 1000.0 * (s // 10) for s in range(commits * 10)]
        _, runs = reader.group_rank_history(gid, "loss")
        assert {r: v.tolist() for r, (_, v) in runs.items()} == {
            rid: expected_loss(commits, rank) for rank, rid in enumerate(run_ids)
        }
        g = reader.group_history(gid, "loss")
        assert g["step"].tolist() == list(range(commits * 10)) and g["mean"].tolist() == [
            s + 0.5 for s in range(commits * 10)
        ]
        assert reader.group_key_stats(gid) == {"loss": (commits * 10, 0, commits * 10 - 1)}
        assert [r.step for r in reader.runs(gid)] == [commits * 10, commits * 10]
        times = [1000.0 * c for c in range(commits)]  # each commit's samples once
        for rank, rid in enumerate(run_ids):
            sys_cols = reader.run_system(rid)
            assert sys_cols["_timestamp"].tolist() == times
            assert sys_cols["proc.rss_bytes"].tolist() == [rank + 1.0] * commits
        assert {n: c["_timestamp"].tolist() for n, c in reader.group_system(gid).items()} == {"n0": times}
        points = store.unsealed_points(gid, -1)
        assert sorted((k, r, len(s)) for k, r, s, _ in points) == [("loss", 0, commits * 10), ("loss", 1, commits * 10)]
    finally:
        reader.close()


def register(store) -> tuple[int, list[int]]:
    ids = []
    for rank in (0, 1):
        g, r, _ = store.register("p", "g", 2, dict(RUN, name=f"rank-{rank}", rank=rank), 1.0)
        ids.append(r.id)
    return g.id, ids


def test_a_commit_written_twice_is_read_once(url):
    """The same commit written twice in a row (a retry): no step, group row or point appears twice."""
    store = ClickHouseStore(url)
    try:
        gid, ids = register(store)
        write(store, ids, 0, 1)
        write(store, ids, 1, 2)
        write(store, ids, 1, 2)
        check(store, gid, ids, 2)
        assert store.writer_seq("w") == 2
    finally:
        store.close()


@pytest.mark.parametrize("fail_on", ["history_chunks", "group_rows", "system", "runs", "writers"])
def test_a_commit_that_failed_half_way_then_a_restart(url, fail_on):
    """An INSERT of a commit fails (everything before it is stored), the process goes away, a new store
    opens the same database: the runs keep their ids, the writer's seq is the last fully stored commit's
    (the seqs are INSERTed last), and the commit written again is read once."""
    store = ClickHouseStore(url)
    gid, ids = register(store)
    write(store, ids, 0, 1)
    with pytest.raises(StoreError, match="injected"):
        write(store, ids, 1, 2, fail_on=fail_on)
    store.close()
    again = ClickHouseStore(url)
    try:
        assert again.writer_seq("w") == 1  # the agent resends batch 2
        g, r, new = again.register("p", "g", 2, dict(RUN, name="rank-1", rank=1), 5.0)
        assert (g.id, r.id, new) == (gid, ids[1], False)
        write(again, ids, 1, 2)
        check(again, gid, ids, 2)
        assert again.writer_seq("w") == 2
    finally:
        again.close()


CHILD = textwrap.dedent(
    """
    import sys
    sys.path[:0] = [{tests!r}, {repo!r}]
    from store.test_clickhouse_replay import ClickHouseStore, register, write
    store = ClickHouseStore({url!r})
    gid, ids = register(store)
    for c in range(10_000):
        write(store, ids, c, c + 1)
        print(c + 1, flush=True)
    """
)


@pytest.mark.timeout(300)
def test_killed_mid_stream_then_resent(url):
    """A process committing in a loop is killed -9 at an arbitrary moment (after it reported its 5th
    commit stored): a new store resends from the batch after the stored seq, and also the two before it (a
    node that never got their ACKs); the reads give every step once with its value."""
    tests = Path(__file__).resolve().parents[1]
    code = CHILD.format(tests=str(tests), repo=str(tests.parent), url=url)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(5):  # a line per stored commit; EOF if the child died
            line = child.stdout.readline()
            assert line, child.stderr.read().decode()[-2000:]
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(60)
        child.stdout.close()
        child.stderr.close()
    store = ClickHouseStore(url)
    try:
        gid, ids = register(store)
        seq = store.writer_seq("w")
        assert seq >= 5
        for c in range(seq - 2, seq + 1):  # seq is commit c + 1
            write(store, ids, c, c + 1)
        check(store, gid, ids, seq + 1)
        assert store.writer_seq("w") == seq + 1
    finally:
        store.close()
