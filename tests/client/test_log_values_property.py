"""Property (issue 9, "Done when"): whatever Python, numpy or torch value ``log()`` is given, nested
however, either the call raises ``ValueError`` or the value reads back equal from the store through
``rankwise.Api`` (bools as bools, NaN as NaN), and the I/O thread is alive afterwards.

One run and one agent serve every example (each example is logged at its own step, everything is read
back at the end in one flush), so the test stays well under a minute. The one documented exception: an
int beyond int64 under a key the fast path already knows is not range-checked at the call (that would
slow ``log()`` down); the I/O thread drops that value and counts it as "bad value"."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import rankwise

torch = pytest.importorskip("torch")

INT64 = (-(1 << 63), (1 << 63) - 1)
SMALL_ARRAY = 32


class Refused(Exception):
    """The reference model says log() must raise ValueError for this value."""


# ---------------------------------------------------------------- the reference model of what is stored


def _scalar(v: Any) -> Any:
    """What a scalar (Python, numpy, torch item) is stored as, or Refused."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (np.timedelta64, np.datetime64, complex, np.complexfloating, np.void, bytes)):
        raise Refused
    if isinstance(v, (int, np.integer)):
        if not INT64[0] <= int(v) <= INT64[1]:
            raise Refused
        return int(v)
    if isinstance(v, np.floating) and v.dtype.itemsize > 8:
        f = float(v)
        if f != v and v == v:
            raise Refused
        return f
    if isinstance(v, (float, np.floating)):
        return float(v)
    if v is None:
        return None
    if isinstance(v, (str, np.str_)):
        return str(v)
    raise Refused


def _array(a: np.ndarray) -> Any:
    kind = a.dtype.kind
    if a.ndim == 0 or a.size == 1:
        if kind in "mMVSac":
            raise Refused
        item = a.reshape(()).item()
        if kind == "f" and a.dtype.itemsize > 8:
            item = a.reshape(())[()]
        return expected(item)
    if a.size > SMALL_ARRAY:
        raise AssertionError("strategies keep arrays small")
    if kind == "f" and a.dtype.itemsize > 8:
        exact = a.astype(np.float64)
        if not np.array_equal(exact, a, equal_nan=True):
            raise Refused
        a = exact
    if kind in "biuf":
        if kind == "u" and a.size and int(a.max()) > INT64[1]:
            raise Refused
        return a.tolist()
    if kind == "U" or (kind == "O" and a.ndim == 1):
        return expected(a.tolist())
    raise Refused


def _tensor(t: Any) -> Any:
    if t.numel() == 1:
        return expected(t.detach().reshape(()).item())
    if t.is_complex():
        raise Refused
    arr = (t.float() if t.dtype == torch.bfloat16 else t).numpy()
    return _array(arr)


def expected(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return _array(v)
    if isinstance(v, torch.Tensor):
        return _tensor(v)
    if isinstance(v, (list, tuple)):
        items = [expected(x) for x in v]
        if any(isinstance(x, list) for x in items):
            raise Refused  # nested lists
        return items
    if isinstance(v, str) and not _encodable(v):
        raise Refused
    return _scalar(v)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def flat_expected(data: dict, prefix: str = "") -> dict:
    out: dict = {}
    for k, v in data.items():
        if not k or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in k) or not _encodable(k):
            raise Refused
        full = prefix + k
        if isinstance(v, dict):
            for fk, fv in flat_expected(v, full + ".").items():
                if fk in out:
                    raise Refused
                out[fk] = fv
        else:
            if full in out or len(full) > 256:
                raise Refused
            out[full] = expected(v)
    return out


def same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN, and a bool only equal to a bool."""
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, float) and isinstance(b, (int, float)) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


# ---------------------------------------------------------------- strategies

_NUMPY_DTYPES = [
    np.bool_,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.float16,
    np.float32,
    np.float64,
    np.longdouble,
    np.complex64,
    np.complex128,
    np.clongdouble,
    np.dtype("m8[s]"),
    np.dtype("M8[ns]"),
    np.dtype("U3"),
    np.dtype("S3"),
]
_TORCH_DTYPES = ["float32", "float64", "float16", "bfloat16", "int64", "int32", "int8", "uint8", "bool", "complex64"]


@st.composite
def numpy_scalars(draw):
    dtype = np.dtype(draw(st.sampled_from(_NUMPY_DTYPES)))
    return draw(hnp.from_dtype(dtype))


@st.composite
def numpy_arrays(draw):
    dtype = np.dtype(draw(st.sampled_from(_NUMPY_DTYPES)))
    shape = draw(st.sampled_from([(), (1,), (0,), (2,), (5,), (SMALL_ARRAY,), (2, 3), (1, 1)]))
    return draw(hnp.arrays(dtype, shape))


@st.composite
def torch_tensors(draw):
    name = draw(st.sampled_from(_TORCH_DTYPES))
    shape = draw(st.sampled_from([(), (1,), (3,), (2, 2)]))
    n = int(np.prod(shape)) if shape else 1
    if name == "bool":
        data = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    elif name.startswith(("int", "uint")):
        info = np.iinfo(name)
        data = draw(st.lists(st.integers(int(info.min), int(info.max)), min_size=n, max_size=n))
    elif name == "complex64":
        data = [complex(x, 1) for x in draw(st.lists(st.floats(-1e3, 1e3), min_size=n, max_size=n))]
    else:
        finite = st.floats(-1e4, 1e4, width=16)
        data = draw(st.lists(st.one_of(finite, st.just(math.nan)), min_size=n, max_size=n))
    return torch.tensor(data, dtype=getattr(torch, name)).reshape(shape)


python_scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.text(st.characters(codec="utf-16", categories=["Cs", "Ll"]), max_size=3),  # lone surrogates
    st.none(),
    st.complex_numbers(max_magnitude=10),
    st.binary(max_size=3),
)
leaves = st.one_of(python_scalars, numpy_scalars(), numpy_arrays(), torch_tensors())
values = st.one_of(leaves, st.lists(leaves, max_size=4), st.tuples(leaves, leaves))
keys = st.one_of(st.sampled_from(["a", "b", "a.b", "c"]), st.text(max_size=4))
nested = st.recursive(values, lambda children: st.dictionaries(keys, children, max_size=3), max_leaves=6)


# ---------------------------------------------------------------- the property


def test_every_value_is_refused_at_the_call_or_reads_back_equal(rankwise_env):
    """For ~150 generated dicts ({"v": <nested value>}, plus sibling keys): log() raises ValueError, or every
    flattened key reads back from the store equal (bools as bools, NaN as NaN); afterwards the I/O thread
    is alive and 20 more rows are all stored."""
    run = rankwise.init(project="prop", group="values", rank=0, world_size=1, settings={"finish_timeout_s": 30})
    logged: list[tuple[int, dict]] = []
    fast_path_drops = 0
    tally = {"refused": 0, "stored": 0}

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(value=nested, extra=st.dictionaries(keys, values, max_size=2))
    def one(value: Any, extra: dict) -> None:
        nonlocal fast_path_drops
        data = dict(extra)
        data["v"] = value
        step = run.step
        try:
            want = flat_expected(data)
        except Refused:
            want = None
        try:
            run.log(data)
        except ValueError:
            tally["refused"] += 1
            return
        tally["stored"] += 1
        big = [k for k, v in data.items() if type(v) is int and not INT64[0] <= v <= INT64[1]]
        if big:  # the documented fast-path exception (module docstring): the other keys must arrive
            fast_path_drops += len(big)
            want = flat_expected({k: v for k, v in data.items() if k not in big})
        assert want is not None, f"log() accepted {data!r}, which the reference refuses"
        logged.append((step, want))

    one()
    assert run.flush(30)
    assert run._writer._thread.is_alive()
    for i in range(20):
        run.log({"after": float(i)})
    run.finish()
    assert tally["stored"] > 10 and tally["refused"] > 10  # the strategies reach both outcomes
    stats = run.stats
    assert stats["unacked_rows"] == 0 and stats["drops"] == ({"bad value": fast_path_drops} if fast_path_drops else {})
    rows = {r["_step"]: r for r in rankwise.Api().group("prop", "values").run(rank=0).history()}
    for step, want in logged:
        got = rows.get(step, {})
        for key, value in want.items():
            assert key in got and same(got[key], value), (step, key, value, got.get(key, "<missing>"))
    after = sorted((s, r["after"]) for s, r in rows.items() if "after" in r)
    assert [v for _, v in after] == [float(i) for i in range(20)]
