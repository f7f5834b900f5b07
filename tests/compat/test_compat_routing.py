"""Zero-change routing (issue 10, item 2): with RANKWISE_AS_WANDB=1 an unmodified program's ``import wandb``
loads rankwise's compatible module, its submodules and a ``wandb`` distribution's metadata; without the
variable nothing changes. And the .pth that does it is in both wheels setuptools builds from this project
(the normal one and the PEP 660 editable one that ``pip install -e`` installs)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PROBE = r"""
import importlib.metadata, json, sys
import wandb
import wandb as again
from wandb.sdk.lib.config_util import ConfigError
from wandb.sdk.lib import RunDisabled
from wandb.wandb_run import Run
import wandb.util, wandb.errors
from lightning_utilities.core.imports import RequirementCache
print(json.dumps({
    "file": wandb.__file__, "version": wandb.__version__, "dist": importlib.metadata.version("wandb"),
    "run": wandb.run, "same": again is wandb, "config_error": ConfigError.__module__,
    "run_class": f"{Run.__module__}.{Run.__name__}", "lightning_ok": bool(RequirementCache("wandb>=0.12.10")),
    "has_config": hasattr(wandb, "config"), "error_base": [c.__name__ for c in ConfigError.__mro__][:4],
}))
"""


def _probe(rankwise_env, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROBE], env=rankwise_env.env(**env), capture_output=True, text=True, timeout=120
    )


def _pth_installed() -> bool:
    import sysconfig

    return (Path(sysconfig.get_paths()["purelib"]) / "rankwise-as-wandb.pth").exists()


def test_import_wandb_is_routed_with_the_variable(rankwise_env):
    """RANKWISE_AS_WANDB=1: `import wandb` is rankwise.wandb_compat, metadata says 0.31.0 (Lightning's
    requirement check passes), the framework submodules import, and stderr says so exactly once. The
    routing .pth is part of every install (`make test` installs it), so its absence fails, never skips."""
    assert _pth_installed(), "rankwise-as-wandb.pth is not in site-packages: reinstall with pip install -e ."
    out = _probe(rankwise_env, RANKWISE_AS_WANDB="1")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info == {
        "file": str(REPO / "rankwise" / "wandb_compat" / "__init__.py"),
        "version": "0.31.0",
        "dist": "0.31.0",
        "run": None,
        "same": True,
        "config_error": "client.errors",
        "run_class": "client.run.Run",
        "lightning_ok": True,
        "has_config": True,
        "error_base": ["ConfigError", "InvalidValueError", "Error", "ValueError"],
    }
    assert out.stderr.count("import wandb` loads rankwise") == 1


def test_without_the_variable_nothing_changes(rankwise_env):
    """Without RANKWISE_AS_WANDB (or with 0) `import wandb` is whatever is installed: here, where the real
    wandb is absent, ModuleNotFoundError; and nothing is printed."""
    real = importlib.util.find_spec("wandb")
    for value in (None, "0"):
        env = {} if value is None else {"RANKWISE_AS_WANDB": value}
        out = subprocess.run(
            [sys.executable, "-c", "import wandb; print(wandb.__file__)"],
            env=rankwise_env.env(**env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "rankwise" not in out.stderr
        if real is None:
            assert out.returncode != 0 and "No module named 'wandb'" in out.stderr
        else:
            assert out.returncode == 0 and "wandb_compat" not in out.stdout


def _project_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "src"
    ignore = shutil.ignore_patterns(
        ".venv", ".git", "tests", "benchmarks", "test-artifacts", "build", "*.egg-info", "__pycache__", "node_modules"
    )
    shutil.copytree(REPO, dst, ignore=ignore)
    return dst


BUILD = """
import sys
from setuptools import build_meta
hook = getattr(build_meta, sys.argv[1])
print(hook(sys.argv[2]))
"""


@pytest.mark.parametrize("hook", ["build_wheel", "build_editable"])
def test_both_wheels_ship_the_pth(tmp_path, hook):
    """The wheel `pip install .` builds and the editable wheel `pip install -e .` builds both hold
    rankwise-as-wandb.pth at their root (→ site-packages), listed in RECORD (uninstall removes it), with the
    line of rankwise/rankwise-as-wandb.pth; and that line, processed as a site .pth with the variable set,
    routes `import wandb`."""
    src = _project_copy(tmp_path)
    out_dir = tmp_path / "dist"
    out_dir.mkdir()
    built = subprocess.run(
        [sys.executable, "-c", BUILD, hook, str(out_dir)], cwd=src, capture_output=True, text=True, timeout=300
    )
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = out_dir / built.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "rankwise-as-wandb.pth" in names
        line = zf.read("rankwise-as-wandb.pth").decode()
        record = next(n for n in names if n.endswith(".dist-info/RECORD"))
        assert any(r.startswith("rankwise-as-wandb.pth,sha256=") for r in zf.read(record).decode().splitlines())
    assert line == (REPO / "rankwise" / "rankwise-as-wandb.pth").read_text()
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / "rankwise-as-wandb.pth").write_text(line)
    code = f"import site; site.addsitedir({str(site_dir)!r}); import wandb; print(wandb.__version__)"
    for env_value, expect in (("1", "0.31.0"), ("", None)):
        env = {k: v for k, v in __import__("os").environ.items() if k != "RANKWISE_AS_WANDB"}
        env["PYTHONPATH"] = str(REPO)
        if env_value:
            env["RANKWISE_AS_WANDB"] = env_value
        ran = subprocess.run([sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True, timeout=60)
        if expect is None:
            assert ran.returncode != 0 or "wandb_compat" not in ran.stdout
        else:
            assert ran.returncode == 0 and ran.stdout.strip() == expect, ran.stderr
