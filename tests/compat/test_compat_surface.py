"""Every public name wandb 0.31 exports at top level and on ``Run`` (listed from wandb's reference docs:
"Global Functions", "Data types", "wandb.Run" properties and methods) exists on rankwise and, used as
wandb documents, either works or raises a ``rankwise.Error`` with a message: never AttributeError,
never another exception type."""

from __future__ import annotations

import pytest

import rankwise

# wandb 0.31, top level (wandb/__init__.py __all__ and the documented functions/classes)
TOP_LEVEL = [
    "__version__",
    "init",
    "finish",
    "setup",
    "login",
    "teardown",
    "save",
    "restore",
    "sweep",
    "controller",
    "agent",
    "config",
    "log",
    "summary",
    "Api",
    "Graph",
    "Image",
    "Plotly",
    "Video",
    "Audio",
    "Table",
    "Html",
    "Object3D",
    "Molecule",
    "Histogram",
    "Artifact",
    "Settings",
    "watch",
    "unwatch",
    "plot",
    "plot_table",
    "Run",
    "termlog",
    "termwarn",
    "termerror",
    "require",
    "define_metric",
    "log_artifact",
    "use_artifact",
    "log_model",
    "use_model",
    "link_model",
    "mark_preempting",
    "alert",
    "AlertLevel",
    "Error",
    "errors",
    "util",
    "run",
    "Classes",
    "apis",
    "sdk",
]

RUN_PROPERTIES = [
    "config",
    "config_static",
    "dir",
    "disabled",
    "entity",
    "group",
    "id",
    "job_type",
    "name",
    "notes",
    "offline",
    "path",
    "project",
    "project_url",
    "resumed",
    "settings",
    "start_time",
    "starting_step",
    "step",
    "sweep_id",
    "sweep_url",
    "tags",
    "url",
    "summary",
]

RUN_METHODS = [
    "alert",
    "define_metric",
    "display",
    "finish",
    "finish_artifact",
    "get_project_url",
    "get_sweep_url",
    "get_url",
    "link_artifact",
    "link_model",
    "log",
    "log_artifact",
    "log_code",
    "log_model",
    "mark_preempting",
    "project_name",
    "restore",
    "save",
    "status",
    "to_html",
    "unwatch",
    "upsert_artifact",
    "use_artifact",
    "use_model",
    "watch",
    "_label",
]


def _works_or_refuses(call) -> str:
    """'ok' when the call returns, 'refused' when it raises rankwise.Error with a message; anything else fails."""
    try:
        call()
    except rankwise.Error as exc:
        assert str(exc).strip(), f"{call} raised {type(exc).__name__} without a message"
        return "refused"
    return "ok"


def test_top_level_names_exist_before_init(rankwise_env):
    """Each top-level name resolves before init() (hasattr is True; wandb.run is None)."""
    missing = [n for n in TOP_LEVEL if not hasattr(rankwise, n)]
    assert missing == []
    assert rankwise.run is None


def test_top_level_functions_work_or_refuse(rankwise_env, tmp_path, monkeypatch):
    """Called as wandb documents them, with and without a run."""
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.txt").write_text("x")
    assert rankwise.login(key="ignored") is True
    assert rankwise.require("service") is None and rankwise.setup() is None
    rankwise.termlog("hello"), rankwise.termwarn("careful", repeat=False), rankwise.termerror("bad")
    for unsupported in (
        lambda: rankwise.sweep({"method": "grid"}),
        lambda: rankwise.agent("sid"),
        lambda: rankwise.controller("sid"),
        lambda: rankwise.plot_table("v", None, {}),
        lambda: rankwise.Molecule("x.pdb"),
        lambda: rankwise.Graph(),
        lambda: rankwise.Classes([]),
        lambda: rankwise.link_model("p", "reg"),
    ):
        assert _works_or_refuses(unsupported) == "refused"
    # before init(): the run-bound functions refuse with UsageError
    for needs_run in (
        lambda: rankwise.watch(torch.nn.Linear(2, 1)),
        lambda: rankwise.unwatch(),
        lambda: rankwise.save("*.txt"),
        lambda: rankwise.alert("t", "x"),
        lambda: rankwise.log_artifact(str(tmp_path / "f.txt")),
        lambda: rankwise.use_artifact("a:latest"),
        lambda: rankwise.log({"a": 1}),
        lambda: rankwise.define_metric("a"),
        lambda: rankwise.config["a"],
        lambda: rankwise.summary["a"],
    ):
        with pytest.raises(rankwise.UsageError, match="init"):
            needs_run()
    rankwise.mark_preempting()  # no run: nothing to mark, as wandb
    run = rankwise.init(project="surface", group="g", settings=rankwise.Settings(start_method="thread"))
    model = torch.nn.Linear(2, 1)
    results = {
        "watch": _works_or_refuses(lambda: rankwise.watch(model, log="all", log_freq=1)),
        "unwatch": _works_or_refuses(lambda: rankwise.unwatch(model)),
        "save": _works_or_refuses(lambda: rankwise.save(str(tmp_path / "*.txt"), base_path=str(tmp_path))),
        "alert": _works_or_refuses(lambda: rankwise.alert("title", "text", level=rankwise.AlertLevel.WARN)),
        "artifact": _works_or_refuses(lambda: rankwise.log_artifact(str(tmp_path / "f.txt"), name="f", type="data")),
        "mark_preempting": _works_or_refuses(rankwise.mark_preempting),
        "use_missing": _works_or_refuses(lambda: rankwise.use_artifact("no-such:latest")),
        "teardown": _works_or_refuses(rankwise.teardown),
    }
    assert results == {
        "watch": "ok",
        "unwatch": "ok",
        "save": "ok",
        "alert": "ok",
        "artifact": "ok",
        "mark_preempting": "ok",
        "use_missing": "refused",
        "teardown": "ok",
    }
    assert run.finished and rankwise.run is None


def test_submodules_frameworks_import():
    """wandb.util / errors / sdk.lib / wandb_run / apis.public as reached through the top-level module."""
    from rankwise.wandb_compat.sdk.lib import RunDisabled
    from rankwise.wandb_compat.sdk.lib.config_util import ConfigError
    from rankwise.wandb_compat.wandb_run import Run

    assert Run is rankwise.Run and issubclass(RunDisabled, rankwise.Run) and issubclass(ConfigError, rankwise.Error)
    assert len(rankwise.util.generate_id()) == 8 and issubclass(rankwise.errors.CommError, rankwise.Error)
    assert rankwise.apis.public.Api is rankwise.Api


def test_run_properties_and_methods(rankwise_env, tmp_path, monkeypatch):
    """Each Run property reads without error; each Run method called as wandb documents works or refuses
    with rankwise.Error; tags / notes / name can be set."""
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)  # use_model() downloads into ./artifacts, as wandb
    run = rankwise.init(project="team/surf", group="g", tags=["t1"], notes="n", job_type="train")
    values = {p: getattr(run, p) for p in RUN_PROPERTIES}
    assert (values["entity"], values["project"], values["tags"], values["notes"], values["job_type"]) == (
        "team",
        "surf",
        ("t1",),
        "n",
        "train",
    )
    assert values["path"] == f"team/surf/{run.id}" and values["url"].endswith("/g/surf/g")
    assert (values["sweep_id"], values["sweep_url"], values["offline"], values["disabled"]) == (
        None,
        None,
        False,
        False,
    )
    run.tags = ["a", "b"]
    run.notes = "changed"
    run.name = "shown/name"
    assert (run.tags, run.notes, run.name) == (("a", "b"), "changed", "shown/name")
    (tmp_path / "m.txt").write_text("m")
    model = torch.nn.Linear(2, 1)
    calls = {
        "alert": lambda: run.alert("t", "x"),
        "define_metric": lambda: run.define_metric("loss", summary="min"),
        "display": run.display,
        "finish_artifact": lambda: run.finish_artifact(str(tmp_path / "m.txt")),
        "get_project_url": run.get_project_url,
        "get_sweep_url": run.get_sweep_url,
        "get_url": run.get_url,
        "link_artifact": lambda: run.link_artifact(None, "reg/x"),
        "link_model": lambda: run.link_model("p", "reg"),
        "log": lambda: run.log({"loss": 1.0}),
        "log_artifact": lambda: run.log_artifact(str(tmp_path / "m.txt"), name="m", type="model"),
        "log_code": run.log_code,
        "log_model": lambda: run.log_model(str(tmp_path / "m.txt"), name="mm"),
        "mark_preempting": run.mark_preempting,
        "project_name": run.project_name,
        "restore": lambda: run.restore("nonexistent.txt"),
        "save": lambda: run.save(str(tmp_path / "m.txt"), base_path=str(tmp_path)),
        "status": run.status,
        "to_html": run.to_html,
        "watch": lambda: run.watch(model),
        "unwatch": lambda: run.unwatch(model),
        "upsert_artifact": lambda: run.upsert_artifact(str(tmp_path)),
        "use_artifact": lambda: run.use_artifact("m:latest"),
        "use_model": lambda: run.use_model("mm:latest"),
        "_label": lambda: run._label(code="transformers_trainer"),
        "finish": run.finish,
    }
    assert sorted(calls) == sorted(RUN_METHODS)
    outcome = {name: _works_or_refuses(call) for name, call in calls.items()}
    refused = sorted(n for n, o in outcome.items() if o == "refused")
    assert refused == ["finish_artifact", "link_artifact", "link_model", "restore", "upsert_artifact"]
    stored = rankwise.Api().group("surf", "g").run(rank=0)
    assert (stored.meta["tags"], stored.meta["notes"], stored.meta["label"]) == (
        ["a", "b"],
        "changed",
        {"code": "transformers_trainer"},
    )
