"""Where artifacts live: file contents in the media store, manifests beside the store.

Layout below the data directory ``D`` (``$RANKWISE_DIR``, the directory of ``store.sqlite``)::

    D/media/ab/<sha256>.<ext>                  each distinct file content once (agent/media.py's store)
    D/artifacts/<project>/<name>/v0.json       one manifest per version: entries path -> digest, size
    D/artifacts/<project>/<name>/aliases.json  alias -> version ("latest" and the user's aliases)
    D/artifacts/<project>/<name>/.lock         flock held while a version is added

Why the client writes these files itself instead of sending them to the agent: an artifact may
be gigabytes (checkpoints), far above a frame (``client/framing.py``) and a value
(``client/values.py`` ``MAX_VALUE_BYTES``); chunking it through the agent's batch path would
hold the I/O thread and the agent's apply loop for the whole transfer. The agent and its
clients run as the same user on the same node and share the data directory (the agent's
store *is* ``D/store.sqlite``), so the client streams each file into ``D/media`` (hash while
copying, fsync, rename: the media store's own atomic, idempotent write) and writes the manifest
with an atomic rename under a per-artifact lock. Several ranks logging the same artifact at
once serialise on the lock; identical content yields one version, whichever rank comes first.
On a multi-node job each node's artifacts are in that node's data directory (one
``RANKWISE_DIR`` on a shared filesystem makes them visible everywhere).

Project and artifact names become directory names percent-quoted, so any name is safe.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from agent.fsync import atomic_file
from agent.media import relative_path

_EXT_RE = re.compile(r"^[a-z0-9]{1,8}$")
_VERSION_RE = re.compile(r"^v(\d+)$")
_CHUNK = 1 << 20


def file_ext(name: str) -> str:
    """The media-store extension for a file name: its suffix when short and plain, else ``bin``."""
    suffix = os.path.splitext(name)[1][1:].lower()
    return suffix if _EXT_RE.match(suffix) else "bin"


def _quote(s: str) -> str:
    return quote(s, safe="") if s not in (".", "..") else quote(s, safe="").replace(".", "%2E")


def _atomic_json(path: Path, value: Any) -> None:
    with atomic_file(path.parent, ".json", "w") as out:
        json.dump(value, out.file, indent=1, sort_keys=True)
        out.final = path


def manifest_digest(entries: dict[str, dict]) -> str:
    """The digest of an artifact's content: its paths with their file digests or reference URIs
    (not its description or metadata, as wandb's)."""
    items = sorted((p, e.get("digest") or "", e.get("ref") or "") for p, e in entries.items())
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


class ArtifactStore:
    """The artifacts of one data directory (``root``): file contents and versioned manifests."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"<ArtifactStore {self.root}>"

    # ------------------------------------------------------------ contents

    def content_path(self, digest: str, ext: str) -> Path:
        return self.root / relative_path(digest, ext)

    def put_file(self, src: str | os.PathLike) -> dict:
        """Copy ``src`` into the media store by its SHA-256 (streamed: any size); its entry fields."""
        ext = file_ext(str(src))
        media = self.root / "media"
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        media.mkdir(mode=0o700, exist_ok=True)
        h = hashlib.sha256()
        size = 0
        with atomic_file(media, f".{ext}") as out, open(src, "rb") as fin:
            while chunk := fin.read(_CHUNK):
                h.update(chunk)
                out.file.write(chunk)
                size += len(chunk)
            digest = h.hexdigest()
            final = self.content_path(digest, ext)
            if not (final.is_file() and final.stat().st_size == size):  # else: stored already, the copy goes
                final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                out.final = final
        return {"digest": digest, "size": size, "format": ext}

    def has(self, entry: dict) -> bool:
        p = self.content_path(entry["digest"], entry["format"])
        return p.is_file() and p.stat().st_size == entry["size"]

    # ------------------------------------------------------------ versions

    def _dir(self, project: str, name: str) -> Path:
        return self.root / "artifacts" / _quote(project) / _quote(name)

    @contextmanager
    def _locked(self, project: str, name: str) -> Iterator[Path]:
        d = self._dir(project, name)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for level in (d.parent.parent, d.parent, d):  # each 0700: mkdir(parents=True) gives parents 0777 & ~umask
            level.mkdir(mode=0o700, exist_ok=True)
        # 0600 like every file of the data directory (issue 9), whatever the caller's umask
        with os.fdopen(os.open(d / ".lock", os.O_RDWR | os.O_CREAT, 0o600), "r+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield d
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @staticmethod
    def _versions(d: Path) -> list[int]:
        out = []
        for p in d.glob("v*.json"):
            m = _VERSION_RE.match(p.stem)
            if m:
                out.append(int(m.group(1)))
        return sorted(out)

    @staticmethod
    def _aliases(d: Path) -> dict[str, str]:
        try:
            return json.loads((d / "aliases.json").read_text())
        except FileNotFoundError:
            return {}

    def commit(self, project: str, name: str, manifest: dict, aliases: list[str]) -> dict:
        """Add ``manifest`` as the next version of ``project/name`` unless its digest equals a stored
        version's (then that version gets the aliases, ``latest`` included: as wandb, which answers
        an existing digest with the existing version). ``latest`` names the version logged last.
        Returns the stored manifest with ``version``, ``aliases`` and ``created_new``."""
        with self._locked(project, name) as d:
            versions = self._versions(d)
            alias_map = self._aliases(d)
            same = next(
                (m for m in (self._read(d, i) for i in reversed(versions)) if m["digest"] == manifest["digest"]), None
            )
            if same is not None:
                stored, created = same, False
            else:
                index = versions[-1] + 1 if versions else 0
                stored = dict(manifest, version=f"v{index}", index=index, created=time.time(), project=project)
                _atomic_json(d / f"v{index}.json", stored)
                created = True
            for alias in ["latest", *aliases]:
                alias_map[alias] = stored["version"]
            _atomic_json(d / "aliases.json", alias_map)
            return self._with_aliases(stored, alias_map) | {"created_new": created}

    @staticmethod
    def _read(d: Path, index: int) -> dict:
        return json.loads((d / f"v{index}.json").read_text())

    @staticmethod
    def _with_aliases(m: dict, alias_map: dict[str, str]) -> dict:
        aliases = sorted(a for a, v in alias_map.items() if v == m["version"])
        return dict(m, aliases=aliases)

    def resolve(self, project: str, name: str, alias: str = "latest") -> dict | None:
        """The manifest that ``alias`` (``latest``, a user alias, or ``v3``) names, or None."""
        d = self._dir(project, name)
        if not d.is_dir():
            return None
        alias_map = self._aliases(d)
        version = alias_map.get(alias)
        if version is None and _VERSION_RE.match(alias):
            version = alias
        if version is None or not (d / f"{version}.json").is_file():
            return None
        return self._with_aliases(self._read(d, int(version[1:])), alias_map)

    def versions(self, project: str, name: str) -> list[dict]:
        d = self._dir(project, name)
        alias_map = self._aliases(d) if d.is_dir() else {}
        return [self._with_aliases(self._read(d, i), alias_map) for i in self._versions(d)] if d.is_dir() else []

    def names(self, project: str | None = None) -> list[tuple[str, str]]:
        """Every ``(project, artifact name)`` that has a version, sorted."""
        base = self.root / "artifacts"
        if not base.is_dir():
            return []
        projects = [_quote(project)] if project is not None else sorted(p.name for p in base.iterdir())
        out = []
        for qp in projects:
            pdir = base / qp
            if not pdir.is_dir():
                continue
            for ndir in sorted(pdir.iterdir()):
                if ndir.is_dir() and self._versions(ndir):
                    out.append((unquote(qp), unquote(ndir.name)))
        return out
