"""Zero-change routing: with ``RANKWISE_AS_WANDB=1`` in the environment, ``import wandb`` loads
:mod:`rankwise.wandb_compat` under the name ``wandb``, and ``importlib.metadata`` answers for a ``wandb``
distribution of version ``0.31.0`` (Lightning checks ``wandb>=0.12.10`` in the installed metadata).

``rankwise-as-wandb.pth``, installed into site-packages beside rankwise (by a normal and by an editable
``pip install``: see setup.py), calls :func:`install_if_asked` at interpreter start; without the variable it
does nothing else than read it. Processes a launcher starts (torchrun workers, srun/mpirun ranks) inherit
the variable and are routed too. It works whether or not the real wandb is installed: the variable is the
user's choice, said once on stderr when a program imports ``wandb``.

``python -m rankwise.as_wandb`` reports whether the .pth is installed and what ``import wandb`` gives (a
separate module: this one is already imported by the .pth when routing is on).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

VARIABLE = "RANKWISE_AS_WANDB"
PTH_NAME = "rankwise-as-wandb.pth"
WANDB_VERSION = "0.31.0"  # rankwise.wandb_compat._functions.VERSION; not imported here, to stay light
_PACKAGE_DIR = Path(__file__).resolve().parent / "wandb_compat"
_METADATA = f"Metadata-Version: 2.1\nName: wandb\nVersion: {WANDB_VERSION}\nSummary: rankwise, routed as wandb\n"


def asked(env: Any = None) -> bool:
    value = (os.environ if env is None else env).get(VARIABLE, "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


class _WandbDistribution(importlib.metadata.Distribution):
    """The ``wandb`` distribution's metadata, answered by rankwise."""

    def read_text(self, filename: str) -> str | None:
        if filename in ("METADATA", "PKG-INFO"):
            return _METADATA
        if filename == "top_level.txt":
            return "wandb\n"
        return None

    def locate_file(self, path: Any) -> Path:
        return _PACKAGE_DIR / str(path)


class WandbFinder(importlib.abc.MetaPathFinder):
    """Serves the top-level ``wandb`` from rankwise.wandb_compat (its submodules then come from that package's
    directory through the parent's ``__path__``) and the ``wandb`` distribution metadata."""

    announced = False

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "wandb":
            return None
        if not WandbFinder.announced:
            WandbFinder.announced = True
            sys.stderr.write(f"rankwise: {VARIABLE} is set: `import wandb` loads rankwise's wandb-compatible module\n")
        return importlib.util.spec_from_file_location(
            "wandb", _PACKAGE_DIR / "__init__.py", submodule_search_locations=[str(_PACKAGE_DIR)]
        )

    def find_distributions(self, context: Any = None) -> Iterable[importlib.metadata.Distribution]:
        name = getattr(context, "name", None)
        if name is None or name.replace("-", "_").replace(".", "_").lower() == "wandb":
            return iter([_WandbDistribution()])
        return iter(())

    def __repr__(self) -> str:
        return f"<rankwise WandbFinder serving wandb {WANDB_VERSION} from {_PACKAGE_DIR}>"


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once); a ``wandb`` imported before is left alone."""
    if not any(isinstance(f, WandbFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, WandbFinder())


def install_if_asked() -> None:
    """The .pth calls this at interpreter start: routes only when RANKWISE_AS_WANDB is set."""
    if asked():
        install()
