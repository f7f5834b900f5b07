"""torch tensors of one element through ``Run.log``'s fast path (issue 11): the stored value is the tensor's
value when ``log()`` was called, exactly (bool stays bool, ints stay ints), and the training thread never
waits for a device. On CPU the fast path converts at the call (``.item()``, no device to wait for); on CUDA
it keeps an async device copy that the I/O thread converts (``fastconv.TensorRow``/``resolve_tensors``);
``fastconv.DEFER_CPU_TENSORS`` sends CPU tensors that way too, so the deferred path is tested without a GPU.

Runs are offline (no agent): batches are assembled in-process and decoded by the agent's decoder."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

from client import fastconv  # noqa: E402 - after importorskip
from support.offline import SlowCounter, close, final_rows, offline_run  # noqa: E402 - after importorskip

INT64 = (-(1 << 63), (1 << 63) - 1)


def _tensors() -> dict[str, Any]:
    return {
        "f16": torch.tensor(0.1, dtype=torch.float16),
        "bf16": torch.tensor(0.1, dtype=torch.bfloat16),
        "f32": torch.tensor(0.1, dtype=torch.float32),
        "f64": torch.tensor(0.1, dtype=torch.float64),
        "i8": torch.tensor(-128, dtype=torch.int8),
        "i16": torch.tensor(-32768, dtype=torch.int16),
        "i32": torch.tensor(-(1 << 31), dtype=torch.int32),
        "i64": torch.tensor(INT64[1], dtype=torch.int64),
        "u8": torch.tensor(255, dtype=torch.uint8),
        "b": torch.tensor(True),
        "one": torch.tensor([2.5]),  # one element, 1-d
    }


def _expected(tensors: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, t in tensors.items():
        if t.dtype == torch.bool:
            out[k] = bool(t)
        elif t.dtype.is_floating_point:
            out[k] = float(t)
        else:
            out[k] = int(t)
    return out


class _CudaInitialized:
    _initialized = True


@pytest.fixture(params=["convert-at-call", "convert-at-call-device-checked", "convert-on-io-thread"])
def run(request, monkeypatch):
    """An offline run; CPU tensors converted at the call (where this process has no CUDA state: no device
    check; or as in a process with CUDA state: each tensor's device checked), or deferred to the I/O thread."""
    fastconv._torch_converter()  # (sets fastconv.CUDA_STATE to torch.cuda once)
    assert fastconv.CUDA_STATE is torch.cuda
    if request.param == "convert-at-call-device-checked":
        monkeypatch.setattr(fastconv, "CUDA_STATE", _CudaInitialized)
    monkeypatch.setattr(fastconv, "DEFER_CPU_TENSORS", request.param == "convert-on-io-thread")
    r = offline_run()
    r.deferred = request.param == "convert-on-io-thread"
    yield r
    close(r)


def _op_rows(run: Any) -> list[Any]:
    items = list(run._writer.ops)
    return items[3::4]


def test_each_dtype_stores_the_tensor_value_exactly_at_the_right_step(run):
    """float16/bfloat16/float32/float64, int8..int64, uint8 and bool one-element tensors store float(t) /
    int(t) / bool(t) with that Python type, at the right steps (plain, step=, commit=False, nested dict);
    after the first (validating) call none takes the slow path, and the fast rows hold device copies only
    when deferred (a TensorRow), plain numbers otherwise."""
    tensors = _tensors()
    exp = _expected(tensors)
    run.log(dict(tensors), step=0)  # the slow path validates the keys (and converts)
    run.log({"train": dict(tensors)}, commit=False)  # nested plan learned
    counter = SlowCounter(run)
    run.log(dict(tensors))  # commits row 0
    run.log(dict(tensors), step=3, commit=False)
    run.log({"train": dict(tensors)}, step=3)
    run.log(dict(tensors), step=5, commit=True)
    assert counter.calls == 0
    fast = _op_rows(run)[2:]
    assert [type(r) is fastconv.TensorRow for r in fast] == [run.deferred] * 4
    rows = final_rows(run)
    nested = {f"train.{k}": v for k, v in exp.items()}
    assert rows == [
        dict(exp, **nested, _step=0, _late=False),
        dict(exp, **nested, _step=3, _late=False),
        dict(exp, _step=5, _late=False),
    ]
    for row in rows:
        for k, v in row.items():
            if k in exp or k.startswith("train."):
                assert type(v) is type(exp[k.removeprefix("train.")]), k
    assert run._step == 6


def test_a_tensor_modified_in_place_after_log_stores_its_value_at_log_time(run):
    """log() keeps the value the tensor had at the call: t.add_() / t.fill_() afterwards, before the I/O
    thread assembled the row, change nothing that was logged (a copy, not a reference)."""
    t = torch.tensor(1.0)
    n = torch.tensor(7, dtype=torch.int64)
    run.log({"x": t, "n": n})  # slow path, step 0
    counter = SlowCounter(run)
    for _ in range(3):
        t.add_(1.0)
        n.add_(1)
        run.log({"x": t, "n": n})
    t.fill_(-5.0)
    n.fill_(0)
    assert counter.calls == 0
    rows = final_rows(run)
    assert rows == [{"_step": i, "_late": False, "x": 1.0 + i, "n": 7 + i} for i in range(4)]


def test_requires_grad_tensors_are_logged_without_touching_autograd(run):
    """A loss that requires grad (and a leaf parameter's value) logs its value on the fast path, and
    backward() afterwards still works (the copy is detached)."""
    w = torch.tensor(2.0, requires_grad=True)
    expected = []
    counter = None
    for i in range(4):
        loss = (w * 3.0) ** 2  # 36.0, requires grad
        run.log({"loss": loss})
        if counter is None:
            counter = SlowCounter(run)
        expected.append({"_step": i, "_late": False, "loss": float(loss.detach())})
        loss.backward()
    assert counter.calls == 0
    assert w.grad is not None and float(w.grad) == 4 * 36.0
    assert final_rows(run) == expected


def test_more_elements_or_other_dtypes_under_a_known_key_go_the_slow_path(run):
    """A 2-element tensor under a key first seen with a 0-d tensor becomes a list (slow path, as before),
    40 elements a histogram; the key's 0-d tensors keep taking the fast path afterwards. A uint16 tensor is
    converted at the call on CPU (an int, as the slow path makes it) and never deferred (a device copy
    goes the slow path for any dtype beyond the plain ones); complex and a uint64 beyond int64 still raise
    ValueError at the call."""
    run.log({"x": torch.tensor(1.0)})
    counter = SlowCounter(run)
    run.log({"x": torch.tensor([1.0, 2.0])})
    assert counter.calls == 1
    run.log({"x": torch.arange(40, dtype=torch.float32)})
    assert counter.calls == 2
    run.log({"x": torch.tensor(3.0)})
    assert counter.calls == 2
    run.log({"x": torch.tensor(4, dtype=torch.uint16)})
    assert counter.calls == (3 if run.deferred else 2)
    assert type(_op_rows(run)[-1]) is dict
    with pytest.raises(ValueError):
        run.log({"x": torch.tensor(1 + 2j)})
    with pytest.raises(ValueError):
        run.log({"x": torch.tensor(1 << 63, dtype=torch.uint64)})
    rows = final_rows(run)
    assert [r["_step"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[0]["x"] == 1.0 and rows[1]["x"] == [1.0, 2.0]
    assert isinstance(rows[2]["x"], dict) and rows[2]["x"].get("_type") == "histogram"
    assert rows[3]["x"] == 3.0 and rows[4]["x"] == 4 and type(rows[4]["x"]) is int


def test_a_tensor_the_io_thread_cannot_read_is_dropped_and_counted():
    """resolve_tensors: a value whose .item() fails (a meta tensor) is removed from its row and reported;
    the row's other values are converted; rows that are not TensorRows are left alone."""
    row = fastconv.TensorRow(a=torch.tensor(1.5), bad=torch.empty((), device="meta"), c=2)
    plain = {"t": "untouched"}
    notes = fastconv.resolve_tensors([row, plain, None])
    assert row == {"a": 1.5, "c": 2} and type(row["a"]) is float
    assert plain == {"t": "untouched"}
    assert len(notes) == 1 and notes[0].startswith("bad: ")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (torch.cuda.is_available() is False)")
def test_cuda_tensors_are_logged_without_a_sync_and_store_their_value_at_log_time():
    """On CUDA: log() of a tensor produced after a long GPU kernel (torch.cuda._sleep) returns while that
    kernel still runs (the stream is not idle: no sync in log()), the row holds a device copy, and the
    stored values are the tensors' values at log time, also when modified in place afterwards."""
    r = offline_run()
    try:
        dev = torch.device("cuda")
        r.log({"loss": torch.tensor(0.5, device=dev), "b": torch.tensor(True, device=dev)})  # slow path
        counter = SlowCounter(r)
        stream = torch.cuda.current_stream(dev)
        torch.cuda.synchronize(dev)
        torch.cuda._sleep(int(2e9))  # ~1 s of GPU time at 2 GHz
        loss = torch.tensor(1.25, device=dev) * 2  # queued behind the sleep
        b = loss > 2
        r.log({"loss": loss, "b": b})
        busy = not stream.query()  # False once the GPU finished: log() would have waited
        loss.add_(10.0)  # in place, after log(): not what was logged
        assert busy, "log() returned only after the GPU was idle (it synchronised)"
        assert counter.calls == 0
        assert type(_op_rows(r)[-1]) is fastconv.TensorRow
        rows = final_rows(r)
        assert rows == [
            {"_step": 0, "_late": False, "loss": 0.5, "b": True},
            {"_step": 1, "_late": False, "loss": 2.5, "b": True},
        ]
        assert type(rows[1]["b"]) is bool
    finally:
        close(r)
