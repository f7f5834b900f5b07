"""What ``log()`` makes of a value that is not plain Python data (the slow path, on the caller's thread).

``client.values.normalize_value`` takes Python numbers, strings, None, lists and :class:`WireValue`\\ s itself
and hands everything else to :func:`convert`: numpy and torch scalars become Python numbers, arrays a list
(at most ``SMALL_ARRAY`` elements) or a :class:`~client.media.histogram.Histogram`, a matplotlib figure a PNG
:class:`~client.media.image.Image` (see ``client.media.figures`` for why it is rendered now), a plotly figure
a :class:`~client.media.figures.Plotly`. What a conversion yields that still needs normalizing (the
``.item()`` of a 0-d array may be a str or None; a short array of strings becomes a list) goes back through
the ``normalize`` callable it is given, so that this module never imports ``client.values``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from client.errors import InvalidValueError
from client.fastconv import INT64_MAX, INT64_MIN

SMALL_ARRAY = 32  # arrays up to this many elements are logged as lists, larger ones as histograms

Normalize = Callable[[str, Any], Any]

NUMPY_WHY = (
    "numpy values are logged as bool, int, float or str (datetime64/timedelta64, complex, void and bytes are "
    "not): convert it, e.g. .astype(np.int64) or str(...)"
)


def convert(key: str, value: Any, normalize: Normalize) -> Any:
    """Convert a numpy/torch scalar or array, an int or float subclass, or a figure, or raise."""
    cls = type(value)
    module = cls.__module__
    if module == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray):
            if value.ndim == 0 or value.size == 1:
                if value.dtype.kind in "mMVSac":  # .item() would make an int of a datetime64, bytes of a void
                    raise unsupported(key, value, NUMPY_WHY)
                # .item() of an object or str array is None/str, which normalize_value accepts
                return normalize(key, value.reshape(()).item())
            return _array(key, value, normalize)
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, (np.timedelta64, np.datetime64)):  # timedelta64 is an np.integer
            raise unsupported(key, value, NUMPY_WHY)
        if isinstance(value, np.integer):
            return check_int(key, int(value))
        if isinstance(value, np.floating):
            f = float(value)
            if value.dtype.itemsize > 8 and f != value and value == value:
                raise unsupported(key, value, "this np.longdouble has no exact float64; convert it with float()")
            return f
        if isinstance(value, np.str_):
            return normalize(key, str(value))
        raise unsupported(key, value, NUMPY_WHY)
    if module.startswith("torch") and hasattr(value, "numel"):
        if value.numel() == 1:
            # .item() synchronises a CUDA tensor; one element is what the caller asked to log
            return normalize(key, value.detach().reshape(()).item())
        return _array(key, value, normalize)
    if cls is int or isinstance(value, int):
        return check_int(key, int(value))
    if isinstance(value, float):
        return float(value)
    if module.startswith(("matplotlib", "plotly")) or cls.__name__ == "module":
        return _figure(key, value)
    raise unsupported(key, value)


def check_int(key: str, value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidValueError(
            f"log(): integer value of key {key!r} is outside int64 (-2**63 .. 2**63-1); integers are stored "
            "exactly: log it as a float or a str"
        )
    return value


def _array(key: str, value: Any, normalize: Normalize) -> Any:
    """An array of more than one element: a copy as a list (≤ 32 elements) or a Histogram."""
    from client.media._arrays import array_copy

    try:
        arr = array_copy(value, key)
    except Exception as exc:
        raise unsupported(key, value, f"it could not be copied to a numpy array ({exc})") from None
    kind = arr.dtype.kind
    if kind == "f" and arr.dtype.itemsize > 8:  # np.longdouble: values logged as a list must be exact in float64
        import numpy as np

        exact = arr.astype(np.float64)
        if arr.size <= SMALL_ARRAY and not np.array_equal(exact, arr, equal_nan=True):
            raise unsupported(key, value, "this np.longdouble array has no exact float64; use .astype(np.float64)")
        arr = exact  # (a histogram's bins are approximate anyway)
    if kind in "biuf":
        if arr.size <= SMALL_ARRAY:
            if kind == "u" and arr.size and int(arr.max()) > INT64_MAX:
                check_int(key, int(arr.max()))
            return arr.tolist()
        from client.media.histogram import Histogram

        return Histogram._from_owned(arr, num_bins=SMALL_ARRAY)
    if arr.size <= SMALL_ARRAY and (kind == "U" or (kind == "O" and arr.ndim == 1)):
        return normalize(key, arr.tolist())
    raise unsupported(
        key,
        value,
        f"arrays of dtype {arr.dtype} are logged only as numbers (bool/int/float), or as lists of at most "
        f"{SMALL_ARRAY} strings; use a list or rankwise.Table",
    )


def _figure(key: str, value: Any) -> Any:
    from client.media.figures import is_matplotlib, is_plotly

    try:
        if is_matplotlib(value):
            return matplotlib_image(value)
        if is_plotly(value):
            from client.media.figures import Plotly

            return Plotly(value)
    except ValueError as exc:
        raise unsupported(key, value, str(exc)) from None
    raise unsupported(key, value)


def matplotlib_image(obj: Any, caption: str | None = None) -> Any:
    """``log()``'s conversion of a matplotlib object: an Image of its rendered PNG."""
    from client.media.figures import render_png
    from client.media.image import Image

    return Image._from_encoded(render_png(obj), "png", caption)


def unsupported(key: str, value: Any, why: str | None = None) -> InvalidValueError:
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    hint = why or (
        "supported: int, float, bool, str, None, numpy/torch scalars and arrays, lists of those, "
        "nested dicts, rankwise media types (Image, Histogram, Table, ...) and matplotlib/plotly figures"
    )
    return InvalidValueError(f"log(): value of key {key!r} has unsupported type {kind}; {hint}")
