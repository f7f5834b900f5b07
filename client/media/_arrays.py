"""Array helpers: one copy on the caller's thread (numpy, torch, anything array-like), and the
pixel conversion rule shared by Image and Video.

Torch is recognised by the type's module name so that ``torch`` is never imported by us.
A CUDA tensor is copied to host memory (``.cpu()`` synchronises the device: that copy is the
one the training loop pays for); a CPU tensor or numpy array is copied so that the caller may
reuse its buffer right after ``log()``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from client.errors import InvalidArgumentError

NUMERIC_KINDS = "biuf"


def is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def array_copy(x: Any, arg: str) -> np.ndarray:
    """A private numpy copy of ``x`` (ndarray, torch tensor, list, anything with ``__array__``)."""
    if isinstance(x, np.ndarray):
        return np.array(x, copy=True)
    if is_torch(x):
        t = x.detach()
        if str(getattr(t, "dtype", "")) == "torch.bfloat16":  # numpy has no bfloat16
            return t.float().cpu().numpy()  # .float() made a new tensor: no second copy needed
        on_cpu = getattr(getattr(t, "device", None), "type", "cpu") == "cpu"
        arr = t.cpu().numpy()
        return np.array(arr, copy=True) if on_cpu else arr
    if hasattr(x, "numpy") and not isinstance(x, (list, tuple)):  # TF eager tensors, jax arrays
        try:
            return np.array(x.numpy(), copy=True)
        except Exception:
            pass
    try:
        return np.array(x, copy=True)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{arg}: cannot be converted to a numpy array ({exc})") from None


def check_numeric(arr: np.ndarray, arg: str) -> None:
    if arr.dtype.kind not in NUMERIC_KINDS:
        raise InvalidArgumentError(f"{arg} must hold numbers (bool, int, uint or float), got dtype {arr.dtype}")


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Pixels as uint8, by one rule for every image and video frame:

    * uint8: as is; bool: False → 0, True → 255;
    * other integers: clipped to [0, 255];
    * floats: when every finite value is in [0, 1] the data is on the unit scale and is
      multiplied by 255; otherwise it is taken to be on the 0–255 scale (wandb's convention
      for non-uint8 data). Then values are rounded to the nearest integer and clipped to
      [0, 255]; NaN becomes 0, +inf 255, -inf 0.
    """
    kind = arr.dtype.kind
    if arr.dtype == np.uint8:
        return arr
    if kind == "b":
        return arr.astype(np.uint8) * np.uint8(255)
    if kind in "iu":
        return np.clip(arr, 0, 255).astype(np.uint8)
    a = arr.astype(np.float64)
    finite = a[np.isfinite(a)]
    if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
        a = a * 255.0
    a = np.nan_to_num(a, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)
