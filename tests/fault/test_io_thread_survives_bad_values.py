"""Values the encoder cannot handle never stop the I/O thread (issue 9, finding 4).

``np.longdouble`` and ``np.timedelta64`` used to pass ``log()`` and make the serializer raise on the I/O
thread: nothing more was sent, ``finish()`` returned without a warning and ``log()`` kept queueing. Now
the call site applies the fast path's rules (ValueError naming the key), and whatever still fails on the
I/O thread is dropped, counted by cause, warned about once and reported by ``finish()``; every later row
is sent."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import rankwise
from client.media._base import WireValue

LD = np.longdouble(1) / np.longdouble(3)  # no float64 holds it exactly


class _Broken(WireValue):
    """A value that passes log() and fails only on the I/O thread (as a media encoder may)."""

    def _to_wire(self) -> dict:
        raise RuntimeError("encoder exploded")


@pytest.mark.parametrize(
    "value",
    [
        LD,
        np.array(LD),
        np.array([LD, LD]),
        [LD],
        np.clongdouble(1 + 1j),
        np.complex128(1j),
        np.timedelta64(5, "s"),
        np.array(np.timedelta64(5, "s")),
        np.array([1, 2], dtype="m8[s]"),
        np.datetime64("2024-01-01"),
        np.array(np.datetime64("2024-01-01T00:00:00.000000000")),
        np.void(b"ab"),
        np.bytes_(b"ab"),
        np.array([{1}, 2], dtype=object),
        2**64,
        np.uint64(2**64 - 1),
        [1, -(2**63) - 1],
        "bad \ud800 surrogate",
    ],
    ids=lambda v: f"{type(v).__name__}:{getattr(v, 'dtype', '')}",
)
def test_values_the_encoder_cannot_take_are_refused_at_the_call(rankwise_env, value):
    """Each raises ValueError naming the key, before anything is queued; the run stays usable."""
    from support.offline import offline_run

    run = offline_run()
    try:
        with pytest.raises(ValueError, match="'v'"):
            run.log({"v": value})
        assert len(run._writer.ops) == 0
    finally:
        import os

        for fd in (run._writer._wake_r, run._writer._wake_w):
            os.close(fd)


def test_longdouble_that_float64_holds_is_accepted(rankwise_env):
    """np.longdouble values float64 holds exactly (scalar, 0-d, array, in a list) read back equal; an array
    of more than 32 (a histogram) is accepted whatever its values."""
    run = rankwise.init(project="types", group="ld", rank=0, world_size=1)
    half = np.longdouble(0.5)
    run.log({"s": half, "z": np.array(half), "a": np.array([half, np.longdouble(2)]), "l": [half]})
    run.log({"h": np.full(100, LD)})  # beyond 32 values a histogram: its bins need no exact values
    run.finish()
    rows = rankwise.Api().group("types", "ld").run(rank=0).history()
    assert {k: rows[0][k] for k in "szal"} == {"s": 0.5, "z": 0.5, "a": [0.5, 2.0], "l": [0.5]}
    assert rows[1]["h"]["_type"] == "histogram" and sum(rows[1]["h"]["values"]) == 100


def test_value_failing_on_the_io_thread_is_dropped_and_later_rows_arrive(rankwise_env, caplog):
    """A value whose encoder raises on the I/O thread: that value is dropped (counted as "bad value"), the
    rest of its row and all 101 later rows are stored, the I/O thread is still alive, one warning is
    printed for the cause (not one per value) and finish() reports the drop."""
    caplog.set_level(logging.WARNING, logger="rankwise")
    run = rankwise.init(project="types", group="broken", rank=0, world_size=1)
    run.log({"x": -1.0, "m": _Broken()})
    run.log({"x": -2.0, "m": _Broken()})
    assert run.flush(30)
    for i in range(101):
        run.log({"x": float(i)})
    assert run.flush(30)
    assert run._writer._thread.is_alive()
    run.finish()
    stats = run.stats
    assert (stats["drops"], stats["rows_sent"], stats["unacked_rows"]) == ({"bad value": 2}, 103, 0)
    rows = rankwise.Api().group("types", "broken").run(rank=0).history()
    assert [(r["_step"], r["x"], "m" in r) for r in rows] == [(0, -1.0, False), (1, -2.0, False)] + [
        (i + 2, float(i), False) for i in range(101)
    ]
    dropped = [r.getMessage() for r in caplog.records if "was dropped: bad value" in r.getMessage()]
    assert len(dropped) == 1 and "encoder exploded" in dropped[0]
    assert any("finish()" in r.getMessage() and "bad value: 2" in r.getMessage() for r in caplog.records)
    assert rankwise.Api()._reader.drops() == {"bad value": 2}


def test_op_the_assembler_cannot_apply_is_dropped_and_delivery_goes_on(rankwise_env):
    """An op the assembler cannot apply (a summary value whose encoder raises, a malformed metric definition
    pushed past define_metric's check) is dropped and counted as "bad value"; the rows around it and
    every later row are stored."""
    from client.ops import CONTROL

    run = rankwise.init(project="types", group="op", rank=0, world_size=1)
    run.log({"x": 0.0})
    run.summary["m"] = _Broken()
    run._push((CONTROL, "define", {"name": "x", "summary": "bogus-kind"}, None))
    for i in range(1, 11):
        run.log({"x": float(i)})
    assert run.flush(30) and run._writer._thread.is_alive()
    run.finish()
    assert run.stats["drops"] == {"bad value": 2} and run.stats["unacked_rows"] == 0
    rows = rankwise.Api().group("types", "op").run(rank=0).history()
    assert [r["x"] for r in rows] == [float(i) for i in range(11)]


def test_batch_that_cannot_be_built_is_dropped_counted_and_the_writer_goes_on(rankwise_env):
    """Last resort: when building a batch raises for a reason nobody foresaw, the rows not yet batched are
    dropped and counted ("encode error"), and the next batch carries the rows logged after them."""
    from support.offline import drain_batches, offline_run, rows_of

    run = offline_run()
    try:
        for i in range(3):
            run.log({"x": float(i)})
        assembler = run._writer.assembler
        real = assembler.take_batch

        def fail_once():
            assembler.take_batch = real
            raise RuntimeError("unforeseen")

        assembler.take_batch = fail_once
        run._writer.sync()
        assert run._writer.counters.io_errors == 1 and run._writer.drop_counts() == {"encode error": 3}
        for i in range(3, 5):
            run.log({"x": float(i)})
        batches = drain_batches(run)
        assert [r["x"] for r in rows_of(batches)] == [3.0, 4.0]
        assert ["dropped", {"rows": 3, "cause": "encode error"}] in [list(c) for b in batches for c in b.control]
    finally:
        import os

        for fd in (run._writer._wake_r, run._writer._wake_w):
            os.close(fd)


class _Unpackable(WireValue):
    """Encodes without raising, to something msgpack refuses (a set): fails only when the frame is packed."""

    def _to_wire(self) -> dict:
        return {"_type": "odd", "members": {1, 2}}


def test_value_msgpack_refuses_is_dropped_from_its_row_and_the_summary(rankwise_env):
    """A value whose wire form msgpack cannot pack: in its row it becomes None, in the summary it is left
    out, both counted as "bad value"; the other keys of the row and the later rows go in the same batch."""
    from support.offline import drain_batches, offline_run, rows_of

    run = offline_run()
    try:
        run.log({"x": 1.0, "m": _Unpackable()})
        run.log({"x": 2.0})
        batches = drain_batches(run)
        assert [(r["x"], r.get("m", "-")) for r in rows_of(batches)] == [(1.0, None), (2.0, "-")]
        assert "m" not in (batches[-1].summary or {}) and batches[-1].summary["x"] == 2.0
        assert run._writer.drop_counts() == {"bad value": 2}
    finally:
        import os

        for fd in (run._writer._wake_r, run._writer._wake_w):
            os.close(fd)
