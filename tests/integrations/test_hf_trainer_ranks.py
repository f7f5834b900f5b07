"""A transformers Trainer under real 2-process DDP (torchrun, gloo on CPU) with RankwiseCallback: every
rank is a run of one group and logs its own values, and the group rows are numpy over the two ranks."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import rankwise

pytest.importorskip("torch", reason="torch is installed by the test extra")
pytest.importorskip("transformers", reason="transformers is installed by the test extra")

STEPS = 4

SCRIPT = """
import json, os, torch, transformers
from rankwise.integrations.transformers import RankwiseCallback

class Data(torch.utils.data.Dataset):          # synthetic: no hub download
    def __len__(self):
        return 64
    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        ids = torch.randint(0, 40, (8,), generator=g)
        return {"input_ids": ids, "labels": ids}

class Truth(transformers.TrainerCallback):
    # what this rank had, recorded independently of RankwiseCallback: its own losses (a hook of its own)
    # and the Trainer's logs
    def __init__(self):
        self.losses, self.logs, self.cur = {}, [], []
    def on_train_begin(self, args, state, control, model=None, **kw):
        model.register_forward_hook(lambda m, a, out: self.cur.append(out.loss.detach().reshape(())) if m.training else None)
    def on_step_begin(self, args, state, control, **kw):
        self.cur = []
    def on_step_end(self, args, state, control, **kw):
        self.losses[state.global_step] = torch.stack(self.cur).float().mean().item()
    def on_log(self, args, state, control, logs=None, **kw):
        self.logs.append([state.global_step, dict(logs)])

torch.manual_seed(0)
cfg = transformers.GPT2Config(vocab_size=40, n_positions=8, n_embd=16, n_layer=1, n_head=2)
model = transformers.GPT2LMHeadModel(cfg)
args = transformers.TrainingArguments(
    output_dir=os.environ["OUT"], per_device_train_batch_size=4, max_steps=%(steps)d, logging_steps=1,
    report_to="none", save_strategy="no", use_cpu=True, ddp_backend="gloo", disable_tqdm=True,
    dataloader_num_workers=0, seed=0)
cb, truth = RankwiseCallback(project="hf"), Truth()
trainer = transformers.Trainer(model=model, args=args, train_dataset=Data(), callbacks=[cb, truth])
trainer.train()
rank = args.process_index
with open(os.path.join(os.environ["REPORTS"], f"{rank}.json"), "w") as f:
    json.dump({"rank": rank, "world": args.world_size, "group": cb.run.group, "losses": truth.losses,
               "logs": truth.logs}, f)
"""


def _sealed(project: str, group: str, through: int, deadline_s: float = 60.0):
    """The group once the agent has sealed it through ``through`` (it seals on its next tick after the
    last rank finished, which may be just after the processes exit)."""
    deadline = time.monotonic() + deadline_s
    while True:
        g = rankwise.Api().group(project, group)
        if g.sealed_through >= through or time.monotonic() > deadline:
            return g
        time.sleep(0.05)


def test_hf_trainer_logs_every_rank(rankwise_env, tmp_path):
    """torchrun --nproc-per-node 2 trains a tiny GPT-2 (built from a config) for 4 steps with
    RankwiseCallback. One group with runs rank-0 and rank-1; per rank and step, train/rank_loss equals
    the mean of that rank's own micro-batch losses as recorded by a separate callback, the Trainer's
    logs (train/loss, train/learning_rate, train/grad_norm, train/epoch) are stored value by value,
    perf/step_time_s > 0 and perf/samples_per_s * perf/step_time_s == 4 (the per-device batch); the
    group rows of train/rank_loss are numpy's mean/min/max/std over the two ranks."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT % {"steps": STEPS}))
    reports = tmp_path / "reports"
    reports.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script)]
    env = rankwise_env.env(REPORTS=str(reports), OUT=str(tmp_path / "out"), OMP_NUM_THREADS=1)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    rep = {r["rank"]: r for r in (json.loads(p.read_text()) for p in reports.glob("*.json"))}
    assert sorted(rep) == [0, 1] and {r["world"] for r in rep.values()} == {2}
    assert rep[0]["group"] == rep[1]["group"]

    g = _sealed("hf", rep[0]["group"], STEPS)
    assert [(r.rank, r.name, r.state) for r in g.runs] == [(0, "rank-0", "finished"), (1, "rank-1", "finished")]
    steps = np.arange(1, STEPS + 1)
    rank_loss = np.array([[rep[k]["losses"][str(s)] for s in steps] for k in (0, 1)])
    assert not np.array_equal(rank_loss[0], rank_loss[1]), "the ranks saw the same data"
    for k in (0, 1):
        run = g.run(rank=k)
        hist = run.history_arrays(None)
        s, v = hist["train/rank_loss"]
        assert np.array_equal(s, steps) and np.array_equal(np.asarray(v, float), rank_loss[k])
        logged = [(step, logs) for step, logs in rep[k]["logs"] if "loss" in logs]
        assert [step for step, _ in logged] == list(steps)
        for name in ("loss", "learning_rate", "grad_norm", "epoch"):
            s, v = hist["train/" + name]
            assert np.array_equal(s, steps), name
            assert np.asarray(v, float).tolist() == [logs[name] for _, logs in logged], name
        s_t, t = hist["perf/step_time_s"]
        s_r, r = hist["perf/samples_per_s"]
        assert np.array_equal(s_t, steps) and np.array_equal(s_r, steps)
        t, r = np.asarray(t, float), np.asarray(r, float)
        assert (t > 0).all()
        np.testing.assert_allclose(r * t, 4.0, rtol=1e-12)
        s, v = hist["train/global_step"]
        assert np.array_equal(np.asarray(v), steps)
    h = g.history("train/rank_loss")
    assert np.array_equal(h["step"], steps)
    assert np.array_equal(h["count"], np.full(STEPS, 2)) and np.array_equal(h["expected"], np.full(STEPS, 2))
    assert np.array_equal(h["min"], rank_loss.min(axis=0)) and np.array_equal(h["max"], rank_loss.max(axis=0))
    assert np.array_equal(h["min_rank"], rank_loss.argmin(axis=0)) and np.array_equal(
        h["max_rank"], rank_loss.argmax(axis=0)
    )
    np.testing.assert_allclose(h["mean"], rank_loss.mean(axis=0), rtol=1e-15)
    np.testing.assert_allclose(h["std"], rank_loss.std(axis=0), rtol=1e-12, atol=1e-15)
