"""wandb's init() semantics through rankwise (issue 10, item 1): dir=, id= and resume, names with '/',
entity/project, dryrun, define_metric(summary="best"), the WANDB_* variables, config include/exclude keys.
Each test starts a real agent in its own RANKWISE_DIR (tests/conftest.py) and reads back what was stored."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import rankwise
from client import state


def _stored_run(project: str, group: str, rank: int = 0):
    return rankwise.Api().group(project, group).run(rank=rank)


def test_init_dir_is_the_runs_files_never_the_store(rankwise_env, tmp_path, monkeypatch):
    """init(dir=X) (Lightning's WandbLogger passes save_dir, "." by default) puts run.dir under X and leaves
    the store in RANKWISE_DIR: no store file appears under X or the working directory, and Api() reads
    the run from RANKWISE_DIR."""
    monkeypatch.chdir(tmp_path)
    run = rankwise.init(project="dirs", group="g", dir=".", config={"a": 1})
    run.log({"x": 1.5})
    assert run.dir == str(tmp_path / "wandb" / f"run-{run.id}" / "files") and Path(run.dir).is_dir()
    run.finish()
    assert not list(tmp_path.rglob("store.sqlite*"))
    assert (Path(rankwise_env.data) / "store.sqlite").exists()
    stored = _stored_run("dirs", "g")
    assert [r["x"] for r in stored.history()] == [1.5]


def test_wandb_dir_variable_places_run_dir(rankwise_env, tmp_path, monkeypatch):
    """WANDB_DIR is wandb's default for dir=: run.dir goes under it, the store stays in RANKWISE_DIR."""
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wd"))
    run = rankwise.init(project="dirs", group="g2", mode="disabled")
    assert run.dir.startswith(str(tmp_path / "wd" / "wandb"))
    assert run.settings.data_dir == Path(rankwise_env.data)
    run.finish()


RESUME_SCRIPT = """
import json, os, sys
import rankwise
run = rankwise.init(project="pre", id="job-7", resume=sys.argv[1], name="outputs/bert-base")
start = run.step
for s in range(start, start + 3):
    run.log({"loss": float(s)})
print(json.dumps({"id": run.id, "group": run.group, "name": run.name, "start": start, "resumed": run.resumed}))
"""


def _run_script(rankwise_env, tmp_path, mode: str, **env) -> subprocess.CompletedProcess:
    script = tmp_path / "resume.py"
    script.write_text(textwrap.dedent(RESUME_SCRIPT))
    return subprocess.run(
        [sys.executable, str(script), mode], env=rankwise_env.env(**env), capture_output=True, text=True, timeout=120
    )


def test_id_and_resume_continue_the_same_run_in_a_new_process(rankwise_env, tmp_path):
    """init(id="job-7", resume="allow") in a new process (a preempted job restarted, another launcher
    group) resumes run "job-7": run.id is the id passed, the group is named by the id, the second process
    starts at step 3, and the store holds one run with steps 0..5 and the values of both processes."""
    first = _run_script(rankwise_env, tmp_path, "allow", TORCHELASTIC_RUN_ID="launch-1")
    assert first.returncode == 0, first.stderr
    second = _run_script(rankwise_env, tmp_path, "allow", TORCHELASTIC_RUN_ID="launch-2")
    assert second.returncode == 0, second.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert (a["id"], a["group"], a["name"], a["start"], a["resumed"]) == (
        "job-7",
        "job-7",
        "outputs/bert-base",
        0,
        False,
    )
    assert (b["id"], b["group"], b["start"], b["resumed"]) == ("job-7", "job-7", 3, True)
    g = rankwise.Api().group("pre", "job-7")
    assert [(r.name, r.id, r.rows) for r in g.runs] == [("outputs/bert-base", "job-7", 6)]
    assert [(r["_step"], r["loss"]) for r in g.run(rank=0).history()] == [(s, float(s)) for s in range(6)]


def test_resume_must_and_never(rankwise_env, tmp_path):
    """resume="must" for an id the store does not hold and resume="never" for one it holds both refuse
    with a rankwise.Error naming the run; "auto" resumes."""
    must = _run_script(rankwise_env, tmp_path, "must")
    assert must.returncode != 0 and "resume='must'" in must.stderr
    assert _run_script(rankwise_env, tmp_path, "auto").returncode == 0
    never = _run_script(rankwise_env, tmp_path, "never")
    assert never.returncode != 0 and "resume='never'" in never.stderr
    again = _run_script(rankwise_env, tmp_path, "must")
    assert again.returncode == 0 and json.loads(again.stdout)["start"] == 3


def test_entity_project_names_with_slashes_and_dryrun(rankwise_env):
    """project="team/proj" is entity "team" and project "proj"; a name and a group with '/' are kept as
    they are (HF names runs after their output directory); mode="dryrun" is offline and still stored."""
    run = rankwise.init(project="team/proj", group="exp/a", name="out/run-1", mode="dryrun")
    run.log({"v": 2})
    assert (run.entity, run.project, run.path, run.offline) == ("team", "proj", f"team/proj/{run.id}", True)
    run.finish()
    stored = _stored_run("proj", "exp/a")
    assert (stored.name, stored.meta["entity"], [r["v"] for r in stored.history()]) == ("out/run-1", "team", [2])


def test_wandb_environment_variables(rankwise_env, monkeypatch):
    """WANDB_NAME, WANDB_RUN_ID, WANDB_TAGS, WANDB_NOTES, WANDB_JOB_TYPE, WANDB_MODE=dryrun are used as
    wandb uses them; the stored run carries the name, id, tags, notes and job type."""
    monkeypatch.setenv("WANDB_PROJECT", "envp")
    monkeypatch.setenv("WANDB_NAME", "named/by-env")
    monkeypatch.setenv("WANDB_RUN_ID", "env-id")
    monkeypatch.setenv("WANDB_TAGS", "a, b")
    monkeypatch.setenv("WANDB_NOTES", "from env")
    monkeypatch.setenv("WANDB_JOB_TYPE", "train")
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    run = rankwise.init()
    assert (run.name, run.id, run.group, run.tags, run.notes, run.job_type, run.settings.mode) == (
        "named/by-env",
        "env-id",
        "env-id",
        ("a", "b"),
        "from env",
        "train",
        "offline",
    )
    run.log({"k": 1})
    run.finish()
    stored = rankwise.Api().group("envp", "env-id").run(rank=0)
    assert (stored.id, stored.name) == ("env-id", "named/by-env")
    assert {k: stored.meta[k] for k in ("tags", "notes", "job_type")} == {
        "tags": ["a", "b"],
        "notes": "from env",
        "job_type": "train",
    }


def test_wandb_disabled_variable(rankwise_env, monkeypatch):
    """WANDB_DISABLED=true makes init() return a disabled run: log() works, nothing reaches an agent."""
    monkeypatch.setenv("WANDB_DISABLED", "true")
    run = rankwise.init(project="off", group="g")
    run.log({"a": 1})
    assert run.disabled and run.settings.mode == "disabled"
    run.finish()
    assert rankwise_env.agent_info() is None


def test_config_include_and_exclude_keys(rankwise_env):
    """config_exclude_keys / config_include_keys filter the config given to init(), as in wandb."""
    cfg = {"lr": 0.1, "bs": 32, "secret": "x"}
    run = rankwise.init(project="cfgk", group="g1", config=cfg, config_exclude_keys=["secret"])
    assert run.config.as_dict() == {"lr": 0.1, "bs": 32}
    run.finish()
    run = rankwise.init(project="cfgk", group="g2", config=cfg, config_include_keys=["lr"])
    assert run.config.as_dict() == {"lr": 0.1}
    run.finish()
    assert _stored_run("cfgk", "g1").config == {"lr": 0.1, "bs": 32}
    assert _stored_run("cfgk", "g2").config == {"lr": 0.1}


def test_define_metric_best_follows_goal(rankwise_env):
    """define_metric(summary="best", goal="maximize") keeps the max, goal="minimize" the min."""
    run = rankwise.init(project="best", group="g")
    run.define_metric("acc", summary="best", goal="maximize")
    run.define_metric("loss", summary="best", goal="minimize")
    for acc, loss in ((0.5, 2.0), (0.9, 1.0), (0.7, 1.5)):
        run.log({"acc": acc, "loss": loss})
    assert (run.summary["acc"], run.summary["loss"]) == (0.9, 1.0)
    run.finish()
    stored = _stored_run("best", "g").summary
    assert (stored["acc"], stored["loss"]) == (0.9, 1.0)


def test_settings_object_and_placeholders(rankwise_env):
    """rankwise.Settings(**kw) (wandb.Settings) is accepted by init(settings=): wandb-only keys are ignored;
    before init() rankwise.run is None and rankwise.config / summary exist but raise UsageError on use."""
    assert rankwise.run is None and hasattr(rankwise, "config") and hasattr(rankwise, "summary")
    with pytest.raises(rankwise.UsageError, match="init"):
        rankwise.summary["x"]
    run = rankwise.init(project="st", group="g", settings=rankwise.Settings(start_method="thread", mode="disabled"))
    assert rankwise.run is run and run.disabled and rankwise.config is run.config
    run.finish()
    assert rankwise.run is None
    state.reset()


def test_star_import_works(rankwise_env):
    """`from rankwise import *` succeeds before init() (every name of __all__ resolves)."""
    namespace: dict = {}
    exec("from rankwise import *", namespace)
    assert namespace["run"] is None and "login" in namespace and "Artifact" in namespace


def test_wandb_resume_and_run_id_variables_resolve():
    """WANDB_RUN_ID and WANDB_RESUME set the id and the resume mode ("auto" is "allow"); the id names the
    group unless a group is given (group= or WANDB_RUN_GROUP); mode aliases map to rankwise's modes."""
    from client.settings import resolve

    base = {
        "RANKWISE_PROJECT": "p",
        "TORCHELASTIC_RUN_ID": "launch-9",
        "RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "1",
    }
    s = resolve(env=dict(base, WANDB_RUN_ID="r1", WANDB_RESUME="must"))
    assert (s.run_id, s.resume, s.group, s.rank) == ("r1", "must", "r1", 1)
    s = resolve(env=dict(base, WANDB_RUN_ID="r1", WANDB_RESUME="auto", WANDB_RUN_GROUP="sweep/3"))
    assert (s.run_id, s.resume, s.group) == ("r1", "allow", "sweep/3")
    assert [resolve(env=base, mode=m).mode for m in ("dryrun", "run", "shared", "offline")] == [
        "offline",
        "online",
        "online",
        "offline",
    ]
    from client.run import _run_id

    assert _run_id(resolve(env=dict(base, WANDB_RUN_ID="r1"))) == "r1-rank1"


def test_settings_dict_with_wandb_only_keys_is_accepted_and_rankwise_keys_apply(rankwise_env, caplog):
    """init(settings={"start_method": "thread", "_disable_stats": True, "finish_timeout_s": 7}) (a dict as
    older wandb scripts pass it): the wandb-only keys are ignored with one warning naming them, the
    rankwise key applies, and the run logs and stores as usual."""
    import logging

    with caplog.at_level(logging.WARNING, logger="rankwise"):
        run = rankwise.init(
            project="sd",
            group="g",
            rank=0,
            world_size=1,
            settings={"start_method": "thread", "_disable_stats": True, "finish_timeout_s": 7},
        )
    assert run.settings.finish_timeout_s == 7
    notes = [r.getMessage() for r in caplog.records if "ignores" in r.getMessage()]
    assert len(notes) == 1 and "_disable_stats, start_method" in notes[0]
    run.log({"x": 2.5})
    run.finish()
    assert [r["x"] for r in _stored_run("sd", "g").history(["x"])] == [2.5]
