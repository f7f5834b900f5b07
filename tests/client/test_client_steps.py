"""Step and commit semantics of ``Run.log``: wandb's rules (reference/wandb-run-log.md), plus
late updates (a step below the current one is kept and flagged, never dropped).

Runs are offline (no agent): the ops ``log()`` appends are assembled into batches and decoded by
the agent's own decoder, so every assertion is about what would reach the agent."""

from __future__ import annotations

import logging
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rankwise
from support.offline import close, drain_batches, final_rows, finish_offline, offline_run, rows_after, rows_of


@pytest.fixture
def run():
    r = offline_run()
    yield r
    close(r)


def test_log_commits_each_call_and_increments_the_step(run):
    """log(d) commits d at the current step and moves to the next one."""
    assert run.step == 0
    run.log({"a": 1})
    assert run.step == 1
    run.log({"a": 2, "b": 0.5})
    assert run.step == 2
    assert rows_after(run) == [
        {"_step": 0, "_late": False, "a": 1},
        {"_step": 1, "_late": False, "a": 2, "b": 0.5},
    ]


def test_commit_false_merges_into_the_pending_row_committed_by_the_next_log(run):
    """log(d, commit=False) only merges; the next log(d) commits the merged row at the same step."""
    run.log({"loss": 0.25}, commit=False)
    assert run.step == 0
    batches = drain_batches(run)
    assert sum(b.n for b in batches) == 0
    assert batches[-1].open_row[0] == 0 and batches[-1].open_row[2] == {"loss": 0.25}
    run.log({"acc": 0.75}, commit=False)
    run.log({"loss": 0.5}, commit=False)  # a later merge of the same key wins
    assert run.step == 0
    run.log({"epoch": 3})
    assert run.step == 1
    assert rows_after(run) == [{"_step": 0, "_late": False, "loss": 0.5, "acc": 0.75, "epoch": 3}]


def test_commit_true_without_step_commits_the_pending_row(run):
    """log(d, commit=True) merges d into the pending row and commits it at the current step."""
    run.log({"a": 1}, commit=False)
    run.log({"b": 2}, commit=True)
    assert run.step == 1
    run.log({}, commit=True)  # an empty commit still commits a (keyless) row and moves on
    assert run.step == 2
    assert rows_after(run) == [{"_step": 0, "_late": False, "a": 1, "b": 2}, {"_step": 1, "_late": False}]


def test_higher_step_commits_the_pending_row_and_becomes_pending(run):
    """log(d, step=s>cur): the pending row is committed at its own step, d is pending at s until
    commit=True, a later higher step, or the next plain log()."""
    run.log({"a": 1})  # row 0
    run.log({"b": 2}, commit=False)  # pending at 1
    run.log({"c": 3}, step=5)
    assert run.step == 5
    batches = drain_batches(run)
    assert rows_of(batches) == [{"_step": 0, "_late": False, "a": 1}, {"_step": 1, "_late": False, "b": 2}]
    assert batches[-1].open_row[0] == 5 and batches[-1].open_row[2] == {"c": 3}
    run.log({"d": 4}, step=7)  # a later higher step commits row 5
    assert run.step == 7
    assert rows_after(run) == [{"_step": 5, "_late": False, "c": 3}]
    run.log({"e": 5}, step=7, commit=True)
    assert run.step == 8
    run.log({"f": 6}, step=9, commit=False)  # commit=False with a higher step: pending as well
    assert run.step == 9
    run.log({"g": 7})  # a plain log() commits the pending row at its step
    assert run.step == 10
    assert rows_after(run) == [
        {"_step": 7, "_late": False, "d": 4, "e": 5},
        {"_step": 9, "_late": False, "f": 6, "g": 7},
    ]


def test_same_step_merges_until_commit(run):
    """log(d, step=cur) merges into the pending row without committing; commit=True commits it."""
    run.log({"a": 1}, step=0)
    run.log({"b": 2}, step=0)
    assert run.step == 0
    batches = drain_batches(run)
    assert sum(b.n for b in batches) == 0 and batches[-1].open_row[2] == {"a": 1, "b": 2}
    run.log({"c": 3}, step=0, commit=True)
    assert run.step == 1
    assert rows_after(run) == [{"_step": 0, "_late": False, "a": 1, "b": 2, "c": 3}]


def test_step_with_commit_true_commits_at_that_step_and_the_next_step_follows_it(run):
    """log(d, step=s, commit=True) with s > cur: the pending row is committed at its step, d at s,
    and the next plain log() uses s + 1."""
    run.log({"a": 1}, commit=False)
    run.log({"b": 2}, step=4, commit=True)
    assert run.step == 5
    run.log({"c": 3})
    assert run.step == 6
    assert rows_after(run) == [
        {"_step": 0, "_late": False, "a": 1},
        {"_step": 4, "_late": False, "b": 2},
        {"_step": 5, "_late": False, "c": 3},
    ]


def test_lower_step_is_kept_as_a_late_update_counted_and_warned_once(run, caplog):
    """log(d, step=s<cur) is not dropped (wandb drops it): it is a row flagged late at step s; the
    current step and the pending row are untouched; run.stats counts it; one warning in total."""
    for i in range(3):
        run.log({"x": float(i)})
    run.log({"p": 1}, commit=False)  # pending at 3
    with caplog.at_level(logging.WARNING, logger="rankwise"):
        run.log({"x": 9.0}, step=1)
        assert run.step == 3
        run.log({"y": 1}, step=0, commit=True)
        run.log({"y": 2}, step=2, commit=False)
    assert run.step == 3
    assert run.stats["late_updates"] == 3
    warnings = [r for r in caplog.records if "below the current step" in r.getMessage()]
    assert len(warnings) == 1
    assert "step=1" in warnings[0].getMessage()
    run.log({"q": 2})  # commits the pending row at 3, which the late updates did not touch
    assert run.step == 4
    assert rows_after(run) == [
        {"_step": 0, "_late": False, "x": 0.0},
        {"_step": 1, "_late": False, "x": 1.0},
        {"_step": 2, "_late": False, "x": 2.0},
        {"_step": 1, "_late": True, "x": 9.0},
        {"_step": 0, "_late": True, "y": 1},
        {"_step": 2, "_late": True, "y": 2},
        {"_step": 3, "_late": False, "p": 1, "q": 2},
    ]


def test_finish_commits_the_pending_row(run):
    """The finish op commits the pending row at its step, then carries the finish control."""
    run.log({"a": 1})
    run.log({"b": 2}, step=6)
    finish_offline(run, exit_code=0)
    batches = drain_batches(run)
    assert rows_of(batches) == [{"_step": 0, "_late": False, "a": 1}, {"_step": 6, "_late": False, "b": 2}]
    assert batches[-1].open_row is None
    assert [c[0] for c in batches[-1].control] == ["finish"]
    assert batches[-1].control[0][1]["exit_code"] == 0


def test_finish_without_pending_row_adds_no_row(run):
    """finish after committed rows only: nothing more is committed."""
    run.log({"a": 1})
    assert final_rows(run) == [{"_step": 0, "_late": False, "a": 1}]


def test_every_row_has_a_wall_clock_timestamp_and_non_negative_runtime(run):
    """_timestamp is the wall clock of the commit (epoch seconds), _runtime = timestamp - start >= 0,
    also for rows committed via pending, a higher step, finish and late updates."""
    before = time.time()
    run.log({"a": 1})
    run.log({"b": 1}, commit=False)
    run.log({"c": 1})
    run.log({"d": 1}, step=10)
    run.log({"e": 1}, step=12)
    run.log({"f": 1}, step=3)
    finish_offline(run)
    batches = drain_batches(run)
    after = time.time()
    t = [x for b in batches for x in b.t.tolist()]
    rt = [x for b in batches for x in b.runtime.tolist()]
    steps = [x for b in batches for x in b.step.tolist()]
    assert steps == [0, 1, 10, 3, 12]
    eps = 0.05  # time.time() vs perf_counter() conversion noise, far below any real clock error
    for ti, ri in zip(t, rt):
        assert before - eps <= ti <= after + eps
        assert ri >= 0.0
        assert abs(ri - (ti - run._started_wall)) < 1e-3
    on_time = [ti for ti, s in zip(t, steps) if s != 3]
    assert on_time == sorted(on_time)


def test_step_property_reports_the_next_commit_step(run):
    """run.step is the step the next committed row gets, after every kind of call."""
    seen = []
    run.log({"a": 1}, commit=False)
    seen.append(run.step)
    run.log({"a": 1})
    seen.append(run.step)
    run.log({"a": 1}, step=4)
    seen.append(run.step)
    run.log({"a": 1}, step=4)
    seen.append(run.step)
    run.log({"a": 1}, step=2)
    seen.append(run.step)
    run.log({"a": 1}, step=4, commit=True)
    seen.append(run.step)
    run.log({"a": 1}, commit=True)
    seen.append(run.step)
    assert seen == [0, 1, 4, 4, 4, 5, 6]


def test_module_level_log_before_init_raises_rankwise_error():
    """rankwise.log() without a current run raises rankwise.Error (wandb.Error in wandb)."""
    with pytest.raises(rankwise.Error, match="init"):
        rankwise.log({"a": 1})
    with pytest.raises(rankwise.Error, match="init"):
        rankwise.define_metric("a", summary="min")


def test_log_after_finish_raises_on_the_slow_path():
    """log() of a run that finished raises UsageError (not a silent drop), for new keys."""
    run = rankwise.init(project="unit", group="g", mode="disabled")
    run.finish()
    with pytest.raises(rankwise.UsageError, match="after finish"):
        run.log({"new": 1})


def test_log_after_finish_raises_for_known_keys_too():
    """A key seen before takes the fast path; after finish() it must raise all the same (and so
    must an empty dict, which the fast path also takes)."""
    run = offline_run(finish_timeout_s=0.0)
    run.log({"a": 1})
    run.finish()  # no I/O thread: returns at once (with a warning that nothing was acknowledged)
    try:
        with pytest.raises(rankwise.UsageError):
            run.log({"a": 2})
        with pytest.raises(rankwise.UsageError):
            run.log({})
    finally:
        close(run)


def test_real_agent_stores_the_rows_with_pending_committed_by_finish(rankwise_env):
    """Through a real agent: commit=False merge, a higher step, a late update and the pending row
    committed by finish() end up in the store with exactly these steps and values."""
    run = rankwise.init(project="steps", group="real", config={"lr": 0.1})
    run.log({"a": 1.0}, commit=False)
    run.log({"b": 2.0})  # row 0
    run.log({"a": 3.0}, step=4)  # pending at 4
    run.log({"b": 5.0}, step=4)  # still pending at 4
    run.log({"c": 7.0}, step=2)  # late update of row 2 (which has no other values)
    run.finish()
    with rankwise.Api() as api:
        view = api.group("steps", "real").run(rank=0)
        rows = [{k: v for k, v in r.items() if k not in ("_timestamp", "_runtime")} for r in view.history()]
        assert rows == [
            {"_step": 0, "a": 1.0, "b": 2.0},
            {"_step": 2, "c": 7.0},
            {"_step": 4, "a": 3.0, "b": 5.0},
        ]
        assert view.state == "finished"
        assert view.late_updates == 1
        assert view.config == {"lr": 0.1}


# ---------------------------------------------------------------- model-based property test


def _model(calls):
    """wandb's Run.log step rules plus late updates, written out plainly."""
    cur, pending, rows, steps = 0, None, [], []
    for data, step, commit in calls:
        if step is None or step == cur:
            if pending is None:
                pending = {}
            pending.update(data)
            if commit is not False and (step is None or commit is True):
                rows.append((cur, False, pending))
                pending = None
                cur += 1
        elif step > cur:
            if pending is not None:
                rows.append((cur, False, pending))
            cur, pending = step, dict(data)
            if commit is True:
                rows.append((cur, False, pending))
                pending = None
                cur += 1
        else:
            rows.append((step, True, dict(data)))
        steps.append(cur)
    if pending is not None:
        rows.append((cur, False, pending))
    return rows, steps


_calls = st.lists(
    st.tuples(
        st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(-5, 5), max_size=3),
        st.one_of(st.none(), st.integers(0, 12)),
        st.sampled_from([None, True, False]),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls=_calls, sync_every=st.integers(1, 6))
def test_any_sequence_of_calls_matches_the_reference_model(calls, sync_every):
    """For random sequences of log(d, step, commit) (and drains at random points, i.e. any batch
    cut), the committed rows, late flags and run.step equal a plain model of wandb's rules."""
    run = offline_run()
    try:
        got_steps, rows = [], []
        for i, (data, step, commit) in enumerate(calls):
            run.log(data, step=step, commit=commit)
            got_steps.append(run.step)
            if i % sync_every == 0:
                rows += rows_after(run)
        finish_offline(run)
        rows += rows_after(run)
    finally:
        close(run)
    want_rows, want_steps = _model(calls)
    assert got_steps == want_steps
    assert rows == [dict({"_step": s, "_late": late}, **d) for s, late, d in want_rows]
