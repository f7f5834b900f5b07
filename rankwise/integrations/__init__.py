"""Integrations that log every rank of a distributed job, each into its own run of the job's group.

Frameworks' own loggers write from rank 0 only (HF's ``WandbCallback``, Lightning's ``rank_zero_only``
loggers); these write from every process, so per-rank losses, step times and throughput show up in the
group view as a band with the slow rank named.

* :class:`rankwise.integrations.transformers.RankwiseCallback`: ``Trainer(callbacks=[RankwiseCallback()])``
* :class:`rankwise.integrations.lightning.RankwiseLogger`: ``Trainer(logger=RankwiseLogger())``

Each module imports its framework when it is imported itself; ``import rankwise`` imports neither.
"""

from __future__ import annotations

__all__ = ["sanitize_config"]

from typing import Any

_PLAIN = (bool, int, float, str, type(None))


def sanitize_config(value: Any, depth: int = 0) -> Any:
    """A framework's configuration as plain data a run's config takes: numbers, strings, None, lists and
    dicts of them; anything else (enums, dtypes, paths, objects) as its ``str``. Deep nesting is cut to
    a string too (a config is for reading, not for a round trip)."""
    if isinstance(value, _PLAIN):
        return value
    if depth < 6 and isinstance(value, dict):
        return {str(k): sanitize_config(v, depth + 1) for k, v in value.items()}
    if depth < 6 and isinstance(value, (list, tuple)):
        return [sanitize_config(v, depth + 1) for v in value]
    return str(value)
