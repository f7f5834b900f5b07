"""The run handle: ``init()`` returns one per process; ``log()`` is its hot path.

``Run.log`` resolves the step by wandb's rules, validates, copies the dict and
appends one op to a deque; that is all the training thread pays (see
``benchmarks/``). Rows, batches, summary and delivery happen on the writer's
I/O thread (``client.transport``).

Step rules (wandb ``Run.log``), with ``cur`` the step the next commit uses:

* ``log(d)``: merge ``d`` into the pending row, commit at ``cur``, ``cur += 1``;
* ``log(d, commit=False)``: merge, no commit;
* ``log(d, step=s)``, ``s > cur``: the pending row is committed at its step,
  ``cur = s`` and ``d`` becomes pending (committed by ``commit=True``, a later
  higher step, or ``finish()``); ``s == cur``: merge;
* ``s < cur``: wandb drops the call; rankwise keeps it as a late update of row
  ``s``, counts it and warns once.

The fast path of ``log`` applies these rules itself (the first late step goes
the slow way, which warns; later ones are counted on the fast path) when every
key was validated before by the slow path (``_log_slow``: flatten and the
call-site checks of ``client.values``): top-level keys (``_known``), one level
of nested dicts by a cached key plan (``_nested``), and values that are Python
numbers or of a type the slow path accepted before (``_convs``; by type, as the
conversion does not depend on the key): numpy scalars and 0-d arrays, converted
to the Python number at the call (``values.fast_converter``; a flat dict of numpy
scalars, which are immutable, is copied into a ``values.NumpyRow`` and converted
on the I/O thread), and one-element
torch tensors, stored with their value at the call: ``.item()`` on the CPU (no
device check while the process has no CUDA state), an async device copy
converted on the I/O thread on CUDA, so ``log()`` never waits for the GPU
(``values.tensor_value``). A flat dict is converted in one pass
(``_scalar_row``); nested dicts and device tensors take ``_typed_row``.
Anything else, a ``step`` that is not a plain ``int`` in range, or ``commit``
other than None/True/False goes the slow way, which validates, converts and
raises as before.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from time import perf_counter
from typing import TYPE_CHECKING, Any

from client import values as _values
from client.ops import COMMIT, CONTROL, LATE, MERGE, parse_summary_kinds
from client.errors import InvalidArgumentError, InvalidValueError, RunConflictError, UsageError
from client.settings import Settings
from client.summary import Config, Summary, to_config
from client.values import (
    FAST_TYPES,
    MAX_KEYS_PER_ROW,
    NumpyRow,
    TensorRow,
    fast_converter,
    flatten,
    tensor_copy,
    tensor_value,
)
from client.wandb_surface import WandbRunMixin  # wandb's Run names beyond logging

if TYPE_CHECKING:
    from client.transport import Writer

log = logging.getLogger("rankwise")

_FAST = FAST_TYPES
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_LIVE_RUNS: "weakref.WeakSet[Run]" = weakref.WeakSet()


def run_id_for(project: str, group: str, name: str) -> str:
    """A run id every incarnation of the same rank computes alike (so restarts resume)."""
    return hashlib.blake2s(f"{project}\0{group}\0{name}".encode(), digest_size=5).hexdigest()


def _run_id(settings: Settings) -> str:
    """wandb's id when one was given (rank 0 keeps it as is; other ranks of the group get ``<id>-rank<r>``),
    else a hash every incarnation of the same rank computes alike (so restarts resume)."""
    if settings.run_id is None:
        return run_id_for(settings.project, settings.group, settings.name)
    return settings.run_id if settings.rank == 0 else f"{settings.run_id}-rank{settings.rank}"


def _discard(op: tuple) -> None:
    pass


def _finished_app(op: tuple) -> None:
    raise UsageError("log() on a run after finish(); call rankwise.init() for a new run")


class Run(WandbRunMixin):
    """One process's handle on its run. Create it with ``rankwise.init()``."""

    def __init__(self, settings: Settings, config: Mapping[str, Any] | None = None, meta: dict | None = None):
        self.settings = settings
        self.id = _run_id(settings)
        self._display_name: str | None = None  # run.name = "..." (wandb renames; the stored name is fixed)
        self._step = 0
        self._known: set[str] = set()  # top-level keys validated by the slow path; the fast path accepts only these
        self._nested: dict[str, dict[str, str]] = {}  # top key -> {validated sub key: its flattened name}
        # value type the slow path accepted (numpy scalars, 0-d arrays, torch.Tensor) -> its fast converter
        # (``values.fast_converter``). By type alone: the conversion depends on the type, not on the key
        self._convs: dict[type, Any] = {}
        self._scalars: dict[type, Any] = {}  # _convs without tensor_copy (DEFER_CPU_TENSORS, a test mode)
        # numpy scalar types of _convs whose .item() is what the slow path stores: kept in a NumpyRow as they
        # are (immutable), converted on the I/O thread (values.NumpyRow)
        self._immutable: set[type] = set()
        self._tensor: type | None = None  # torch.Tensor once the slow path took one and CPU tensors are read at the call
        self._fulls: set[str] = set()  # every name in _nested's plans
        # True once a nested name can be made two ways (a dotted top key, or a dotted key in a plan): the fast
        # path then counts the leaves to find a collision the slow path refuses (``{"a": {"b": 1}, "a.b": 2}``)
        self._clash = False
        self._finished = False
        self._late = 0
        self._warned_late = False
        self._pid = os.getpid()  # the process whose writer this handle uses (a forked child's after the fork)
        self._owner_pid = self._pid  # the process that owns the run's state: only it may finish the run
        self._started_wall = time.time()
        self._exit_code: int | None = None
        self._lock = threading.Lock()  # finish/fork bookkeeping, never taken by log()
        self.config = Config(None, config)
        self.summary = Summary(self)
        self._meta = meta or {}
        self._writer: Writer | None = None
        self._push = _discard
        self.resumed = False
        self._starting_step = 0
        object.__setattr__(self.config, "_run", self)

    # ------------------------------------------------------------ lifecycle

    def _hello_run(self) -> dict:
        s = self.settings
        return {
            "project": s.project,
            "group": s.group,
            "name": s.name,
            "run_id": self.id,
            "rank": s.rank,
            "world_size": s.world_size,
            "local_rank": s.local_rank,
            "node": s.node,
            "launcher": s.launcher,
            "restart": s.restart,
            "resume": s.resume,
            "started": self._started_wall,
            "config": self.config.as_dict(),
            "meta": self._meta if s.max_rows_per_s is None else dict(self._meta, rows_per_s=s.max_rows_per_s),
        }

    def _start(self) -> None:
        """Connect to (or start) the node agent and wait for the resume point; bounded by init_timeout_s."""
        s = self.settings
        if s.mode == "disabled":
            return
        from client import spawn
        from client.transport import Writer

        writer = Writer(s, self._hello_run())
        self._writer = writer
        self._push = writer.ops.extend
        writer.bind(self)  # under overload the writer switches _push to its coalescer and back (client/coalesce.py)
        t0 = time.monotonic()
        agent = spawn.ensure_agent(s, timeout_s=s.init_timeout_s)
        if agent is None:
            log.warning(
                "rankwise: no agent is running for runtime dir %s; logging continues and is delivered once "
                "an agent is up",
                s.runtime_dir,
            )
            writer.on_late_welcome = self._late_welcome
            writer.start(None)  # nobody can answer now: do not wait out init_timeout_s for a WELCOME
            return
        writer.start(agent)
        remaining = max(0.1, s.init_timeout_s - (time.monotonic() - t0))
        if not writer.welcomed.wait(remaining):
            log.warning("rankwise: agent did not answer within %.1f s; continuing from step 0", s.init_timeout_s)
            writer.on_late_welcome = self._late_welcome
            return
        if writer.refusal is not None:
            self._writer = None
            self._push = _discard
            raise RunConflictError(writer.refusal)
        self._apply_welcome(writer.welcome or {})
        writer.on_late_welcome = self._late_welcome

    def _apply_welcome(self, welcome: dict) -> None:
        step = int(welcome.get("step", 0))
        if welcome.get("resumed"):
            self.resumed = True
            self._step = max(self._step, step)
            assert self._writer is not None
            with self._writer.lock:
                self._writer.assembler.runtime_offset = float(welcome.get("runtime", 0.0))
                summary = welcome.get("summary") or {}
                self._writer.assembler.summary.update(summary)

    def _late_welcome(self, welcome: dict) -> None:
        if welcome.get("resumed") and int(welcome.get("step", 0)) > self._step and not self.resumed:
            log.warning(
                "rankwise: run %s resumes at step %s but the agent answered late; rows logged meanwhile "
                "start at step 0 and count as late updates",
                self.settings.name,
                welcome.get("step"),
            )

    def __repr__(self) -> str:
        s = self.settings
        state = "finished" if self._finished else "running"
        return (
            f"<rankwise.Run {s.project}/{s.group}/{s.name} id={self.id} rank={s.rank}/{s.world_size} "
            f"step={self._step} {state}>"
        )

    # ------------------------------------------------------------ identity

    @property
    def name(self) -> str:
        return self._display_name or self.settings.name

    @name.setter
    def name(self, value: str) -> None:
        # the stored name is the run's identity in its group (a restart finds its run by it): a rename
        # changes what this handle reports, not the stored name
        if not isinstance(value, str) or not value:
            raise InvalidArgumentError(f"run.name = {value!r} must be a non-empty string")
        self._display_name = value

    @property
    def project(self) -> str:
        return self.settings.project

    @property
    def group(self) -> str:
        return self.settings.group

    @property
    def rank(self) -> int:
        return self.settings.rank

    @property
    def world_size(self) -> int:
        return self.settings.world_size

    @property
    def step(self) -> int:
        """The step the next committed row gets."""
        return self._step

    @property
    def dir(self) -> str:
        """wandb's run.dir: the run's local files, ``<init(dir=) or WANDB_DIR or the data dir>/wandb/run-<id>/files``
        (created on first access). Never the store: that stays in RANKWISE_DIR."""
        from client.wandb_surface import run_files_dir

        return run_files_dir(self)

    @property
    def finished(self) -> bool:
        return self._finished

    # ------------------------------------------------------------ hot path

    def log(
        self,
        data: Any,
        step: Any = None,
        commit: Any = None,
        sync: Any = None,
        _fast: frozenset = _FAST,
        _type: type = type,
        _dict: type = dict,
        _now: Any = perf_counter,
        _max_step: int = 1 << 62,  # MAX_STEP
    ) -> None:
        """Log a dict of values at the current step. Never blocks; see the module docstring for steps.

        (The underscore parameters bind globals as locals: this is the hot path, ~0.4 µs for every form the
        fast path takes with Python numbers, ~0.8 µs with numpy scalars or a nested dict, ~1.7 µs with four
        CPU tensors: ``benchmarks/log_forms.py``.)"""
        if _type(data) is _dict:
            known = self._known
            for k, v in data.items():
                if _type(v) not in _fast or k not in known:
                    # numpy scalars, 0-d arrays, CPU tensors: _scalar_row; nested dicts, device tensors and
                    # anything _scalar_row does not take: _typed_row; None from both: the slow path.
                    # (This branch, not the loop, pays for them: the loop is that of the Python forms.)
                    row = None if _type(v) is _dict else self._scalar_row(data, _type(v))
                    if row is None:
                        row = self._typed_row(data)
                    break
            else:
                row = data.copy()
            if row is not None:
                # the step rules of _log_slow; anything else (the first late step, which warns, a step that
                # is not a plain int in range, commit other than None/True/False) goes the slow way
                s = self._step
                if step is None:
                    if commit is None or commit is True:
                        self._step = s + 1
                        # extend, not append: the deque keeps the four items, the tuple dies here (GC, see Writer)
                        self._push((COMMIT, s, _now(), row))
                        return
                    if commit is False:
                        self._push((MERGE, s, _now(), row))
                        return
                elif _type(step) is int and s <= step < _max_step:
                    if commit is None or commit is False:
                        self._step = step
                        self._push((MERGE, step, _now(), row))
                        return
                    if commit is True:
                        self._step = step + 1
                        self._push((COMMIT, step, _now(), row))
                        return
                elif _type(step) is int and 0 <= step < s and self._warned_late:
                    # a late step after the first (which warned, on the slow path): counted, kept as a late
                    # update of row ``step`` (``commit`` is ignored, as there, once it is a bool or None)
                    if not (commit is None or commit is True or commit is False):
                        return self._log_slow(data, step, commit)
                    self._late += 1
                    self._push((LATE, step, _now(), row))
                    return
        self._log_slow(data, step, commit)

    def _scalar_row(self, data: dict, first: type) -> dict | None:
        """A flat ``data`` of known keys with numpy scalars, 0-d arrays or CPU torch tensors of types the slow
        path accepted before (``_scalars``): a copy with those converted to the Python number the slow path
        stores (one pass, cheaper than ``_typed_row``'s), or, when it holds numpy scalars and Python numbers
        only, a :class:`~client.values.NumpyRow` copy the I/O thread converts; else None. A tensor's value is read now (``.item()``:
        ``values.tensor_value`` inlined), without a device check while the process has no CUDA state
        (``values.CUDA_STATE``); a tensor on a device is left to ``_typed_row`` (an async copy)."""
        known = self._known
        if first is self._tensor:  # CPU tensors read at the call (``tensor_value`` inlined), Python numbers
            cuda = _values.CUDA_STATE._initialized is not False
            row = data.copy()
            try:  # (free unless raised)
                for k, v in data.items():
                    t = type(v)
                    if t is first:
                        if k not in known or (cuda and not v.is_cpu):  # a device tensor: _typed_row copies it
                            return None
                        v = v.item()  # raises for more than one element
                        t = type(v)
                        if t is float or t is bool or (t is int and _I64_MIN <= v <= _I64_MAX):
                            row[k] = v
                            continue
                        return None  # complex, uint64 beyond int64: the slow path raises
                    if t in _FAST and k in known:
                        continue
                    break  # numpy values too: the general loop below
                else:
                    return row if len(row) <= MAX_KEYS_PER_ROW else None
            except Exception:  # noqa: BLE001 - .item() of more elements, a meta tensor, ...
                return None
        immutable = self._immutable
        if immutable:  # Python numbers and numpy scalars only: a copy, converted on the I/O thread (NumpyRow)
            for k, v in data.items():
                t = type(v)
                if (t in immutable or t in _FAST) and k in known:
                    continue
                break
            else:
                return NumpyRow(data) if len(data) <= MAX_KEYS_PER_ROW else None
        scalars = self._scalars
        tv = tensor_value
        cuda = None  # whether this process has CUDA state (read at the first tensor)
        row = data.copy()
        try:  # (free unless raised, Python 3.11+)
            for k, v in data.items():
                t = type(v)
                if t in _FAST:
                    if k in known:
                        continue
                    return None
                conv = scalars.get(t)
                if conv is None or k not in known:
                    return None
                if conv is tv:
                    if cuda is None:
                        cuda = _values.CUDA_STATE._initialized is not False
                    if cuda and not v.is_cpu:
                        return None
                    v = v.item()  # raises for more than one element
                    t = type(v)
                    if t is float or t is bool or (t is int and _I64_MIN <= v <= _I64_MAX):
                        row[k] = v
                        continue
                    return None  # complex, uint64 beyond int64: the slow path raises
                row[k] = conv(v)
        except Exception:  # noqa: BLE001 - NotFast (a 1-d array), .item() of more elements, ...
            return None
        return row if len(row) <= MAX_KEYS_PER_ROW else None  # (keys learned over several calls)

    def _typed_row(self, data: dict) -> dict | None:
        """``data`` as ``flatten`` would make it, or None (then the slow path validates, converts, raises).

        Not None only when every key was validated before by the slow path: top-level keys (``_known``) and
        one level of nested dicts whose keys were flattened before (``_nested``: top key -> {sub key:
        "top.sub"}, the cached key plan); and every value is a Python number or of a type the slow path
        accepted before (``_convs``, by type: the conversion does not depend on the key): numpy scalars and
        0-d arrays, converted to the Python number here (exact, and cheap), and one-element torch tensors
        (``values.tensor_value``: the value at this call, converted here on CPU, an async device copy on CUDA
        that makes the row a ``TensorRow`` for the I/O thread to convert: no sync on this thread)."""
        convs = self._convs
        nested = self._nested
        known = self._known
        tv, tc = tensor_value, tensor_copy
        # None until a tensor is seen; then True when this process has no CUDA state (torch.cuda initializes
        # it, in Python, before any CUDA tensor exists): no device to wait for, no per-tensor device check
        no_cuda = None
        out = {}
        nest = False  # a nested dict: two sources may make the same name (counted below, when they can)
        device = False  # a value is a device tensor: the I/O thread converts it (values.TensorRow)
        try:  # (free unless raised, Python 3.11+) any exception: the slow path decides (validates, raises)
            for k, v in data.items():
                t = type(v)
                if t is dict:
                    nest = True
                    plan = nested[k]  # KeyError: a top key not flattened before
                    for sk, sv in v.items():
                        st = type(sv)
                        if st in _FAST:
                            out[plan[sk]] = sv
                            continue
                        conv = convs[st]  # KeyError: a type the slow path did not accept before
                        if conv is tv:  # values.tensor_value inlined for CPU (~0.1 µs less per value)
                            if no_cuda is None:
                                no_cuda = _values.CUDA_STATE._initialized is False
                            if no_cuda or sv.is_cpu:
                                sv = sv.item()  # raises for more than one element
                                st = type(sv)
                                if st is float or st is bool or (st is int and _I64_MIN <= sv <= _I64_MAX):
                                    out[plan[sk]] = sv
                                    continue
                                return None  # complex, uint64 beyond int64: the slow path raises
                            out[plan[sk]] = sv = tv(sv)  # CUDA: an async copy (tensor_copy)
                            if type(sv) not in _FAST:  # a copy on its device: the I/O thread converts
                                device = True
                        elif conv is tc:
                            out[plan[sk]] = tc(sv)
                            device = True
                        else:
                            out[plan[sk]] = conv(sv)
                    continue
                if t in _FAST:
                    if k not in known:
                        return None
                    out[k] = v
                    continue
                conv = convs[t]
                if k not in known:
                    return None
                if conv is tv:  # as above
                    if no_cuda is None:
                        no_cuda = _values.CUDA_STATE._initialized is False
                    if no_cuda or v.is_cpu:
                        v = v.item()
                        t = type(v)
                        if t is float or t is bool or (t is int and _I64_MIN <= v <= _I64_MAX):
                            out[k] = v
                            continue
                        return None
                    out[k] = v = tv(v)
                    if type(v) not in _FAST:
                        device = True
                elif conv is tc:
                    out[k] = tc(v)
                    device = True
                else:
                    out[k] = conv(v)
        except Exception:  # noqa: BLE001 - KeyError, NotFast, .item() of a tensor of more elements, ...
            return None
        n = len(out)
        if n > MAX_KEYS_PER_ROW:
            return None
        # fewer keys than leaves: a collision, which the slow path refuses
        if nest and self._clash and n != sum([len(v) if type(v) is dict else 1 for v in data.values()]):
            return None
        return TensorRow(out) if device else out

    def _learn(self, data: Mapping) -> None:
        """After ``flatten(data)`` succeeded: remember its keys (every top-level key passed ``check_key``),
        its nested leaves, and the types of its numpy/torch values, for the fast path."""
        convs = self._convs
        known = self._known
        fulls = self._fulls
        for k, v in data.items():
            known.add(k)
            if k in fulls:
                self._clash = True
            t = type(v)
            if t is dict:
                plan = self._nested.get(k)
                if plan is None:
                    plan = self._nested[k] = {}
                for sk, sv in v.items():
                    if isinstance(sv, Mapping):  # deeper: the slow path (and "k.sk" is no leaf name)
                        continue
                    full = plan[sk] = f"{k}.{sk}"
                    if full not in fulls:
                        # a name two ways: a known dotted top key, or a dotted part ("a"+"b.c" and "a.b"+"c")
                        if full in known or "." in sk or "." in k:
                            self._clash = True
                        fulls.add(full)
                    st = type(sv)
                    if st not in _FAST and st not in convs:
                        self._learn_type(st)
            elif t not in _FAST and t not in convs:
                self._learn_type(t)

    def _learn_type(self, t: type) -> None:
        conv = fast_converter(t)
        if conv is not None:
            self._convs[t] = conv
            if conv is not tensor_copy:  # (tensor_value: CPU tensors in _scalar_row, device ones in _typed_row)
                self._scalars[t] = conv
            if conv is float or conv is int or conv is bool:  # a numpy scalar type (not a 0-d array, a tensor)
                self._immutable.add(t)
            elif conv is tensor_value:
                self._tensor = t

    def _log_slow(self, data: Any, step: Any, commit: Any) -> None:
        if self._finished:
            raise UsageError(f"log() on run {self.name!r} after finish(); call rankwise.init() for a new run")
        if not isinstance(data, Mapping):
            raise InvalidValueError(f"log() takes a dict of key → value, not {type(data).__name__}")
        flat = flatten(data)
        self._learn(data)
        if commit is not None:
            commit = bool(commit)
        cur = self._step
        if step is None:
            kind = MERGE if commit is False else COMMIT
            s = cur
        else:
            s = _check_step(step)
            if s < cur:
                kind = LATE
                self._late += 1
                if not self._warned_late:
                    self._warned_late = True
                    log.warning(
                        "rankwise: log(step=%d) is below the current step %d; kept as a late update of "
                        "row %d (wandb would drop it). Further late updates are counted silently.",
                        s,
                        cur,
                        s,
                    )
            else:
                kind = COMMIT if commit is True else MERGE
                self._step = s
        self._push((kind, s, perf_counter(), flat))
        if kind == COMMIT:
            self._step = s + 1

    def _control(self, name: str, arg: Any) -> None:
        self._push((CONTROL, name, arg, None))

    # ------------------------------------------------------------ metrics, flush, finish

    def define_metric(
        self,
        name: str,
        step_metric: str | None = None,
        step_sync: bool | None = None,
        hidden: bool | None = None,
        summary: str | None = None,
        goal: str | None = None,
        overwrite: bool | None = None,
        **kwargs: Any,
    ) -> dict:
        """Set how a key (or glob, e.g. ``"val/*"``) is summarised: min, max, mean, first, last or none."""
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError("define_metric(name=...) must be a non-empty string (a key or a glob)")
        if goal is not None and goal not in ("minimize", "maximize"):
            raise InvalidArgumentError(f"define_metric(goal={goal!r}) must be 'minimize' or 'maximize'")
        if isinstance(summary, str) and "best" in summary.split(","):
            # wandb's "best": the min or the max by the goal (minimize unless said otherwise)
            best = "max" if goal == "maximize" else "min"
            summary = ",".join(best if part == "best" else part for part in summary.split(","))
        try:
            parse_summary_kinds(summary)
        except ValueError as exc:
            raise InvalidArgumentError(str(exc)) from None
        if goal is not None and goal not in ("minimize", "maximize"):
            raise InvalidArgumentError(f"define_metric(goal={goal!r}) must be 'minimize' or 'maximize'")
        spec = {"name": name, "summary": summary, "step_metric": step_metric, "hidden": hidden, "goal": goal}
        if step_sync is not None:  # wandb's: rows of the key without step_metric take its latest value (reads)
            spec["step_sync"] = bool(step_sync)
        if "rate_limit" in kwargs:  # rankwise's own: False keeps every value of the key, even over the budget
            if not isinstance(kwargs["rate_limit"], bool):
                raise InvalidArgumentError("define_metric(rate_limit=...) must be True or False")
            spec["rate_limit"] = kwargs["rate_limit"]
        self._control("define", spec)
        return spec

    def flush(self, timeout_s: float | None = None) -> bool:
        """Block until everything logged so far is stored by the agent. Returns False on timeout."""
        if self._writer is None:
            return True
        return self._writer.flush(self.settings.finish_timeout_s if timeout_s is None else timeout_s)

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """Commit the pending row, deliver everything, and mark the run finished (or failed: non-zero code)."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
        code = 0 if exit_code is None else int(exit_code)
        self._exit_code = code
        if self._writer is not None and os.getpid() == self._pid and self._pid != self._owner_pid:
            # a forked child (exit hooks, SIGTERM handler, with-block): deliver what it logged, but the
            # run's state belongs to the parent, which is still running
            if self._writer._thread is not None:
                self._writer.close(self.settings.finish_timeout_s)
        elif self._writer is not None and os.getpid() == self._pid:
            self._control("finish", {"exit_code": code, "t": time.time(), "late": self._late})
            ok = self._writer.close(self.settings.finish_timeout_s)
            drops = self._writer.drop_counts()
            if drops:
                log.warning(
                    "rankwise: finish() of %s: data was dropped on the way to the agent, by cause: %s "
                    "(rows, or values for 'oversized value' and 'bad value'; see run.stats['drops'])",
                    self.name,
                    ", ".join(f"{cause}: {n}" for cause, n in sorted(drops.items())),
                )
            if not ok:
                log.warning(
                    "rankwise: finish() of %s timed out after %.1f s with %d row(s) not acknowledged by the "
                    "agent (runtime dir %s)",
                    self.name,
                    self.settings.finish_timeout_s,
                    self._writer.unacked_rows(),
                    self.settings.runtime_dir,
                )
        # the fast path in log() does not look at _finished: send it to the slow path, which raises
        self._known = set()
        self._nested = {}
        self._convs = {}
        self._scalars = {}
        self._immutable = set()
        self._tensor = None
        self._fulls = set()
        self._push = _finished_app
        _LIVE_RUNS.discard(self)
        from client import state

        state.forget(self)

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None:
            code = 0
        elif issubclass(exc_type, SystemExit):
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        else:
            code = 1
        self.finish(exit_code=code)
        return False

    @property
    def stats(self) -> dict[str, Any]:
        """Delivery counters of this process's writer (batches, rows, resends, agent restarts, late updates), and
        ``drops``: what was dropped by cause (rows; single values for "oversized value" and "bad value")."""
        out: dict[str, Any] = {"late_updates": self._late}
        if self._writer is not None:
            out.update(self._writer.counters.as_dict())
            out["unacked_rows"] = self._writer.unacked_rows()
            out["drops"] = self._writer.drop_counts()
        return out

    # ------------------------------------------------------------ watch / artifacts (issue 10, H; lazy imports)

    def watch(self, models: Any, criterion: Any = None, log: Any = "gradients", log_freq: int = 1000,
              idx: Any = None, log_graph: bool = False) -> Any:  # fmt: skip
        """wandb's ``watch``: gradient/parameter histograms every ``log_freq`` calls (client/watch.py)."""
        from client import watch

        return watch.watch(self, models, criterion, log, log_freq, idx, log_graph)

    def unwatch(self, models: Any = None) -> None:
        from client import watch

        watch.unwatch(self, models)

    def log_artifact(self, artifact_or_path: Any, name: Any = None, type: Any = None, aliases: Any = None,
                     **kwargs: Any) -> Any:  # fmt: skip
        """Store an artifact (a new version unless its content equals the latest): rankwise/_artifacts.py."""
        from rankwise import _artifacts

        return _artifacts.log_artifact(self, artifact_or_path, name=name, type=type, aliases=aliases, **kwargs)

    def use_artifact(self, artifact_or_name: Any, type: Any = None, aliases: Any = None, **kwargs: Any) -> Any:
        from rankwise import _artifacts

        return _artifacts.use_artifact(self, artifact_or_name, type=type, aliases=aliases, **kwargs)

    def save(self, glob_str: Any = None, base_path: Any = None, policy: str = "live") -> Any:
        from rankwise import _artifacts

        return _artifacts.save(self, glob_str, base_path=base_path, policy=policy)

    def restore(self, name: str, run_path: Any = None, replace: bool = False, root: Any = None) -> Any:
        from rankwise import _artifacts

        return _artifacts.restore(self, name, run_path=run_path, replace=replace, root=root)

    # ------------------------------------------------------------ fork

    def _after_fork_in_child(self) -> None:
        """In a forked child: leave the parent's writer alone, log through a new one started on first use."""
        parent = self._writer
        self._pid = os.getpid()
        if parent is None or self._finished:
            return
        try:
            os.close(parent._wake_r)
            os.close(parent._wake_w)
        except OSError:
            pass
        from client import spawn
        from client.transport import Writer

        hello = self._hello_run()
        child = Writer(self.settings, hello, fork_of=parent.id)
        child.assembler.summary.update(parent.assembler.summary)
        self._writer = child
        run = self

        def first_append(op: tuple) -> None:
            run._push = child.ops.extend
            child.bind(run)
            child.ops.extend(op)
            agent = spawn.agent_ready(run.settings.runtime_dir)
            child.start(agent)
            _register_child_flush(run)

        self._push = first_append


MAX_STEP = 1 << 62  # the agent rejects larger steps (its store keeps step + 1 in an int64)


def _check_step(step: Any) -> int:
    if isinstance(step, bool):
        raise InvalidArgumentError(f"log(step={step!r}): step must be an integer >= 0")
    try:
        value = int(step)
    except (TypeError, ValueError, OverflowError):
        raise InvalidArgumentError(f"log(step={step!r}): step must be an integer >= 0") from None
    if value != step or not 0 <= value < MAX_STEP:
        raise InvalidArgumentError(f"log(step={step!r}): step must be an integer >= 0 and below 2**62")
    return value


def _register_child_flush(run: Run) -> None:
    """A forked child may leave through os._exit (multiprocessing): flush at both kinds of exit."""

    def flush() -> None:
        writer = run._writer
        if writer is not None and not run._finished:
            writer.close(run.settings.finish_timeout_s)

    atexit.register(flush)
    mp = sys.modules.get("multiprocessing.util")
    if mp is not None:
        mp.Finalize(None, flush, exitpriority=100)


def _after_fork_child() -> None:
    for run in list(_LIVE_RUNS):
        run._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_child)


def create(settings: Settings, config: Any = None, meta: dict | None = None) -> Run:
    run = Run(settings, to_config(config), meta)
    run._start()
    run._starting_step = run._step
    _LIVE_RUNS.add(run)
    return run
