"""Every form of ``log()`` the ``log_forms`` benchmark times (issue 11) stores exactly what was logged, end to
end: a real agent, the rows read back with ``rankwise.Api``, compared value by value and type by type
(``repr`` of each value: ``-0.0``, NaN, ±Inf, subnormals and int64 bounds included) and step by step.

Each form logs ``N`` calls; after the first call of a key set (the validating slow path, which teaches the
fast path its keys and value types) every further call must take the fast path (``Run._log_slow`` is
counted), except where the documented rules may send a call the slow way (the first late step, which
warns). Values that can change after the call (a numpy 0-d array, a torch tensor modified in
place) store their value at the call (README "Performance")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import rankwise
from client import fastconv
from support.offline import SlowCounter

N = 300  # calls per form (the first takes the slow path, the other N - 1 the fast one)
INT64 = (-(1 << 63), (1 << 63) - 1)
FLOATS = [0.0, -0.0, float("inf"), float("-inf"), float("nan"), 5e-324, 1.7976931348623157e308, 0.1, -2.5]


def _stored(group: str) -> list[dict[str, Any]]:
    """The run's history as stored, without the row times (set by the client, not logged)."""
    rows = rankwise.Api().group("forms", group).run(rank=0).history()
    return [{k: v for k, v in r.items() if k not in ("_timestamp", "_runtime")} for r in rows]


def _typed(row: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {k: (type(v).__name__, repr(v)) for k, v in row.items()}


def _assert_same(stored: list[dict], expected: list[dict]) -> None:
    """Same steps, same keys, same values of the same Python types, row by row (first difference named)."""
    assert [r["_step"] for r in stored] == [r["_step"] for r in expected]
    for got, want in zip(stored, expected):
        assert _typed(got) == _typed(want), f"row at step {want['_step']}"


def _logged(group: str, calls: Callable[[Any], list[dict]], slow_after_first: int | range = 0) -> None:
    """Start a run, make the form's calls (``calls(run)`` returns the rows it expects), finish, and
    compare. ``slow_after_first``: calls after the first that take the slow path (a key set's first call);
    a range where the documented rules allow more (a late step, a value checked on every call)."""
    run = rankwise.init(project="forms", group=group, rank=0, world_size=1)
    counter = SlowCounter(run)
    expected = calls(run)
    allowed = range(slow_after_first, slow_after_first + 1) if isinstance(slow_after_first, int) else slow_after_first
    assert counter.calls - 1 in allowed, f"{counter.calls} calls did not take the fast path"
    run.finish()
    assert run.stats["drops"] == {}
    _assert_same(_stored(group), expected)


# ---------------------------------------------------------------- Python values


def _floats(i: int) -> dict[str, float]:
    return {"loss": 1.0 / (i + 1), "acc": 0.5 + i * 1e-9, "lr": 3e-4, "edge": FLOATS[i % len(FLOATS)]}


def test_flat_python_floats_store_every_value_exactly():
    """``log(d)`` of flat Python floats (NaN, ±Inf, -0.0, subnormal, max included): row i at step i holds d_i."""

    def calls(run: Any) -> list[dict]:
        for i in range(N):
            run.log(_floats(i))
        return [{"_step": i, **_floats(i)} for i in range(N)]

    _logged("floats", calls)


@pytest.mark.parametrize("how", ["run.log", "rankwise.log"])
def test_step_equal_to_the_call_index_stores_each_row_at_its_step(how):
    """``log(d, step=i)`` through the run and through module-level ``rankwise.log``: each row is committed at
    its step when the next step arrives (the last one by ``finish()``), values exact."""

    def calls(run: Any) -> list[dict]:
        log = run.log if how == "run.log" else rankwise.log
        for i in range(N):
            log(_floats(i), step=i)
        return [{"_step": i, **_floats(i)} for i in range(N)]

    _logged(f"step-{how}", calls)


def test_commit_false_then_a_commit_stores_one_merged_row_per_step():
    """``log(a, commit=False)`` then ``log(b)`` (or ``log(b, commit=True)`` every other row): one row per pair
    holding both dicts; a key given in both keeps the later value."""

    def calls(run: Any) -> list[dict]:
        out = []
        for i in range(N):
            a = {"loss": 1.0 / (i + 1), "acc": FLOATS[i % len(FLOATS)]}
            b = {"lr": 3e-4 * i, "loss": -float(i)}  # "loss" again: the later merge wins
            run.log(a, commit=False)
            if i % 2:
                run.log(b, commit=True)
            else:
                run.log(b)
            out.append({"_step": i, "loss": -float(i), "acc": a["acc"], "lr": b["lr"]})
        return out

    _logged("commit", calls, 1)  # the first log(b): key "lr" not seen before


def test_nested_dicts_store_under_dotted_keys():
    """``{"train": {...}, "opt": {...}}`` with floats, ints, bools and a numpy float32 inside: stored flattened
    with "." (``train.loss``), each value with its type."""

    def calls(run: Any) -> list[dict]:
        out = []
        for i in range(N):
            f32 = np.float32(1.0 / (i + 3))
            run.log(
                {
                    "train": {"loss": FLOATS[i % len(FLOATS)], "acc": f32},
                    "opt": {"lr": 3e-4, "step": i * 7, "warm": i < 10},
                }
            )
            out.append(
                {
                    "_step": i,
                    "train.loss": FLOATS[i % len(FLOATS)],
                    "train.acc": float(f32),
                    "opt.lr": 3e-4,
                    "opt.step": i * 7,
                    "opt.warm": i < 10,
                }
            )
        return out

    _logged("nested", calls)


def test_slash_keys_are_stored_as_given():
    """Keys with "/" (and a "." inside a flat key) are stored unchanged, values exact."""

    def calls(run: Any) -> list[dict]:
        out = []
        for i in range(N):
            d = {"train/loss": 1.0 / (i + 1), "eval/acc/top1": i / 7, "a/b": i, "sys/gpu.0/util": i % 3 == 0}
            run.log(d)
            out.append({"_step": i, **d})
        return out

    _logged("slash", calls)


def test_ints_and_bools_keep_their_types_and_int64_bounds():
    """Python ints (up to the int64 bounds) store as ints, bools as bools, and a key whose values alternate
    int / bool / float keeps each value's type."""

    def calls(run: Any) -> list[dict]:
        out = []
        for i in range(N):
            d = {
                "epoch": i // 10,
                "tokens": i * 512,
                "big": INT64[1] - i,
                "small": INT64[0] + i,
                "done": i % 2 == 0,
                "mixed": (i, i % 2 == 0, i + 0.5)[i % 3],
            }
            run.log(d)
            out.append({"_step": i, **d})
        return out

    _logged("ints-bools", calls)


# ---------------------------------------------------------------- numpy


def _numpy_types() -> tuple[list[type], list[type]]:
    """Every numeric numpy scalar type (bool, signed, unsigned, floating; aliases such as ``longlong`` that
    are their own type too), split into those the fast path converts as they are (floats of at most 64 bits,
    signed ints of at most 64, unsigned of less than 64 bits, bool) and those it converts after a cheap check
    of the value (uint64 within int64, a longdouble with an exact float64; anything else goes the slow way,
    which raises: tests/client/test_log_fast_forms.py)."""
    fast, slow = [], []
    for t in sorted(set(np.sctypeDict.values()), key=lambda t: t.__name__):
        if not isinstance(t, type) or not issubclass(t, (np.bool_, np.integer, np.floating)):
            continue
        if issubclass(t, (np.timedelta64, np.datetime64)):
            continue
        size = np.dtype(t).itemsize
        if issubclass(t, np.unsignedinteger) and size >= 8 or issubclass(t, np.floating) and size > 8:
            slow.append(t)
        else:
            fast.append(t)
    return fast, slow


def _numpy_value(t: type, i: int) -> Any:
    """Row i's value of type ``t``: the type's bounds, zero and ordinary values (ints within int64 for uint64,
    floats exact in float64 for longdouble: what the slow path accepts)."""
    if t is np.bool_:
        return t(i % 2 == 0)
    if issubclass(t, np.integer):
        info = np.iinfo(t)
        return t((info.min, min(info.max, INT64[1]), 0, i % 100)[i % 4])
    info = np.finfo(t)
    edge = (
        float(info.max) if info.bits <= 64 else 2.0**1000,
        -0.0,
        float("nan"),
        float("-inf"),
        1.0 / (i + 1),
        float(info.smallest_subnormal) if info.bits <= 64 else 2.0**-1074,
    )
    return t(edge[i % len(edge)])


def _python(v: Any) -> Any:
    """What a numpy value of a numeric type is stored as: the Python bool / int / float of the same value."""
    if isinstance(v, np.ndarray):
        v = v[()]
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    return float(v)


@pytest.mark.parametrize("which", ["fast-types", "checked-types"])
def test_numpy_scalars_and_0d_arrays_of_every_numeric_dtype(which):
    """A scalar and a 0-d array of every numeric numpy type per row (bounds, -0.0, NaN, -Inf, subnormals):
    stored as the Python bool / int / float of the same value; every call after the first takes the fast
    path, "checked-types" (uint64, longdouble) too (their converters check each value).
    A 0-d array changed after ``log()`` stores its value at the call."""
    fast, slow = _numpy_types()
    types = fast if which == "fast-types" else slow
    assert types, "no numpy type in this class"

    def calls(run: Any) -> list[dict]:
        out = []
        held = np.array(0.0)  # one 0-d array, logged every call, changed in place after each
        for i in range(N):
            d: dict[str, Any] = {}
            for t in types:
                d[f"s_{t.__name__}"] = v = _numpy_value(t, i)
                d[f"a_{t.__name__}"] = np.array(v, dtype=t)
            held[()] = i / 4
            d["held"] = held
            row = {"_step": i, **{k: _python(v) for k, v in d.items()}}
            run.log(d)
            held[()] = -1.0  # after the call: not logged
            out.append(row)
        return out

    _logged(f"numpy-{which}", calls)


# ---------------------------------------------------------------- torch

TORCH_MODES = ["cpu", "cpu-deferred", "cuda"]


@pytest.mark.parametrize("mode", TORCH_MODES)
def test_torch_0d_tensors_store_the_value_at_the_call(mode, monkeypatch):
    """0-d tensors of float16/bfloat16/float32/float64, int8..int64, uint8 and bool store ``t.item()`` as it was
    at the call (its Python type: bool, int, float); a tensor modified in place right after ``log()`` stores
    its value before the change. "cpu": read at the call; "cpu-deferred": CPU tensors sent the CUDA way
    (``fastconv.DEFER_CPU_TENSORS``: a copy at the call, converted on the I/O thread); "cuda": on a GPU when
    there is one."""
    torch = pytest.importorskip("torch")
    if mode == "cuda" and not torch.cuda.is_available():
        pytest.skip("torch.cuda.is_available() is False")
    monkeypatch.setattr(fastconv, "DEFER_CPU_TENSORS", mode == "cpu-deferred")
    dev = "cuda" if mode == "cuda" else "cpu"
    dtypes = [
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.uint8,
        torch.bool,
    ]

    def value(dt: Any, i: int) -> Any:
        if dt == torch.bool:
            return i % 2 == 0
        if dt.is_floating_point:
            return (FLOATS + [1.0 / (i + 1), float(torch.finfo(dt).max)])[i % (len(FLOATS) + 2)]
        info = torch.iinfo(dt)
        return (info.min, info.max, 0, i % 100)[i % 4]

    def calls(run: Any) -> list[dict]:
        out = []
        w = torch.zeros((), dtype=torch.float32, device=dev)  # modified in place after each call
        c = torch.zeros((), dtype=torch.int64, device=dev)
        for i in range(N):
            d = {str(dt).removeprefix("torch."): torch.tensor(value(dt, i), dtype=dt, device=dev) for dt in dtypes}
            w.fill_(i * 0.25)
            c.fill_(i)
            d["w"], d["c"] = w, c
            row = {"_step": i, **{k: t.item() for k, t in d.items()}}
            run.log(d)
            w.add_(1000.0)  # after the call: not logged
            c.mul_(-3)
            out.append(row)
        return out

    _logged(f"torch-{mode}", calls)


# ---------------------------------------------------------------- explicit steps


def test_explicit_steps_equal_next_jump_and_late():
    """Blocks of calls with explicit steps: next (s), equal (merged into row s), next (s+1, commits s), jump
    (s+5, commits s+1), late updates (a new key in row s+1, a row s+3 that had none, a key of row s
    overwritten: the later value wins), equal with ``commit=True`` (row s+5 committed, a key overwritten);
    the next block jumps by 20. Apart from a key's first call only late calls may take the slow path (the
    first late one does: it warns); each late call is counted in ``run.stats["late_updates"]``."""
    blocks = N // 8

    def calls(run: Any) -> list[dict]:
        out = []
        for b in range(blocks):
            s = 20 * b
            x = FLOATS[b % len(FLOATS)]
            run.log({"a": x, "n": b}, step=s)  # next (a jump from the previous block)
            run.log({"b": b % 2 == 0}, step=s)  # equal: merged
            run.log({"a": s + 0.5}, step=s + 1)  # next: commits row s
            run.log({"a": -1.0, "b": True}, step=s + 5)  # jump: commits row s+1
            run.log({"late": b}, step=s + 1)  # late: a new key in a committed row
            run.log({"a": 3.25}, step=s + 3)  # late: a step without a row
            run.log({"b": False, "n": -b}, step=s)  # late: overwrites row s's values
            run.log({"a": float(b)}, step=s + 5, commit=True)  # equal + commit: row s+5 with a overwritten
            out += [
                {"_step": s, "a": x, "n": -b, "b": False},
                {"_step": s + 1, "a": s + 0.5, "late": b},
                {"_step": s + 3, "a": 3.25},
                {"_step": s + 5, "a": float(b), "b": True},
            ]
        assert run.stats["late_updates"] == 3 * blocks
        return out

    # slow: the first call, the first with key "b" ({"a"} and {"a", "b"} are known keys then: fast), the
    # first with key "late", and at most the other late calls
    _logged("steps", calls, range(2, 2 + 3 * blocks))
