"""``init(settings={"stop_on_nan": True})``: the ``log()`` after one that logged a NaN or ±Inf raises
``rankwise.errors.NonFiniteValueError`` naming the key and the step (client/stop_on_nan.py); off by default,
where ``log()`` is the class's own method, untouched."""

from __future__ import annotations

import math

import numpy as np
import pytest

import rankwise
from client.run import Run
from support.processes import start_ranks, wait_all


def disabled(**settings) -> rankwise.Run:
    return rankwise.init(project="p", group="g", mode="disabled", settings=settings)


@pytest.mark.parametrize(
    ("bad", "key", "shown"),
    [
        ({"loss": float("nan")}, "loss", "nan"),
        ({"loss": 1.0, "gn": float("-inf")}, "gn", "-inf"),
        ({"loss": np.float32("inf")}, "loss", "inf"),
        ({"loss": np.array(np.nan)}, "loss", "nan"),
        ({"opt": {"lr": 0.1, "gn": np.float64("nan")}}, "opt.gn", "nan"),
    ],
)
def test_the_log_after_a_non_finite_value_raises_naming_key_and_step(bad, key, shown):
    """Steps 0–2 finite; step 3 logs the non-finite value (Python, numpy scalar, 0-d array, nested), and that
    call returns; the next ``log()`` raises NonFiniteValueError (also a FloatingPointError) naming the key,
    the value and step 3, and logs nothing; a caller that catches it and goes on is not told again."""
    run = disabled(stop_on_nan=True)
    for step in range(3):
        run.log({"loss": 1.0 / (step + 1)})
    run.log(bad)
    with pytest.raises(rankwise.errors.NonFiniteValueError) as info:
        run.log({"loss": 0.5})
    assert isinstance(info.value, FloatingPointError)
    assert str(info.value).startswith(f"stop_on_nan: {key!r} was {shown} at step 3 of run 'rank-0' (rank 0)")
    assert run.step == 4  # the call that raised logged nothing
    run.log({"loss": 0.5})
    assert run.step == 5
    run.finish()


def test_an_explicit_step_and_finite_forms_do_not_raise():
    """``log(d, step=7)`` with a NaN names step 7; ints, bools, strings, big numbers, a 3-element array (not
    a number ``log()`` checks) never raise."""
    run = disabled(stop_on_nan=True)
    run.log({"i": 1 << 40, "b": True, "s": "text", "x": 1e308, "h": rankwise.Histogram([1.0, 2.0])})
    run.log({"i": 2})
    run.log({"loss": math.nan}, step=7)
    with pytest.raises(rankwise.errors.NonFiniteValueError, match="'loss' was nan at step 7"):
        run.log({"loss": 1.0})
    run.finish()


def test_off_by_default_log_is_the_class_method_and_nan_is_logged():
    """Without the setting ``run.log`` is ``Run.log`` itself (no wrapper on the fast path) and a NaN is only
    logged; a non-bool setting is refused naming it; RANKWISE_STOP_ON_NAN=1 turns it on."""
    run = disabled()
    assert "log" not in vars(run) and run.log.__func__ is Run.log
    run.log({"loss": math.nan})
    run.log({"loss": 1.0})
    run.finish()
    with pytest.raises(rankwise.InvalidArgumentError, match="stop_on_nan='yes' must be True or False"):
        disabled(stop_on_nan="yes")
    from client.settings import resolve

    assert resolve({"RANKWISE_STOP_ON_NAN": "1"}, project="p", group="g").stop_on_nan is True


SCRIPT = """
import rankwise
run = rankwise.init(project="nan", settings={"stop_on_nan": True})
for step in range(10):
    loss = float("nan") if step == 6 else 1.0 / (step + 1)
    run.log({"loss": loss})
"""


def test_a_real_rank_stops_and_fails_with_the_exception(rankwise_env):
    """A real rank with stop_on_nan logs a NaN at step 6: its process ends at step 7's ``log()`` with
    NonFiniteValueError; the run is failed with that exception, its history ends with the NaN at step 6."""
    [(code, _, err)] = wait_all(start_ranks(rankwise_env, SCRIPT, 1, "job-nan"))
    assert code == 1 and "rankwise.errors.NonFiniteValueError: stop_on_nan: 'loss' was nan at step 6" in err
    r = rankwise.Api(str(rankwise_env.store)).group("nan", "job-nan").run(0)
    assert (r.state, r.exception["type"]) == ("failed", "rankwise.errors.NonFiniteValueError")
    h = r.history(keys=["loss"])
    assert [row["_step"] for row in h][-1] == 6 and math.isnan([row["loss"] for row in h][-1])
