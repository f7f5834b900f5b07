"""The numbers of a mixed column: which values of a key count toward its group rows.

A client sends a key's values as one array when they are all numbers, and as a
list as soon as one of them is not (a string, None, a media value). The group
rows of a step must not depend on that choice, so the numbers of a list count
exactly like those of an array: ints, floats and bools (as 0/1); everything
else is skipped.
"""

from __future__ import annotations

import numpy as np

_NUMBER_TYPES = (int, float, bool)


def numeric_entries(values: list) -> tuple[np.ndarray, np.ndarray]:
    """(positions, float64 values) of the numbers in a list column."""
    where = [i for i, v in enumerate(values) if type(v) in _NUMBER_TYPES]
    numbers = np.array([float(values[i]) for i in where], np.float64)
    return np.array(where, np.int64), numbers
