"""wandb's public read API over the store (``rankwise/_api_wandb.py``): ``Api.runs(path, filters=, order=)``,
``Api.run(path)``, ``Run.history()`` / ``scan_history()`` with wandb's signatures and semantics, so that a
wandb analysis notebook runs unchanged. Every value read is compared with what was logged."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

import rankwise
from rankwise._api import NotFound
from rankwise._api_wandb import Run, Runs


def _log(
    project: str,
    group: str,
    values: dict[str, list],
    config: dict | None = None,
    exit_code: int = 0,
    summary: dict | None = None,
) -> str:
    """One run (rank 0 of 1) logging ``values[key][i]`` at step i (None: not logged at that step); its id."""
    run = rankwise.init(project=project, group=group, rank=0, world_size=1, config=config or {})
    n = max(len(v) for v in values.values())
    for i in range(n):
        run.log({k: v[i] for k, v in values.items() if i < len(v) and v[i] is not None})
    for k, v in (summary or {}).items():
        run.summary[k] = v
    run.finish(exit_code=exit_code)
    return run.id


LOSS = [float(x) for x in np.random.default_rng(7).normal(2.0, 0.5, 60)]


def test_notebook_snippet_runs_unchanged(rankwise_env):
    """The typical notebook lines (runs by group, history of a key as a DataFrame, its mean) run as written
    and give the logged values one by one; the run has wandb's attributes (group as its name, path, state,
    config, summary, created_at) and api.run() finds it by 'project/id' and 'entity/project/id'."""
    pytest.importorskip("pandas")
    run_id = _log("proj", "g", {"loss": LOSS, "acc": [i / 60 for i in range(60)]}, config={"lr": 3e-4, "bs": 32})
    _log("proj", "other", {"loss": [9.0, 9.0]})
    api = rankwise.Api()
    # --- the notebook, unchanged (wandb.Api() → rankwise.Api())
    runs = api.runs("proj", filters={"group": "g"})
    df = runs[0].history(keys=["loss"])
    mean = df["loss"].mean()
    # ---
    assert isinstance(runs, Runs) and len(runs) == 1 and isinstance(runs[0], Run)
    assert list(df.columns) == ["loss", "_step"]
    assert df["loss"].tolist() == LOSS
    assert df["_step"].tolist() == list(range(60))
    assert mean == pytest.approx(math.fsum(LOSS) / 60, rel=1e-12)
    r = runs[0]
    assert (r.id, r.name, r.group, r.project, r.state) == (run_id, "rank-0", "g", "proj", "finished")
    assert r.path == [r.entity, "proj", run_id]
    assert r.config == {"lr": 3e-4, "bs": 32}
    assert r.summary["loss"] == LOSS[-1] and r.summary["acc"] == 59 / 60
    assert r.lastHistoryStep == 59 and r.tags == [] and r.sweep is None
    assert len(r.created_at) == 19 and r.created_at[10] == "T"
    assert api.run(f"proj/{run_id}").id == run_id
    assert api.run("/".join(r.path)).id == run_id
    assert api.run(f"{r.entity}/proj/runs/{run_id}").id == run_id
    full = r.history()  # whole rows: every key, _step, _timestamp, _runtime
    assert full["acc"].tolist() == [i / 60 for i in range(60)] and full["loss"].tolist() == LOSS
    assert {"_step", "_timestamp", "_runtime"} <= set(full.columns)
    assert len(api.runs("proj")) == 2 and len(api.runs()) == 2
    # wandb's documented export loop, unchanged
    summary_list, config_list, name_list = [], [], []
    for run in api.runs("proj"):
        summary_list.append(run.summary._json_dict)
        config_list.append({k: v for k, v in run.config.items() if not k.startswith("_")})
        name_list.append(run.name)
    assert summary_list[0]["loss"] == LOSS[-1] and summary_list[1] == {"loss": 9.0}
    assert config_list == [{"lr": 3e-4, "bs": 32}, {}] and name_list == ["rank-0", "rank-0"]


def test_history_samples_and_rows_with_every_key(rankwise_env):
    """history(samples=N) keeps N rows evenly spread with the first and the last; with keys only the rows
    holding every key (and x_axis), with only those columns; pandas=False gives the list of dicts."""
    a = [float(i) for i in range(1000)]
    b = [float(i) * 2 if i % 3 == 0 else None for i in range(1000)]
    _log("s", "g", {"a": a, "b": b})
    (r,) = rankwise.Api().runs("s")
    rows = r.history(samples=100, keys=["a"], pandas=False)
    assert len(rows) == 100
    steps = [row["_step"] for row in rows]
    assert steps[0] == 0 and steps[-1] == 999 and steps == sorted(set(steps))
    assert steps == np.round(np.linspace(0, 999, 100)).astype(int).tolist()
    assert all(row == {"a": a[row["_step"]], "_step": row["_step"]} for row in rows)
    both = r.history(samples=10_000, keys=["a", "b"], pandas=False)
    assert [row["_step"] for row in both] == list(range(0, 1000, 3))
    assert all(row["b"] == 2 * row["a"] == 2 * row["_step"] for row in both)
    assert len(r.history(samples=3, pandas=False)) == 3
    assert r.history(samples=1, keys=["b"], pandas=False) == [{"b": 0.0, "_step": 0}]


def test_history_without_pandas_is_a_list(rankwise_env, monkeypatch):
    """pandas is optional: without it history() (pandas=True by default) returns the list of dicts."""
    _log("np", "g", {"x": [1.0, 2.0, 3.0]})
    (r,) = rankwise.Api().runs("np")
    monkeypatch.setitem(sys.modules, "pandas", None)
    assert r.history(keys=["x"]) == [{"x": 1.0, "_step": 0}, {"x": 2.0, "_step": 1}, {"x": 3.0, "_step": 2}]


def test_scan_history_reads_every_row_in_pages(rankwise_env):
    """scan_history() yields every row in step order whatever the page size, equal to RunView.history();
    min_step is inclusive, max_step exclusive; with keys only rows with all of them, holding only them."""
    x = [float(i) ** 0.5 for i in range(250)]
    y = [i if i % 5 == 0 else None for i in range(250)]
    _log("scan", "g", {"x": x, "y": y})
    api = rankwise.Api()
    (r,) = api.runs("scan")
    expected = api.group("scan", "g").run(rank=0).history()
    for page in (1, 7, 1000):
        assert list(r.scan_history(page_size=page)) == expected
    assert [row["_step"] for row in r.scan_history(min_step=10, max_step=20, page_size=3)] == list(range(10, 20))
    assert list(r.scan_history(keys=["x", "y"], page_size=4)) == [{"x": x[i], "y": i} for i in range(0, 250, 5)]
    assert list(r.scan_history(keys=["y"], min_step=11, max_step=31)) == [{"y": 15}, {"y": 20}, {"y": 25}, {"y": 30}]


def test_filters_and_order(rankwise_env):
    """MongoDB-style filters as wandb's (equality, $gt/$lt, $in, $or, $regex, $exists, config.<k>[.value],
    summary_metrics.<k>, state, display_name) select exactly the runs expected; order sorts by a field,
    ascending with '+' or none, descending with '-', runs without the field last."""
    ids = {}
    for i, lr in enumerate([0.1, 0.01, 0.001]):
        ids[lr] = _log(
            "f",
            f"job-{i}",
            {"loss": [lr * 10]},
            config={"lr": lr, "opt": {"name": "adam" if i else "sgd"}},
            exit_code=1 if i == 2 else 0,
        )
    api = rankwise.Api()
    sel = lambda **kw: [r.id for r in api.runs("f", **kw)]  # noqa: E731
    assert sel() == [ids[0.1], ids[0.01], ids[0.001]]  # +created_at: oldest first
    assert sel(order="-created_at") == [ids[0.001], ids[0.01], ids[0.1]]
    assert sel(filters={"group": "job-1"}) == [ids[0.01]]
    assert sel(filters={"state": "failed"}) == [ids[0.001]]
    assert sel(filters={"state": {"$in": ["finished"]}}) == [ids[0.1], ids[0.01]]
    assert sel(filters={"config.lr": {"$gt": 0.005}}, order="+config.lr") == [ids[0.01], ids[0.1]]
    assert sel(filters={"config.lr.value": 0.01}) == [ids[0.01]]
    assert sel(filters={"config.opt.name": "sgd"}) == [ids[0.1]]
    assert sel(filters={"$or": [{"group": "job-0"}, {"summary_metrics.loss": {"$lt": 0.05}}]}) == [ids[0.1], ids[0.001]]
    assert sel(filters={"group": {"$regex": "^job-[12]$"}, "display_name": "rank-0"}) == [ids[0.01], ids[0.001]]
    assert sel(filters={"config.missing": {"$exists": False}}) == [ids[0.1], ids[0.01], ids[0.001]]
    assert sel(filters={"name": ids[0.01]}) == [ids[0.01]]  # wandb's "name" filter is the run id
    assert sel(order="-summary_metrics.loss") == [ids[0.1], ids[0.01], ids[0.001]]
    assert sel(filters={"created_at": {"$gt": "2000-01-01T00:00:00"}}) == [ids[0.1], ids[0.01], ids[0.001]]
    assert sel(filters={"created_at": {"$lt": 946684800}}) == []
    (r,) = api.runs("f", filters={"group": "job-2"})
    assert r.exit_code == 1 and r.config["lr"] == 0.001 and r.summary["loss"] == 0.001 * 10


def test_errors_name_the_argument(rankwise_env):
    """Unknown projects, run ids, filter fields and operators, malformed paths and keys raise rankwise.Error
    subclasses naming what was wrong; the read-only operations say so."""
    run_id = _log("e", "g", {"x": [1.0]})
    api = rankwise.Api()
    with pytest.raises(NotFound, match="no project 'nope'"):
        api.runs("nope")
    with pytest.raises(NotFound, match="no run with id 'zz'"):
        api.run("e/zz")
    with pytest.raises(rankwise.Error, match="unknown field 'colour'"):
        api.runs("e", filters={"colour": "red"})
    with pytest.raises(rankwise.Error, match=r"unsupported operator '\$near'"):
        api.runs("e", filters={"config.x": {"$near": 1}})
    with pytest.raises(rankwise.Error, match="expected 'project' or 'entity/project'"):
        api.runs("a/b/c")
    r = api.run(f"e/{run_id}")
    with pytest.raises(rankwise.Error, match="must be a list of key names"):
        r.history(keys="x")
    with pytest.raises(rankwise.Error, match="read-only|never writes"):
        r.update()
    with pytest.raises(rankwise.Error, match="no system metrics"):
        r.history(stream="system")


def test_api_overrides_project(rankwise_env):
    """wandb.Api(overrides={"project": p}) makes runs() without a path read p; Api(path) still names a store."""
    _log("ov", "g", {"x": [1.0]})
    _log("other", "g", {"x": [2.0]})
    api = rankwise.Api(overrides={"project": "ov"})
    assert [r.project for r in api.runs()] == ["ov"]
    assert [r.project for r in rankwise.Api(rankwise_env.data).runs("other")] == ["other"]


def test_run_by_the_id_given_to_init(rankwise_env):
    """init(id="my-run-1") (wandb's run id) is the id api.run("project/my-run-1") finds, and run.id reads it."""
    run = rankwise.init(project="ids", id="my-run-1", rank=0, world_size=1)
    assert run.id == "my-run-1"
    for i in range(5):
        run.log({"v": i * 0.5})
    run.finish()
    r = rankwise.Api().run("ids/my-run-1")
    assert r.id == "my-run-1" and r.project == "ids"
    assert [row["v"] for row in r.scan_history(keys=["v"])] == [0.0, 0.5, 1.0, 1.5, 2.0]


RANKS_SCRIPT = """
import os, rankwise
rank = int(os.environ["RANK"])
run = rankwise.init(project="dist", config={"lr": 0.1, "seed": rank})
for i in range(40):
    run.log({"loss": 10.0 * rank + i / 7, "epoch": i // 10})
run.finish()
"""


def test_notebook_over_a_distributed_job(rankwise_env):
    """A 2-rank torchrun-style job (real processes, real agent): the notebook loop over
    api.runs(project, filters={"group": g}) sees one run per rank, each run's history the values its rank
    logged; Runs.histories() concatenates them with a run_id column."""
    from support.processes import run_ranks

    run_ranks(rankwise_env, RANKS_SCRIPT, 2, "job-7")
    api = rankwise.Api()
    runs = api.runs("dist", filters={"group": "job-7"})
    per_run = {}
    for run in runs:
        df = run.history(keys=["loss"], pandas=False)
        per_run[run.config["seed"]] = [row["loss"] for row in df]
    assert per_run == {r: [10.0 * r + i / 7 for i in range(40)] for r in range(2)}
    assert sorted(r.rank for r in runs) == [0, 1] and {r.group for r in runs} == {"job-7"}
    rows = runs.histories(keys=["loss", "epoch"])
    assert len(rows) == 80 and {row["run_id"] for row in rows} == {r.id for r in runs}
    by_rank = {r.id: r.rank for r in runs}
    assert all(row["loss"] == 10.0 * by_rank[row["run_id"]] + row["_step"] / 7 for row in rows)
    assert all(row["epoch"] == row["_step"] // 10 for row in rows)


def test_entity_tags_notes_job_type(rankwise_env):
    """A run logged as project="team/proj" with tags, notes and job_type reads back with wandb's entity, path,
    tags, notes and job_type; "team/proj" finds it, another entity does not; tag filters match as wandb's."""
    run = rankwise.init(
        project="team/proj", tags=["base", "v2"], notes="first try", job_type="train", rank=0, world_size=1
    )
    run.log({"x": 1.0})
    run.finish()
    other = rankwise.init(project="proj", group="g2", rank=0, world_size=1)  # no entity: matches any
    other.finish()
    api = rankwise.Api()
    (r,) = api.runs("team/proj", filters={"tags": "base"})
    assert (r.entity, r.project, r.tags, r.notes, r.job_type) == ("team", "proj", ["base", "v2"], "first try", "train")
    assert r.path == ["team", "proj", run.id] and api.run(f"team/proj/{run.id}").id == run.id
    assert [x.id for x in api.runs("team/proj")] == [run.id, other.id]
    assert [x.id for x in api.runs("else/proj")] == [other.id]
    assert [x.id for x in api.runs("proj", filters={"tags": {"$in": ["v2", "v3"]}})] == [run.id]
    assert [x.id for x in api.runs("proj", filters={"jobType": "train", "entity": "team"})] == [run.id]
    with pytest.raises(NotFound):
        api.run(f"else/proj/{run.id}")
