"""Settings resolution (defaults → RANKWISE_* environment → keyword arguments) and paths."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import sys
from pathlib import Path

import pytest

from client import paths
from client.errors import InvalidArgumentError
from client.settings import MAX_BATCH_ROWS, Settings, resolve

BASE = {"RANKWISE_DIR": "/tmp/rw-data", "RANKWISE_RUNTIME_DIR": "/tmp/rw-run"}

# (attribute, variable, raw env value, its parsed value, a keyword value)
KNOBS = [
    ("flush_interval_s", "RANKWISE_FLUSH_INTERVAL", "0.5", 0.5, 0.125),
    ("finish_timeout_s", "RANKWISE_FINISH_TIMEOUT", "3", 3.0, 7.5),
    ("init_timeout_s", "RANKWISE_INIT_TIMEOUT", "2.5", 2.5, 1.0),
    ("retry_after_s", "RANKWISE_RETRY_AFTER", "0", 0.0, 4.0),
    ("agent_idle_timeout_s", "RANKWISE_AGENT_IDLE_TIMEOUT", "120", 120.0, 5.0),
    ("max_unacked_bytes", "RANKWISE_MAX_UNACKED_BYTES", "64M", 64 << 20, 1000),
    ("batch_max_rows", "RANKWISE_BATCH_MAX_ROWS", "512", 512, 16),
    ("spawn_agent", "RANKWISE_SPAWN_AGENT", "0", False, True),
    ("project", "RANKWISE_PROJECT", "envproj", "envproj", "kwproj"),
    ("group", "RANKWISE_GROUP", "envgroup", "envgroup", "kwgroup"),
    ("name", "RANKWISE_NAME", "envname", "envname", "kwname"),
    ("mode", "RANKWISE_MODE", "DISABLED", "disabled", "offline"),
    ("data_dir", "RANKWISE_DIR", "/tmp/rw-env-data", Path("/tmp/rw-env-data"), "/tmp/rw-kw-data"),
    ("runtime_dir", "RANKWISE_RUNTIME_DIR", "/tmp/rw-env-run", Path("/tmp/rw-env-run"), "/tmp/rw-kw-run"),
]
DEFAULTS = {
    f: getattr(Settings, f)
    for f in (
        "flush_interval_s",
        "finish_timeout_s",
        "init_timeout_s",
        "retry_after_s",
        "agent_idle_timeout_s",
        "max_unacked_bytes",
        "batch_max_rows",
        "spawn_agent",
    )
}


@pytest.mark.parametrize("attr, var, raw, parsed, kw", KNOBS, ids=[k[0] for k in KNOBS])
def test_environment_overrides_defaults_and_keywords_override_both(attr, var, raw, parsed, kw):
    """Each knob: the default without environment, the parsed environment value with it, and the
    keyword argument when given (None as a keyword means "not given")."""
    base = dict(BASE, RANKWISE_PROJECT="p", RANKWISE_GROUP="g")
    plain = resolve(env={k: v for k, v in base.items() if k != var})
    if attr in DEFAULTS:
        assert getattr(plain, attr) == DEFAULTS[attr]
    with_env = resolve(env=dict(base, **{var: raw}))
    assert getattr(with_env, attr) == parsed
    assert type(getattr(with_env, attr)) is type(parsed)
    with_kw = resolve(env=dict(base, **{var: raw}), **{attr: kw})
    want = Path(kw) if attr.endswith("_dir") else kw
    assert getattr(with_kw, attr) == want
    assert getattr(resolve(env=dict(base, **{var: raw}), **{attr: None}), attr) == parsed


def test_wandb_variables_are_the_fallback_for_project_group_and_mode():
    """WANDB_PROJECT / WANDB_RUN_GROUP / WANDB_MODE apply when the RANKWISE_* ones are unset."""
    env = dict(BASE, WANDB_PROJECT="wp", WANDB_RUN_GROUP="wg", WANDB_MODE="offline")
    s = resolve(env=env)
    assert (s.project, s.group, s.mode) == ("wp", "wg", "offline")
    s = resolve(env=dict(env, RANKWISE_PROJECT="rp", RANKWISE_GROUP="rg", RANKWISE_MODE="online"))
    assert (s.project, s.group, s.mode) == ("rp", "rg", "online")


def test_identity_defaults_without_launcher():
    """No launcher: rank 0 of 1, name rank-0, launcher "none", and a fresh sortable group id."""
    s = resolve(env=dict(BASE, RANKWISE_PROJECT="p"))
    assert (s.rank, s.world_size, s.local_rank, s.name, s.launcher, s.restart) == (0, 1, 0, "rank-0", "none", 0)
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", s.group)
    assert resolve(env=dict(BASE, RANKWISE_PROJECT="p")).group != s.group


def test_launcher_identity_and_keyword_overrides():
    """rank/world_size/local_rank come from the launcher's environment; keywords override them."""
    env = dict(BASE, RANK="3", WORLD_SIZE="4", LOCAL_RANK="1", TORCHELASTIC_RUN_ID="job-7", RANKWISE_PROJECT="p")
    s = resolve(env=env)
    assert (s.rank, s.world_size, s.local_rank, s.group, s.name, s.launcher) == (3, 4, 1, "job-7", "rank-3", "torchrun")
    s = resolve(env=env, rank=0, world_size=2, local_rank=0, group="mine")
    assert (s.rank, s.world_size, s.local_rank, s.group, s.name) == (0, 2, 0, "mine", "rank-0")


@pytest.mark.parametrize(
    "var, raw",
    [
        ("RANKWISE_FLUSH_INTERVAL", "fast"),
        ("RANKWISE_FLUSH_INTERVAL", "-1"),
        ("RANKWISE_FINISH_TIMEOUT", "nan"),
        ("RANKWISE_INIT_TIMEOUT", "10s"),
        ("RANKWISE_RETRY_AFTER", "x"),
        ("RANKWISE_AGENT_IDLE_TIMEOUT", "-5"),
        ("RANKWISE_MAX_UNACKED_BYTES", "lots"),
        ("RANKWISE_MAX_UNACKED_BYTES", "0"),
        ("RANKWISE_MAX_UNACKED_BYTES", "1T"),
        ("RANKWISE_BATCH_MAX_ROWS", "0"),
        ("RANKWISE_BATCH_MAX_ROWS", "1.5"),
        ("RANKWISE_BATCH_MAX_ROWS", str(MAX_BATCH_ROWS + 1)),
        ("RANKWISE_SPAWN_AGENT", "maybe"),
        ("RANKWISE_MODE", "cloud"),
        ("WANDB_MODE", "cloud"),
        ("RANK", "three"),
        ("TORCHELASTIC_RESTART_COUNT", "x"),
    ],
)
def test_bad_environment_values_raise_naming_the_variable(var, raw):
    """A malformed environment variable raises InvalidArgumentError whose message names it."""
    env = dict(BASE, RANKWISE_PROJECT="p", RANKWISE_GROUP="g", **{var: raw})
    if var in ("RANK", "TORCHELASTIC_RESTART_COUNT"):
        env.update(WORLD_SIZE="2", LOCAL_RANK="0")
    with pytest.raises(InvalidArgumentError, match=re.escape(var)):
        resolve(env=env)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"rank": 2, "world_size": 2}, "rank=2 is not below world_size=2"),
        ({"rank": 1}, "rank=1 is not below world_size=1"),
        ({"rank": -1}, "rank=-1"),
        ({"world_size": 0}, "world_size=0"),
        ({"rank": True, "world_size": 2}, "rank=True"),
        ({"local_rank": -1}, "local_rank=-1"),
        ({"batch_max_rows": 0}, "batch_max_rows=0"),
        ({"batch_max_rows": MAX_BATCH_ROWS + 1}, "batch_max_rows="),
        ({"batch_max_rows": "10"}, "batch_max_rows='10'"),
        ({"max_unacked_bytes": 0}, "max_unacked_bytes=0"),
        ({"spawn_agent": "yes"}, "spawn_agent='yes'"),
        ({"flush_interval_s": -0.5}, "flush_interval_s=-0.5"),
        ({"finish_timeout_s": "10"}, "finish_timeout_s='10'"),
        ({"init_timeout_s": True}, "init_timeout_s=True"),
        ({"mode": "cloud"}, "mode='cloud'"),
        ({"resume": "sometimes"}, "resume='sometimes'"),
        ({"project": "a/b/c"}, "project='a/b/c'"),  # one '/' is wandb's entity/project; more is refused
        ({"group": "x" * 513}, "group="),
        ({"name": "bad\nname"}, "name="),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_keyword_arguments_raise_naming_the_argument(kwargs, fragment):
    """Invalid keyword settings raise InvalidArgumentError naming the argument."""
    with pytest.raises(InvalidArgumentError, match=re.escape(fragment)):
        resolve(env=dict(BASE, RANKWISE_PROJECT="p", RANKWISE_GROUP="g"), **kwargs)


@pytest.mark.parametrize(
    "argv0, project",
    [("/home/u/exp/train_model.py", "train_model"), ("my script.py", "my_script"), ("-c", "default"), ("", "default")],
)
def test_project_defaults_to_the_script_name(monkeypatch, argv0, project):
    """Without project= or RANKWISE_PROJECT the project is the script's stem (unsafe characters → _),
    or "default" for python -c / interactive."""
    monkeypatch.setattr(sys, "argv", [argv0])
    assert resolve(env=dict(BASE)).project == project
    assert resolve(env=dict(BASE, RANKWISE_PROJECT="env")).project == "env"
    assert resolve(env=dict(BASE), project="kw").project == "kw"


def test_settings_are_frozen_and_replace_returns_a_copy():
    """Settings cannot change after init(); replace() makes a modified copy."""
    s = resolve(env=dict(BASE, RANKWISE_PROJECT="p", RANKWISE_GROUP="g"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.project = "q"  # type: ignore[misc]
    t = s.replace(finish_timeout_s=1.0)
    assert (s.finish_timeout_s, t.finish_timeout_s, t.project) == (10.0, 1.0, "p")


# ---------------------------------------------------------------- paths


def test_data_and_runtime_dir_fallbacks():
    """RANKWISE_DIR, else $XDG_DATA_HOME/rankwise, else ~/.local/share/rankwise; RANKWISE_RUNTIME_DIR,
    else $XDG_RUNTIME_DIR/rankwise, else /tmp/rankwise-$UID."""
    assert paths.data_dir({"RANKWISE_DIR": "/d"}) == Path("/d")
    assert paths.data_dir({"XDG_DATA_HOME": "/x"}) == Path("/x/rankwise")
    assert paths.data_dir({}) == Path(os.path.expanduser("~")) / ".local" / "share" / "rankwise"
    assert paths.runtime_dir({"RANKWISE_RUNTIME_DIR": "/r", "XDG_RUNTIME_DIR": "/x"}) == Path("/r")
    assert paths.runtime_dir({"XDG_RUNTIME_DIR": "/x"}) == Path("/x/rankwise")
    assert paths.runtime_dir({}) == Path(f"/tmp/rankwise-{os.getuid()}")


def test_private_runtime_dir_is_created_0700_and_tightened(tmp_path):
    """ensure_private_dir creates the directory with mode 0700 and removes group/other access."""
    d = paths.ensure_private_dir(tmp_path / "a" / "b")
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    os.chmod(d, 0o755)
    paths.ensure_private_dir(d)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700


def test_ipc_endpoint_is_none_when_the_socket_path_is_too_long(tmp_path):
    """A socket path beyond sun_path's 107 bytes cannot be bound: no ipc endpoint then."""
    assert paths.ipc_endpoint(Path("/tmp/rw")) == "ipc:///tmp/rw/agent.sock"
    assert paths.ipc_endpoint(Path("/tmp/" + "x" * 100)) is None


def test_name_rank_placeholder(monkeypatch):
    """RANKWISE_NAME=worker-{rank} gives every rank of a launcher its own run name."""
    from client import settings as settings_mod

    monkeypatch.setenv("RANKWISE_NAME", "worker-{rank}")
    assert settings_mod.resolve(rank=3, world_size=4).name == "worker-3"
