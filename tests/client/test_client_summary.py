"""``run.summary``: last value by default, ``define_metric`` kinds and globs, keys set by hand,
deletion, late rows; and the summary the agent receives equals what ``run.summary`` shows,
however the I/O thread happens to cut the op stream into batches."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.errors import InvalidArgumentError, InvalidValueError
from support.offline import close, drain_batches, finish_offline, offline_run

VALUES = [3.0, 1.0, 4.0, 1.5, 9.0, 2.0]


@pytest.fixture
def run():
    r = offline_run()
    yield r
    close(r)


class AgentView:
    """The summary as the agent builds it from batches: apply ``sum``, then ``summary_del`` controls."""

    def __init__(self) -> None:
        self.summary: dict[str, Any] = {}

    def apply(self, run) -> dict[str, Any]:
        for b in drain_batches(run):
            self.summary.update(b.summary or {})
            for op, arg in b.control:
                if op == "summary_del":
                    self.summary.pop(arg, None)
        return self.summary


def same(a: Any, b: Any) -> bool:
    """Equality with NaN == NaN and exact types for numbers."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def log_all(run, rows, sync_every, agent) -> None:
    for i, row in enumerate(rows):
        run.log(row)
        if sync_every and i % sync_every == 0:
            agent.apply(run)


@pytest.mark.parametrize("sync_every", [0, 1, 2, 4])
def test_summary_kinds_exact_values_for_any_batch_cut(run, sync_every):
    """min/max/mean/first/last/none and lists of kinds give exact values, identical whether all
    rows travel in one batch or the I/O thread cut the stream anywhere; the agent's view equals
    run.summary."""
    for kind in ("min", "max", "mean", "first", "last", "none"):
        run.define_metric(f"x_{kind}", summary=kind)
    run.define_metric("x_minmax", summary="min,max")
    run.define_metric("x_list", summary=["first", "last", "mean"])
    agent = AgentView()
    keys = ["x_min", "x_max", "x_mean", "x_first", "x_last", "x_none", "x_minmax", "x_list", "x_default"]
    log_all(run, [{k: v for k in keys} for v in VALUES], sync_every, agent)
    want = {
        "x_min": 1.0,
        "x_max": 9.0,
        "x_mean": sum(VALUES) / len(VALUES),
        "x_first": 3.0,
        "x_last": 2.0,
        "x_minmax": {"min": 1.0, "max": 9.0},
        "x_list": {"first": 3.0, "last": 2.0, "mean": sum(VALUES) / len(VALUES)},
        "x_default": 2.0,
    }
    assert same(dict(run.summary), want)
    assert same(agent.apply(run), want)


def test_summary_reads_see_everything_logged_before_them(run):
    """A read right after log() (no flush, no I/O thread) already sees the logged value."""
    run.log({"a": 1.0})
    assert run.summary["a"] == 1.0
    run.log({"a": 2.0, "b": "text", "n": None, "i": 7, "flag": True})
    assert same(dict(run.summary), {"a": 2.0, "b": "text", "n": None, "i": 7, "flag": True})
    assert run.summary.i == 7 and "b" in run.summary and len(run.summary) == 5


def test_pending_values_reach_the_summary_when_committed(run):
    """A commit=False value is not summarised until its row is committed (as in wandb)."""
    run.log({"a": 1.0})
    run.log({"a": 5.0}, commit=False)
    assert run.summary["a"] == 1.0
    run.log({})
    assert run.summary["a"] == 5.0


def test_min_max_keep_the_column_type_and_skip_nan_while_mean_propagates_it(run):
    """min/max of ints are ints, of bools bools; NaN is skipped by min/max and makes mean NaN."""
    run.define_metric("i", summary="min,max")
    run.define_metric("b", summary="min,max")
    run.define_metric("f", summary="min,max,mean")
    for i, b, f in [(3, True, float("nan")), (-2, True, 2.0), (5, False, -1.0)]:
        run.log({"i": i, "b": b, "f": f})
    s = dict(run.summary)
    assert same(s["i"], {"min": -2, "max": 5})
    assert same(s["b"], {"min": False, "max": True})
    assert s["f"]["min"] == -1.0 and s["f"]["max"] == 2.0 and math.isnan(s["f"]["mean"])


@pytest.mark.parametrize("sync_every", [0, 1])
def test_columns_mixing_numbers_and_none_are_summarised_over_their_numbers(run, sync_every):
    """A key logged as numbers and sometimes None/str: min/max/mean over the numbers, the same
    whether or not the values shared a batch (i.e. an object-encoded column)."""
    run.define_metric("v", summary="min,max,mean,last")
    agent = AgentView()
    log_all(run, [{"v": 4.0}, {"v": None}, {"v": 1}, {"v": "n/a"}, {"v": 7.0}], sync_every, agent)
    want = {"v": {"min": 1, "max": 7.0, "mean": 4.0, "last": 7.0}}
    assert same(dict(run.summary), want)
    assert same(agent.apply(run), want)


def test_glob_patterns_and_later_definitions_win(run):
    """define_metric("val/*") applies to every matching key; a later, more specific definition wins;
    other keys keep "last"."""
    run.define_metric("val/*", summary="min")
    run.define_metric("val/acc", summary="max")
    for loss, acc in [(0.5, 0.1), (0.2, 0.7), (0.3, 0.6)]:
        run.log({"val/loss": loss, "val/acc": acc, "train/loss": loss * 2})
    assert same(dict(run.summary), {"val/loss": 0.2, "val/acc": 0.7, "train/loss": 0.6})


def test_define_metric_after_logging_applies_to_later_values_only(run):
    """Values logged before define_metric are not folded into the new kind's aggregate, whatever
    the batch cut: min over [5, 3] after define, not over [1, 5, 3]."""
    for sync in (False, True):
        r = offline_run()
        try:
            r.log({"x": 1.0})
            if sync:
                drain_batches(r)
            r.define_metric("x", summary="min")
            r.log({"x": 5.0})
            r.log({"x": 3.0})
            agent = AgentView()
            assert r.summary["x"] == 3.0
            assert agent.apply(r)["x"] == 3.0
        finally:
            close(r)


def test_define_none_after_logging_removes_the_key_from_the_agents_summary(run):
    """Switching a key to summary="none" after it was summarised drops it everywhere."""
    agent = AgentView()
    run.log({"x": 1.0, "y": 2.0})
    agent.apply(run)
    run.define_metric("x", summary="none")
    run.log({"x": 2.0, "y": 3.0})
    assert dict(run.summary) == {"y": 3.0}
    assert agent.apply(run) == {"y": 3.0}


def test_summary_set_by_hand_is_never_overwritten_by_log(run):
    """run.summary[k] = v wins over every later log() of k, whatever its metric definition."""
    agent = AgentView()
    run.summary["best"] = 0.9  # before the key is ever logged
    run.log({"acc": 0.5, "best": 0.1})
    run.summary["acc"] = 1.0  # after
    run.define_metric("acc", summary="max")
    for v in (0.7, 2.0):
        run.log({"acc": v, "best": v})
    assert dict(run.summary) == {"best": 0.9, "acc": 1.0}
    assert agent.apply(run) == {"best": 0.9, "acc": 1.0}


def test_summary_set_converts_values_and_rejects_bad_ones(run):
    """Hand-set values are normalised like logged ones (numpy → Python, nested dict kept);
    unsupported values and reserved keys raise naming the key."""
    run.summary["np"] = np.float32(0.5)
    run.summary["d"] = {"a": np.int64(1), "b": "x"}
    run.summary.update({"u": 3})
    assert same(dict(run.summary), {"np": 0.5, "d": {"a": 1, "b": "x"}, "u": 3})
    with pytest.raises(InvalidValueError, match="'obj'"):
        run.summary["obj"] = object()
    with pytest.raises(InvalidValueError, match="'_step' is reserved"):
        run.summary["_step"] = 1
    with pytest.raises(AttributeError):
        run.summary.missing


def test_del_summary_removes_the_key_and_later_logs_do_not_bring_it_back(run):
    """del run.summary[k] removes k (here and at the agent); like a hand-set key, later log() of k
    does not re-create it; deleting a missing key raises KeyError."""
    agent = AgentView()
    run.log({"a": 1.0, "b": 2.0})
    agent.apply(run)
    del run.summary["a"]
    assert dict(run.summary) == {"b": 2.0}
    run.log({"a": 3.0, "b": 4.0})
    assert dict(run.summary) == {"b": 4.0}
    assert agent.apply(run) == {"b": 4.0}
    with pytest.raises(KeyError):
        del run.summary["a"]


def test_delete_then_set_in_one_batch_keeps_the_new_value(run):
    """The agent applies a batch's summary before its control ops: a key deleted and then set
    again before the I/O thread ran must keep the new value at the agent."""
    agent = AgentView()
    run.log({"a": 1.0})
    agent.apply(run)
    del run.summary["a"]
    run.summary["a"] = 5.0
    assert agent.apply(run) == {"a": 5.0}
    assert dict(run.summary) == {"a": 5.0}


def test_keys_that_only_appear_in_late_rows_get_a_summary(run):
    """A late update is summarised: a key logged only late gets the value at its highest step;
    a late update older than the key's newest on-time value does not replace "last"; min/max
    include late values."""
    run.define_metric("m", summary="min,last")
    agent = AgentView()
    for i in range(4):
        run.log({"x": float(i), "m": 10.0 + i})
    run.log({"only_late": 5.0}, step=2)
    run.log({"only_late": 6.0}, step=1)  # arrives later but is older: not the last value
    run.log({"x": 99.0, "m": -1.0}, step=1)
    agent.apply(run)
    run.log({"only_late": 7.0}, step=3)  # a newer step in a later batch
    want = {"x": 3.0, "m": {"min": -1.0, "last": 13.0}, "only_late": 7.0}
    assert same(dict(run.summary), want)
    assert same(agent.apply(run), want)


def test_late_update_at_the_newest_step_replaces_last(run):
    """A late update of the key's newest step is the newest value of that step: it becomes "last"."""
    run.log({"x": 1.0})
    run.log({"y": 1.0})
    run.log({"x": 7.0}, step=0)
    assert dict(run.summary) == {"x": 7.0, "y": 1.0}


@pytest.mark.parametrize("bad", ["median", "", "min,foo", "none,min", 5, ["min", 3], {"min"}])
def test_bad_summary_argument_raises_naming_it(run, bad):
    """define_metric(summary=...) with an unknown kind or type raises InvalidArgumentError naming summary."""
    with pytest.raises(InvalidArgumentError, match=r"summary="):
        run.define_metric("x", summary=bad)


def test_define_metric_checks_name_and_goal(run):
    """define_metric needs a non-empty name; goal must be minimize or maximize."""
    with pytest.raises(InvalidArgumentError, match="name"):
        run.define_metric("", summary="min")
    with pytest.raises(InvalidArgumentError, match="goal"):
        run.define_metric("x", goal="up")
    assert run.define_metric("x", summary="MIN , max", goal="minimize")["name"] == "x"


def test_define_metric_is_forwarded_to_the_agent_with_parsed_kinds(run):
    """The define control carries the parsed list of kinds (empty for none)."""
    run.define_metric("a", summary="min,max")
    run.define_metric("b", summary="none")
    finish_offline(run)
    control = [c for b in drain_batches(run) for c in b.control]
    defines = [arg for op, arg in control if op == "define"]
    assert [(d["name"], d["summary"]) for d in defines] == [("a", ["min", "max"]), ("b", [])]


# ---------------------------------------------------------------- property: any values, any batch cut

_values = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6),
    st.just(float("nan")),
    st.integers(-100, 100),
    st.booleans(),
    st.none(),
    st.just("s"),
)


def _reference(vals: list) -> dict:
    nums = [v for v in vals if type(v) in (int, float, bool)]
    finite = [v for v in nums if v == v]
    out: dict[str, Any] = {"first": vals[0], "last": vals[-1]}
    if finite:
        out["min"] = min(finite, key=float)  # the first of equal minima, as logged
        out["max"] = max(finite, key=float)
    if nums:
        out["mean"] = sum(float(v) for v in nums) / len(nums)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vals=st.lists(_values, min_size=1, max_size=15), cuts=st.sets(st.integers(0, 14)))
def test_summary_equals_a_plain_reference_for_any_values_and_batch_cuts(vals, cuts):
    """For any sequence of numbers, bools, NaN, None and strings, and any points where the I/O
    thread cut batches: first/last are the logged values, min/max the first minimal/maximal number
    as logged (type kept, NaN skipped), mean over the numbers; the agent's view is the same."""
    run = offline_run()
    try:
        run.define_metric("v", summary="first,last,min,max,mean")
        agent = AgentView()
        for i, v in enumerate(vals):
            run.log({"v": v})
            if i in cuts:
                agent.apply(run)
        want = _reference(vals)
        got = dict(run.summary)["v"]
        assert same(agent.apply(run)["v"], got)
    finally:
        close(run)
    mean_want, mean_got = want.pop("mean", None), got.pop("mean", None)
    assert same(got, want)
    if mean_want is None:
        assert mean_got is None
    elif math.isnan(mean_want):
        assert math.isnan(mean_got)
    else:
        assert mean_got == pytest.approx(mean_want, rel=1e-12, abs=1e-9)
