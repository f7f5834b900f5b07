"""Media through the real agent, read back with ``rankwise.Api``: eight ranks logging the same image share
one file (per-rank references), group histograms are ``merge_histograms`` over the ranks' stored histograms,
the per-run byte budget turns media into counted ``skipped`` references without losing a row, and media reads
decode only the stored chunks holding the steps asked for."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import rankwise
from grouping.histogram import merge_histograms
from rankwise._api import NotFound
from support.probes import status_json
from support.processes import RankwiseEnv, run_ranks

WORLD, STEPS = 8, 3
EDGES = np.linspace(-4.0, 4.0, 17)  # fixed edges: the ranks' histograms merge exactly
SCRIPT = """
import os, numpy as np, rankwise as wandb
rank = int(os.environ["RANK"])
run = wandb.init(project="media")
rng = np.random.default_rng(rank)
same = np.zeros((16, 16, 3), np.uint8); same[4:12, 4:12] = (200, 30, 90)
for s in range(%(steps)d):
    x = rng.normal(size=500) * (1 + rank) + s
    run.log({
        "same": wandb.Image(same, caption=f"rank {rank} step {s}"),
        "own": wandb.Image(np.full((4, 6), 10 * rank + s, np.uint8)),
        "h_fixed": wandb.Histogram(np_histogram=np.histogram(np.clip(x, -3.99, 3.99), bins=np.linspace(-4.0, 4.0, 17))),
        "h_data": wandb.Histogram(x),
        "loss": float(s + rank),
    })
run.finish()
""" % {"steps": STEPS}


def data_of(rank: int, step: int) -> np.ndarray:
    """What rank ``rank`` histogrammed at ``step`` (the script's generator, replayed)."""
    rng = np.random.default_rng(rank)
    for s in range(step + 1):
        x = rng.normal(size=500) * (1 + rank) + s
    return x


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    """One group of 8 ranks logged through the real agent (shared by the module's tests)."""
    import shutil
    import tempfile

    from support.processes import stop_agent

    env = RankwiseEnv(tempfile.mkdtemp(prefix="rwdm", dir="/tmp"), tempfile.mkdtemp(prefix="rwrm", dir="/tmp"))
    try:
        run_ranks(
            env,
            SCRIPT,
            WORLD,
            "job-media",
            RANKWISE_DIR=env.data,
            RANKWISE_RUNTIME_DIR=env.runtime,
            RANKWISE_AGENT_IDLE_TIMEOUT="60",
        )
        api = rankwise.Api(env.store)
        yield api.group("media", "job-media")
        api.close()
    finally:
        stop_agent(env)
        shutil.rmtree(env.data, ignore_errors=True)
        shutil.rmtree(env.runtime, ignore_errors=True)


def test_same_image_from_eight_ranks_is_one_file(group):
    """Eight ranks logging the same pixels at three steps: 24 references (each with its rank's caption) to
    one file in the media store; the per-rank images are one file each."""
    api = group._api
    per_rank = group.media("same")
    assert sorted(per_rank) == list(range(WORLD))
    refs = [(r, s, v) for r, values in per_rank.items() for s, v in values]
    assert len(refs) == WORLD * STEPS
    assert [(r, s, v["caption"]) for r, s, v in refs] == [
        (r, s, f"rank {r} step {s}") for r in range(WORLD) for s in range(STEPS)
    ]
    assert len({v["sha256"] for _, _, v in refs}) == 1
    path = api.media_path(refs[0][2])
    assert {api.media_path(v) for _, _, v in refs} == {path}
    assert hashlib.sha256(path.read_bytes()).hexdigest() == refs[0][2]["sha256"]
    files = sorted(p for p in (api.media_root / "media").rglob("*") if p.is_file())
    own = {v["sha256"] for values in group.media("own").values() for _, v in values}
    assert len(own) == WORLD * STEPS  # distinct pixels everywhere
    assert sorted(p.name.split(".")[0] for p in files) == sorted(own | {refs[0][2]["sha256"]})
    assert not [p for p in files if p.name.startswith(".tmp-")]


def test_group_media_keeps_every_rank_and_selects_steps(group):
    """Group.media(key, step=s) gives every rank's own value at s (no merging); a step nobody logged gives
    nothing; RunView.media is that rank's list; scalar keys are not media."""
    at1 = group.media("own", step=1)
    assert sorted(at1) == list(range(WORLD))
    for r in range(WORLD):
        ((step, ref),) = at1[r]
        assert step == 1 and ref == group.run(rank=r).media("own")[1][1]
        with group._api.open_media(ref) as f:
            assert f.read() == group._api.media_path(ref).read_bytes()
    assert group.media("own", step=99) == {}
    assert group.run(rank=0).media("loss") == []
    keys = {m["key"]: m for m in group.media_keys()}
    types = {k: keys[k]["type"] for k in keys}
    assert types == {"same": "image", "own": "image", "h_fixed": "histogram", "h_data": "histogram"}
    assert (keys["own"]["runs"], keys["own"]["first"], keys["own"]["last"]) == (WORLD, 0, STEPS - 1)
    steps = {r: s.tolist() for r, s in group.media_steps("own").items()}
    assert steps == {r: list(range(STEPS)) for r in range(WORLD)}


@pytest.mark.parametrize("key", ["h_fixed", "h_data"])
def test_group_histogram_is_merge_of_rank_histograms(group, key):
    """Group.histograms(key) at each step equals merge_histograms over the 8 ranks' stored histograms of
    that step (rank order), with the ranks listed; one rank's view is its own histograms."""
    got = group.histograms(key)
    assert [s for s, _ in got] == list(range(STEPS))
    for step, merged in got:
        hists = [group.run(rank=r).media(key)[step][1] for r in range(WORLD)]
        assert merged == {**merge_histograms(hists), "ranks": list(range(WORLD))}
        assert sum(merged["values"]) == 500 * WORLD
    own = group.histograms(key, rank=5)
    assert own == [(s, {**merge_histograms([h]), "ranks": [5]}) for s, h in group.run(rank=5).media(key)]


def test_fixed_edges_merge_is_exact(group):
    """With the same edges on every rank the merged histogram is the histogram of all ranks' data pooled."""
    for step, merged in group.histograms("h_fixed"):
        pooled = np.concatenate([np.clip(data_of(r, step), -3.99, 3.99) for r in range(WORLD)])
        counts, _ = np.histogram(pooled, bins=EDGES)
        assert merged["bins"] == EDGES.tolist() and merged["values"] == counts.tolist()


def test_differing_edges_are_rebinned_over_the_union_range(group):
    """Ranks' data-dependent edges differ: the merge spans the smallest to the largest edge in 64 bins and
    keeps the total count exactly."""
    for step, merged in group.histograms("h_data"):
        data = [data_of(r, step) for r in range(WORLD)]
        assert merged["bins"][0] == min(float(d.min()) for d in data)
        assert merged["bins"][-1] == max(float(d.max()) for d in data)
        assert len(merged["values"]) == 64 and sum(merged["values"]) == 500 * WORLD


BUDGET_SCRIPT = """
import numpy as np, rankwise as wandb
run = wandb.init(project="budget")
rng = np.random.default_rng(0)
for s in range(%(n)d):
    run.log({"noise": wandb.Image(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)), "x": s})
run.finish()
"""
N_IMAGES = 40


def test_byte_budget_skips_are_counted_and_rows_kept(rankwise_env):
    """Logging more media bytes per second than RANKWISE_MEDIA_BYTES_PER_S: the excess images are stored as
    references marked skipped (no file), every step keeps its row, and stored + skipped == logged, the skips
    counted as media_budget in `rankwise status --json` and in the store's drop counters."""
    # 1000 B/s with a 4 s burst: the first ~3 KiB image fits, the next one only seconds later
    run_ranks(rankwise_env, BUDGET_SCRIPT % {"n": N_IMAGES}, 1, "job-budget", RANKWISE_MEDIA_BYTES_PER_S="1000")
    api = rankwise.Api(rankwise_env.store)
    run = api.group("budget", "job-budget").run(rank=0)
    rows = run.history()
    assert [r["_step"] for r in rows] == list(range(N_IMAGES))
    assert [r["x"] for r in rows] == list(range(N_IMAGES))
    stored = [r["noise"] for r in rows if "path" in r["noise"]]
    skipped = [r["noise"] for r in rows if r["noise"].get("skipped") == "byte budget"]
    assert len(stored) >= 1 and len(skipped) >= 1
    assert len(stored) + len(skipped) == N_IMAGES
    rng = np.random.default_rng(0)
    for row in rows:
        px = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        ref = row["noise"]
        assert (ref["_type"], ref["format"], ref["width"], ref["height"]) == ("image", "png", 32, 32)
        want = rankwise.Image(px)._to_wire()
        assert (ref["sha256"], ref["size"]) == (want["sha256"], len(want["bytes"]))
        if "path" in ref:
            assert api.media_path(ref).read_bytes() == want["bytes"]
        else:
            with pytest.raises(NotFound, match="byte budget"):
                api.media_path(ref)
            assert not (api.media_root / "media" / ref["sha256"][:2] / f"{ref['sha256']}.png").exists()
    assert run.media("noise") == [(r["_step"], r["noise"]) for r in rows]
    assert status_json(rankwise_env)["drops"].get("media_budget") == len(skipped)
    assert api._reader.drops().get("media_budget") == len(skipped)
    api.close()


def test_media_path_refuses_what_is_not_a_reference(tmp_path):
    """media_path names the problem: a histogram (inline, no file), a traversal attempt, a bad hash."""
    from agent.store.sqlite import SQLiteStore

    SQLiteStore(tmp_path / "store.sqlite").close()
    api = rankwise.Api(tmp_path)
    with pytest.raises(rankwise.Error, match="stored inline"):
        api.media_path({"_type": "histogram", "bins": [0, 1], "values": [1]})
    with pytest.raises(rankwise.Error, match="media/ab/<sha256>"):
        api.media_path("media/../../etc/passwd")
    with pytest.raises(rankwise.Error, match="64 lower-case hex"):
        api.media_path({"_type": "image", "sha256": "../x", "format": "png", "path": "media/x"})
    with pytest.raises(NotFound, match="not in"):
        api.media_path({"_type": "image", "sha256": "a" * 64, "format": "png"})
    with pytest.raises(NotFound, match="failed to encode"):
        api.media_path({"_type": "image", "error": "ValueError: x", "caption": None})
    api.close()


def test_media_reads_decode_only_the_chunks_asked_for(tmp_path, monkeypatch):
    """A run with 50 stored chunks of 10 steps: the steps are listed without decoding any value, one step
    decodes one chunk, a range of 20 steps two."""
    from agent.store import sqlite_reader as sq
    from agent.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "store.sqlite")
    info = {"name": "rank-0", "run_key": "k0", "rank": 0, "local_rank": 0, "node": "n", "pid": 1}
    g, r, _ = store.register("p", "g", 1, info, 1.0)
    ref = lambda s: {"_type": "image", "format": "png", "sha256": f"{s:064x}", "size": 1, "caption": str(s)}  # noqa: E731
    for c in range(50):
        steps = np.arange(c * 10, c * 10 + 10, dtype=np.int64)
        with store.transaction() as txn:
            txn.add_history(r.id, "img", steps, [ref(int(s)) for s in steps], False)
            txn.add_history(r.id, "loss", steps, steps.astype(np.float64), False)
    store.close()
    decoded = []
    real = sq.decode_values
    monkeypatch.setattr(sq, "decode_values", lambda enc, blob: decoded.append(enc) or real(enc, blob))
    api = rankwise.Api(tmp_path)
    grp = api.group("p", "g")
    assert grp.media_steps("img")[0].tolist() == list(range(500)) and decoded == []
    assert grp.media("img", step=123) == {0: [(123, ref(123))]} and len(decoded) == 1
    decoded.clear()
    assert grp.run(rank=0).media("img", start=100, end=119) == [(s, ref(s)) for s in range(100, 120)]
    assert len(decoded) == 2
    api.close()


def test_media_store_dir_is_the_store_dir(group):
    """Api.media_root is the directory of store.sqlite, where the agent's media/ directory is."""
    assert group._api.media_root == Path(group._api.path).parent
    assert (group._api.media_root / "media").is_dir()


def test_memory_store_reads_media_like_sqlite(tmp_path):
    """The generic media reads of the store interface (used by MemoryStore) return what the SQLite reader's
    own versions return: steps per run, values by step and range with later chunks winning, media keys."""
    from agent.store.memory import MemoryStore
    from agent.store.sqlite import SQLiteStore

    def fill(store):
        runs = []
        for rank in range(2):
            info = {
                "name": f"rank-{rank}",
                "run_key": f"k{rank}",
                "rank": rank,
                "local_rank": rank,
                "node": "n",
                "pid": 1,
            }
            _, r, _ = store.register("p", "g", 2, info, 1.0)
            runs.append(r)
        for c in range(4):
            steps = np.arange(c * 5, c * 5 + 5, dtype=np.int64)
            with store.transaction() as txn:
                for r in runs:
                    vals = [{"_type": "image", "format": "png", "caption": f"{r.rank}:{int(s)}"} for s in steps]
                    txn.add_history(r.id, "img", steps, vals, False)
                    txn.add_history(r.id, "loss", steps, steps * 1.0, False)
        with store.transaction() as txn:  # a late rewrite of step 7 of rank 1 wins
            txn.add_history(runs[1].id, "img", np.array([7]), [{"_type": "image", "caption": "late"}], True)

    sql = SQLiteStore(tmp_path / "store.sqlite")
    fill(sql)
    sql.close()
    mem = MemoryStore()
    fill(mem)
    api = rankwise.Api(tmp_path)
    readers = [mem.reader(), api._reader]
    out = []
    for rd in readers:
        gid = rd.group("p", "g").id
        rid = {r.rank: r.id for r in rd.runs(gid)}
        steps = {rank: rd.group_value_steps(gid, "img")[i].tolist() for rank, i in rid.items()}
        at = rd.group_values(gid, "img", np.array([3, 7, 12]))
        vals = {rank: (at[i][0].tolist(), at[i][1]) for rank, i in rid.items()}
        rng = rd.run_values(rid[1], "img", None, 6, 8)
        keys = rd.group_media_keys(gid)
        out.append((steps, vals, (rng[0].tolist(), rng[1]), keys))
    api.close()
    assert out[0] == out[1]
    steps, vals, rng, keys = out[0]
    assert steps == {0: list(range(20)), 1: list(range(20))}
    assert vals[1] == (
        [3, 7, 12],
        [
            {"_type": "image", "format": "png", "caption": "1:3"},
            {"_type": "image", "caption": "late"},
            {"_type": "image", "format": "png", "caption": "1:12"},
        ],
    )
    assert rng[0] == [6, 7, 8] and rng[1][1] == {"_type": "image", "caption": "late"}
    assert keys == {
        "img": {"runs": 2, "first": 0, "last": 19, "sample": {"_type": "image", "format": "png", "caption": "1:19"}}
    }
