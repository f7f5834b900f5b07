"""wandb's artifacts, local and content-addressed: ``Artifact``, ``log_artifact``, ``use_artifact``
(``save`` and ``restore``, stored as artifacts: rankwise/_run_files.py).

    art = rankwise.Artifact("model", type="model", metadata={"epochs": 3})
    art.add_file("ckpt.pt"); art.add_dir("tokenizer/", name="tok")
    with art.new_file("notes.txt") as f: f.write("...")
    art.add_reference("s3://bucket/data.csv")           # kept as a reference, never fetched
    run.log_artifact(art, aliases=["best"])             # model:v0 (latest, best)
    path = run.use_artifact("model:best").download()    # ./artifacts/model:v0/ with the files

A file's content is copied into the media store when it is added (``add_file`` reads it then,
as wandb's default ``policy="mutable"``: later edits of the source do not change the artifact).
Versions are per (project, name): ``v0``, ``v1``, ...; logging content equal to a stored
version's (same paths, same digests) adds aliases to that version instead of making a new one.
Storage and why the client writes it directly: ``rankwise/_artifact_store.py``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from client import paths
from rankwise._artifact_store import ArtifactStore, manifest_digest
from rankwise.errors import ArtifactNotFound, Error, InvalidArgumentError, UsageError


def _entry_name(name: str) -> str:
    """A path inside an artifact: relative, '/'-separated, no '..'."""
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"artifact entry name must be a non-empty string, got {name!r}")
    p = PurePosixPath(name.replace(os.sep, "/"))
    if p.is_absolute() or ".." in p.parts or str(p) in ("", "."):
        raise InvalidArgumentError(f"artifact entry name {name!r} must be a relative path without '..'")
    return str(p)


def _check_name(name: Any, what: str = "name") -> str:
    if not isinstance(name, str) or not name or ":" in name or "/" in name:
        raise InvalidArgumentError(f"Artifact({what}={name!r}) must be a non-empty string without ':' or '/'")
    return name


class Artifact:
    """A set of files (and references) logged as one versioned unit, wandb's ``wandb.Artifact``."""

    def __init__(
        self,
        name: str,
        type: str,
        description: str | None = None,
        metadata: dict | None = None,
        incremental: bool = False,
        use_as: str | None = None,
    ) -> None:
        self._name = _check_name(name)
        if not isinstance(type, str) or not type:
            raise InvalidArgumentError(f"Artifact(type={type!r}) must be a non-empty string, e.g. 'model'")
        self.type = type
        self.description = description
        self.metadata = dict(metadata or {})
        self._entries: dict[str, dict] = {}
        self._store = ArtifactStore(_root(paths.data_dir()))
        self._logged: dict | None = None  # the stored manifest once logged or used

    def __repr__(self) -> str:
        v = f":{self.version}" if self.version else ""
        return f"<rankwise.Artifact {self._name}{v} type={self.type} entries={len(self._entries)}>"

    # ------------------------------------------------------------ identity (wandb's names)

    @property
    def name(self) -> str:
        """``name`` before logging, ``name:v3`` after (as wandb)."""
        return f"{self._name}:{self.version}" if self.version else self._name

    @property
    def source_name(self) -> str:
        return self.name

    @property
    def version(self) -> str | None:
        return self._logged["version"] if self._logged else None

    @property
    def aliases(self) -> list[str]:
        return list(self._logged["aliases"]) if self._logged else []

    @property
    def digest(self) -> str:
        return manifest_digest(self._entries)

    @property
    def qualified_name(self) -> str:
        project = self._logged.get("project", "") if self._logged else ""
        return f"{project}/{self.name}" if project else self.name

    @property
    def state(self) -> str:
        return "COMMITTED" if self._logged else "PENDING"

    @property
    def size(self) -> int:
        return sum(e.get("size", 0) for e in self._entries.values())

    @property
    def manifest(self) -> dict[str, dict]:
        """Entry path → ``{"digest", "size", "format"}`` for files, ``{"ref": uri}`` for references."""
        return {k: dict(v) for k, v in self._entries.items()}

    # ------------------------------------------------------------ building

    def _check_mutable(self) -> None:
        if self._logged is not None:
            raise UsageError(f"artifact {self.name} is logged and cannot change; create a new Artifact")

    def add_file(
        self,
        local_path: str | os.PathLike,
        name: str | None = None,
        is_tmp: bool = False,
        skip_cache: bool = False,
        policy: str = "mutable",
        overwrite: bool = False,
    ) -> dict:
        """Add one file (its content now) as ``name`` (default: its base name)."""
        self._check_mutable()
        if not os.path.isfile(local_path):
            raise InvalidArgumentError(f"add_file(local_path={str(local_path)!r}): no such file")
        entry_name = _entry_name(name if name is not None else os.path.basename(local_path))
        entry = self._store.put_file(local_path)
        self._entries[entry_name] = entry
        return dict(entry, path=entry_name)

    def add_dir(
        self,
        local_path: str | os.PathLike,
        name: str | None = None,
        skip_cache: bool = False,
        policy: str = "mutable",
        merge: bool = False,
    ) -> None:
        """Add every file below ``local_path``, under ``name/`` (default: at the artifact's root)."""
        self._check_mutable()
        if not os.path.isdir(local_path):
            raise InvalidArgumentError(f"add_dir(local_path={str(local_path)!r}): no such directory")
        prefix = _entry_name(name) + "/" if name else ""
        for dirpath, dirnames, filenames in os.walk(local_path):
            dirnames.sort()
            for fn in sorted(filenames):
                full = os.path.join(dirpath, fn)
                rel = os.path.relpath(full, local_path).replace(os.sep, "/")
                self.add_file(full, name=prefix + rel)

    @contextmanager
    def new_file(self, name: str, mode: str = "x", encoding: str | None = None) -> Iterator[Any]:
        """A file to write, added to the artifact when the ``with`` block ends."""
        self._check_mutable()
        entry_name = _entry_name(name)
        with tempfile.TemporaryDirectory(prefix="rw-artifact-") as tmp:
            path = os.path.join(tmp, os.path.basename(entry_name))
            with open(path, mode, encoding=encoding) as f:
                yield f
            self.add_file(path, name=entry_name)

    def add_reference(
        self, uri: str, name: str | None = None, checksum: bool = True, max_objects: int | None = None
    ) -> dict:
        """Record ``uri`` as an entry; its content is neither fetched nor stored (download() skips it)."""
        self._check_mutable()
        if not isinstance(uri, str) or "://" not in uri:
            raise InvalidArgumentError(
                f"add_reference(uri={uri!r}) must be a URI such as s3://bucket/key or file:///path"
            )
        entry_name = _entry_name(name if name is not None else uri.rstrip("/").rsplit("/", 1)[-1] or uri)
        self._entries[entry_name] = {"ref": uri}
        return {"path": entry_name, "ref": uri}

    def add(self, obj: Any, name: str) -> Any:
        raise Error("Artifact.add(media object) is not supported by rankwise; write the file and use add_file()")

    def get_entry(self, name: str) -> dict:
        if name not in self._entries:
            raise ArtifactNotFound(f"artifact {self.name} has no entry {name!r}; it has {sorted(self._entries)[:10]}")
        return dict(self._entries[name], path=name)

    get_path = get_entry

    # ------------------------------------------------------------ reading back

    def download(
        self,
        root: str | os.PathLike | None = None,
        allow_missing_references: bool = False,
        skip_cache: bool | None = None,
        path_prefix: str | None = None,
        **kwargs: Any,
    ) -> str:
        """Write the artifact's files below ``root`` (default ``./artifacts/<name>:<version>``); return it.
        References are not fetched."""
        if root is None:
            root = os.path.join("artifacts", self.name if self.version else f"{self._name}:pending")
        root_path = Path(root)
        for path, e in sorted(self._entries.items()):
            if "ref" in e or (path_prefix and not path.startswith(path_prefix)):
                continue
            self._copy_out(path, root_path)
        return str(root_path)

    def _copy_out(self, path: str, root: Path) -> Path:
        """Copy entry ``path``'s content to ``root/path`` (via a temporary name: no partial file is seen)."""
        e = self._entries[path]
        if not self._store.has(e):
            raise ArtifactNotFound(
                f"artifact {self.name}: content of {path!r} ({e['digest'][:12]}...) is missing "
                f"from {self._store.root / 'media'}"
            )
        dst = root / _entry_name(path)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.rw-tmp")
        shutil.copyfile(self._store.content_path(e["digest"], e["format"]), tmp)
        os.replace(tmp, dst)
        return dst

    def file(self, root: str | os.PathLike | None = None) -> str:
        files = [p for p, e in self._entries.items() if "ref" not in e]
        if len(files) != 1:
            raise Error(f"Artifact.file() needs exactly one file; {self.name} has {len(files)}: use download()")
        return os.path.join(self.download(root), files[0])

    def files(self) -> list[dict]:
        return [dict(e, path=p) for p, e in sorted(self._entries.items())]

    def wait(self, timeout: float | None = None) -> Artifact:
        return self

    @classmethod
    def _from_manifest(cls, store: ArtifactStore, m: dict) -> Artifact:
        self = cls.__new__(cls)
        self._name, self.type = m["name"], m["type"]
        self.description, self.metadata = m.get("description"), dict(m.get("metadata") or {})
        self._entries = {k: dict(v) for k, v in m["entries"].items()}
        self._store = store
        self._logged = m
        return self


# ---------------------------------------------------------------- run-level functions


def _root(data_dir: Path) -> Path:
    """Where artifacts go: where readers look for them (rankwise/_stores.py ``media_root_of``), beside a SQLite store
    ``RANKWISE_STORE`` names elsewhere (the agent keeps its media there too), else under ``data_dir``."""
    from rankwise._stores import chosen_store, is_store_url, store_path

    spec = chosen_store(None)
    return data_dir if spec is None or is_store_url(spec) else store_path(spec).parent


def _store_of(run: Any) -> ArtifactStore:
    return ArtifactStore(_root(run.settings.data_dir if run is not None else paths.data_dir()))


def log_artifact(
    run: Any,
    artifact_or_path: Any,
    name: str | None = None,
    type: str | None = None,
    aliases: list[str] | str | None = None,
    **kwargs: Any,
) -> Artifact:
    """Store ``artifact_or_path`` (an Artifact, a file or a directory) as the next version of its name."""
    if isinstance(artifact_or_path, Artifact):
        art = artifact_or_path
        if name is not None:
            art._name = _check_name(name)
    else:
        path = os.fspath(artifact_or_path)
        base = os.path.basename(os.path.normpath(path))
        art = Artifact(name or f"run-{run.id}-{base}".replace(":", "_").replace("/", "_"), type or "unspecified")
        (art.add_dir if os.path.isdir(path) else art.add_file)(path)
    if isinstance(aliases, str):
        aliases = [aliases]
    aliases = list(aliases or [])
    for a in aliases:
        if not isinstance(a, str) or not a or any(c in a for c in "/:"):
            raise InvalidArgumentError(
                f"log_artifact(aliases=...): alias {a!r} must be a non-empty string without '/' or ':'"
            )
    if run.settings.mode == "disabled":  # as wandb: nothing is stored, the artifact is handed back
        return art
    store = _store_of(run)
    for e in art._entries.values():  # content staged in another data directory (Artifact made before init(dir=...))
        if "ref" not in e and not store.has(e):
            store.put_file(art._store.content_path(e["digest"], e["format"]))
    manifest = {
        "name": art._name,
        "type": art.type,
        "description": art.description,
        "metadata": art.metadata,
        "entries": art._entries,
        "digest": art.digest,
        "run": {"id": run.id, "name": run.name, "group": run.group, "rank": run.rank},
    }
    art._logged = store.commit(run.project, art._name, manifest, aliases)
    art._store = store
    return art


def _parse(spec: str, default_project: str | None) -> tuple[str, str, str]:
    """``[project/]name[:alias]`` → (project, name, alias)."""
    alias = "latest"
    if ":" in spec:
        spec, alias = spec.rsplit(":", 1)
    parts = spec.split("/")
    if len(parts) == 1:
        if default_project is None:
            raise InvalidArgumentError(f"artifact {spec!r}: give it as 'project/name:alias'")
        return default_project, parts[0], alias
    return parts[-2], parts[-1], alias  # entity/project/name: the entity is ignored


def get_artifact(store: ArtifactStore, spec: str, default_project: str | None = None) -> Artifact:
    project, name, alias = _parse(spec, default_project)
    m = store.resolve(project, name, alias)
    if m is None:
        have = [v["version"] for v in store.versions(project, name)]
        raise ArtifactNotFound(
            f"no artifact {name}:{alias} in project {project!r} under {store.root}"
            + (f" (versions: {', '.join(have)})" if have else "")
        )
    return Artifact._from_manifest(store, m)


def use_artifact(
    run: Any, artifact_or_name: Any, type: str | None = None, aliases: Any = None, use_as: str | None = None
) -> Artifact:
    """The stored artifact ``"name:alias"`` / ``"name:v1"`` / ``"project/name:alias"`` of this data directory."""
    if isinstance(artifact_or_name, Artifact):
        if artifact_or_name._logged is None:
            log_artifact(run, artifact_or_name, aliases=aliases)
        return artifact_or_name
    if not isinstance(artifact_or_name, str):
        raise InvalidArgumentError(
            f"use_artifact() takes 'name:alias' or an Artifact, got {artifact_or_name.__class__.__name__}"
        )
    art = get_artifact(_store_of(run), artifact_or_name, run.project)
    if type is not None and art.type != type:
        raise InvalidArgumentError(f"use_artifact({artifact_or_name!r}, type={type!r}): it is of type {art.type!r}")
    return art
