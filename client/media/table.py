"""``Table``: wandb's ``wandb.Table(columns=None, data=None, rows=None, dataframe=None, ...)``.

Cells are what ``log()`` accepts as values: numbers, bools, strings, None, lists of those,
numpy/torch scalars (converted), arrays (a list, or a Histogram beyond 32 elements), and media
objects (Image, Audio, ...), which encode themselves on the I/O thread with the table. Cells
are validated and converted when they are added, so a bad cell raises ``ValueError`` naming its
row and column at the call site.

A table is mutable (``add_data``, ``add_column``); ``log()`` logs a snapshot of it as it is at
the call, so rows added afterwards appear only in a later ``log()``. At most ``MAX_ROWS``
(10000, wandb's limit for logged tables) rows: adding more raises instead of truncating.

``dataframe=`` takes a pandas DataFrame (columns become strings; numpy values converted).
``dtype``, ``optional`` and ``allow_mixed_types`` are accepted for wandb compatibility: rankwise
does not type-check columns (every column allows mixed types).

Wire (inline, no file): ``{"_type": "table", "columns": [str, ...], "data": [[cell, ...], ...]}``
with media cells as their own wire dicts (so they may carry ``bytes``).
"""

from __future__ import annotations

from typing import Any

from client.errors import InvalidArgumentError
from client.media._base import Media
from client.values import nbytes_hint, normalize_value

MAX_ROWS = 10_000
DEFAULT_COLUMNS = ["Input", "Output", "Expected"]


def _cell(value: Any, row: int, column: str) -> Any:
    # normalize_value raises InvalidValueError (a ValueError) naming this label as the "key"
    return normalize_value(f"Table row {row} column {column!r}", value)


class Table(Media):
    """A table of values and media; logged inline."""

    _type = "table"
    MAX_ROWS = MAX_ROWS
    MAX_ARTIFACT_ROWS = MAX_ROWS

    def __init__(
        self,
        columns: Any = None,
        data: Any = None,
        rows: Any = None,
        dataframe: Any = None,
        dtype: Any = None,
        optional: Any = True,
        allow_mixed_types: bool = False,
        log_mode: str | None = None,
    ) -> None:
        self.caption = None
        if rows is not None:
            if data is not None:
                raise InvalidArgumentError("Table: pass data= or rows= (its old name), not both")
            data = rows
        if dataframe is not None:
            if data is not None:
                raise InvalidArgumentError("Table: pass data= or dataframe=, not both")
            columns, data = self._from_dataframe(dataframe, columns)
        if data is not None and not isinstance(data, (list, tuple)):
            if hasattr(data, "tolist") and getattr(data, "ndim", 2) == 2:  # a 2-D numpy array
                data = data.tolist()
            else:
                raise InvalidArgumentError(
                    f"data must be a list of rows (lists) or a 2-D array, got {type(data).__name__}"
                )
        if columns is None:
            width = len(data[0]) if data else 3
            columns = list(DEFAULT_COLUMNS) if width == 3 else [str(i) for i in range(width)]
        if isinstance(columns, str) or not isinstance(columns, (list, tuple)):
            raise InvalidArgumentError(f"columns must be a list of names, got {type(columns).__name__}")
        self.columns: list[str] = [str(c) for c in columns]
        if len(set(self.columns)) != len(self.columns):
            raise InvalidArgumentError(f"columns must be unique, got {self.columns}")
        self.data: list[list] = []
        for r in data or []:
            self.add_data(*r)

    @staticmethod
    def _from_dataframe(df: Any, columns: Any) -> tuple[list, list]:
        if not (hasattr(df, "columns") and hasattr(df, "itertuples")):
            raise InvalidArgumentError(f"dataframe must be a pandas DataFrame, got {type(df).__name__}")
        cols = [str(c) for c in df.columns] if columns is None else list(columns)
        return cols, [list(r) for r in df.itertuples(index=False, name=None)]

    def add_data(self, *data: Any) -> None:
        """Append one row: one value per column."""
        if len(data) != len(self.columns):
            raise InvalidArgumentError(
                f"add_data: the row has {len(data)} values but the table has {len(self.columns)} columns"
            )
        if len(self.data) >= MAX_ROWS:
            raise InvalidArgumentError(f"data: a logged Table holds at most {MAX_ROWS} rows; log several tables")
        row = len(self.data)
        self.data.append([_cell(v, row, c) for v, c in zip(data, self.columns)])

    def add_column(self, name: str, data: Any) -> None:
        """Append a column: one value per existing row."""
        name = str(name)
        if name in self.columns:
            raise InvalidArgumentError(f"add_column: column {name!r} already exists")
        values = list(data)
        if len(values) != len(self.data):
            raise InvalidArgumentError(f"add_column: {len(values)} values for a table of {len(self.data)} rows")
        cells = [_cell(v, i, name) for i, v in enumerate(values)]
        self.columns.append(name)
        for row, v in zip(self.data, cells):
            row.append(v)

    def get_column(self, name: str, convert_to: str | None = None) -> list:
        if name not in self.columns:
            raise InvalidArgumentError(f"get_column: no column {name!r}; columns are {self.columns}")
        i = self.columns.index(name)
        col = [r[i] for r in self.data]
        if convert_to == "numpy":
            import numpy as np

            return np.array(col)  # type: ignore[return-value]
        return col

    def _snapshot(self) -> Table:
        """The table as it is now (``log()`` calls this on the caller's thread): rows are copied,
        cells are immutable values or media objects, which are shared."""
        snap = Table.__new__(Table)
        snap.caption = None
        snap.columns = list(self.columns)
        snap.data = [list(r) for r in self.data]
        return snap

    def _nbytes_hint(self) -> int:
        total = 64 + 16 * len(self.columns)
        for row in self.data:  # strings count their bytes: a table of long texts is as big as an image
            for v in row:
                total += nbytes_hint(v)
        return total

    def _encode(self) -> dict:
        from client.columns import to_wire  # media cells, lists of media, big ints

        return {"_type": "table", "columns": list(self.columns), "data": [[to_wire(v) for v in r] for r in self.data]}

    def __repr__(self) -> str:
        return f"<rankwise.Table columns={self.columns} rows={len(self.data)}>"
