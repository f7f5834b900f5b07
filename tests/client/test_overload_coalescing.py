"""Coalescing under overload (client/coalesce.py): when log() outruns the I/O thread, the op backlog stays
bounded by max_queued_bytes, rows fold into spans on the training thread, and nothing is lost, reordered
or summarised differently: counts add up to the calls, every span's aggregates and the summary are exact."""

from __future__ import annotations

import math
import sys
import threading
import time

import numpy as np
import pytest

import rankwise
from client import wire
from client.coalesce import COUNT, FIRST_STEP, LAST, MAX, MAX_V, MEAN, MIN, MIN_V, STEP, TOTAL, Coalescer, fold
from client.ops import COMMIT, COMMIT_PENDING, CONTROL, LATE, MERGE, SPAN
from support.offline import close, finish_offline, offline_run

BOUND = 1 << 20  # max_queued_bytes in these tests: 1 MiB, so that a short loop passes it


def _x(i: int) -> float:
    return i * 0.5  # multiples of 0.5: every partial sum is exact in float64, whatever the order


def _y(i: int) -> int:
    return (i * 7919) % 1001 - 500  # ints in -500..500, not monotonic


def _wait(cond, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


# ---------------------------------------------------------------- the coalescer alone


def test_coalescer_folds_rows_into_spans_by_the_step_rules():
    """Without an agent or writer: after the handover (a MERGE passed through while the assembler may hold
    its row, then COMMIT_PENDING at the next step) committed rows fold into spans of ``rows_per_span``; a
    string row, a late row and a control op close the open span and go as they are, in order; ``stop``
    hands the pending row back as a MERGE after the open span. Span fields are exact (ints stay ints in
    the summary fields, NaN skipped by min/max and kept by the sum)."""
    out: list = []
    c = Coalescer(out.extend, time.perf_counter)
    c.rows_per_span = 4
    c.span_s = 1e9  # the times below are made up: close spans by rows only
    c.start()
    c.push((MERGE, 0, 0.0, {"a": 1.0}))  # may merge into the assembler's pending row at step 0: passed through
    c.push((MERGE, 0, 0.1, {"b": 2}))
    c.push((MERGE, 1, 0.2, {"a": 3.0}))  # a new step: the assembler commits its row; the coalescer owns step 1
    ops = [tuple(out[i : i + 4]) for i in range(0, len(out), 4)]
    assert ops == [(MERGE, 0, 0.0, {"a": 1.0}), (MERGE, 0, 0.1, {"b": 2}), (CONTROL, COMMIT_PENDING, None, None)]
    del out[:]
    for s in range(2, 9):  # step=s form: each commits the row before it
        c.push((MERGE, s, s * 0.1, {"a": float(s), "n": s if s != 5 else float("nan")}))
    ops = [tuple(out[i : i + 4]) for i in range(0, len(out), 4)]
    assert [op[0] for op in ops] == [SPAN]  # rows 1..4 (a span of 4); rows 5..7 open, row 8 pending
    span = ops[0][3]
    assert (span.first, span.step, span.rows) == (1, 4, 4)
    assert span.keys["a"][STEP] == 4 and span.keys["a"][COUNT] == 4 and span.keys["a"][MEAN] == 3.0
    assert (span.keys["n"][FIRST_STEP], span.keys["n"][COUNT], span.keys["n"][MIN_V]) == (2, 3, 2)
    del out[:]
    c.push((COMMIT, 8, 0.9, {"s": "text"}))  # merges into pending step 8, commits it: a row with a string
    c.push((LATE, 3, 1.0, {"a": -1.0}))
    c.push((CONTROL, "config", {"k": 1}, None))
    c.push((COMMIT, 9, 1.1, {"a": 9.0}))
    c.push((MERGE, 10, 1.2, {"a": 10.0}))
    c.stop()
    c.push((COMMIT, 10, 1.3, {"a": 11.0}))  # a stale reference to push after stop: appended as it is
    ops = [tuple(out[i : i + 4]) for i in range(0, len(out), 4)]
    kinds = [op[0] for op in ops]
    assert kinds == [SPAN, COMMIT, LATE, CONTROL, SPAN, MERGE, COMMIT]
    nan_span = ops[0][3]
    assert (nan_span.first, nan_span.step, nan_span.rows) == (5, 7, 3)
    n = nan_span.keys["n"]
    assert math.isnan(n[TOTAL]) and math.isnan(n[MIN]) and n[MIN_V] == 6 and n[MAX_V] == 7
    assert ops[1] == (COMMIT, 8, 0.9, {"a": 8.0, "n": 8, "s": "text"})
    assert ops[4][3].keys["a"][LAST] == 9.0 and ops[5] == (MERGE, 10, 1.2, {"a": 10.0})
    assert (c.rows, c.spans, c.raw_rows) == (8, 3, 1)


def test_numpy_rows_of_the_fast_path_fold_with_their_python_values():
    """A NumpyRow (numpy scalars the fast path keeps for the I/O thread) reaching the coalescer is converted
    to Python numbers before it folds: it counts in the span like a row of floats (the client's memory bound
    holds for numpy loops too), and the summary fields hold Python numbers (an int stays an int)."""
    from client.fastconv import NumpyRow

    out: list = []
    c = Coalescer(out.extend, time.perf_counter)
    c.rows_per_span = 3
    c.span_s = 1e9
    c.start()
    c.push((COMMIT, 0, 0.0, {"a": 0.0}))  # the handover: commits whatever the assembler held, passed through
    del out[:]
    for s in range(1, 4):
        c.push((COMMIT, s, s * 0.1, NumpyRow({"a": np.float32(s / 4), "n": np.int64(s), "ok": np.bool_(s % 2)})))
    ops = [tuple(out[i : i + 4]) for i in range(0, len(out), 4)]
    assert [op[0] for op in ops] == [SPAN] and (c.rows, c.spans, c.raw_rows) == (3, 1, 0)
    span = ops[0][3]
    assert (span.first, span.step, span.rows) == (1, 3, 3)
    assert span.keys["a"][LAST] == 0.75 and span.keys["a"][MEAN] == 0.5
    n = span.keys["n"]
    assert (n[MIN_V], n[MAX_V], n[TOTAL]) == (1, 3, 6.0) and type(n[MIN_V]) is int and type(n[MAX_V]) is int


def test_fold_matches_numpy_on_rows_with_different_keys():
    """``fold`` over rows whose key sets differ: per key its own first/last step, count and aggregates."""
    steps = list(range(10, 20))
    dicts = [{"a": float(i)} if i % 3 else {"a": float(i), "b": i} for i in range(10)]
    span = fold(steps, [0.0] * 10, dicts)
    b = span.keys["b"]
    assert (b[FIRST_STEP], b[STEP], b[COUNT], b[MIN], b[MAX], b[LAST]) == (10, 19, 4, 0.0, 9.0, 9.0)
    a = span.keys["a"]
    assert (a[COUNT], a[MEAN], a[MAX_V]) == (10, 4.5, 9.0) and span.rows == 10


# ---------------------------------------------------------------- mode switches racing the training thread


def _decoded(run) -> list:
    """Every batch of an offline run's writer, decoded by the agent's decoder."""
    w = run._writer
    w.sync()
    out = []
    while w._outbox:
        _, frame, _ = w._outbox.popleft()
        kind, body = wire.unpack(frame)
        out.append(wire.decode_batch(body, len(frame)))
    return out


def test_mode_switches_racing_log_lose_and_reorder_nothing():
    """A thread switches the writer in and out of overload hundreds of times while the training thread
    logs at least 60k rows in three forms (log(d), log(d, step=s), commit=False then commit); afterwards the rows and
    spans the agent would get cover steps 0..n-1 exactly once, in order, and every value is accounted for:
    rows by value, spans by count, min, max, last and mean against the logged values."""
    run = offline_run(max_queued_bytes=BOUND)
    w = run._writer
    w.bind(run)
    stop = threading.Event()
    switches = [0]

    def switcher() -> None:
        while not stop.is_set():
            with w.lock:
                if w.coalescer.active:
                    w.overload.leave()
                else:
                    w.overload.enter(0, 0)
                    switches[0] += 1
            w.sync()  # the I/O thread's turn: drains ops into batches

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # fine-grained thread switches: pushes interrupted at every point
    t = threading.Thread(target=switcher)
    t.start()
    n = 0
    deadline = time.monotonic() + 60
    try:
        while n < 60_000 or n % 1000 or (switches[0] < 200 and time.monotonic() < deadline):
            i = n
            form = (i // 1000) % 3
            if form == 0:
                run.log({"x": _x(i), "y": _y(i)})
            elif form == 1:  # the last of a block commits: the next form's calls start a new row
                run.log({"x": _x(i), "y": _y(i)}, step=i, commit=True if i % 1000 == 999 else None)
            else:
                run.log({"x": _x(i)}, commit=False)
                run.log({"y": _y(i)})
            n += 1
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(interval)
    with w.lock:
        if w.coalescer.active:
            w.overload.leave()
    finish_offline(run)
    batches = _decoded(run)
    close(run)
    assert switches[0] >= 200
    covered = np.zeros(n, dtype=np.int64)
    last_step = -1
    xs = np.array([_x(i) for i in range(n)])  # (n: the rows logged)
    ys = np.array([_y(i) for i in range(n)], dtype=np.float64)
    spans = 0
    for b in batches:
        assert not (b.n and b.spans is not None)  # a batch holds rows or spans
        if b.n:
            assert b.late is None
            cols = {c.key: c for c in b.columns}
            assert all(c.rows is None for c in cols.values())
            assert np.all(np.diff(b.step) > 0) and int(b.step[0]) > last_step
            assert np.array_equal(cols["x"].values, xs[b.step]) and np.array_equal(cols["y"].values, ys[b.step])
            covered[b.step] += 1
            last_step = int(b.step[-1])
        if b.spans is not None:
            sb = b.spans
            for j in range(sb.m):
                lo, hi = int(sb.first[j]), int(sb.step[j])
                assert lo > last_step and int(sb.rows[j]) == hi - lo + 1
                covered[lo : hi + 1] += 1
                last_step = hi
                spans += 1
            for col in sb.columns:
                ref = xs if col.key == "x" else ys
                f = col.fields
                assert col.rows is None
                for j in range(sb.m):
                    part = ref[int(f["first_step"][j]) : int(f["step"][j]) + 1]
                    assert f["count"][j] == len(part) and f["last"][j] == part[-1]
                    assert (f["min"][j], f["max"][j], f["mean"][j]) == (part.min(), part.max(), part.sum() / len(part))
    assert np.array_equal(covered, np.ones(n, dtype=np.int64))
    assert spans > 0 and w.counters.coalesced_rows > 0


# ---------------------------------------------------------------- a real agent


def _store_check(rr, n: int, x: np.ndarray, y: np.ndarray) -> dict:
    """Rows and spans in the store account for every call: per key the stored points (rows) plus the
    span counts equal n, span aggregates equal numpy over the logged values; returns span facts."""
    cols = rr.history_arrays(["_rows", "x", "y"])
    span_steps, span_rows = cols["_rows"] if "_rows" in cols else (np.empty(0, int), np.empty(0, int))
    ts = cols["_timestamp"][0]
    assert int(span_rows.sum()) + len(np.setdiff1d(ts, span_steps)) == n
    info = {}
    for key, ref in (("x", x), ("y", y)):
        steps, values = cols[key]
        sp = rr.coalesced(key)
        raw = ~np.isin(steps, sp.get("step", np.empty(0, int)))
        assert np.array_equal(values[raw], ref[steps[raw]])
        covered = np.zeros(n, dtype=np.int64)
        covered[steps[raw]] += 1
        for lo, hi, cnt, last, mean, low, high in zip(
            sp["first_step"], sp["step"], sp["count"], sp["last"], sp["mean"], sp["min"], sp["max"]
        ):
            part = ref[lo : hi + 1].astype(np.float64)
            assert cnt == hi - lo + 1 and last == part[-1]
            assert (low, high, mean) == (part.min(), part.max(), part.sum() / cnt)
            covered[lo : hi + 1] += 1
        assert np.array_equal(covered, np.ones(n, dtype=np.int64)), key
        info[key] = (len(sp["count"]), int(sp["count"].sum()), int(sp["first_step"][0]), int(sp["step"][-1]))
    return info


@pytest.mark.parametrize("form", ["log", "step", "commit_false"])
def test_tight_loop_stays_bounded_and_the_store_accounts_for_every_call(rankwise_env, monkeypatch, form):
    """A tight loop of 300k log() calls against a real agent with max_queued_bytes = 1 MiB: the op deque
    (sampled from the training thread) stays within a small multiple of the bound (without it the loop
    queues ~100 MB); overload mode is entered, counted and left once the loop stops (rows logged after it
    go row for row again; before the first overload the loop may queue one I/O poll interval's calls
    beyond the bound); in the store, span counts plus rows equal the rows logged, every span's
    steps, count, last, mean, min and max equal numpy over the logged values, and the summary's
    min/max/mean/last are exact over every value. The three forms (log(d), step=, commit=False) alike."""
    monkeypatch.setenv("RANKWISE_MAX_QUEUED_BYTES", "1M")
    run = rankwise.init(project="ov", group=f"g-{form}")
    run.define_metric("x", summary="min,max,mean,last")
    run.define_metric("y", summary="min,max,mean,last")
    w = run._writer
    log = run.log
    calls = 300_000
    rows = calls // 2 if form == "commit_false" else calls
    peak = peak_all = 0
    for i in range(rows):
        if form == "log":
            log({"x": _x(i), "y": _y(i)})
        elif form == "step":
            log({"x": _x(i), "y": _y(i)}, step=i)
        else:
            log({"x": _x(i)}, commit=False)
            log({"y": _y(i)})
        if not i & 255:
            peak_all = max(peak_all, len(w.ops))
            if w.counters.overloads:  # once the loop is known to be fast, the I/O thread looks every 2 ms
                peak = max(peak, len(w.ops))
    assert w.counters.overloads >= 1
    # before the first overload the I/O thread looked every flush_interval_s (20 ms): the loop may queue
    # that long's calls beyond the bound once; afterwards the backlog stays near the bound. Without the
    # bound the loop queues ~100 MB.
    queued_peak = (peak >> 2) * w.overload.op_bytes
    assert queued_peak <= 16 * BOUND, (queued_peak, peak_all)
    assert (peak_all >> 2) * w.overload.op_bytes <= 48 * BOUND and w.counters.queued_peak_bytes <= 48 * BOUND
    assert run.flush(timeout_s=60)
    _wait(lambda: not w.coalescer.active, "overload mode to end")  # the I/O thread leaves it when idle
    assert run._push == w.ops.extend
    extra = 10
    for i in range(rows, rows + extra):
        log({"x": _x(i), "y": _y(i)}, step=i) if form == "step" else log({"x": _x(i), "y": _y(i)})
    run.finish()
    n = rows + extra
    stats = run.stats
    assert stats["unacked_rows"] == 0 and stats["drops"] == {} and stats["rows_sent"] == n
    assert stats["coalesced_rows"] > 0 and 0 < stats["coalesced_spans"] < stats["coalesced_rows"]
    x = np.array([_x(i) for i in range(n)])
    y = np.array([_y(i) for i in range(n)])
    rr = rankwise.Api().group("ov", f"g-{form}").run(rank=0)
    assert (rr.state, rr.rows, rr.step) == ("finished", n, n)
    info = _store_check(rr, n, x, y)
    assert info["x"][:2] == (stats["coalesced_spans"], stats["coalesced_rows"])
    assert info["x"][3] < rows  # the rows logged after overload ended went row for row
    summary = dict(rr.summary)
    assert summary["x"] == {"min": 0.0, "max": x.max(), "mean": x.mean(), "last": x[-1]}
    assert summary["y"] == {"min": int(y.min()), "max": int(y.max()), "mean": y.sum() / n, "last": int(y[-1])}
    assert type(summary["y"]["min"]) is int


def test_rows_that_cannot_fold_go_row_for_row_and_opted_out_keys_keep_every_value(rankwise_env, monkeypatch):
    """Under overload, rows holding a string and late updates are not coalesced: they are stored row for
    row with their values, between the spans of the numeric rows; a key that opted out of rate limiting
    (define_metric(key, rate_limit=False), logged at every call) keeps every value at its step while the
    other keys of the same rows coalesce; counts add up and the summary of the opted-out key is exact."""
    monkeypatch.setenv("RANKWISE_MAX_QUEUED_BYTES", "1M")
    run = rankwise.init(project="ov", group="g-mixed")
    run.define_metric("exact", rate_limit=False, summary="min,max,mean,last")
    w = run._writer
    n = 200_000
    for i in range(n):
        if i % 50_000 == 49_999:
            run.log({"x": _x(i), "exact": _y(i), "note": f"at {i}"})
        else:
            run.log({"x": _x(i), "exact": _y(i)})
    assert w.counters.overloads >= 1
    run.log({"x": -1.0}, step=10)  # a late update
    run.finish()
    assert run.stats["coalesced_rows"] > 0
    rr = rankwise.Api().group("ov", "g-mixed").run(rank=0)
    assert (rr.rows, rr.step, rr.late_updates) == (n, n, 1)
    notes = rr.history_arrays(["note"])["note"]
    assert list(notes[0]) == [49_999, 99_999, 149_999, 199_999]
    assert list(notes[1]) == [f"at {s}" for s in notes[0]]
    y = np.array([_y(i) for i in range(n)])
    exact_steps, exact_values = rr.history_arrays(["exact"])["exact"]
    assert np.array_equal(exact_steps, np.arange(n)) and np.array_equal(exact_values, y)
    assert rr.coalesced("exact") == {} and len(rr.coalesced("x")["count"]) > 0
    summary = dict(rr.summary)["exact"]
    assert summary == {"min": int(y.min()), "max": int(y.max()), "mean": y.sum() / n, "last": int(y[-1])}
    cols = rr.history_arrays(["_rows"])
    span_steps, span_rows = cols["_rows"]
    assert int(span_rows.sum()) + len(np.setdiff1d(cols["_timestamp"][0], span_steps)) == n


# ---------------------------------------------------------------- the wire block


def _block() -> list:
    a = fold(
        [0, 1, 2], [0.0, 0.1, 0.2], [{"x": 1.0, "k": 1}, {"x": 2.0, "k": 2}, {"x": 3.0, "k": 3}], lambda key: key == "k"
    )
    b = fold([5, 6], [0.5, 0.6], [{"x": 4.0}, {"x": 5.0, "k": 7}], lambda key: key == "k")
    return wire.encode_spans([a, b], np.array([10.0, 11.0]), np.array([1.0, 2.0]))


def test_span_block_round_trips_and_malformed_blocks_are_refused():
    """A span block decodes to what was folded (span steps, rows, per key fields; the opted-out key as
    its values at their steps); a block whose spans overlap, claim more rows than steps, put a key's
    steps outside its span, or whose arrays have the wrong length raises ProtocolError (the agent counts
    the batch as malformed)."""
    sb = wire.decode_spans(_block())
    assert (sb.m, list(sb.first), list(sb.step), list(sb.rows)) == (2, [0, 5], [2, 6], [3, 2])
    (x,) = sb.columns
    assert x.key == "x" and x.rows is None
    assert list(x.fields["count"]) == [3, 2] and list(x.fields["mean"]) == [2.0, 4.5]
    assert [(k, list(s), list(v)) for k, s, v in sb.raw] == [("k", [0, 1, 2, 6], [1, 2, 3, 7])]

    def bad(mutate) -> None:
        block = _block()
        mutate(block)
        with pytest.raises(wire.ProtocolError):
            wire.decode_spans(block)

    i8 = lambda *v: np.array(v, dtype="<i8").tobytes()  # noqa: E731
    bad(lambda b: b.__setitem__(2, i8(0, 2)))  # second span starts inside the first
    bad(lambda b: b.__setitem__(3, i8(4, 2)))  # 4 rows over steps 0..2
    bad(lambda b: b.__setitem__(1, i8(2)))  # step array of the wrong length
    bad(lambda b: b.__setitem__(0, 0))  # no spans
    bad(lambda b: b[6][0].__setitem__(2, b[6][0][2][:-8]))  # a field array cut short
    bad(lambda b: b[7][0].__setitem__(1, i8(0, 1, 2, 9)))  # a kept value after the last span
    bad(lambda b: b[7][0].__setitem__(1, i8(0, 2, 1, 6)))  # kept steps out of order
    bad(lambda b: b.__setitem__(6, b[6] + b[6]))  # a key twice


def test_span_block_with_a_key_step_outside_its_span_is_refused():
    """A key whose last step in a span lies beyond the span's last step is refused."""
    block = _block()
    key, idx, data = block[6][0]
    fields = np.frombuffer(data, dtype="<i8").copy()
    fields[0] = 3  # the key's last step in span 0 (steps 0..2)
    block[6][0] = [key, idx, fields.tobytes()]
    with pytest.raises(wire.ProtocolError):
        wire.decode_spans(block)


def test_a_key_opted_out_between_spans_travels_both_ways_in_one_batch():
    """define_metric(key, rate_limit=False) arriving while the client coalesces: spans closed before it
    carry the key coalesced, spans after it its every value; one batch may hold both, and decodes."""
    a = fold([0, 1], [0.0, 0.1], [{"k": 1}, {"k": 2}])
    b = fold([2, 3], [0.2, 0.3], [{"k": 3}, {"k": 4}], lambda key: True)
    sb = wire.decode_spans(wire.encode_spans([a, b], np.array([1.0, 2.0]), np.array([0.1, 0.2])))
    (col,) = sb.columns
    assert col.key == "k" and list(col.rows) == [0] and list(col.fields["count"]) == [2]
    assert [(k, list(s), list(v)) for k, s, v in sb.raw] == [("k", [2, 3], [3, 4])]
