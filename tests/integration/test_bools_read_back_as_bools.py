"""Bools read back as bools (issue 9, "Also"; wandb keeps them): in a run's history a logged ``True`` is
``True``, not ``1.0``, whether the key also holds floats or ints in the same batch, in the same agent
commit or in other commits; group rows stay numeric (a bool counts as 0/1)."""

from __future__ import annotations

import numpy as np

import rankwise


def test_bools_next_to_numbers_of_the_same_key_read_back_as_bools(rankwise_env):
    """Key "flag": True alone (own commit), 1.5, then False and 2 in one batch, then np.bool_(True) and
    0.25 in one batch; key "b": only bools over three commits. Every value reads back with its type, the
    group rows are the values as numbers."""
    run = rankwise.init(project="bools", group="g", rank=0, world_size=1)
    run.log({"flag": True, "b": True})
    assert run.flush(30)
    run.log({"flag": 1.5, "b": False})
    assert run.flush(30)
    run.log({"flag": False, "b": True})
    run.log({"flag": 2})
    assert run.flush(30)
    run.log({"flag": np.bool_(True)})
    run.log({"flag": 0.25})
    run.finish()
    api = rankwise.Api()
    rows = api.group("bools", "g").run(rank=0).history()
    flag = [(r["_step"], r["flag"], type(r["flag"]).__name__) for r in rows]
    assert flag == [
        (0, True, "bool"),
        (1, 1.5, "float"),
        (2, False, "bool"),
        (3, 2, "int"),
        (4, True, "bool"),
        (5, 0.25, "float"),
    ]
    b = [(r["_step"], r["b"], type(r["b"]).__name__) for r in rows if "b" in r]
    assert b == [(0, True, "bool"), (1, False, "bool"), (2, True, "bool")]
    g = api.group("bools", "g").history("flag")
    assert g["step"].tolist() == [0, 1, 2, 3, 4, 5]
    assert g["mean"].tolist() == [1.0, 1.5, 0.0, 2.0, 1.0, 0.25]
    assert api.group("bools", "g").history("b")["max"].tolist() == [1.0, 0.0, 1.0]
