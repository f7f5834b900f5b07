"""The integrations load their framework only when imported themselves, and say what to install when
it is missing."""

from __future__ import annotations

import subprocess
import sys

from support.processes import REPO

CHECK_LAZY = """
import sys
import rankwise, rankwise.integrations
heavy = sorted(m for m in ("torch", "transformers", "lightning") if m in sys.modules)
print(",".join(heavy) or "none")
"""

CHECK_MISSING = """
import sys
sys.modules[%(mod)r] = None                      # as if it were not installed
import rankwise
try:
    import %(integration)s
except rankwise.Error as exc:
    assert isinstance(exc, ImportError), type(exc)
    print(exc)
else:
    print("imported")
"""


def _py(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_import_rankwise_loads_no_framework():
    """``import rankwise`` and ``import rankwise.integrations`` import neither torch, transformers nor
    lightning."""
    assert _py(CHECK_LAZY) == "none"


def test_missing_framework_names_the_package_to_install():
    """With transformers (lightning) not importable, importing the integration raises a rankwise.Error
    that is also an ImportError and says ``pip install transformers`` (``lightning``)."""
    for mod, integration, package in (
        ("transformers", "rankwise.integrations.transformers", "transformers"),
        ("lightning.pytorch.loggers", "rankwise.integrations.lightning", "lightning"),
    ):
        msg = _py(CHECK_MISSING % {"mod": mod, "integration": integration})
        assert msg.startswith(f"rankwise.integrations.{integration.rsplit('.', 1)[1]}.Rankwise"), msg
        assert f"pip install {package}" in msg, msg


def test_rewrite_logs_names_keys_as_wandb_does():
    """The Trainer's log keys get wandb's prefixes: eval_x -> eval/x, test_x -> test/x, else train/x."""
    import pytest

    pytest.importorskip("transformers")
    from rankwise.integrations.transformers import rewrite_logs

    assert rewrite_logs({"loss": 1.5, "eval_loss": 2.0, "test_acc": 0.5, "learning_rate": 1e-3}) == {
        "train/loss": 1.5,
        "eval/loss": 2.0,
        "test/acc": 0.5,
        "train/learning_rate": 1e-3,
    }
