"""``RankwiseCallback``: every process of a transformers ``Trainer`` logs into its own run of the job's group.

    from rankwise.integrations.transformers import RankwiseCallback
    trainer = Trainer(model, args, train_dataset=ds, callbacks=[RankwiseCallback(project="llm")])

What each rank really has, read from transformers 5 (trainer.py, trainer_callback.py):

* ``on_log`` fires on every process with the same ``logs``: the Trainer all-gathers the training loss
  and averages it over ranks before logging (``nested_gather(tr_loss).mean()``); learning rate, grad
  norm (of the synchronised gradients) and epoch are the same everywhere too. They are logged as wandb's
  callback names them (``train/loss``, ``eval/loss``, ...): the group row of such a key has ``std`` 0.
* What differs per rank is measured here, per optimizer step (``on_step_begin`` → ``on_step_end``):
  ``train/rank_loss``, the mean of this rank's own micro-batch losses (a forward hook on the model reads
  the loss the model returned in training mode), ``perf/step_time_s`` (wall time of the step on this
  rank, the wait in the gradient all-reduce included: a slow rank makes the others wait) and
  ``perf/samples_per_s`` (samples this rank processed in the step / its step time).

Rows are logged at ``step=state.global_step``, so rankwise's step is the Trainer's global step.
Rank, world size and local rank come from ``TrainingArguments`` (``process_index``, ``world_size``,
``local_process_index``); the group from the launcher (torchrun, SLURM, MPI) or ``group=``.
The run is finished when the process exits (``finish_on_train_end=True`` finishes it after
``train()``; evaluation logged later then goes nowhere).

Cost: one host sync per step for the rank loss (``.item()`` of a 0-d tensor), as the Trainer's own NaN
filter (``logging_nan_inf_filter``, on by default) already does every step.
"""

from __future__ import annotations

import os
import time
from typing import Any

from rankwise.integrations import sanitize_config
from rankwise.integrations.errors import need

_transformers = need("transformers", "transformers", "rankwise.integrations.transformers.RankwiseCallback")
_torch = need("torch", "torch", "rankwise.integrations.transformers.RankwiseCallback")

__all__ = ["RankwiseCallback", "rewrite_logs"]


def rewrite_logs(logs: dict[str, Any]) -> dict[str, Any]:
    """The Trainer's log keys as wandb's callback writes them: ``eval_x`` → ``eval/x``, ``test_x`` →
    ``test/x``, anything else → ``train/x``."""
    out = {}
    for k, v in logs.items():
        if k.startswith("eval_"):
            out["eval/" + k[5:]] = v
        elif k.startswith("test_"):
            out["test/" + k[5:]] = v
        else:
            out["train/" + k] = v
    return out


class RankwiseCallback(_transformers.TrainerCallback):
    """Logs every rank of a (distributed) Trainer to rankwise; see the module's docstring for the keys.

    Arguments are :func:`rankwise.init`'s (``project``, ``group``, ``name``, ``config`` and any keyword
    it takes); ``project`` defaults to ``WANDB_PROJECT`` or ``"huggingface"``. The Trainer's arguments
    and the model's config are added to the run's config. ``run`` is the rankwise run once training has
    begun (None before)."""

    def __init__(
        self,
        project: str | None = None,
        group: str | None = None,
        name: str | None = None,
        config: dict | None = None,
        finish_on_train_end: bool = False,
        **init_kwargs: Any,
    ) -> None:
        self.project = project
        self.group = group
        self.name = name
        self.config = dict(config or {})
        self.finish_on_train_end = finish_on_train_end
        self.init_kwargs = init_kwargs
        self.run: Any = None
        self._hook: Any = None
        self._losses: list[Any] = []  # this rank's micro-batch losses (detached 0-d tensors) of the current step
        self._samples = 0
        self._t0: float | None = None

    def __repr__(self) -> str:
        run = self.run
        where = "not started" if run is None else f"run={run.name!r} group={run.group!r} step={run.step}"
        return f"<RankwiseCallback {where} pending_losses={len(self._losses)}>"

    # ------------------------------------------------------------ setup

    def setup(self, args: Any, state: Any, model: Any = None) -> None:
        """Start this rank's run (once): rank and world size from the Trainer's arguments."""
        if self.run is not None:
            return
        import rankwise

        config: dict[str, Any] = {}
        model_config = getattr(model, "config", None)
        if model_config is not None and hasattr(model_config, "to_dict"):
            config.update(sanitize_config(model_config.to_dict()))
        config.update(sanitize_config(args.to_sanitized_dict()))
        config.update(self.config)
        kwargs = dict(self.init_kwargs)
        world = int(getattr(args, "world_size", 1) or 1)
        if world > 1:  # the Trainer knows; the launcher's environment may not (an accelerate/deepspeed launcher)
            kwargs.setdefault("rank", int(args.process_index))
            kwargs.setdefault("world_size", world)
            kwargs.setdefault("local_rank", int(args.local_process_index))
        self.run = rankwise.init(
            project=self.project or os.environ.get("WANDB_PROJECT") or "huggingface",
            group=self.group,
            name=self.name,
            config=config,
            **kwargs,
        )
        if model is not None and hasattr(model, "register_forward_hook"):
            self._hook = model.register_forward_hook(self._forward_hook, with_kwargs=True)

    def _forward_hook(self, module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        """This rank's loss and batch size, from each training forward pass (eval passes are not steps)."""
        if not module.training:
            return
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if isinstance(loss, _torch.Tensor) and loss.numel() == 1:
            self._losses.append(loss.detach().reshape(()))
        first = next((v for v in (*args, *kwargs.values()) if isinstance(v, _torch.Tensor) and v.dim() > 0), None)
        if first is not None:
            self._samples += int(first.shape[0])

    # ------------------------------------------------------------ events

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self.setup(args, state, model)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._t0 = time.perf_counter()
        self._losses.clear()
        self._samples = 0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.run is None or self._t0 is None:
            return
        dt = time.perf_counter() - self._t0
        self._t0 = None
        row: dict[str, Any] = {"train/global_step": state.global_step, "perf/step_time_s": dt}
        if dt > 0 and self._samples:
            row["perf/samples_per_s"] = self._samples / dt
        if self._losses:
            row["train/rank_loss"] = _torch.stack(self._losses).float().mean().item()
            self._losses.clear()
        self.run.log(row, step=state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if self.run is None:
            self.setup(args, state, kwargs.get("model"))
        if logs:
            row = rewrite_logs(logs)
            row["train/global_step"] = state.global_step
            self.run.log(row, step=state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.finish_on_train_end and self.run is not None:
            self.run.finish()
