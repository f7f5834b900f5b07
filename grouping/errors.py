"""Errors of the grouping package.

``grouping`` imports nothing of ours (docs/architecture.md, "Layers"; tests/test_layering.py), so it
cannot derive from ``client.errors.Error``. Its one exception subclasses
:class:`ValueError`: every error it raises is a caller handing in arrays of the
wrong shape or kind, and code that already catches ``ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = ["GroupingError"]


class GroupingError(ValueError):
    """Arrays that cannot be reduced or merged: mismatched lengths, wrong dimensionality or kind."""
