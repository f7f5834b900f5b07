"""``define_metric(key, step_metric=M)`` as an x axis on the read side: ``RunView.history(x_axis=M)``,
``Group.history(key, x_axis=M)`` and the wandb-style ``Run.history(x_axis=M)`` pair every value with M's value in the same row; rows of keys defined
with M that lack it take M's latest earlier value (wandb's step_sync); other rows without M are left out."""

from __future__ import annotations

import pytest

import rankwise

STEPS = 40


def _hf_like_run() -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """Rows as HF's Trainer logs them: {"train/global_step": g, "train/loss": l} every step (g = 8 * step + 8),
    and every 10th step an eval row {"eval/acc": a} without the global step (synced: defined with it), plus an
    undefined key "lr" in rows of its own. Returns the expected (g, loss) and (g, acc) pairs."""
    run = rankwise.init(project="hf", group="g", rank=0, world_size=1)
    run.define_metric("train/global_step")
    run.define_metric("train/*", step_metric="train/global_step")
    run.define_metric("eval/*", step_metric="train/global_step")
    losses, accs = [], []
    for i in range(STEPS):
        g, loss = 8 * i + 8, 1.0 / (i + 1)
        run.log({"train/global_step": g, "train/loss": loss})
        losses.append((g, loss))
        if i % 10 == 9:
            acc = 0.5 + i / 100
            run.log({"eval/acc": acc})
            accs.append((g, acc))
            run.log({"lr": 0.1})
    run.finish()
    return losses, accs


def test_history_pairs_keys_with_their_step_metric(rankwise_env):
    """Both read APIs (and group rows): history(keys=[k], x_axis="train/global_step") gives exactly the (global step, value) pairs
    logged, for the training key (same row) and the eval key (its latest earlier global step); the key without
    a definition has no rows on that axis; the run lists its step metrics."""
    pytest.importorskip("pandas")
    losses, accs = _hf_like_run()
    api = rankwise.Api()
    view = api.group("hf", "g").run(rank=0)
    assert view.step_metric("train/loss") == "train/global_step" and view.step_metric("lr") is None
    assert view.step_metrics() == {"train/global_step": ["eval/*", "train/*"]}
    rows = view.history(keys=["train/loss"], x_axis="train/global_step")
    assert [(r["train/global_step"], r["train/loss"]) for r in rows] == losses
    rows = view.history(keys=["eval/acc"], x_axis="train/global_step")
    assert [(r["train/global_step"], r["eval/acc"]) for r in rows] == accs
    assert view.history(keys=["lr"], x_axis="train/global_step") == []
    g = api.group("hf", "g").history("train/loss", x_axis="train/global_step")
    assert list(zip(g["x"].tolist(), g["mean"].tolist())) == losses
    g = api.group("hf", "g").history("eval/acc", x_axis="train/global_step")
    assert list(zip(g["x"].tolist(), g["mean"].tolist())) == accs
    assert len(api.group("hf", "g").history("lr", x_axis="train/global_step")["x"]) == 0
    with pytest.raises(rankwise.Error, match="no numeric key 'epoch'"):
        api.group("hf", "g").history("train/loss", x_axis="epoch")

    (run,) = api.runs("hf")
    df = run.history(keys=["train/loss"], x_axis="train/global_step")
    assert list(df.columns) == ["train/loss", "train/global_step"]
    assert list(zip(df["train/global_step"].tolist(), df["train/loss"].tolist())) == losses
    df = run.history(keys=["eval/acc"], x_axis="train/global_step", samples=1000)
    assert list(zip(df["train/global_step"].tolist(), df["eval/acc"].tolist())) == accs
    assert run.history(keys=["lr"], x_axis="train/global_step", pandas=False) == []
    whole = run.history(x_axis="train/global_step", pandas=False, samples=10_000)
    assert len(whole) == STEPS + len(accs)  # every training row and every eval row; the lr rows left out
    assert all("lr" not in r for r in whole)


def test_step_sync_false_leaves_rows_without_the_metric_out(rankwise_env):
    """define_metric(k, step_metric=M, step_sync=False): a row of k without M has no x (wandb inserts nothing)."""
    run = rankwise.init(project="ns", group="g", rank=0, world_size=1)
    run.define_metric("v", step_metric="epoch", step_sync=False)
    run.log({"epoch": 1, "v": 1.5})
    run.log({"v": 2.5})
    run.log({"epoch": 2, "v": 3.5})
    run.finish()
    view = rankwise.Api().group("ns", "g").run(rank=0)
    assert [(r["epoch"], r["v"]) for r in view.history(keys=["v"], x_axis="epoch")] == [(1, 1.5), (2, 3.5)]
