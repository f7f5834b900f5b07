"""``python -m rankwise.as_wandb``: is the routing .pth installed, and what does ``import wandb`` give here?
Exit status 0 when the .pth is installed. See :mod:`rankwise._route` for the mechanism."""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path

from rankwise._route import PTH_NAME, VARIABLE, asked


def _report() -> int:
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    pth = site / PTH_NAME
    print(f"{PTH_NAME}: {'installed' if pth.exists() else 'MISSING'} in {site}")
    print(f"{VARIABLE}={os.environ.get(VARIABLE, '')!r}: {'routing' if asked() else 'not routing'}")
    if asked():
        import wandb

        print(f"import wandb -> {wandb.__file__} (version {importlib.metadata.version('wandb')})")
    return 0 if pth.exists() else 1


if __name__ == "__main__":
    sys.exit(_report())
