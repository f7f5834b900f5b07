"""Validation and flattening of what ``log()`` is given, the copy of the caller's dict, and the
equivalence of ``log()``'s fast path (flat dict of float/int/bool with known keys) and slow path."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rankwise
from client.errors import InvalidArgumentError, InvalidValueError
from support.offline import close, drain_batches, offline_run, rows_after


@pytest.fixture
def run():
    r = offline_run()
    yield r
    close(r)


def typed(row: dict) -> dict:
    """Values with their exact types, NaN made comparable: {"a": ("float", "nan")}."""
    out = {}
    for k, v in row.items():
        if isinstance(v, float) and math.isnan(v):
            out[k] = ("float", "nan")
        elif isinstance(v, list):
            out[k] = ("list", tuple(typed({str(i): x for i, x in enumerate(v)}).items()))
        else:
            out[k] = (type(v).__name__, v)
    return out


# ---------------------------------------------------------------- flattening and conversion


def test_nested_dicts_flatten_with_dots(run):
    """{"a": {"b": {"c": 1}}} is logged as "a.b.c"; an empty nested dict contributes no key."""
    run.log({"a": {"b": {"c": 1}, "d": 2.5}, "e": True, "empty": {}})
    assert rows_after(run) == [{"_step": 0, "_late": False, "a.b.c": 1, "a.d": 2.5, "e": True}]


def test_nested_keys_may_look_like_reserved_names(run):
    """Only the top-level row columns are reserved: {"x": {"_step": 1}} is the key "x._step"."""
    run.log({"x": {"_step": 1, "_runtime": 2}})
    assert rows_after(run) == [{"_step": 0, "_late": False, "x._step": 1, "x._runtime": 2}]


def test_numpy_scalars_and_zero_d_arrays_become_python_numbers(run):
    """float32/float64/int64/uint8/bool_ scalars and 0-d arrays arrive as Python float/int/bool."""
    run.log(
        {
            "f32": np.float32(1.5),
            "f64": np.float64(0.25),
            "i64": np.int64(-7),
            "u8": np.uint8(200),
            "b": np.bool_(True),
            "a0f": np.array(2.5),
            "a0i": np.array(3, dtype=np.int32),
            "a1": np.array([4.5]),  # one element: a scalar too
            "a0s": np.array("txt"),
            "a0o": np.array(None, dtype=object),
            "nested": {"v": np.float32(0.5)},
        }
    )
    (row,) = rows_after(run)
    assert typed(row) == {
        "_step": ("int", 0),
        "_late": ("bool", False),
        "f32": ("float", 1.5),
        "f64": ("float", 0.25),
        "i64": ("int", -7),
        "u8": ("int", 200),
        "b": ("bool", True),
        "a0f": ("float", 2.5),
        "a0i": ("int", 3),
        "a1": ("float", 4.5),
        "a0s": ("str", "txt"),
        "a0o": ("NoneType", None),
        "nested.v": ("float", 0.5),
    }


def test_torch_like_one_element_tensors_become_numbers(run):
    """A torch tensor with one element is logged as its .item() (torch itself is not needed here:
    the check is by module name and numel); a multi-element tensor that cannot be copied to numpy
    (this stand-in has no .numpy()/__array__) is rejected naming the key."""

    class Tensor:
        __module__ = "torch"
        __qualname__ = "Tensor"

        def __init__(self, values):
            self.values = values

        def numel(self):
            return len(self.values)

        def detach(self):
            return self

        def reshape(self, shape):
            return self

        def item(self):
            return self.values[0]

    run.log({"t": Tensor([0.75]), "ti": Tensor([3])})
    assert typed(rows_after(run)[0]) == {
        "_step": ("int", 0),
        "_late": ("bool", False),
        "t": ("float", 0.75),
        "ti": ("int", 3),
    }
    with pytest.raises(InvalidValueError, match="'grad'.*torch.Tensor"):
        run.log({"grad": Tensor([1.0, 2.0])})


def test_nan_and_infinities_are_kept_exactly(run):
    """NaN, +inf and -inf (Python and numpy) are stored as they are, never dropped or clipped."""
    run.log({"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"), "npnan": np.float32("nan")})
    run.log({"nan": 1.0, "inf": 2.0, "ninf": 3.0, "npnan": 4.0})
    rows = rows_after(run)
    assert math.isnan(rows[0]["nan"]) and math.isnan(rows[0]["npnan"])
    assert rows[0]["inf"] == math.inf and rows[0]["ninf"] == -math.inf
    assert [r["inf"] for r in rows] == [math.inf, 2.0]


def test_strings_none_and_lists_of_scalars_are_accepted(run):
    """str, None, lists and tuples of scalars (numpy ones converted) are logged as such."""
    run.log({"s": "hello", "n": None, "l": [1, 2.5, "x", None, True], "t": (np.int64(1), np.float32(0.5))})
    (row,) = rows_after(run)
    assert typed(row) == typed(
        {"_step": 0, "_late": False, "s": "hello", "n": None, "l": [1, 2.5, "x", None, True], "t": [1, 0.5]}
    )


def test_ints_beyond_int64_are_refused_at_the_call(run):
    """Python ints outside int64 (alone, in a list, numpy uint64 max) raise ValueError naming the key; int64's
    own bounds are kept exactly as ints."""
    for value in (2**70, -(2**63) - 1, [1, 2**64], np.uint64(2**64 - 1), np.array([2**64 - 1] * 3, np.uint64)):
        with pytest.raises(InvalidValueError, match="'big'.*outside int64"):
            run.log({"big": value})
    run.log({"edge": 2**63 - 1, "low": -(2**63)})
    assert typed(rows_after(run)[0]) == typed({"_step": 0, "_late": False, "edge": 2**63 - 1, "low": -(2**63)})


def test_int_beyond_int64_by_the_fast_path_is_dropped_and_counted(run):
    """A known key takes the fast path, which does not range-check ints: the I/O thread drops that one value
    (counted as "bad value"), keeps the rest of the row and every later row."""
    run.log({"x": 1, "y": 1.0})
    run.log({"x": 2**70, "y": 2.0})
    run.log({"x": 3, "y": 3.0})
    rows = rows_after(run)
    assert [(r["_step"], r.get("x"), r["y"]) for r in rows] == [(0, 1, 1.0), (1, None, 2.0), (2, 3, 3.0)]
    assert run._writer.drop_counts() == {"bad value": 1}


# ---------------------------------------------------------------- rejected input


@pytest.mark.parametrize(
    "value, type_name",
    [
        (object(), "builtins.object"),
        ({1, 2}, "builtins.set"),
        (np.array([1 + 2j, 3j]), "numpy.ndarray"),
        (b"raw", "builtins.bytes"),
        ([[1, 2]], "builtins.list"),
        ([object()], "builtins.object"),
        (np.datetime64("2024-01-01"), "numpy.datetime64"),
    ],
)
def test_unsupported_values_raise_naming_key_and_type(run, value, type_name):
    """An unsupported value raises ValueError (and rankwise.Error) naming the key and the type,
    and logs nothing: the step does not move, no row or pending row appears."""
    with pytest.raises(InvalidValueError) as info:
        run.log({"ok": 1.0, "outer": {"bad": value}})
    assert isinstance(info.value, ValueError) and isinstance(info.value, rankwise.Error)
    assert "'outer.bad'" in str(info.value)
    assert type_name in str(info.value)
    assert run.step == 0
    batches = drain_batches(run)
    assert all(b.n == 0 and b.open_row is None for b in batches)
    assert "ok" not in run._known  # a failed call teaches the fast path nothing


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({1: 2.0}, "keys must be strings"),
        ({"a": {2: 1}}, "keys must be strings"),
        ({"": 1}, "non-empty"),
        ({"a": {"": 1}}, "non-empty"),
        ({"_step": 1}, "'_step' is reserved"),
        ({"_timestamp": 1}, "'_timestamp' is reserved"),
        ({"_runtime": 1}, "'_runtime' is reserved"),
        ({"k" * 257: 1}, "longer than 256"),
        ({"k" * 200: {"j" * 60: 1}}, "longer than 256"),
    ],
)
def test_bad_keys_are_rejected(run, data, fragment):
    """Non-string, empty, over-long and reserved keys raise InvalidValueError (a ValueError)."""
    with pytest.raises(InvalidValueError, match=fragment):
        run.log(data)
    assert run.step == 0


@pytest.mark.parametrize("data", [[("a", 1)], None, 5, "a=1", ("a", 1)])
def test_log_of_a_non_dict_is_rejected(run, data):
    """log() takes a mapping; anything else raises naming the type it got."""
    with pytest.raises(InvalidValueError, match=f"not {type(data).__name__}"):
        run.log(data)


@pytest.mark.parametrize("step", [-1, 1.5, True, False, "3", float("nan"), [1], object()])
def test_bad_step_is_rejected_naming_step(run, step):
    """step must be an integer >= 0: negative, fractional, bool, str, NaN are rejected naming step."""
    with pytest.raises(InvalidArgumentError, match=r"step"):
        run.log({"a": 1}, step=step)
    assert run.step == 0


def test_infinite_step_is_rejected_naming_step(run):
    """step=inf is not an integer: InvalidArgumentError naming step, not a raw OverflowError."""
    with pytest.raises(InvalidArgumentError, match="step"):
        run.log({"a": 1}, step=float("inf"))


def test_integral_step_types_are_accepted(run):
    """numpy integers and integral floats are accepted as steps."""
    run.log({"a": 1}, step=np.int64(2), commit=True)
    run.log({"a": 2}, step=4.0, commit=True)
    assert run.step == 5
    assert [r["_step"] for r in rows_after(run)] == [2, 4]


# ---------------------------------------------------------------- the caller's dict is copied


def test_mutating_the_logged_dict_afterwards_changes_nothing_sent(run):
    """log() copies: mutating the dict, nested dicts or lists after the call (fast path, slow path,
    and a pending commit=False row) does not change what is sent."""
    flat = {"a": 1.0}
    run.log(flat)  # slow path (first sight of "a")
    flat["a"] = 100.0
    run.log(flat)  # fast path
    flat["a"] = 200.0
    flat["b"] = 1
    nested = {"n": {"x": 1}, "l": [1, 2]}
    run.log(nested, commit=False)
    nested["n"]["x"] = 99
    nested["l"].append(3)
    nested["new"] = 5
    run.log({"c": 3})
    nested["l"][0] = 42
    rows = rows_after(run)
    assert rows == [
        {"_step": 0, "_late": False, "a": 1.0},
        {"_step": 1, "_late": False, "a": 100.0},
        {"_step": 2, "_late": False, "n.x": 1, "l": [1, 2], "c": 3},
    ]


# ---------------------------------------------------------------- fast path == slow path

_KEYS = ["loss", "acc", "lr", "flag", "n"]
_fast_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),  # beyond: the slow path refuses (test above)
    st.integers(min_value=-10, max_value=10),
    st.booleans(),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dicts=st.lists(st.dictionaries(st.sampled_from(_KEYS), _fast_values, max_size=5), min_size=1, max_size=12))
def test_fast_path_and_slow_path_produce_identical_rows(dicts):
    """The same sequence of flat float/int/bool dicts logged through the fast path (known keys) and
    through the slow path (commit=True forces it) yields identical rows, value types included, and
    the same summary."""
    fast, slow = offline_run(), offline_run()
    try:
        prime = {k: 0 for k in _KEYS}
        fast.log(prime)
        slow.log(prime, commit=True)

        def no_slow_path(*args):
            raise AssertionError("expected the fast path")

        fast._log_slow = no_slow_path  # every call below must take the fast path
        for d in dicts:
            fast.log(d)
            slow.log(d, commit=True)
        assert fast.step == slow.step == len(dicts) + 1
        fast_rows, slow_rows = rows_after(fast), rows_after(slow)
        assert [typed(r) for r in fast_rows] == [typed(r) for r in slow_rows]
        for row, d in zip(slow_rows[1:], dicts):  # and the values are the logged ones
            assert {k: v for k, v in row.items() if not k.startswith("_")}.keys() == d.keys()
            for k, v in d.items():
                want = float(v) if type(v) is int and not -(2**63) <= v < 2**63 else v
                assert row[k] == want or (math.isnan(row[k]) and math.isnan(want))
        assert typed(dict(fast.summary)) == typed(dict(slow.summary))
    finally:
        close(fast)
        close(slow)
