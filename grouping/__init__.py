"""Pure data and merge rules for group rows: ranks → node partials → root merge.

``grouping`` has no sockets, files or clocks (time is passed in as a float) and imports only
numpy, so both the node agent and the root use the same rules and they can be tested
exhaustively. :mod:`grouping.reducers` defines the mergeable per-step state
(:class:`Partial`) and how it is built, merged and finalised into a group row;
:mod:`grouping.window` holds a group's open points until the agent seals a prefix of steps;
:mod:`grouping.partial_window` holds the root's open node partials the same way;
:mod:`grouping.numbers` says which values of a mixed column count.
"""

from __future__ import annotations

from .errors import GroupingError
from .numbers import numeric_entries
from .partial_window import PartialWindow
from .reducers import FINAL_FIELDS, Partial, finalize, merge, merge_all, reduce_points
from .window import GroupWindow

__all__ = [
    "FINAL_FIELDS",
    "GroupWindow",
    "GroupingError",
    "Partial",
    "PartialWindow",
    "finalize",
    "merge",
    "merge_all",
    "numeric_entries",
    "reduce_points",
]
