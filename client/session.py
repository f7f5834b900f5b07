"""``rankwise.init()``: start (or resume) this process's run and make it the current one.

``init()`` maps wandb's arguments (and ``settings=``, ``config_include_keys`` ...) onto rankwise's
settings (``client.settings.resolve``), makes the run (``client.run.create``) and registers it with
``client.state``, whose ``log/finish/define_metric`` forward to the current run, and installs the exit
hooks there.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from client import run as run_mod
from client import settings as settings_mod
from client import state
from client.errors import InvalidArgumentError

_WANDB_IGNORED = (
    "magic",
    "anonymous",
    "allow_val_change",
    "force",
    "tensorboard",
    "sync_tensorboard",
    "monitor_gym",
    "save_code",
    "fork_from",
    "resume_from",
)


def init(
    project: str | None = None,
    group: str | None = None,
    name: str | None = None,
    config: Any = None,
    *,
    rank: int | None = None,
    world_size: int | None = None,
    local_rank: int | None = None,
    node: str | None = None,
    resume: bool | str | None = None,
    id: str | None = None,
    dir: str | None = None,
    mode: str | None = None,
    reinit: bool | str | None = None,
    job_type: str | None = None,
    tags: Any = None,
    notes: str | None = None,
    settings: Any = None,
    entity: str | None = None,
    config_exclude_keys: Any = None,
    config_include_keys: Any = None,
    **wandb_only: Any,
) -> run_mod.Run:
    """Start (or resume) this process's run and make it current. See README, Quick start."""
    unknown = set(wandb_only) - set(_WANDB_IGNORED)
    if unknown:
        raise TypeError(f"init() got unexpected keyword argument(s) {sorted(unknown)}")
    existing = state.current()
    if existing is not None and not existing.finished:
        if reinit in (None, False, "default", "return_previous"):
            return existing
        if reinit in (True, "finish_previous"):
            existing.finish()
        elif reinit != "create_new":
            raise InvalidArgumentError(
                f"init(reinit={reinit!r}) must be True, False, 'finish_previous', 'return_previous' or 'create_new'"
            )
    if resume is True or resume == "auto":
        resume = "allow"
    elif resume is False:
        resume = None
    overrides = _settings_dict(settings)
    # dir= is wandb's: where the run's local files go (run.dir). The store stays in RANKWISE_DIR whatever a
    # framework passes here (Lightning's WandbLogger passes save_dir="."); settings={"data_dir": ...} moves it.
    explicit = dict(
        project=project,
        group=group,
        name=name,
        run_id=id,
        entity=entity,
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        node=node,
        resume=resume,
        mode=mode,
        files_dir=dir,
    )
    overrides.update({k: v for k, v in explicit.items() if v is not None})  # arguments win over settings=
    resolved = settings_mod.resolve(**overrides)
    config = _filter_config(config, config_include_keys, config_exclude_keys)
    env = os.environ
    if tags is None and env.get("WANDB_TAGS"):
        tags = [t.strip() for t in env["WANDB_TAGS"].split(",") if t.strip()]
    notes = notes if notes is not None else (env.get("WANDB_NOTES") or None)
    job_type = job_type if job_type is not None else (env.get("WANDB_JOB_TYPE") or None)
    if isinstance(tags, str):
        tags = [tags]
    meta = {
        "job_type": job_type,
        "tags": list(tags) if tags else None,
        "notes": notes,
        "argv": sys.argv[:64],
        "entity": resolved.entity,
    }
    meta = {k: v for k, v in meta.items() if v is not None}
    meta["pid"] = os.getpid()
    run = run_mod.create(resolved, config, meta)
    state.set_current(run)
    state.install_hooks(sigterm=resolved.handle_sigterm)
    return run


def _settings_dict(settings: Any) -> dict:
    """init(settings=): a dict of rankwise settings or a ``rankwise.Settings(**kw)`` / ``wandb.Settings``
    object; keys rankwise does not know (wandb's start_method, _disable_stats, ...) are ignored."""
    if settings is None:
        return {}
    if isinstance(settings, dict):
        import dataclasses
        import logging

        fields = {f.name for f in dataclasses.fields(settings_mod.Settings)}
        ignored = sorted(str(k) for k in settings if k not in fields)
        if ignored:  # wandb scripts pass its own settings (start_method, ...): no meaning here, not an error
            logging.getLogger("rankwise").warning(
                "rankwise: init(settings=...) ignores %s: not rankwise settings (wandb-only settings have no "
                "effect here; rankwise's are the fields of rankwise.Settings)",
                ", ".join(ignored),
            )
        return {k: v for k, v in settings.items() if k in fields}
    known = getattr(settings, "rankwise_overrides", None)
    if callable(known):
        return known()
    raise InvalidArgumentError(f"init(settings={type(settings).__name__}) must be a dict or rankwise.Settings(...)")


def _filter_config(config: Any, include: Any, exclude: Any) -> Any:
    """wandb's config_include_keys / config_exclude_keys, applied to the config given to init()."""
    if include is None and exclude is None:
        return config
    if include is not None and exclude is not None:
        raise InvalidArgumentError("init(): pass config_include_keys or config_exclude_keys, not both")
    from client.summary import to_config

    data = to_config(config)
    if include is not None:
        keep = set(include)
        return {k: v for k, v in data.items() if k in keep}
    drop = set(exclude)
    return {k: v for k, v in data.items() if k not in drop}
