"""``run.watch(model)``: gradient and parameter histograms of a torch model, as wandb's ``watch``.

Semantics follow wandb (``wandb/integration/torch``):

* ``log="gradients"`` registers a tensor hook on every parameter that requires grad; the hook
  counts backward passes per parameter and, every ``log_freq``-th call, logs
  ``gradients/<prefix><name>``. ``log="parameters"`` registers a forward hook on the model that
  counts forward calls in training mode and, every ``log_freq``-th call, logs
  ``parameters/<prefix><name>`` for every parameter. ``"all"`` does both; ``None`` neither.
* The values go into the run's pending row (``log(..., commit=False)``), so they land at the step
  the training loop commits next, as wandb's ``_row_update``. Between those calls nothing is logged.
* A histogram is computed where the tensor lives (``torch.histc`` on the device, 64 bins from the
  tensor's min to its max); only the 64 counts and the two bounds cross to the host, at the
  logging call (the two ``.item()`` and one ``.cpu()`` wandb pays too). On the other calls a hook
  increments a counter and returns: no host sync, no allocation.
* NaN and ±inf cannot be placed in a bin and are left out (as wandb); a tensor of one repeated
  value becomes one bin ``[v - 0.5, v + 0.5]`` (numpy's convention; wandb's ``[v, v]`` has no width).
* The second and later watched models get the prefix ``graph_<idx>`` as wandb does. Watching a
  model again replaces its hooks; ``run.unwatch(model)`` (or ``unwatch()``: every model) removes them.

The histograms are ``client.media.Histogram`` values, so the agent merges the ranks' histograms at a
step into the group histogram (``Group.histograms(key)``) like any other. ``criterion`` and
``log_graph`` are accepted for wandb's signature; the graph is not logged (``log_graph=True`` warns once).
torch is imported only when ``watch`` is called.
"""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING, Any

from client.errors import InvalidArgumentError, UsageError

if TYPE_CHECKING:
    from client.run import Run

log = logging.getLogger("rankwise")

NUM_BINS = 64
_LOG_VALUES = ("gradients", "parameters", "all", None)


def tensor_histogram(tensor: Any, num_bins: int = NUM_BINS) -> Any:
    """A ``Histogram`` of a torch tensor's finite values, binned by ``torch.histc`` where it lives; None if empty."""
    import torch

    from client.media.histogram import Histogram

    flat = tensor.detach()
    if flat.is_sparse:
        flat = flat.coalesce()._values()
    flat = flat.reshape(-1)
    if not flat.is_floating_point():
        flat = flat.double()
    elif flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()  # histc has no half kernel on CPU
    finite = torch.isfinite(flat)
    if not bool(finite.all()):
        flat = flat[finite]
    if flat.numel() == 0:
        return None
    tmin, tmax = flat.min().item(), flat.max().item()
    if tmin == tmax:
        half = 0.5 if abs(tmin) < 1e15 else abs(tmin) * 1e-6
        return Histogram(np_histogram=([int(flat.numel())], [tmin - half, tmin + half]))
    counts = torch.histc(flat, bins=num_bins, min=tmin, max=tmax).cpu()
    edges = torch.linspace(tmin, tmax, num_bins + 1, dtype=torch.float64)
    edges = edges.tolist()
    if not all(b > a for a, b in itertools.pairwise(edges)):  # a range too narrow for num_bins distinct doubles
        return Histogram(np_histogram=([int(flat.numel())], [tmin, tmax]))
    return Histogram(np_histogram=([int(c) for c in counts.tolist()], edges))


class _Every:
    """True on every ``n``-th call (the n-th, 2n-th, ...), as wandb's ``log_track_update``."""

    __slots__ = ("count", "n")

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0

    def __call__(self) -> bool:
        self.count += 1
        if self.count < self.n:
            return False
        self.count = 0
        return True


class Watch:
    """The hooks ``watch()`` put on one model; ``remove()`` takes them off."""

    def __init__(self, run: Run, model: Any, log_what: str | None, log_freq: int, prefix: str) -> None:
        self.run = run
        self.model = model
        self.log_what = log_what
        self.log_freq = log_freq
        self.prefix = prefix
        self.handles: list[Any] = []
        self.logged = 0  # histograms handed to the run
        if log_what in ("parameters", "all"):
            self.handles.append(model.register_forward_hook(self._forward_hook(_Every(log_freq))))
        if log_what in ("gradients", "all"):
            for name, p in model.named_parameters():
                if p.requires_grad:
                    self.handles.append(p.register_hook(self._grad_hook(f"gradients/{prefix}{name}", _Every(log_freq))))

    def __repr__(self) -> str:
        return (
            f"<rankwise.Watch {type(self.model).__name__} log={self.log_what} log_freq={self.log_freq} "
            f"prefix={self.prefix!r} hooks={len(self.handles)} logged={self.logged}>"
        )

    def _emit(self, key: str, tensor: Any) -> None:
        if self.run.finished:
            return
        try:
            h = tensor_histogram(tensor)
            if h is not None:
                self.run.log({key: h}, commit=False)
                self.logged += 1
        except Exception as exc:  # a hook must never break training (backward runs it)
            log.warning("rankwise: watch() could not log %s: %s: %s", key, type(exc).__name__, exc)

    def _forward_hook(self, every: _Every) -> Any:
        def hook(module: Any, inputs: Any, output: Any) -> None:
            if not module.training or not every():
                return
            for name, p in module.named_parameters():
                self._emit(f"parameters/{self.prefix}{name}", p)

        return hook

    def _grad_hook(self, key: str, every: _Every) -> Any:
        def hook(grad: Any) -> None:
            if every():
                self._emit(key, grad)

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def watch(
    run: Run,
    models: Any,
    criterion: Any = None,
    log: str | None = "gradients",
    log_freq: int = 1000,
    idx: int | None = None,
    log_graph: bool = False,
) -> list[Watch]:
    """Hook ``models`` (a torch module or a tuple/list of them): see the module docstring."""
    if run.finished:
        raise UsageError("watch() on a finished run; call rankwise.init() first")
    if log not in _LOG_VALUES:
        raise InvalidArgumentError(f"watch(log={log!r}) must be 'gradients', 'parameters', 'all' or None")
    if isinstance(log_freq, bool) or not isinstance(log_freq, int) or log_freq < 1:
        raise InvalidArgumentError(f"watch(log_freq={log_freq!r}) must be an integer >= 1")
    import torch

    if not isinstance(models, (tuple, list)):
        models = (models,)
    for m in models:
        if not isinstance(m, torch.nn.Module):
            raise InvalidArgumentError(f"watch() takes torch.nn.Module models, got {type(m).__name__}")
    if log_graph:
        log_warn_once("watch(log_graph=True): rankwise does not log the model graph; histograms are logged as asked")
    unwatch(run, list(models))  # watching a model again replaces its hooks (no double logging, no double cost)
    watches: list[Watch] = run.__dict__.setdefault("_watches", [])
    counter = run.__dict__.get("_watch_idx", 0)
    out = []
    for local, m in enumerate(models):
        global_idx = counter + local if idx is None else idx + local
        prefix = f"graph_{global_idx}" if global_idx > 0 else ""
        w = Watch(run, m, log, log_freq, prefix)
        watches.append(w)
        out.append(w)
    run.__dict__["_watch_idx"] = counter + len(models)
    return out


def unwatch(run: Run, models: Any = None) -> None:
    """Remove the hooks of ``models`` (a module or a list), or of every watched model when None."""
    watches: list[Watch] = run.__dict__.get("_watches", [])
    if models is None:
        targets = None
    else:
        targets = {id(m) for m in (models if isinstance(models, (tuple, list)) else (models,))}
    keep = []
    for w in watches:
        if targets is None or id(w.model) in targets:
            w.remove()
        else:
            keep.append(w)
    run.__dict__["_watches"] = keep


_warned: set[str] = set()


def log_warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning("rankwise: %s", message)
