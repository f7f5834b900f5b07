"""Artifacts: content-addressed files in the media store, versioned manifests, aliases, save/restore."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

import rankwise
from support.offline import offline_run
from support.processes import run_ranks, spawn


def sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def python(env, code: str, cwd: str) -> str:
    """Run ``code`` in a new interpreter with the test's rankwise environment; its stdout."""
    p = spawn(
        [sys.executable, "-c", textwrap.dedent(code)],
        env.env(),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, f"exit {p.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    return out


WRITER = """
import json, os
import rankwise
run = rankwise.init(project="arts", group="writer")
os.makedirs("data/sub", exist_ok=True)
blobs = {"ckpt.bin": os.urandom(3 << 20), "data/a.txt": b"alpha\\n", "data/sub/b.npy": os.urandom(1000),
         "data/empty": b""}
for name, b in blobs.items():
    with open(name, "wb") as f:
        f.write(b)
art = rankwise.Artifact("model", type="model", description="tiny", metadata={"epochs": 3})
art.add_file("ckpt.bin")
art.add_dir("data", name="inputs")
with art.new_file("notes/readme.md", mode="w") as f:
    f.write("hello artifact")
art.add_reference("s3://bucket/train.csv")
logged = run.log_artifact(art, aliases=["best"])
with open("ckpt.bin", "wb") as f:  # changing the source after logging changes nothing stored
    f.write(b"overwritten")
run.finish()
print(json.dumps({"name": logged.name, "aliases": logged.aliases, "digest": logged.digest}))
"""

READER = """
import hashlib, json, os
import rankwise
run = rankwise.init(project="arts", group="reader")
art = run.use_artifact("model:best", type="model")
root = art.download()
out = {}
for d, _, files in os.walk(root):
    for fn in files:
        p = os.path.join(d, fn)
        out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
run.finish()
print(json.dumps({"root": root, "files": out, "name": art.name, "type": art.type, "metadata": art.metadata,
                  "description": art.description, "manifest": art.manifest}))
"""


def test_artifact_with_files_and_dir_reads_back_byte_identical_in_another_process(rankwise_env, tmp_path):
    """One process logs an artifact (a 3 MiB file, a directory under a prefix, a new_file, a reference);
    another process's use_artifact("model:best").download() writes every file byte-identical under
    ./artifacts/model:v0, the reference is kept in the manifest and not fetched; the stored files are private
    (0600/0700); Api and the CLI list it."""
    wdir, rdir = tmp_path / "w", tmp_path / "r"
    wdir.mkdir(), rdir.mkdir()
    logged = json.loads(python(rankwise_env, WRITER, str(wdir)).strip().splitlines()[-1])
    assert logged["name"] == "model:v0" and logged["aliases"] == ["best", "latest"]
    want = {
        "ckpt.bin": None,
        "inputs/a.txt": "data/a.txt",
        "inputs/sub/b.npy": "data/sub/b.npy",
        "inputs/empty": "data/empty",
    }
    got = json.loads(python(rankwise_env, READER, str(rdir)).strip().splitlines()[-1])
    assert got["root"] == os.path.join("artifacts", "model:v0")
    assert got["name"] == "model:v0" and got["type"] == "model"
    assert got["metadata"] == {"epochs": 3} and got["description"] == "tiny"
    files = got["files"]
    assert sorted(files) == sorted(list(want) + ["notes/readme.md"])  # the reference is not downloaded
    for name, src in want.items():
        if src is not None:
            assert files[name] == sha(str(wdir / src)), name
    assert files["notes/readme.md"] == hashlib.sha256(b"hello artifact").hexdigest()
    # the 3 MiB checkpoint as it was at add_file time (the writer overwrote the source afterwards)
    assert files["ckpt.bin"] == got["manifest"]["ckpt.bin"]["digest"] != sha(str(wdir / "ckpt.bin"))
    assert got["manifest"]["ckpt.bin"]["size"] == 3 << 20
    assert got["manifest"]["train.csv"] == {"ref": "s3://bucket/train.csv"}
    # each file's content is in the media store once, by its SHA-256
    m = got["manifest"]["ckpt.bin"]
    assert sha(os.path.join(rankwise_env.data, "media", m["digest"][:2], f"{m['digest']}.bin")) == m["digest"]

    # private like the rest of the data directory (issue 9): files 0600, directories 0700
    for top in ("artifacts", "media"):
        for d, _dirs, fns in os.walk(os.path.join(rankwise_env.data, top)):
            assert os.stat(d).st_mode & 0o777 == 0o700, d
            for fn in fns:
                assert os.stat(os.path.join(d, fn)).st_mode & 0o777 == 0o600, fn

    api = rankwise.Api()
    (a,) = api.artifacts("arts")
    assert (a.name, a.aliases, a.manifest) == ("model:v0", ["best", "latest"], got["manifest"])
    assert api.artifact("arts/model:latest").digest == logged["digest"]
    with pytest.raises(rankwise.Error, match="no artifact model:v7"):
        api.artifact("arts/model:v7")

    cli = subprocess.run(
        [sys.executable, "-m", "rankwise._cli", "artifacts", "arts", "--json"],
        env=rankwise_env.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    (row,) = json.loads(cli.stdout)
    assert (row["project"], row["name"], row["version"], row["aliases"]) == ("arts", "model", "v0", ["best", "latest"])
    text = subprocess.run(
        [sys.executable, "-m", "rankwise._cli", "artifacts"],
        env=rankwise_env.env(),
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "model:v0" in text and "best,latest" in text


def _art(tmp_path, name: str, content: bytes) -> rankwise.Artifact:
    p = tmp_path / name
    p.write_bytes(content)
    from rankwise._artifacts import Artifact

    art = Artifact("ds", type="dataset")
    art.add_file(str(p))
    return art


def test_versions_aliases_and_identical_content(tmp_path):
    """v0, v1, ... per (project, name); logging content equal to a stored version adds aliases to it (latest
    too) instead of a new version; a user alias moves to where it is last given;
    name:vN, name:alias and project/name:alias resolve; type= is checked."""
    run = offline_run(project="p")
    a0 = run.log_artifact(_art(tmp_path, "x.txt", b"one"), aliases=["best"])
    assert (a0.version, a0.aliases) == ("v0", ["best", "latest"])
    again = run.log_artifact(_art(tmp_path, "x.txt", b"one"), aliases="prod")
    assert (again.version, again.aliases) == ("v0", ["best", "latest", "prod"])
    a1 = run.log_artifact(_art(tmp_path, "x.txt", b"two"))
    assert (a1.version, a1.aliases) == ("v1", ["latest"])
    a2 = run.log_artifact(_art(tmp_path, "y.txt", b"two"), aliases=["best"])  # same bytes, other path: new
    assert (a2.version, a2.aliases) == ("v2", ["best", "latest"])
    assert run.use_artifact("ds:v0").aliases == ["prod"]
    assert run.use_artifact("ds:prod").version == "v0"
    assert run.use_artifact("ds:best").version == "v2"
    assert run.use_artifact("ds").version == "v2"
    assert run.use_artifact("p/ds:v1").manifest["x.txt"]["size"] == 3
    with pytest.raises(rankwise.Error, match="type 'dataset'"):
        run.use_artifact("ds:v1", type="model")
    with pytest.raises(rankwise.Error, match=r"versions: v0, v1, v2"):
        run.use_artifact("ds:v9")
    root = run.use_artifact("ds:v1").download(root=str(tmp_path / "dl"))
    assert open(os.path.join(root, "x.txt"), "rb").read() == b"two"
    # a path instead of an Artifact: one file or a directory, named after the run
    d = tmp_path / "dir"
    d.mkdir()
    (d / "f").write_bytes(b"f")
    logged = run.log_artifact(str(d), name="folder", type="raw")
    assert (logged.name, logged.type, sorted(logged.manifest)) == ("folder:v0", "raw", ["f"])
    with pytest.raises(rankwise.Error, match="add_file"):
        rankwise_artifact = _art(tmp_path, "z", b"z")
        rankwise_artifact.add_file(str(tmp_path / "missing"))
    with pytest.raises(rankwise.Error, match="logged"):
        a2.add_file(str(tmp_path / "x.txt"))
    with pytest.raises(rankwise.Error, match=r"'\.\.'"):
        _art(tmp_path, "w", b"w").add_file(str(tmp_path / "x.txt"), name="../escape")
    back = run.log_artifact(_art(tmp_path, "x.txt", b"one"), aliases=["back"])  # v0's content again
    assert (back.version, back.aliases) == ("v0", ["back", "latest", "prod"])
    assert run.use_artifact("ds:latest").version == "v0" and run.use_artifact("ds:best").version == "v2"
    run.finish()


TWO = """
import rankwise, os
run = rankwise.init(project="c", group="two")
os.makedirs("r%s" % run.rank, exist_ok=True)
open("same.txt", "w").write("identical on every rank")
a = rankwise.Artifact("shared", type="t"); a.add_file("same.txt")
first = run.log_artifact(a)
p = "r%d/own.txt" % run.rank
open(p, "w").write("rank %d" % run.rank)
b = rankwise.Artifact("shared", type="t"); b.add_file(p)
second = run.log_artifact(b)
run.finish()
print(first.version, second.version)
"""


def test_ranks_logging_identical_content_at_once_make_one_version(rankwise_env, tmp_path, monkeypatch):
    """Two ranks log the same content concurrently: one version v0 (they serialise on the lock); then each
    logs its own content: v1 and v2, one each."""
    monkeypatch.chdir(tmp_path)
    results = run_ranks(rankwise_env, TWO, world=2, group="two")
    pairs = [out.split() for _, out, _ in results]
    assert [p[0] for p in pairs] == ["v0", "v0"]
    assert sorted(p[1] for p in pairs) == ["v1", "v2"]
    from rankwise._artifact_store import ArtifactStore

    assert [m["version"] for m in ArtifactStore(rankwise_env.data).versions("c", "shared")] == ["v0", "v1", "v2"]


SAVER = """
import rankwise
run = rankwise.init(project="s", group="saver")
import os
os.makedirs("ckpt", exist_ok=True)
open("ckpt/model.txt", "w").write("epoch 1")
open("ckpt/other.log", "w").write("not matched")
open("final.txt", "w").write("draft")
print(run.save("ckpt/*.txt", policy="now"))
run.save("final.txt")                       # policy live: saved again at exit with its final content
open("final.txt", "w").write("final")
print(run.id)
run.finish()
"""

RESTORER = """
import sys
from rankwise._run_files import restore
f = restore(None, "ckpt/model.txt", run_path="s/" + sys.argv[1], root="restored")
g = restore(None, "final.txt", run_path="s/" + sys.argv[1], root="restored")
print(f.name, f.read(), g.read())
"""


def test_save_restore_round_trip(rankwise_env, tmp_path):
    """save("ckpt/*.txt") stores the matching files under names relative to the working directory; a
    policy="live" file is stored with its content at exit; another process restores them by run path into
    root= and gets open files with the same text; a name never saved raises rankwise.Error."""
    wdir, rdir = tmp_path / "w", tmp_path / "r"
    wdir.mkdir(), rdir.mkdir()
    lines = python(rankwise_env, SAVER, str(wdir)).strip().splitlines()
    assert lines[0] == str([str(wdir / "ckpt" / "model.txt")])
    run_id = lines[-1]
    p = spawn(
        [sys.executable, "-c", RESTORER, run_id],
        rankwise_env.env(),
        cwd=str(rdir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert out.split() == ["restored/ckpt/model.txt", "epoch", "1", "final"]
    assert (rdir / "restored" / "ckpt" / "model.txt").read_text() == "epoch 1"
    from rankwise._run_files import restore

    with pytest.raises(rankwise.Error, match="saved no such file"):
        restore(None, "ckpt/other.log", run_path=f"s/{run_id}", root=str(tmp_path / "x"))


def test_disabled_run_stores_nothing(rankwise_env, tmp_path):
    """mode="disabled" (wandb's): log_artifact hands the artifact back unlogged and save() saves nothing;
    no artifacts directory is created."""
    run = rankwise.init(project="d", mode="disabled")
    art = run.log_artifact(_art(tmp_path, "x.txt", b"x"))
    assert (art.version, art.state) == (None, "PENDING")
    (tmp_path / "f.txt").write_text("f")
    assert run.save(str(tmp_path / "f.txt")) == []
    assert not os.path.exists(os.path.join(rankwise_env.data, "artifacts"))
    run.finish()
