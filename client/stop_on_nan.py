"""``init(settings={"stop_on_nan": True})`` (or ``RANKWISE_STOP_ON_NAN=1``): the ``log()`` after one that
logged a NaN or ±Inf raises :class:`client.errors.NonFiniteValueError` in the training process, naming the
key and the step (wandb has no such setting; its users ask for it: wandb issue 3563).

Nothing of it is on the fast path when the setting is off (the default): ``Run.log`` (client/run.py) is not
changed. With the setting on, :func:`bind` gives the run an instance attribute ``log`` (found before the
class's method, at the same cost) that wraps it:

1. if an earlier call logged a non-finite value, raise (this call logs nothing; the flag is cleared, so a
   caller that catches the exception and goes on is told again only of a new non-finite value);
2. log as ``Run.log`` does (validation, the step rules, the fast path);
3. look for a non-finite value among the call's values: first their sum (``math.fsum``, one C-level pass
   that converts numpy scalars too; NaN and ±Inf absorb a sum, so a finite sum means finite values: the
   common case ends here; once a call's values do not sum, the run's later calls skip it), else value
   by value: Python floats (``math.isfinite``), and values that convert to a float (numpy scalars and 0-d
   arrays, one-element tensors: ``float(v)``, which waits for a CUDA tensor as ``.item()`` does), through
   nested dicts. Ints, bools, strings and media are finite.

The check runs on the training thread on purpose: the raise comes at exactly the next call, whatever the
I/O thread is doing. Its cost is measured in docs/alerts.md (benchmarks/log_forms.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from math import fsum, isfinite
from typing import TYPE_CHECKING, Any

from client.errors import NonFiniteValueError

if TYPE_CHECKING:
    from client.run import Run


def first_nonfinite(data: Mapping) -> tuple[str, float] | None:
    """The (flattened) key and value of the first NaN or ±Inf value of ``data``, or None."""
    for k, v in data.items():
        t = type(v)
        if t is float:
            if v - v == 0.0:  # NaN - NaN and Inf - Inf are NaN
                continue
            return k, v
        if t is int or t is bool or t is str:
            continue
        if t is dict:
            found = first_nonfinite(v)  # (the dotted name is made only for what is found)
            if found is not None:
                return f"{k}.{found[0]}", found[1]
        elif hasattr(t, "__float__"):
            try:
                f = float(v)
            except Exception:  # noqa: BLE001 - a tensor of many elements, complex: not a number log() stores
                continue
            if not isfinite(f):
                return k, f
    return None


def bind(run: Run) -> None:
    """Give ``run`` the checking ``log`` (module docstring)."""
    cls_log = type(run).log
    run._nonfinite = None  # (key, value, step) of the last non-finite value logged, until the next log() raises
    summable = True  # the values of this run's calls have summed so far (no string, nested dict, media)

    def log(data: Any, step: Any = None, commit: Any = None, sync: Any = None) -> None:
        found = run._nonfinite
        if found is not None:
            run._nonfinite = None
            key, value, at = found
            raise NonFiniteValueError(
                f"stop_on_nan: {key!r} was {value} at step {at} of run {run.name!r} (rank {run.rank}); "
                "init(settings={'stop_on_nan': False}) logs non-finite values without raising"
            )
        at = run._step if step is None else step
        cls_log(run, data, step, commit, sync)
        nonlocal summable
        if summable:
            try:  # one C-level pass: NaN and ±Inf absorb a sum, so a finite sum means finite values
                if isfinite(fsum(data.values())):
                    return
            except Exception:  # noqa: BLE001 - strings, nested dicts, media, an overflow: value by value
                summable = False  # (raising costs more than the walk: this run's later calls walk at once)
        found = first_nonfinite(data)
        if found is not None:
            run._nonfinite = (*found, at)

    log.__doc__ = cls_log.__doc__
    run.log = log  # type: ignore[method-assign]
