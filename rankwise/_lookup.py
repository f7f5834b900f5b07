"""What the command line looked for and did not find: a project, group or key named on the command line
that the store does not hold is ``NotFound`` naming the argument and the closest names (difflib), which
rankwise/_cli.py prints and exits 1 on. Used by rankwise/_show.py (runs, show), rankwise/_tail.py and
rankwise/_export.py; a hit behaves exactly as ``Api.group`` (rankwise/_api.py)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from rankwise.errors import NotFound

# every reading command's --store (rankwise/_stores.py ``chosen_store`` resolves what is not given)
STORE_HELP = (
    "store file or directory, or a clickhouse:// / chdb:// URL (default: $RANKWISE_STORE if set, "
    "else $RANKWISE_DIR/store.sqlite)"
)


def did_you_mean(name: str, names: Iterable[str]) -> str:
    """'; did you mean 'a', 'b'?' for the names closest to ``name`` ('' when none is close)."""
    close = difflib.get_close_matches(name, sorted(set(names)), n=3, cutoff=0.5)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def check_project(api: Any, project: str | None) -> None:
    """NotFound when ``project`` (--project) is given and the store has no group in it."""
    if project is None:
        return
    projects = api.projects()
    if project not in projects:
        raise NotFound(f"no project named {project!r} (--project) in {api.path}{did_you_mean(project, projects)}")


def find_group(api: Any, project: str | None, name: str | None) -> Any:
    """``api.group(project, name)``; a miss is NotFound naming the argument (--project or GROUP) and the
    closest names."""
    check_project(api, project)
    try:
        return api.group(project, name)
    except NotFound:
        if name is None:
            raise
    names = [g.name for g in api.groups(project)]
    where = f" in project {project!r}" if project else ""
    raise NotFound(f"no group named {name!r} (GROUP){where}{did_you_mean(name, names)}")


def check_keys(g: Any, keys: list[str] | None, known: Iterable[str] | None = None) -> None:
    """NotFound for the first of ``keys`` (--keys) the group does not have; ``known``: the keys to check
    against (default: the group's keys, ``g.keys()``)."""
    if not keys:
        return
    have = set(g.keys() if known is None else known)
    for key in keys:
        if key not in have:
            hint = did_you_mean(key, have) or (f"; keys: {', '.join(sorted(have)[:10])}" if have else "; it has none")
            raise NotFound(f"no key named {key!r} (--keys) in group {g.project}/{g.name}{hint}")
