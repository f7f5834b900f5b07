"""Errors of the framework integrations."""

from __future__ import annotations

from typing import Any

from rankwise.errors import Error


class FrameworkMissingError(Error, ImportError):
    """The framework an integration is for is not installed; the message names the package to install."""


def need(module: str, package: str, integration: str) -> Any:
    """Import ``module`` or raise :class:`FrameworkMissingError` naming ``package`` and ``integration``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise FrameworkMissingError(
            f"{integration} needs {package!r}, which cannot be imported ({exc}); install it: pip install {package}"
        ) from exc
