"""Group rows do not depend on batching: a key that holds a string at one step among numbers at the
others gets a group row at every numeric step, whether the rows reached the agent in one batch (the
key's column travels as a msgpack list) or one row per batch (numeric arrays but one)."""

from __future__ import annotations

import numpy as np

import rankwise

STEPS = 20
ODD = 7  # the step that logs a string


def _log(group: str, slow: bool) -> tuple[int, int]:
    run = rankwise.init(project="mixed", group=group, rank=0, world_size=1)
    for s in range(STEPS):
        run.log({"x": "diverged" if s == ODD else float(s) * 0.5})
        if slow:
            assert run.flush(30)
    run.finish()
    return run.stats["rows_sent"], run.stats["unacked_rows"]


def _group_rows(group: str) -> tuple[list[int], list[float], list[int]]:
    h = rankwise.Api().group("mixed", group).history("x")
    return h["step"].tolist(), h["mean"].tolist(), h["count"].tolist()


def test_one_string_among_floats_leaves_a_group_row_at_every_numeric_step(rankwise_env):
    """20 rows of key x, a string at step 7, logged once in a burst and once one row per batch: both
    groups have the same 19 group rows (every step but 7), mean equal to the logged value, count 1;
    every row is sent and acknowledged and the string reads back at step 7."""
    assert _log("burst", slow=False) == (STEPS, 0)
    assert _log("slow", slow=True) == (STEPS, 0)
    numeric = [s for s in range(STEPS) if s != ODD]
    expected = (numeric, [s * 0.5 for s in numeric], [1] * len(numeric))
    assert _group_rows("burst") == expected
    assert _group_rows("slow") == expected
    for group in ("burst", "slow"):
        rows = rankwise.Api().group("mixed", group).run(rank=0).history()
        assert [r["x"] for r in rows] == [("diverged" if s == ODD else s * 0.5) for s in range(STEPS)]


def test_a_list_column_contributes_its_numbers_bools_included():
    """The agent-side rule (grouping/numbers.py numeric_entries): ints, floats and bools of a list column
    count, as they would in a numeric array; strings, None, lists and maps do not."""
    from grouping import numeric_entries

    where, values = numeric_entries([1, "a", 2.5, None, True, [1.0], {"_type": "image"}, float("nan")])
    assert where.tolist() == [0, 2, 4, 7]
    assert np.array_equal(values, [1.0, 2.5, 1.0, np.nan], equal_nan=True)
    where, values = numeric_entries(["a", None])
    assert (where.dtype, len(where), values.dtype, len(values)) == (np.int64, 0, np.float64, 0)
