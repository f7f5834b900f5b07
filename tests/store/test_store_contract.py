"""The store contract (agent/store/base.py): one set of tests run unchanged against every store — memory,
SQLite, chdb and a ClickHouse 18.16 server (tests/store/conftest.py). Exact expected values everywhere."""

from __future__ import annotations

import numpy as np
import pytest

from agent.alerts.alert import Alert
from agent.store.base import GROUP_FIELDS, merge_since

RUN = {"run_key": "k", "local_rank": 0, "node": "n0", "pid": 1}


def register(store, ranks=(0, 1), group="g", project="p") -> tuple[int, dict[int, int]]:
    ids = {}
    for rank in ranks:
        g, r, new = store.register(project, group, len(ranks), dict(RUN, name=f"rank-{rank}", rank=rank), 100.0 + rank)
        assert new
        ids[rank] = r.id
    return g.id, ids


def rows(steps: list[int], base: float) -> dict[str, np.ndarray]:
    s = np.array(steps, np.int64)
    out = {f: np.full(len(s), base) for f in GROUP_FIELDS}
    out["step"] = s
    for f in ("count", "expected", "min_rank", "max_rank", "nan_count"):
        out[f] = np.full(len(s), 2, np.int64)
    out["nan_rank"] = np.full(len(s), -1, np.int64)
    out["mean"] = base + s
    return out


def commit(store, gid: int, ids: dict[int, int], items: list) -> None:
    """One transaction of (rank, key, steps, values[, late]) history chunks and ("group", key, steps, base,
    revision) group-row chunks."""
    with store.transaction() as txn:
        for item in items:
            if item[0] == "group":
                _, key, steps, base, revision = item
                txn.add_group_rows(gid, key, rows(steps, base), revision)
            else:
                rank, key, steps, values, *late = item
                txn.add_history(ids[rank], key, np.array(steps, np.int64), values, bool(late and late[0]))


def plain(sv):
    """(steps, values) as lists, for exact comparison."""
    steps, values = sv
    return np.asarray(steps).tolist(), (values.tolist() if isinstance(values, np.ndarray) else list(values))


def test_register_and_find_run(store):
    """register finds or creates group and run (True only the first time), a larger world size grows the
    group, find_run finds by (project, group, name), and the reader lists projects, groups and runs."""
    gid, ids = register(store, ranks=(1, 0))
    g, r, new = store.register("p", "g", 4, dict(RUN, name="rank-0", rank=0), 200.0)
    assert not new and r.id == ids[0] and g.id == gid and g.world_size == 4
    found = store.find_run("p", "g", "rank-1")
    assert (found.id, found.group_id, found.rank, found.state, found.created) == (ids[1], gid, 1, "running", 101.0)
    assert store.find_run("p", "g", "rank-9") is None and store.find_run("p", "nope", "rank-0") is None
    g2, _, _ = store.register("q", "h", 1, dict(RUN, name="rank-0", rank=0), 300.0)
    reader = store.reader()
    assert reader.projects() == ["p", "q"]
    assert [x.name for x in reader.groups()] == ["h", "g"] and [x.name for x in reader.groups("p")] == ["g"]
    assert reader.group("p", "g").world_size == 4 and reader.group("p", "h") is None
    assert [(x.name, x.rank) for x in reader.runs(gid)] == [("rank-0", 0), ("rank-1", 1)]
    assert g2.id not in (gid,) and len({*ids.values(), store.find_run("q", "h", "rank-0").id}) == 3


def test_history_numbers_lists_and_mixed(store):
    """Float, int and bool arrays read back as numbers; a key with a string or None is a list; a key with a
    numeric chunk and a list chunk reads as one list; run_keys leaves the row keys out."""
    gid, ids = register(store)
    commit(
        store,
        gid,
        ids,
        [
            (0, "loss", [0, 1, 2], np.array([0.5, np.inf, -2.25])),
            (0, "count", [0, 1], np.array([3, 2**60])),
            (0, "text", [0, 2], ["a", None]),
            (0, "mixed", [0, 1], np.array([1.5, 2.5])),
            (0, "_timestamp", [0, 1, 2], np.array([10.0, 11.0, 12.0])),
        ],
    )
    commit(store, gid, ids, [(0, "mixed", [2, 3], [{"k": [1, 2]}, 7]), (1, "loss", [0], np.array([9.0]))])
    h = store.reader().run_history(ids[0])
    assert sorted(h) == ["_timestamp", "count", "loss", "mixed", "text"]
    assert plain(h["loss"]) == ([0, 1, 2], [0.5, float("inf"), -2.25])
    assert plain(h["count"]) == ([0, 1], [3, 2**60]) and h["count"][1].dtype == np.int64
    assert plain(h["text"]) == ([0, 2], ["a", None])
    assert plain(h["mixed"]) == ([0, 1, 2, 3], [1.5, 2.5, {"k": [1, 2]}, 7])
    assert plain(store.reader().run_history(ids[0], ["loss", "nope"])["loss"]) == (
        [0, 1, 2],
        [0.5, float("inf"), -2.25],
    )
    assert store.reader().run_history(ids[0], ["nope"]) == {}
    assert store.reader().run_keys(ids[0]) == ["count", "loss", "mixed", "text"]
    assert plain(store.reader().run_history(ids[1])["loss"]) == ([0], [9.0])


def test_later_chunks_win_and_meta_keys_keep_the_first(store):
    """A late update (a later chunk, in the same commit or a later one) wins per step; _timestamp and
    _runtime keep the value of their first commit."""
    gid, ids = register(store)
    commit(
        store,
        gid,
        ids,
        [(0, "loss", [0, 1, 2], np.array([1.0, 2.0, 3.0])), (0, "_timestamp", [0, 1], np.array([5.0, 6.0]))],
    )
    commit(
        store,
        gid,
        ids,
        [
            (0, "loss", [3], np.array([4.0])),
            (0, "loss", [1, 3], np.array([20.0, 40.0]), True),  # late chunk after the on-time one
            (0, "_timestamp", [1, 2], np.array([99.0, 7.0])),
            (0, "_runtime", [0, 0], np.array([1.0, 2.0])),  # twice in one chunk: the first
        ],
    )
    commit(store, gid, ids, [(0, "loss", [2], np.array([30.0]), True)])
    h = store.reader().run_history(ids[0])
    assert plain(h["loss"]) == ([0, 1, 2, 3], [1.0, 20.0, 30.0, 40.0])
    assert plain(h["_timestamp"]) == ([0, 1, 2], [5.0, 6.0, 7.0])
    assert plain(h["_runtime"]) == ([0], [1.0])


def test_group_rows_latest_revision_wins(store):
    """Group rows read back per step, a revision (a later chunk) replacing the row it revises; keys and
    stats (first-time rows only, first and last step)."""
    gid, ids = register(store)
    commit(store, gid, ids, [("group", "loss", [0, 1, 2], 100.0, False), ("group", "acc", [5], 1.0, False)])
    commit(store, gid, ids, [("group", "loss", [1], 300.0, True), ("group", "loss", [3], 400.0, False)])
    reader = store.reader()
    got = reader.group_history(gid, "loss")
    assert got["step"].tolist() == [0, 1, 2, 3]
    assert got["mean"].tolist() == [100.0, 301.0, 102.0, 403.0]
    assert got["std"].tolist() == [100.0, 300.0, 100.0, 400.0]
    assert got["count"].tolist() == [2, 2, 2, 2] and got["nan_rank"].tolist() == [-1] * 4
    assert all(got[f].dtype == np.int64 for f in ("step", "count", "expected", "min_rank", "max_rank"))
    assert reader.group_keys(gid) == ["acc", "loss"]
    assert reader.group_key_stats(gid) == {"loss": (4, 0, 3), "acc": (1, 5, 5)}
    empty = reader.group_history(gid, "nope")
    assert sorted(empty) == sorted(GROUP_FIELDS) and all(len(v) == 0 for v in empty.values())


COMMITS = [
    [
        (0, "loss", [0, 1, 2], np.array([1.0, 2.0, 3.0])),
        (1, "loss", [0, 1], np.array([5.0, 6.0])),
        (0, "_timestamp", [0, 1, 2], np.array([10.0, 11.0, 12.0])),
        (0, "text", [0], ["a"]),
        ("group", "loss", [0, 1], 100.0, False),
    ],
    [
        (1, "loss", [2, 3], np.array([7.0, 8.0])),
        (0, "loss", [1], np.array([20.0]), True),
        (0, "_timestamp", [1, 3], np.array([99.0, 13.0])),
        ("group", "loss", [2, 3], 200.0, False),
        ("group", "loss", [1], 300.0, True),
    ],
    [(0, "loss", [5], np.array([9.0])), (1, "loss", [4], ["x"]), ("group", "acc", [0], 1.0, False)],
]


def test_incremental_reads_merged_equal_one_full_read(store):
    """group_history_since / group_rank_history after the last id seen, merged as the UI merges them
    (base.merge_since), equal one full read after every commit; nothing new: the same id, nothing read."""
    gid, ids = register(store)
    reader = store.reader()
    last_g = last_r = last_t = 0
    rows_seen: dict | None = None
    runs_seen: dict[int, tuple] = {}
    time_seen: dict[int, tuple] = {}
    for items in COMMITS:
        commit(store, gid, ids, items)
        newer, part = reader.group_history_since(gid, "loss", last_g)
        if len(part["step"]):
            assert newer > last_g
            rows_seen = part if rows_seen is None else _merge_rows(rows_seen, part)
        last_g = newer
        newer, runs = reader.group_rank_history(gid, "loss", last_r)
        assert newer >= last_r
        last_r = newer
        for rid, sv in runs.items():
            runs_seen[rid] = merge_since(runs_seen.get(rid), sv)
        last_t, runs = reader.group_rank_history(gid, "_timestamp", last_t)
        for rid, sv in runs.items():
            time_seen[rid] = merge_since(time_seen.get(rid), sv, first=True)
        full = reader.group_history(gid, "loss")
        assert {f: rows_seen[f].tolist() for f in GROUP_FIELDS} == {f: full[f].tolist() for f in GROUP_FIELDS}
        assert {r: plain(sv) for r, sv in runs_seen.items()} == {
            r: plain(sv) for r, sv in reader.group_rank_history(gid, "loss")[1].items()
        }
    assert reader.group_history_since(gid, "loss", last_g)[0] == last_g
    assert len(reader.group_history_since(gid, "loss", last_g)[1]["step"]) == 0
    assert reader.group_rank_history(gid, "loss", last_r) == (last_r, {})
    assert rows_seen["mean"].tolist() == [100.0, 301.0, 202.0, 203.0]
    assert plain(runs_seen[ids[0]]) == ([0, 1, 2, 5], [1.0, 20.0, 3.0, 9.0])
    assert plain(runs_seen[ids[1]]) == ([0, 1, 2, 3], [5.0, 6.0, 7.0, 8.0])  # "x" at step 4 is no number
    assert plain(time_seen[ids[0]]) == ([0, 1, 2, 3], [10.0, 11.0, 12.0, 13.0])
    assert reader.group_rank_history(gid, "text")[1] == {}
    assert reader.group_rank_history(gid, "nope", 7) == (7, {})
    assert reader.group_history_since(gid, "nope", 7)[0] == 7


def _merge_rows(old: dict, new: dict) -> dict:
    steps = np.concatenate([old["step"], new["step"]])
    idx = merge_since(
        (old["step"], np.arange(len(old["step"]))), (new["step"], len(old["step"]) + np.arange(len(new["step"])))
    )[1]
    both = {f: np.concatenate([old[f], new[f]]) for f in GROUP_FIELDS}
    order = np.argsort(steps[idx], kind="stable")
    return {f: both[f][idx][order] for f in GROUP_FIELDS}


def test_spans(store):
    """Coalesced spans (agent/ratelimit.py) read back field by field, and as their last value in history."""
    gid, ids = register(store)
    spans = {
        "first_step": np.array([0, 4]),
        "count": np.array([4, 2]),
        "last": np.array([3.0, 5.0]),
        "mean": np.array([1.5, 4.5]),
        "min": np.array([0.0, 4.0]),
        "max": np.array([3.0, 5.0]),
    }
    commit(store, gid, ids, [(0, "loss", [3, 5], spans)])
    got = store.reader().run_spans(ids[0])
    assert sorted(got) == ["loss"]
    assert {f: v.tolist() for f, v in got["loss"].items()} == {
        "step": [3, 5],
        **{f: v.tolist() for f, v in spans.items()},
    }
    assert plain(store.reader().run_history(ids[0])["loss"]) == ([3, 5], [3.0, 5.0])
    assert store.reader().run_spans(ids[1]) == {}


def test_writers_drops_and_open_runs(store):
    """writer_seq gives the last stored sequence number (0 unknown); drops add up across and within
    commits; open_runs lists the runs still running with their group."""
    gid, ids = register(store)
    assert store.writer_seq("w") == 0
    with store.transaction() as txn:
        txn.put_writer("w", ids[0], 3)
        txn.count_drop("queue", 2)
        txn.count_drop("queue", 1)
    run = store.find_run("p", "g", "rank-1")
    run.state, run.exit_code, run.step = "finished", 0, 17
    with store.transaction() as txn:
        txn.put_writer("w", ids[0], 7)
        txn.put_writer("v", ids[1], 1)
        txn.count_drop("size", 5)
        txn.count_drop("queue", 4)
        txn.put_run(run)
    assert (store.writer_seq("w"), store.writer_seq("v")) == (7, 1)
    assert store.reader().drops() == {"queue": 7, "size": 5}
    assert [(g.id, r.id, r.state) for g, r in store.open_runs()] == [(gid, ids[0], "running")]
    done = store.find_run("p", "g", "rank-1")
    assert (done.state, done.exit_code, done.step) == ("finished", 0, 17)


def test_a_failed_transaction_stores_nothing(store):
    """An exception inside the transaction: none of its writes is stored."""
    gid, ids = register(store)
    with pytest.raises(RuntimeError), store.transaction() as txn:
        txn.add_history(ids[0], "loss", np.array([0]), np.array([1.0]), False)
        txn.put_writer("w", ids[0], 3)
        raise RuntimeError("boom")
    assert store.reader().run_history(ids[0]) == {} and store.writer_seq("w") == 0


def test_alerts_one_per_identity_in_order(store):
    """An alert whose identity is stored already (in the same commit or an earlier one) is not stored again;
    alerts read back in the order raised, as Alert.to_dict gives them; ``alert_identities`` gives (kind, rank,
    key, token) of each, None for no rank or key."""
    gid, ids = register(store)
    a = Alert(
        "nan", gid, 1.0, "rank 0: loss is nan at step 3", rank=0, run_id=ids[0], key="loss", step=3, details={"v": 1}
    )
    b = Alert("stalled", gid, 2.0, "group stalled", level="ERROR")
    again = Alert("nan", gid, 9.0, "again", rank=0, run_id=ids[0], key="loss", step=9)
    with store.transaction() as txn:
        txn.add_alert(a)
        txn.add_alert(again)
    with store.transaction() as txn:
        txn.add_alert(b)
        txn.add_alert(again)
        txn.add_alert(Alert("nan", gid, 3.0, "other token", rank=0, key="loss", token="t2"))
    got = store.reader().alerts(gid)
    assert got == [
        a.to_dict(),
        b.to_dict(),
        Alert("nan", gid, 3.0, "other token", rank=0, key="loss", token="t2").to_dict(),
    ]
    assert store.reader().alerts(gid + 1000) == []
    # what an agent restarted over the store reads so as not to raise them again (agent/alerts/book.py)
    assert store.reader().alert_identities(gid) == {
        ("nan", 0, "loss", ""),
        ("stalled", None, None, ""),
        ("nan", 0, "loss", "t2"),
    }
    assert store.reader().alert_identities(gid + 1000) == set()


def test_system_samples(store):
    """System samples of a rank and of a host, joined over commits by time with NaN where a sample lacked
    a key."""
    gid, ids = register(store)
    with store.transaction() as txn:
        txn.add_system(gid, ids[0], "n0", {"_timestamp": np.array([2.0]), "proc.cpu": np.array([50.0])})
        txn.add_system(gid, None, "n0", {"_timestamp": np.array([2.0]), "host.cpu": np.array([10.0])})
    with store.transaction() as txn:
        txn.add_system(gid, ids[0], "n0", {"_timestamp": np.array([1.0, 3.0]), "proc.rss": np.array([7.0, 8.0])})
    got = store.reader().run_system(ids[0])
    assert {k: v.tolist() for k, v in got.items()} == {
        "_timestamp": [1.0, 2.0, 3.0],
        "proc.cpu": [pytest.approx(np.nan, nan_ok=True), 50.0, pytest.approx(np.nan, nan_ok=True)],
        "proc.rss": [7.0, pytest.approx(np.nan, nan_ok=True), 8.0],
    }
    host = store.reader().group_system(gid)
    assert {n: {k: v.tolist() for k, v in c.items()} for n, c in host.items()} == {
        "n0": {"_timestamp": [2.0], "host.cpu": [10.0]}
    }
    assert store.reader().run_system(ids[1]) == {}


def test_unsealed_points(store):
    """Numeric points above a step per (key, rank), latest value per step, without row keys and lists'
    non-numbers."""
    gid, ids = register(store)
    commit(store, gid, ids, [(0, "loss", [0, 1, 2], np.array([1.0, 2.0, 3.0])), (1, "acc", [2, 3], [0.5, "x"])])
    commit(store, gid, ids, [(0, "loss", [2], np.array([30.0]), True), (0, "_timestamp", [2], np.array([1.0]))])
    got = sorted((k, r, s.tolist(), np.asarray(v, float).tolist()) for k, r, s, v in store.unsealed_points(gid, 0))
    assert got == [("acc", 1, [2], [0.5]), ("loss", 0, [1, 2], [2.0, 30.0])]


def test_rank_values_see_the_transactions_own_writes(store):
    """Txn.rank_values: every run's latest numeric value at the steps asked, the transaction's own
    uncommitted chunks included."""
    gid, ids = register(store)
    commit(store, gid, ids, [(0, "loss", [0, 1, 2], np.array([1.0, 2.0, 3.0])), (1, "loss", [1], np.array([5.0]))])
    with store.transaction() as txn:
        txn.add_history(ids[1], "loss", np.array([2]), np.array([6.0]), False)
        txn.add_history(ids[0], "loss", np.array([1]), np.array([20.0]), True)
        s, r, v = txn.rank_values(gid, "loss", np.array([1, 2]))
        got = sorted(zip(s.tolist(), r.tolist(), v.tolist()))
        assert got == [(1, 0, 20.0), (1, 1, 5.0), (2, 0, 3.0), (2, 1, 6.0)]
        assert [len(x) for x in txn.rank_values(gid, "nope", np.array([1]))] == [0, 0, 0]


def test_values_by_step_and_media_keys(store):
    """group_value_steps, group_values / run_values (limited by steps and a range) and group_media_keys."""
    gid, ids = register(store)
    img0 = {"_type": "image-file", "sha256": "aa", "path": "media/a.png"}
    img1 = {"_type": "image-file", "sha256": "bb", "path": "media/b.png"}
    commit(
        store, gid, ids, [(0, "img", [0, 5], [img0, img1]), (1, "img", [5], [img0]), (0, "loss", [0], np.array([1.0]))]
    )
    commit(store, gid, ids, [(1, "img", [9], [img1])])
    reader = store.reader()
    assert {r: s.tolist() for r, s in reader.group_value_steps(gid, "img").items()} == {ids[0]: [0, 5], ids[1]: [5, 9]}
    got = reader.group_values(gid, "img", steps=np.array([5, 9]))
    assert {r: plain(sv) for r, sv in got.items()} == {ids[0]: ([5], [img1]), ids[1]: ([5, 9], [img0, img1])}
    got = reader.group_values(gid, "img", start=1, end=8)
    assert {r: plain(sv) for r, sv in got.items()} == {ids[0]: ([5], [img1]), ids[1]: ([5], [img0])}
    assert plain(reader.run_values(ids[0], "img")) == ([0, 5], [img0, img1])
    assert plain(reader.run_values(ids[0], "nope")) == ([], [])
    assert reader.group_media_keys(gid) == {"img": {"runs": 2, "first": 0, "last": 9, "sample": img1}}
