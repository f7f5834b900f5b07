"""An unmodified Lightning script with ``WandbLogger`` under RANKWISE_AS_WANDB=1 (a real process): the
default logger (save_dir "."), ``offline=True`` (Lightning sets WANDB_MODE=dryrun) and ``save_dir``
elsewhere. Every ``log_metrics`` call Lightning made is one stored row with exactly its values plus
``trainer/global_step``; the store stays in RANKWISE_DIR, the run's files go under save_dir."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import rankwise

pytest.importorskip("lightning", reason="lightning is in the test extra on x86_64 / Python 3.11")
pytest.importorskip("torch")

SCRIPT = """
import json, os, sys
import torch
import lightning.pytorch as pl
from lightning.pytorch.loggers import WandbLogger

torch.manual_seed(0)


class Net(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, i):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=False)
        self.log("w0", self.layer.weight[0, 0].detach(), on_step=True, on_epoch=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Recording(WandbLogger):
    calls = []

    def log_metrics(self, metrics, step=None):
        Recording.calls.append({"metrics": {k: float(v) for k, v in metrics.items()}, "step": step})
        super().log_metrics(metrics, step)


kw = {"project": "pl"}
if sys.argv[1] == "offline":
    kw["offline"] = True
elif sys.argv[1] == "save_dir":
    kw["save_dir"] = os.environ["SAVE_DIR"]
logger = Recording(**kw)
x, y = torch.randn(24, 4), torch.randn(24, 1)
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
trainer = pl.Trainer(max_epochs=2, logger=logger, log_every_n_steps=1, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)
trainer.fit(Net(), loader)
run = logger.experiment
with open(os.environ["REPORT"], "w") as f:
    json.dump({"calls": Recording.calls, "group": run.group, "name": run.name, "id": run.id, "dir": run.dir,
               "mode": run.settings.mode, "wandb_mode": os.environ.get("WANDB_MODE")}, f)
"""


@pytest.mark.parametrize("variant", ["default", "offline", "save_dir"])
def test_wandb_logger_is_stored_value_by_value(rankwise_env, tmp_path, variant):
    """12 training steps and 2 epoch ends: 14 log_metrics calls, 14 stored rows equal to them; offline is
    accepted (mode offline, still stored); no store file is created in the working directory or
    save_dir, and run.dir lies under save_dir (the working directory by default)."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    work, save_dir = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    report = tmp_path / "report.json"
    env = rankwise_env.env(RANKWISE_AS_WANDB="1", REPORT=str(report), SAVE_DIR=str(save_dir))
    proc = subprocess.run(
        [sys.executable, str(script), variant], cwd=work, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    info = json.loads(report.read_text())
    calls = info["calls"]
    assert len(calls) == 14
    if variant == "offline":
        assert (info["wandb_mode"], info["mode"]) == ("dryrun", "offline")
    base = save_dir if variant == "save_dir" else work
    assert info["dir"] == str(base / "wandb" / f"run-{info['id']}" / "files")

    (stored,) = rankwise.Api().group("pl", info["group"]).runs
    assert (stored.state, stored.rows) == ("finished", len(calls))
    rows = stored.history()
    assert [r["_step"] for r in rows] == list(range(len(calls)))
    got = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    assert got == [dict(c["metrics"], **{"trainer/global_step": c["step"]}) for c in calls]
    assert not list(tmp_path.rglob("store.sqlite*"))
