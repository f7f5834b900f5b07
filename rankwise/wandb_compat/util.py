"""``wandb.util``: the helpers scripts and frameworks call."""

from __future__ import annotations

import importlib
import os
import secrets
import string
from typing import Any

_ALPHABET = string.ascii_lowercase + string.digits


def generate_id(length: int = 8) -> str:
    """A random run id (wandb's alphabet: lowercase letters and digits)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def get_module(name: str, required: Any = None, lazy: bool = True) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if required:
            from rankwise.errors import UsageError

            raise UsageError(required if isinstance(required, str) else f"module {name} is required") from exc
        return None


def to_forward_slash_path(path: str) -> str:
    return path.replace(os.sep, "/")


def make_artifact_name_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[:128]
