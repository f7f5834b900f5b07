"""The fast path of ``Run.log`` (issue 11) for ``step=``, ``commit=``, numpy scalars and torch tensors stores
exactly what the slow path (``Run._log_slow``: flatten + validation) stores: same ops, same rows, same value types, same
step bookkeeping; and every call-site error of issue 9 still raises at the call.

Runs are offline (no agent): the ops ``log()`` appends are compared directly, and assembled into batches
decoded by the agent's own decoder (``support.offline.rows_after``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.errors import InvalidArgumentError, InvalidValueError
from client.fastconv import NumpyRow, resolve_numpy
from support.offline import SlowCounter, close, final_rows, offline_run

INT64 = (-(1 << 63), (1 << 63) - 1)
# "train.loss" collides with {"train": {"loss": ...}}; {"train.x": {"y": ...}} with {"train": {"x.y": ...}}
KEYS = ["loss", "acc", "a/b", "n", "train.loss", "train.x"]
SUBKEYS = ["loss", "acc", "x.y", "y"]


def _ops(run: Any) -> list[tuple]:
    """The ops appended so far, with the timestamp left out and each value as (type name, repr); the numpy
    scalars of a NumpyRow (kept by the fast path for the I/O thread) as the I/O thread converts them."""
    items = list(run._writer.ops)
    out = []
    for i in range(0, len(items), 4):
        kind, step, _t, data = items[i : i + 4]
        if type(data) is NumpyRow:
            data = dict(data)
            resolve_numpy(data)
        out.append((kind, step, [(k, type(v).__name__, repr(v)) for k, v in data.items()]))
    return out


def _typed_rows(rows: list[dict]) -> list[list]:
    return [[(k, type(v).__name__, repr(v)) for k, v in sorted(r.items())] for r in rows]


@pytest.fixture
def run():
    r = offline_run()
    yield r
    close(r)


try:  # in the test extra where a CPU build exists (x86_64, Python 3.11); elsewhere the numpy forms still run
    import torch
except ImportError:  # pragma: no cover
    torch = None

_torch_values = (
    []
    if torch is None
    else [
        st.floats(width=32).map(lambda f: torch.tensor(f, dtype=torch.float32)),  # torch: converted at the call
        st.floats(width=16).map(lambda f: torch.tensor(f, dtype=torch.bfloat16)),
        st.integers(INT64[0], INT64[1]).map(lambda i: torch.tensor(i, dtype=torch.int64)),
        st.booleans().map(torch.tensor),
        st.lists(st.floats(width=32), min_size=2, max_size=3).map(torch.tensor),  # a list: the slow path
    ]
)
_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(INT64[0], INT64[1]),
    st.booleans(),
    st.floats(width=32, allow_nan=False).map(np.float32),
    st.floats(width=16, allow_nan=False).map(np.float16),
    st.floats(allow_nan=False).map(np.float64),
    st.integers(INT64[0], INT64[1]).map(np.int64),
    st.integers(-(1 << 31), (1 << 31) - 1).map(np.int32),
    st.integers(0, 255).map(np.uint8),
    st.integers(0, (1 << 64) - 1).map(np.uint64),  # beyond int64: raises on both paths
    st.floats(allow_nan=False).map(np.longdouble),  # exact in float64
    st.integers(1, 9).map(lambda i: np.longdouble(1) / np.longdouble(3 * i)),  # no exact float64: raises on both
    st.booleans().map(np.bool_),
    st.floats(width=32).map(lambda f: np.array(f, dtype=np.float32)),  # 0-d arrays
    st.integers(INT64[0], INT64[1]).map(lambda i: np.array(i, dtype=np.int64)),
    st.booleans().map(np.array),
    st.lists(st.floats(allow_nan=False), min_size=2, max_size=3).map(np.array),  # a list: the slow path
    st.sampled_from(["text", None]),  # the slow path only (the key is known after it all the same)
    *_torch_values,
)
_dicts = st.dictionaries(
    st.sampled_from(KEYS + ["train", "val"]),
    st.one_of(_values, st.dictionaries(st.sampled_from(SUBKEYS), _values, max_size=3)),
    max_size=4,
)
_calls = st.lists(
    st.tuples(
        _dicts,
        st.sampled_from(["none", "cur", "next", "jump", "late"]),
        st.integers(1, 5),
        st.sampled_from([None, True, False]),
    ),
    min_size=1,
    max_size=40,
)


def _outcome(log: Any, data: dict, *args: Any, **kwargs: Any) -> str | None:
    """None, or the message of the ValueError the call raised (a nested key colliding with a dotted one)."""
    try:
        log(dict(data), *args, **kwargs)
    except InvalidValueError as exc:
        return str(exc)
    return None


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(calls=_calls)
def test_random_log_sequences_store_the_same_as_the_slow_path(calls):
    """Random sequences of log(d, step=?, commit=?) with Python and numpy scalars and torch tensors (0-d and
    2-3 elements), nested one level deep
    (with collisions of nested and dotted keys, which raise the same error on both): the fast path (Run.log)
    appends the same ops (kind, step, keys, value types and values: numpy scalars as Python numbers) and
    leaves the same step as _log_slow called directly, and both runs store the same rows (types included)."""
    fast, slow = offline_run(name="fast"), offline_run(name="slow")
    try:
        for data, how, jump, commit in calls + calls:  # the second pass finds every key and type known
            cur = fast._step
            assert slow._step == cur
            step = {"none": None, "cur": cur, "next": cur + 1, "jump": cur + jump, "late": max(cur - jump, 0)}[how]
            assert _outcome(fast.log, data, step=step, commit=commit) == _outcome(slow._log_slow, data, step, commit)
            assert fast._step == slow._step
            assert fast._late == slow._late
        assert _ops(fast) == _ops(slow)
        assert _typed_rows(final_rows(fast)) == _typed_rows(final_rows(slow))
    finally:
        close(fast)
        close(slow)


def test_each_fast_form_skips_the_slow_path_once_keys_are_known(run):
    """After one slow call per (key, type), log(d, step=cur/next/jump), commit=False/True and numpy scalars
    (float16/32/64, int8..int64, uint8..uint32, bool_) never call _log_slow; a late step does."""
    np_values = {
        "f16": np.float16(0.5),
        "f32": np.float32(0.1),
        "f64": np.float64(2.5),
        "i8": np.int8(-3),
        "i16": np.int16(300),
        "i32": np.int32(-70000),
        "i64": np.int64(INT64[1]),
        "u8": np.uint8(255),
        "u16": np.uint16(65535),
        "u32": np.uint32(4294967295),
        "b": np.bool_(True),
    }
    run.log({"loss": 0.5, "n": 1, "ok": False}, commit=False)
    run.log(np_values)  # commits row 0
    counter = SlowCounter(run)
    run.log({"loss": 0.25}, step=1)  # == current: merge
    run.log({"n": 2}, step=1, commit=False)
    run.log({"ok": True}, step=3)  # jump: commits the pending row 1
    run.log({"loss": 1.0}, commit=False)
    run.log({"n": 3}, commit=True)  # commits row 3
    run.log({"loss": 2.0}, step=4, commit=True)
    run.log(np_values, step=6)
    run.log(dict(np_values, loss=3.0), step=7, commit=True)
    run.log(np_values)
    assert counter.calls == 0
    run.log({"loss": 9.0}, step=2)  # late: the slow path keeps it as a late update
    assert counter.calls == 1
    assert run._step == 9 and run._late == 1
    rows = final_rows(run)
    converted = {
        "f16": 0.5,
        "f32": float(np.float32(0.1)),
        "f64": 2.5,
        "i8": -3,
        "i16": 300,
        "i32": -70000,
        "i64": INT64[1],
        "u8": 255,
        "u16": 65535,
        "u32": 4294967295,
        "b": True,
    }
    assert rows == [
        dict(converted, _step=0, _late=False, loss=0.5, n=1, ok=False),
        {"_step": 1, "_late": False, "loss": 0.25, "n": 2},
        {"_step": 3, "_late": False, "ok": True, "loss": 1.0, "n": 3},
        {"_step": 4, "_late": False, "loss": 2.0},
        dict(converted, _step=6, _late=False),
        dict(converted, _step=7, _late=False, loss=3.0),
        dict(converted, _step=8, _late=False),
        {"_step": 2, "_late": True, "loss": 9.0},
    ]
    for row in rows:
        for k in ("b", "ok"):
            if k in row:
                assert type(row[k]) is bool
        for k in ("f16", "f32", "f64", "loss"):
            if k in row:
                assert type(row[k]) is float
        for k in ("i8", "i64", "u32", "n"):
            if k in row:
                assert type(row[k]) is int


@pytest.mark.parametrize("step", [-1, 1 << 62, 1.5, True, "3", object()])
def test_a_bad_step_still_raises_at_the_call_for_known_keys(run, step):
    """A step that is not an int in [0, 2**62) raises InvalidArgumentError even when every key is known
    (the fast path leaves it to the slow path's check), and nothing is logged."""
    run.log({"loss": 0.5})
    with pytest.raises(InvalidArgumentError):
        run.log({"loss": 0.5}, step=step)
    assert run._step == 1


@pytest.mark.parametrize(
    "value",
    [np.uint64(1 << 63), np.longdouble(1) / np.longdouble(3), np.timedelta64(3, "s"), np.datetime64("2020-01-01")],
)
def test_numpy_values_the_fast_path_does_not_take_still_raise(run, value):
    """uint64 beyond int64, an inexact longdouble, timedelta64 and datetime64 under a key known with a
    float and an np.float32 still raise ValueError at the call, with step= and commit= too."""
    run.log({"x": 0.5})
    run.log({"x": np.float32(0.5)}, step=3)
    for kwargs in ({}, {"step": 3}, {"commit": False}):
        with pytest.raises(InvalidValueError):
            run.log({"x": value}, **kwargs)


def test_keys_stay_validated_with_step_and_commit(run):
    """Unknown keys with control characters, reserved keys and nested/dotted collisions raise with step=
    and commit= exactly as without."""
    run.log({"a.b": 1.0, "x": 1.0})
    for kwargs in ({"step": 0}, {"step": 5}, {"commit": False}, {"commit": True}):
        with pytest.raises(InvalidValueError):
            run.log({"bad\x1bkey": 1.0}, **kwargs)
        with pytest.raises(InvalidValueError):
            run.log({"_step": 1.0}, **kwargs)
        with pytest.raises(InvalidValueError):
            run.log({"a": {"b": 2.0}, "a.b": 1.0}, **kwargs)
        with pytest.raises(InvalidValueError):
            run.log({"y": 1 << 64}, **kwargs)  # an unknown key: range-checked at the call


def test_log_after_finish_still_raises_with_step_and_commit():
    """After finish(), log(d, step=...) and log(d, commit=...) of known keys (and numpy scalars) raise."""
    from client.errors import UsageError

    run = offline_run()
    run.log({"loss": 0.5, "f": np.float32(1)})
    close(run)
    run._writer = None  # offline: finish() only marks the run finished
    run.finish()
    for kwargs in ({"step": 1}, {"commit": False}, {"commit": True}):
        with pytest.raises(UsageError):
            run.log({"loss": 0.5, "f": np.float32(1)}, **kwargs)


def test_nested_dicts_take_the_fast_path_by_a_cached_key_plan(run):
    """{"train": {...}} of sub keys flattened before is stored as "train.<key>" without _log_slow, numpy
    scalars inside converted; a new sub key, a deeper dict or a collision with a dotted key goes the slow
    way (the collision still raises ValueError at the call)."""
    run.log({"train.loss": 3.0}, commit=False)  # a dotted key known to the fast path too (merged, then replaced)
    run.log({"train": {"loss": 0.5, "acc": np.float32(0.25), "ok": True}, "lr": 0.1})
    counter = SlowCounter(run)
    run.log({"train": {"loss": 0.4, "acc": np.float32(0.5)}, "lr": 0.2}, step=1)
    run.log({"train": {"ok": False}}, commit=True)
    run.log({"train": {}, "lr": 0.3})
    assert counter.calls == 0
    run.log({"train": {"new": 1.0}})  # a sub key not seen before
    run.log({"train": {"loss": {"deep": 1.0}}})  # deeper nesting
    assert counter.calls == 2
    with pytest.raises(InvalidValueError):
        run.log({"train": {"loss": 1.0}, "train.loss": 2.0})
    with pytest.raises(InvalidValueError):
        run.log({"train.loss": 2.0, "train": {"loss": 1.0}}, step=9)
    assert counter.calls == 4
    assert final_rows(run) == [
        {"_step": 0, "_late": False, "train.loss": 0.5, "train.acc": 0.25, "train.ok": True, "lr": 0.1},
        {"_step": 1, "_late": False, "train.loss": 0.4, "train.acc": 0.5, "lr": 0.2, "train.ok": False},
        {"_step": 2, "_late": False, "lr": 0.3},
        {"_step": 3, "_late": False, "train.new": 1.0},
        {"_step": 4, "_late": False, "train.loss.deep": 1.0},
    ]


def test_nested_sub_keys_are_validated_before_they_are_cached(run):
    """A nested sub key with a control character, or a numpy value refused at the call, raises every time
    (a failed call teaches the fast path nothing)."""
    run.log({"train": {"loss": 0.5}})
    for _ in range(2):
        with pytest.raises(InvalidValueError):
            run.log({"train": {"bad\x1b": 1.0}}, step=5)
        with pytest.raises(InvalidValueError):
            run.log({"train": {"loss": np.uint64(1 << 63)}}, commit=False)
    assert run._nested == {"train": {"loss": "train.loss"}}


def test_zero_d_arrays_store_their_value_when_logged(run):
    """A 0-d numpy array under a key seen with one takes the fast path and stores its value at the call as
    a Python number (later in-place changes do not reach the row); a 0-d array of a refused dtype or a 1-d
    array under that key goes the slow way (refused at the call, or stored as a list)."""
    a = np.array(0.5, dtype=np.float32)
    run.log({"x": a, "n": np.array(7), "ok": np.array(True)})
    counter = SlowCounter(run)
    a[()] = 0.25
    run.log({"x": a, "n": np.array(8), "ok": np.array(False)}, step=1)
    a[()] = 99.0
    assert counter.calls == 0
    with pytest.raises(InvalidValueError):
        run.log({"x": np.array(np.datetime64("2020-01-01"))}, commit=False)
    run.log({"x": np.array([1.0, 2.0])}, step=2)
    assert counter.calls == 2
    rows = final_rows(run)
    assert rows == [
        {"_step": 0, "_late": False, "x": 0.5, "n": 7, "ok": True},
        {"_step": 1, "_late": False, "x": 0.25, "n": 8, "ok": False},
        {"_step": 2, "_late": False, "x": [1.0, 2.0]},
    ]
    assert [type(r["ok"]) for r in rows[:2]] == [bool, bool] and type(rows[1]["n"]) is int


def test_late_steps_after_the_first_take_the_fast_path(run, caplog):
    """The first log(d, step=s<cur) goes the slow way (it warns, once); later late steps of known keys take the
    fast path, with commit=None/True/False alike (ignored, as on the slow path): each is counted in
    run._late / stats and stored as a late row of its step, with numpy values converted; a late step with
    a commit that is not a bool goes the slow way again."""
    run.log({"loss": 0.5, "f": np.float32(0.25)}, step=5)
    run.log({"loss": 0.75}, step=6)  # commits row 5
    with caplog.at_level("WARNING", logger="rankwise"):
        run.log({"loss": 1.0}, step=1)  # the first late step: slow, warns
        counter = SlowCounter(run)
        run.log({"loss": 2.0, "f": np.float32(0.5)}, step=2)
        run.log({"loss": 3.0}, step=0, commit=False)
        run.log({"f": np.float32(1.5)}, step=4, commit=True)
        assert counter.calls == 0
        run.log({"loss": 4.0}, step=3, commit=1)  # not a bool: the slow path (which takes it as True)
        assert counter.calls == 1
    assert sum("below the current step" in r.getMessage() for r in caplog.records) == 1
    assert run._step == 6 and run._late == 5 and run.stats["late_updates"] == 5
    assert final_rows(run) == [
        {"_step": 5, "_late": False, "loss": 0.5, "f": 0.25},
        {"_step": 1, "_late": True, "loss": 1.0},
        {"_step": 2, "_late": True, "loss": 2.0, "f": 0.5},
        {"_step": 0, "_late": True, "loss": 3.0},
        {"_step": 4, "_late": True, "f": 1.5},
        {"_step": 3, "_late": True, "loss": 4.0},
        {"_step": 6, "_late": False, "loss": 0.75},
    ]


def test_numpy_types_are_learned_by_type_not_per_key(run):
    """A numpy scalar type accepted once (under any key) takes the fast path under every known key, also a key
    first logged with a float or a string, and stores the float64/int/bool the slow path makes of it."""
    run.log({"a": 0.5, "b": "text", "c": 1})
    run.log({"x": np.float32(0.1), "i": np.int64(-7), "t": np.bool_(True)})
    counter = SlowCounter(run)
    run.log({"a": np.float32(0.1), "b": np.int64(1 << 40), "c": np.bool_(False)})
    run.log({"b": 2.5, "x": 1})  # "b" held a str: the key was validated all the same
    assert counter.calls == 0
    rows = final_rows(run)
    assert rows == [
        {"_step": 0, "_late": False, "a": 0.5, "b": "text", "c": 1},
        {"_step": 1, "_late": False, "x": float(np.float32(0.1)), "i": -7, "t": True},
        {"_step": 2, "_late": False, "a": float(np.float32(0.1)), "b": 1 << 40, "c": False},
        {"_step": 3, "_late": False, "b": 2.5, "x": 1},
    ]
    assert [type(rows[2][k]) for k in ("a", "b", "c")] == [float, int, bool]


@pytest.mark.parametrize("first", ["dotted", "nested"])
def test_nested_collisions_raise_whichever_form_was_learned_first(run, first):
    """{"a": {"b": 1}, "a.b": 2} and {"a": {"b.c": 1}, "a.b": {"c": 2}} raise ValueError at the call however
    the names were learned (the dotted key first or the nested one), while each form alone keeps taking the
    fast path and stores its values under the flattened names."""
    forms = [{"a.b": 1.0, "a.b.c": 2.0}, {"a": {"b": 1.0, "b.c": 2.0}}, {"a.b": {"c": 3.0}}]
    for data in forms if first == "dotted" else forms[::-1]:
        run.log(data)
    counter = SlowCounter(run)
    for data in forms:
        run.log(data)
    assert counter.calls == 0
    for bad in (
        {"a": {"b": 1.0}, "a.b": 2.0},
        {"a.b": 2.0, "a": {"b": 1.0}},
        {"a": {"b.c": 1.0}, "a.b": {"c": 2.0}},
        {"a.b": {"c": 2.0}, "a.b.c": 1.0},
    ):
        with pytest.raises(InvalidValueError, match="given twice"):
            run.log(bad, commit=False)
    rows = final_rows(run)
    assert len(rows) == 6 and rows[3:] == [
        {"_step": 3, "_late": False, "a.b": 1.0, "a.b.c": 2.0},
        {"_step": 4, "_late": False, "a.b": 1.0, "a.b.c": 2.0},
        {"_step": 5, "_late": False, "a.b.c": 3.0},
    ]


def test_a_numpy_row_wider_than_the_limit_still_raises_when_its_keys_are_known(run):
    """Keys learned over two calls (5001 numpy values each): one call with all of them, wider than
    MAX_KEYS_PER_ROW (10,000), is not taken by the fast path; the slow path raises ValueError naming the limit."""
    from client.values import MAX_KEYS_PER_ROW

    half = MAX_KEYS_PER_ROW // 2 + 1
    run.log({f"a{i}": np.float32(i) for i in range(half)})
    run.log({f"b{i}": np.float32(i) for i in range(half)})
    wide = {f"{p}{i}": np.float32(i) for p in "ab" for i in range(half)}
    with pytest.raises(InvalidValueError, match=f"more than {MAX_KEYS_PER_ROW} keys"):
        run.log(wide)
    assert run._step == 2


def test_numpy_scalars_are_kept_for_the_io_thread_and_stored_as_python_numbers(run):
    """Once their keys and types are known, a dict of numpy scalars (and Python numbers) is copied into a
    NumpyRow as it is (no conversion on the training thread); the rows the I/O thread assembles hold the
    Python numbers the slow path stores (float32 -> the same float, int64 -> int, bool_ -> bool). A 0-d array
    (mutable) is still read at the call."""
    first = {"f": np.float32(0.1), "i": np.int64(-3), "b": np.bool_(True), "x": 1.5, "z": np.array(2.0)}
    run.log(dict(first))
    second = {"f": np.float32(0.2), "i": np.int64(1 << 62), "b": np.bool_(False), "x": 2.5}
    run.log(dict(second))
    arr = np.array(7.0)
    run.log({"f": np.float32(0.3), "z": arr})
    arr[()] = -1.0  # after the call: not logged
    items = list(run._writer.ops)
    assert type(items[7]) is NumpyRow and type(items[7]["f"]) is np.float32  # the second call, kept as is
    assert type(items[11]) is dict and items[11]["z"] == 7.0  # the 0-d array: converted at the call
    rows = final_rows(run)
    row = {"_late": False}  # (the decoder's bookkeeping of each row)
    assert _typed_rows(rows) == _typed_rows(
        [
            {**row, "_step": 0, "f": float(np.float32(0.1)), "i": -3, "b": True, "x": 1.5, "z": 2.0},
            {**row, "_step": 1, "f": float(np.float32(0.2)), "i": 1 << 62, "b": False, "x": 2.5},
            {**row, "_step": 2, "f": float(np.float32(0.3)), "z": 7.0},
        ]
    )
