"""Process-global state: the current run and the module-level ``init/log/finish``.

wandb scripts call ``wandb.log(...)`` without holding the run; these functions
forward to the current run. ``reset()`` forgets everything (for tests).

Exit handling: at interpreter exit every unfinished run is finished with the
process's exit code (``sys.exit(n)`` is observed, an uncaught exception counts
as 1), so a script that never calls ``finish()`` loses nothing and does not hang
(the wait for the agent is bounded).

SIGTERM keeps its default action unless ``handle_sigterm`` is set
(``RANKWISE_HANDLE_SIGTERM=1``): a Python-level handler only runs between
bytecodes, so a main thread blocked in C (an NCCL collective, a semaphore in a
multiprocessing worker) would ignore the stop that torchrun or SLURM asked for
until SIGKILL. By default a SIGTERM'd rank dies at once and the agent marks its
run ``crashed`` (its pending row committed); with the handler, runs finish
with code 143 first. Forked children always get the default action back.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from typing import Any

from client import run as run_mod
from client import settings as settings_mod
from client.errors import InvalidArgumentError, UsageError

_lock = threading.Lock()
_current: "run_mod.Run | None" = None
_hooks_installed = False
_exit_code: int | None = None
_exception = False


def current() -> "run_mod.Run | None":
    return _current


def forget(run: "run_mod.Run") -> None:
    global _current
    with _lock:
        if _current is run:
            _current = None


def reset() -> None:
    """Forget the current run without finishing it (tests)."""
    global _current
    with _lock:
        _current = None


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
) -> "run_mod.Run":
    """Start (or resume) this process's run and make it current. See README, Quick start."""
    global _current
    unknown = set(wandb_only) - set(_WANDB_IGNORED)
    if unknown:
        raise TypeError(f"init() got unexpected keyword argument(s) {sorted(unknown)}")
    with _lock:
        existing = _current
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
    meta = {"job_type": job_type, "tags": list(tags) if tags else None, "notes": notes, "argv": sys.argv[:64],
            "entity": resolved.entity}  # fmt: skip
    meta = {k: v for k, v in meta.items() if v is not None}
    meta["pid"] = os.getpid()
    run = run_mod.create(resolved, config, meta)
    with _lock:
        _current = run
    _install_hooks(sigterm=resolved.handle_sigterm)
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
                "effect here; rankwise's are the fields of rankwise.Settings)", ", ".join(ignored))  # fmt: skip
        return {k: v for k, v in settings.items() if k in fields}
    known = getattr(settings, "rankwise_overrides", None)
    if callable(known):
        return known()
    raise InvalidArgumentError(
        f"init(settings={type(settings).__name__}) must be a dict or rankwise.Settings(...)"
    )


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


def _require() -> "run_mod.Run":
    run = _current
    if run is None:
        raise UsageError("rankwise.init() must be called before log(); it returns the run handle")
    return run


def log(data: Any, step: Any = None, commit: Any = None, sync: Any = None) -> None:
    run = _current
    if run is None:
        raise UsageError("rankwise.init() must be called before log(); it returns the run handle")
    run.log(data, step, commit)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    run = _current
    if run is not None:
        run.finish(exit_code=exit_code)


def define_metric(name: str, *args: Any, **kwargs: Any) -> dict:
    return _require().define_metric(name, *args, **kwargs)


# ---------------------------------------------------------------- exit hooks


def _finish_all(code: int, timeout_s: float | None = None) -> None:
    for run in list(run_mod._LIVE_RUNS):
        if run.finished or run._pid != os.getpid():
            continue
        if timeout_s is not None:
            run.settings = run.settings.replace(finish_timeout_s=min(timeout_s, run.settings.finish_timeout_s))
        try:
            run.finish(exit_code=code)
        except Exception:  # exit must not fail because of us
            pass


def _at_exit() -> None:
    code = _exit_code if _exit_code is not None else (1 if _exception else 0)
    _finish_all(code)


def _install_hooks(sigterm: bool = False) -> None:
    global _hooks_installed
    if sigterm:
        _install_sigterm()
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_at_exit)

    original_exit = sys.exit

    def exit_(code: Any = None) -> None:
        global _exit_code
        _exit_code = code if isinstance(code, int) else (0 if code is None else 1)
        original_exit(code)

    sys.exit = exit_

    original_hook = sys.excepthook

    def excepthook(exc_type: Any, exc: Any, tb: Any) -> None:
        global _exception
        _exception = True
        original_hook(exc_type, exc, tb)

    sys.excepthook = excepthook


def _install_sigterm() -> None:
    """Opt-in (``handle_sigterm``): finish runs with code 143 on SIGTERM, then die of it."""
    if threading.current_thread() is threading.main_thread():
        try:
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, _on_sigterm)
        except (ValueError, OSError):
            pass


def _default_sigterm_in_child() -> None:
    # a multiprocessing worker blocked on its queue's semaphore would miss our handler and hang
    # Pool.terminate(): children get the kernel's action back
    try:
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except (ValueError, OSError):
        pass


def _on_sigterm(signum: int, frame: Any) -> None:
    _finish_all(128 + signum, timeout_s=2.0)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


os.register_at_fork(after_in_child=_default_sigterm_in_child)
