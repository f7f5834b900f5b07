"""wandb's ``save`` and ``restore``: a run's files, kept as an artifact of the run (``run-<id>-files``, type
``run_files``: rankwise/_artifacts.py), a new version each time they are saved.

    run.save("checkpoints/*.pt", policy="end")   # saved now and again at exit (their final content)
    f = run.restore("config.yaml")               # the saved copy, written below run.dir and opened
"""

from __future__ import annotations

import atexit
import glob as globmod
import os
from pathlib import Path
from typing import Any

from rankwise._artifacts import Artifact, _entry_name, _store_of, get_artifact, log_artifact
from rankwise.errors import ArtifactNotFound, InvalidArgumentError, UsageError

_LIVE: list[tuple[Any, str, str]] = []  # (run, glob, base) saved with policy live/end: saved again at exit


def _files_name(run_id: str) -> str:
    return f"run-{run_id}-files"


def save(
    run: Any,
    glob_str: str | os.PathLike | None = None,
    base_path: str | os.PathLike | None = None,
    policy: str = "live",
) -> list[str]:
    """wandb.save: the files matching ``glob_str`` become the run's files (names relative to ``base_path``);
    ``policy="live"``/``"end"`` files are saved again when the process exits (their final content)."""
    if run is None:
        raise UsageError("save() needs a run: call rankwise.init() first")
    if glob_str is None or run.settings.mode == "disabled":
        return []
    if policy not in ("live", "end", "now"):
        raise InvalidArgumentError(f"save(policy={policy!r}) must be 'live', 'end' or 'now'")
    glob_str = os.fspath(glob_str)
    if base_path is None:
        base_path = os.path.dirname(glob_str) if os.path.isabs(glob_str) else "."
    base = os.path.abspath(base_path)
    pattern = glob_str if os.path.isabs(glob_str) else os.path.join(base, glob_str)
    saved = _save_now(run, pattern, base)
    if policy in ("live", "end") and not _LIVE:
        atexit.register(_save_live)
    if policy in ("live", "end"):
        _LIVE.append((run, pattern, base))
    return saved


def _save_now(run: Any, pattern: str, base: str) -> list[str]:
    files = sorted(p for p in globmod.glob(pattern, recursive=True) if os.path.isfile(p))
    if not files:
        return []
    store = _store_of(run)
    prev = store.resolve(run.project, _files_name(run.id))
    art = Artifact(_files_name(run.id), "run_files")
    art._store = store
    art._entries = {k: dict(v) for k, v in (prev["entries"] if prev else {}).items()}
    for f in files:
        art.add_file(f, name=os.path.relpath(f, base))
    log_artifact(run, art)
    return files


def _save_live() -> None:
    for run, pattern, base in _LIVE:
        try:
            _save_now(run, pattern, base)
        except Exception:  # at exit: a vanished file must not turn into a traceback
            pass


def restore(
    run: Any, name: str, run_path: str | None = None, replace: bool = False, root: str | os.PathLike | None = None
) -> Any:
    """The run's saved file ``name``, written below ``root`` (default: the run's dir, else '.') and opened
    for reading; an existing local file is kept unless ``replace``. ``run_path`` = ``[entity/]project/run_id``."""
    if run_path is None:
        if run is None:
            raise UsageError("restore() without run_path needs a run: call rankwise.init() or pass run_path=")
        project, run_id = run.project, run.id
    else:
        parts = str(run_path).split("/")
        if len(parts) < 2:
            raise InvalidArgumentError(f"restore(run_path={run_path!r}) must be 'project/run_id'")
        project, run_id = parts[-2], parts[-1]
    root_path = Path(root if root is not None else (run.dir if run is not None else "."))
    target = root_path / _entry_name(name)
    if target.is_file() and not replace:
        return open(target)
    art = get_artifact(_store_of(run), f"{project}/{_files_name(run_id)}:latest")
    if name not in art._entries:
        raise ArtifactNotFound(
            f"restore({name!r}): run {project}/{run_id} saved no such file; it saved {sorted(art._entries)[:10]}"
        )
    art._copy_out(name, root_path)
    return open(target)
