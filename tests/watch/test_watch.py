"""run.watch(model): wandb's gradient/parameter histograms from a real torch model trained on CPU."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from support.offline import drain_batches, offline_run, rows_of  # noqa: E402 - after importorskip
from support.processes import run_ranks  # noqa: E402 - after importorskip


def expected_hist(t: torch.Tensor) -> dict:
    """What the histogram of tensor ``t`` must be: torch.histc over [min, max], 64 bins, edges linspace."""
    flat = t.detach().reshape(-1)  # binned in the tensor's own dtype, as on the device
    lo, hi = flat.min().item(), flat.max().item()
    if lo == hi:
        return {"bins": [lo - 0.5, lo + 0.5], "values": [flat.numel()]}
    counts = torch.histc(flat, bins=64, min=lo, max=hi)
    return {"bins": torch.linspace(lo, hi, 65, dtype=torch.float64).tolist(), "values": [int(c) for c in counts]}


def train(run, steps: int, seed: int, log: str, log_freq: int):
    """A 2-layer MLP, SGD, ``steps`` steps; returns per step the parameters seen by forward and the gradients."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run.watch(model, log=log, log_freq=log_freq)
    g = torch.Generator().manual_seed(seed)
    seen = []
    for _ in range(steps):
        x, y = torch.randn(16, 4, generator=g), torch.randn(16, 2, generator=g)
        params = {n: p.detach().clone() for n, p in model.named_parameters()}
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
        opt.step()
        run.log({"loss": loss.item()})
        seen.append((params, grads))
    return model, seen


NAMES = ["0.weight", "0.bias", "2.weight", "2.bias"]
NUMEL = {"0.weight": 32, "0.bias": 8, "2.weight": 16, "2.bias": 2}


def test_watch_all_logs_histograms_every_log_freq_steps_equal_to_histc():
    """log="all", log_freq=3 over 8 steps: rows 2 and 5 (the 3rd and 6th calls) hold gradients/<name> and
    parameters/<name> for all 4 parameters, nothing at other steps; each histogram's counts are torch.histc
    of the real tensor (summing to its element count) and its edges run from its min to its max."""
    run = offline_run()
    _, seen = train(run, steps=8, seed=1, log="all", log_freq=3)
    rows = rows_of(drain_batches(run))
    assert [r["_step"] for r in rows] == list(range(8))
    for r in rows:
        hist_keys = sorted(k for k in r if k.startswith(("gradients/", "parameters/")))
        if r["_step"] in (2, 5):
            assert hist_keys == sorted([f"gradients/{n}" for n in NAMES] + [f"parameters/{n}" for n in NAMES])
        else:
            assert hist_keys == [], r["_step"]
            continue
        params, grads = seen[r["_step"]]
        for n in NAMES:
            for kind, tensors in (("gradients", grads), ("parameters", params)):
                h = r[f"{kind}/{n}"]
                want = expected_hist(tensors[n])
                assert h["_type"] == "histogram"
                assert h["values"] == want["values"], (kind, n)
                assert h["bins"] == want["bins"], (kind, n)
                assert sum(h["values"]) == tensors[n].numel()
                assert h["bins"][0] == tensors[n].min().item() and h["bins"][-1] == tensors[n].max().item()
    run.finish()


def test_watch_gradients_only_then_unwatch_stops_logging():
    """log="gradients" (wandb's default) logs no parameters/ keys; watching again replaces the hooks; after
    unwatch(model) nothing more is logged."""
    run = offline_run()
    model, _ = train(run, steps=4, seed=2, log="gradients", log_freq=2)
    rows = rows_of(drain_batches(run))
    with_hist = [(r["_step"], sorted(k for k in r if "/" in k)) for r in rows]
    assert with_hist == [
        (0, []),
        (1, [f"gradients/{n}" for n in sorted(NAMES)]),
        (2, []),
        (3, [f"gradients/{n}" for n in sorted(NAMES)]),
    ]
    run.watch(model, log="gradients", log_freq=1)  # watching again replaces the hooks: one set, not two
    assert sum(len(w.handles) for w in run._watches) == 4
    run.unwatch(model)
    assert run._watches == []
    x = torch.randn(3, 4)
    for _ in range(4):
        model(x).sum().backward()
        run.log({"loss": 0.0})
    rows = rows_of(drain_batches(run))
    assert [sorted(r) for r in rows] == [["_late", "_step", "loss"]] * 4
    run.finish()


def test_watch_second_model_gets_graph_prefix_and_bad_arguments_are_named():
    """The second watched model's keys are prefixed graph_1 as wandb's; log= and log_freq= are checked."""
    import rankwise

    run = offline_run()
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    run.watch(a, log="parameters", log_freq=1)
    run.watch(b, log="parameters", log_freq=1)
    a(torch.ones(1, 2)), b(torch.ones(1, 2))
    run.log({"x": 1})
    (row,) = rows_of(drain_batches(run))
    assert sorted(k for k in row if "/" in k) == [
        "parameters/bias",
        "parameters/graph_1bias",
        "parameters/graph_1weight",
        "parameters/weight",
    ]
    with pytest.raises(rankwise.Error, match="log="):
        run.watch(a, log="weights")
    with pytest.raises(rankwise.Error, match="log_freq"):
        run.watch(a, log_freq=0)
    with pytest.raises(rankwise.Error, match="torch.nn.Module"):
        run.watch(object())
    run.finish()


RANK_SCRIPT = """
import json, os
import torch
import rankwise
from watch.test_watch import train, expected_hist, NAMES
rank = int(os.environ["RANK"])
run = rankwise.init(project="w", group="wg")
_, seen = train(run, steps=4, seed=10 + rank, log="gradients", log_freq=2)
run.finish()
print(json.dumps({str(s): {n: expected_hist(seen[s][1][n]) for n in NAMES} for s in (1, 3)}))
"""


def test_two_ranks_group_histogram_merges_both(rankwise_env):
    """Two ranks (different data) watch the same model: each rank's stored gradients/<name> at steps 1 and 3
    equal its own histc histograms, and Group.histograms(key) is their merge over ranks [0, 1]."""
    from grouping.histogram import merge_histograms
    from rankwise import Api

    results = run_ranks(rankwise_env, RANK_SCRIPT, world=2, group="wg")
    want = [json.loads(out.strip().splitlines()[-1]) for _, out, _ in results]
    g = Api().group("w", "wg")
    for n in NAMES:
        key = f"gradients/{n}"
        for rank in (0, 1):
            own = g.histograms(key, rank=rank)
            assert [s for s, _ in own] == [1, 3]
            for s, h in own:
                assert (h["bins"], h["values"]) == (want[rank][str(s)][n]["bins"], want[rank][str(s)][n]["values"])
        merged = g.histograms(key)
        assert [s for s, _ in merged] == [1, 3]
        for s, h in merged:
            expect = merge_histograms([dict(want[r][str(s)][n], _type="histogram") for r in (0, 1)])
            assert h["ranks"] == [0, 1]
            assert (h["bins"], h["values"]) == (expect["bins"], expect["values"])
            assert sum(h["values"]) == 2 * NUMEL[n]  # both ranks' gradients, every element counted once


def test_tensor_histogram_edge_cases():
    """NaN and ±inf are left out (as wandb); one repeated value is one bin [v-0.5, v+0.5]; half precision and
    integer tensors are binned too; an all-NaN tensor gives no histogram."""
    from client.watch import tensor_histogram

    h = tensor_histogram(torch.tensor([1.0, 2.0, float("nan"), float("inf"), -float("inf"), 3.0]))._to_wire()
    assert sum(h["values"]) == 3 and h["bins"][0] == 1.0 and h["bins"][-1] == 3.0 and len(h["values"]) == 64
    assert h["values"][0] == 1 and h["values"][-1] == 1
    want = {"_type": "histogram", "bins": [2.0, 3.0], "values": [5]}
    assert tensor_histogram(torch.full((5,), 2.5))._to_wire() == want
    hb = tensor_histogram(torch.tensor([0.0, 1.0], dtype=torch.bfloat16))._to_wire()
    assert (hb["bins"][0], hb["bins"][-1], sum(hb["values"])) == (0.0, 1.0, 2)
    hi = tensor_histogram(torch.arange(10))._to_wire()
    assert (hi["bins"][0], hi["bins"][-1], sum(hi["values"])) == (0.0, 9.0, 10)
    assert tensor_histogram(torch.tensor([float("nan")])) is None
