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
the slow way, which warns; later ones are counted on the fast path) to a row
``client.fastpath`` builds when every key and value type was validated before by
the slow path (``_log_slow``); anything else, a ``step`` that is not a plain
``int`` in range, or ``commit`` other than None/True/False goes the slow way,
which validates, converts and raises as before.

Starting the writer, a forked child's own writer and delivery at ``finish()`` are
in ``client.delivery``; the live-run registry, exit and fork hooks in
``client.state``; the module-level ``init/log/finish`` in ``client.session``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from time import perf_counter
from typing import TYPE_CHECKING, Any

from client import delivery, failure, state
from client.errors import InvalidArgumentError, InvalidValueError, UsageError
from client.fastconv import FAST_TYPES
from client.fastpath import FastRows
from client.ops import COMMIT, CONTROL, LATE, MERGE, parse_summary_kinds
from client.settings import Settings
from client.summary import Config, Summary, to_config
from client.values import flatten
from client.wandb_surface import WandbRunMixin  # wandb's Run names beyond logging

if TYPE_CHECKING:
    from client.transport import Writer

log = logging.getLogger("rankwise")

_FAST = FAST_TYPES


def run_id_for(project: str, group: str, name: str) -> str:
    """A run id every incarnation of the same rank computes alike (so restarts resume)."""
    return hashlib.blake2s(f"{project}\0{group}\0{name}".encode(), digest_size=5).hexdigest()


def _run_id(settings: Settings) -> str:
    """wandb's id when one was given (rank 0 keeps it as is; other ranks of the group get ``<id>-rank<r>``),
    else a hash every incarnation of the same rank computes alike (so restarts resume)."""
    if settings.run_id is None:
        return run_id_for(settings.project, settings.group, settings.name)
    return settings.run_id if settings.rank == 0 else f"{settings.run_id}-rank{settings.rank}"


def _finished_app(op: tuple) -> None:
    raise UsageError("log() on a run after finish(); call rankwise.init() for a new run")


class Run(FastRows, WandbRunMixin):
    """One process's handle on its run. Create it with ``rankwise.init()``."""

    def __init__(self, settings: Settings, config: Mapping[str, Any] | None = None, meta: dict | None = None):
        self.settings = settings
        self.id = _run_id(settings)
        self._display_name: str | None = None  # run.name = "..." (wandb renames; the stored name is fixed)
        self._step = 0
        self._init_fast_rows()  # what the fast path learned from the slow one (client/fastpath.py)
        self._finished = False
        self._late = 0
        self._warned_late = False
        self._pid = os.getpid()  # the process whose writer this handle uses (a forked child's after the fork)
        self._owner_pid = self._pid  # the process that owns the run's state: only it may finish the run
        self._started_wall = time.time()
        self._exit_code: int | None = None
        self._failure: dict | None = None  # why it failed, sent with finish (client/failure.py)
        self._lock = threading.Lock()  # finish/fork bookkeeping, never taken by log()
        self.config = Config(None, config)
        self.summary = Summary(self)
        self._meta = meta or {}
        self._writer: Writer | None = None
        self._push = delivery.discard
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
        delivery.close(self, code)
        # the fast path in log() does not look at _finished: send it to the slow path, which raises
        self._init_fast_rows()
        self._push = _finished_app
        state.forget(self)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None:
            code = 0
        elif issubclass(exc_type, SystemExit):
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        else:
            code = 1
            self._failure = failure.describe(exc_type, exc, tb)
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

    # ------------------------------------------------------------ fork

    def _after_fork_in_child(self) -> None:
        """In a forked child (``client.state``'s fork hook): a new writer, started on first use."""
        delivery.after_fork_in_child(self)


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


def create(settings: Settings, config: Any = None, meta: dict | None = None) -> Run:
    run = Run(settings, to_config(config), meta)
    if settings.stop_on_nan:  # log() checks for NaN/±Inf; Run.log itself stays as it is (client/stop_on_nan.py)
        from client import stop_on_nan

        stop_on_nan.bind(run)
    delivery.start(run)  # (connect, wait for the resume point: bounded by init_timeout_s)
    run._starting_step = run._step
    state.add_live(run)
    return run
