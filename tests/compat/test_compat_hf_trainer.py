"""An unmodified transformers ``Trainer(report_to="wandb")`` script under RANKWISE_AS_WANDB=1 (a real
process; a tiny BERT built from a config, synthetic tensors: no hub download): what HF's WandbCallback
logged (the Trainer's logs, rewritten by HF's own ``rewrite_logs``, plus ``train/global_step``) is what
the store holds, row by row and value by value, and the single-value results are in the summary."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import rankwise

pytest.importorskip("transformers", reason="transformers is in the test extra on x86_64 / Python 3.11")
pytest.importorskip("torch")

SCRIPT = """
import json, os, sys
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

torch.manual_seed(0)
cfg = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                 max_position_embeddings=16, num_labels=2)
model = BertForSequenceClassification(cfg)
gen = torch.Generator().manual_seed(0)
data = [{"input_ids": torch.randint(0, 40, (8,), generator=gen), "labels": torch.tensor(i % 2)} for i in range(32)]


class Record(TrainerCallback):
    logged = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        Record.logged.append({"global_step": state.global_step, "logs": dict(logs)})


out = sys.argv[1]
args = TrainingArguments(output_dir=out, run_name=out, report_to="wandb", logging_steps=1, max_steps=6,
                         per_device_train_batch_size=4, use_cpu=True, save_strategy="no", disable_tqdm=True,
                         eval_strategy="steps", eval_steps=3, per_device_eval_batch_size=8)
trainer = Trainer(model=model, args=args, train_dataset=data, eval_dataset=data[:8], callbacks=[Record()])
trainer.train()
import wandb
with open(os.environ["REPORT"], "w") as f:
    json.dump({"logged": Record.logged, "module": wandb.__file__, "project": wandb.run.project,
               "group": wandb.run.group, "name": wandb.run.name}, f)
"""

SINGLE_VALUE = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos")


def test_trainer_report_to_wandb_is_stored_value_by_value(rankwise_env, tmp_path):
    """Each on_log of the Trainer is one stored row (steps 0..n-1) whose keys and values equal HF's
    rewritten logs plus train/global_step; the run is named after the output directory ('/' kept), lives
    in project "huggingface" of RANKWISE_DIR (not in the output directory), and its summary holds the
    single-value results and the model's parameter count in the config."""
    from transformers.integrations.integration_utils import rewrite_logs

    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    out_dir = tmp_path / "out" / "bert-tiny"
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(script), str(out_dir)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=rankwise_env.env(RANKWISE_AS_WANDB="1", REPORT=str(report)),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    info = json.loads(report.read_text())
    assert info["module"].endswith("rankwise/wandb_compat/__init__.py")
    assert (info["project"], info["name"]) == ("huggingface", str(out_dir))
    logged = info["logged"]
    assert len(logged) == 9  # 6 training logs, 2 evaluations, the final train summary

    expected_rows, expected_summary = [], {}
    for entry in logged:
        logs = entry["logs"]
        expected_summary.update({k: v for k, v in logs.items() if k in SINGLE_VALUE})
        row = rewrite_logs({k: v for k, v in logs.items() if k not in SINGLE_VALUE})
        row["train/global_step"] = entry["global_step"]
        expected_rows.append(row)

    group = rankwise.Api().group("huggingface", info["group"])
    (stored,) = group.runs
    assert (stored.name, stored.state, stored.rows) == (str(out_dir), "finished", len(expected_rows))
    rows = stored.history()
    assert [r["_step"] for r in rows] == list(range(len(expected_rows)))
    got = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    assert got == expected_rows
    for key, value in expected_summary.items():
        assert stored.summary[key] == value, key
    assert stored.config["model/num_parameters"] == sum(p.numel() for p in _tiny_model().parameters())
    assert stored.config["learning_rate"] == 5e-05 and stored.meta["label"] == {"code": "transformers_trainer"}
    assert not list(tmp_path.rglob("store.sqlite*"))


def _tiny_model():
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
    )
    return BertForSequenceClassification(cfg)
