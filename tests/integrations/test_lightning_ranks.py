"""Lightning's Trainer(strategy="ddp", accelerator="cpu", devices=2) with RankwiseLogger, started as a
plain script (Lightning's own launcher re-runs it for rank 1): every rank's self.log values land in its
own run of one group, and the group rows are numpy over the two ranks."""

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
pytest.importorskip("lightning", reason="lightning is installed by the test extra")

STEPS = 5

SCRIPT = """
import json, os, torch, lightning as L
from rankwise.integrations.lightning import RankwiseLogger

class Module(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.save_hyperparameters({"width": 4, "lr": 0.1})
        self.layer = torch.nn.Linear(4, 1)
        self.seen = []                     # (global_step, loss) as this rank computed it: the truth
    def training_step(self, batch, i):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.seen.append([self.global_step, loss.item()])
        self.log("train_loss", loss)       # no sync_dist: this rank's own value
        self.log("rank_x", float(self.global_rank * 100 + self.global_step))
        return loss
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

g = torch.Generator().manual_seed(0)
x = torch.randn(64, 4, generator=g)
data = torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True) * 0.5)
model = Module()
logger = RankwiseLogger(project="pl")
trainer = L.Trainer(strategy="ddp", accelerator="cpu", devices=2, max_steps=%(steps)d, log_every_n_steps=1,
                    enable_progress_bar=False, enable_model_summary=False,
                    logger=logger, default_root_dir=os.environ["OUT"])
trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=4))
run = logger.experiment
with open(os.path.join(os.environ["REPORTS"], f"{trainer.global_rank}.json"), "w") as f:
    json.dump({"rank": trainer.global_rank, "world": trainer.world_size, "group": run.group,
               "run_rank": run.rank, "seen": model.seen, "elastic_id": os.environ.get("TORCHELASTIC_RUN_ID")}, f)
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


@pytest.mark.parametrize("launcher", ["lightning", "torchrun"])
def test_lightning_ddp_logs_every_rank(rankwise_env, tmp_path, launcher):
    """5 steps of a tiny linear model on 2 CPU ranks (gloo), started by Lightning's own launcher (plain
    ``python train.py``: one group named by the logger of the main process) or by torchrun (the group is
    torchrun's run id); runs rank-0 and rank-1 (ranks from torch.distributed); each run's train_loss equals, step by
    step, the loss that rank computed in training_step, and rank_x is 100*rank+step; the config holds the
    module's hyperparameters; the checkpoint lands in <root>/pl/<group>/checkpoints; group rows of train_loss are numpy's mean/min/max over the two ranks."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT % {"steps": STEPS}))
    reports = tmp_path / "reports"
    reports.mkdir()
    env = rankwise_env.env(REPORTS=str(reports), OUT=str(tmp_path / "out"), OMP_NUM_THREADS=1)
    cmd = [sys.executable, str(script)]
    if launcher == "torchrun":
        cmd[1:1] = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-4000:]
    rep = {r["rank"]: r for r in (json.loads(p.read_text()) for p in reports.glob("*.json"))}
    assert sorted(rep) == [0, 1] and {r["world"] for r in rep.values()} == {2}
    assert rep[0]["group"] == rep[1]["group"]
    if launcher == "torchrun":
        assert rep[0]["group"] == rep[0]["elastic_id"]
    else:
        assert rep[0]["group"].startswith("lightning-") and rep[0]["elastic_id"] is None
    assert [rep[k]["run_rank"] for k in (0, 1)] == [0, 1]
    # logger.version is the group on every rank: Lightning's checkpoints go to <root>/<project>/<group>/
    assert [p.name for p in (tmp_path / "out" / "pl" / rep[0]["group"] / "checkpoints").iterdir()] == [
        f"epoch=0-step={STEPS}.ckpt"
    ]

    g = _sealed("pl", rep[0]["group"], STEPS - 1)
    assert [(r.rank, r.state) for r in g.runs] == [(0, "finished"), (1, "finished")]
    seen = {k: np.array(rep[k]["seen"]) for k in (0, 1)}
    for k in (0, 1):
        assert np.array_equal(seen[k][:, 0], np.arange(STEPS))
        run = g.run(rank=k)
        assert run.config["width"] == 4 and run.config["lr"] == 0.1
        hist = run.history_arrays(["train_loss", "rank_x"])
        s, v = hist["train_loss"]
        assert np.array_equal(s, np.arange(STEPS)), s  # Lightning logs batch i at step i (optimizer steps before it)
        assert np.asarray(v, float).tolist() == seen[k][:, 1].tolist()
        s2, v2 = hist["rank_x"]
        assert np.array_equal(s2, s) and np.asarray(v2, float).tolist() == [100.0 * k + i for i in range(STEPS)]
    loss = np.stack([seen[k][:, 1] for k in (0, 1)])
    assert not np.array_equal(loss[0], loss[1]), "the ranks saw the same data"
    h = g.history("train_loss")
    assert np.array_equal(h["step"], np.arange(STEPS))
    assert np.array_equal(h["count"], np.full(STEPS, 2)) and np.array_equal(h["expected"], np.full(STEPS, 2))
    assert np.array_equal(h["min"], loss.min(axis=0)) and np.array_equal(h["max"], loss.max(axis=0))
    assert np.array_equal(h["min_rank"], loss.argmin(axis=0)) and np.array_equal(h["max_rank"], loss.argmax(axis=0))
    np.testing.assert_allclose(h["mean"], loss.mean(axis=0), rtol=1e-15)
    np.testing.assert_allclose(h["std"], loss.std(axis=0), rtol=1e-12, atol=1e-15)
