"""Process-global state: the current run, the registry of live runs, and the exit and fork hooks.

wandb scripts call ``wandb.log(...)`` without holding the run: ``log/finish/define_metric`` here
forward to the current run, which ``init()`` (``client.session``) sets. A leaf below the run
handle: ``client.run`` and ``client.session`` import it, it imports neither; it knows a run only
by what it calls on it (``log``, ``finished``, ``finish``, ``settings``, ``_pid``,
``_after_fork_in_child``). ``reset()`` forgets the current run (for tests).

Exit handling: at interpreter exit every unfinished run is finished with the
process's exit code (``sys.exit(n)`` is observed, an uncaught exception counts
as 1), so a script that never calls ``finish()`` loses nothing and does not hang
(the wait for the agent is bounded). A failing run carries its cause: the uncaught
exception, or one that ended a thread of a process exiting non-zero (client/failure.py).

SIGTERM keeps its default action unless ``handle_sigterm`` is set
(``RANKWISE_HANDLE_SIGTERM=1``): a Python-level handler only runs between
bytecodes, so a main thread blocked in C (an NCCL collective, a semaphore in a
multiprocessing worker) would ignore the stop that torchrun or SLURM asked for
until SIGKILL. By default a SIGTERM'd rank dies at once and the agent marks its
run ``crashed`` (its pending row committed); with the handler, runs finish
with code 143 first. Forked children always get the default action back.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import weakref
from typing import TYPE_CHECKING, Any

from client.errors import UsageError
from client.failure import describe

if TYPE_CHECKING:
    from client.run import Run

_lock = threading.Lock()
_current: Run | None = None
_hooks_installed = False
_exit_code: int | None = None
_exception: dict | None = None  # the uncaught exception that ends the process (client/failure.py)
_thread_exception: dict | None = None  # the last one that ended a thread: the cause if the process then fails
# every run of this process not finished yet (``client.run.create`` adds, ``Run.finish`` forgets): what the
# exit hooks finish and the fork hook hands a new writer
LIVE_RUNS: weakref.WeakSet[Run] = weakref.WeakSet()


def current() -> Run | None:
    return _current


def set_current(run: Run) -> None:
    global _current
    with _lock:
        _current = run


def add_live(run: Run) -> None:
    LIVE_RUNS.add(run)


def forget(run: Run) -> None:
    """A finished run: no longer live, no longer current."""
    global _current
    LIVE_RUNS.discard(run)
    with _lock:
        if _current is run:
            _current = None


def reset() -> None:
    """Forget the current run without finishing it (tests)."""
    global _current
    with _lock:
        _current = None


def _require() -> Run:
    run = _current
    if run is None:
        raise UsageError("rankwise.init() must be called before log(); it returns the run handle")
    return run


def log(data: Any, step: Any = None, commit: Any = None, sync: Any = None) -> None:
    run = _current
    if run is None:
        raise UsageError("rankwise.init() must be called before log(); it returns the run handle")
    run.log(data, step, commit)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    run = _current
    if run is not None:
        run.finish(exit_code=exit_code)


def define_metric(name: str, *args: Any, **kwargs: Any) -> dict:
    return _require().define_metric(name, *args, **kwargs)


# ---------------------------------------------------------------- exit hooks


def _finish_all(code: int, timeout_s: float | None = None, failure: dict | None = None) -> None:
    for run in list(LIVE_RUNS):
        if run.finished or run._pid != os.getpid():
            continue
        if failure is not None and run._failure is None:
            run._failure = failure
        if timeout_s is not None:
            run.settings = run.settings.replace(finish_timeout_s=min(timeout_s, run.settings.finish_timeout_s))
        try:
            run.finish(exit_code=code)
        except Exception:  # exit must not fail because of us
            pass


def _at_exit() -> None:
    code = _exit_code if _exit_code is not None else (1 if _exception else 0)
    # why the process fails: its uncaught exception, else (exiting non-zero) what ended one of its threads
    _finish_all(code, failure=_exception or (_thread_exception if code else None))


def install_hooks(sigterm: bool = False) -> None:
    """At ``init()``: finish every live run at interpreter exit (and, opted in, on SIGTERM)."""
    global _hooks_installed
    if sigterm:
        _install_sigterm()
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_at_exit)

    original_exit = sys.exit

    def exit_(code: Any = None) -> None:
        global _exit_code
        _exit_code = code if isinstance(code, int) else (0 if code is None else 1)
        original_exit(code)

    sys.exit = exit_

    original_hook = sys.excepthook

    def excepthook(exc_type: Any, exc: Any, tb: Any) -> None:
        global _exception
        _exception = describe(exc_type, exc, tb)
        original_hook(exc_type, exc, tb)

    sys.excepthook = excepthook

    original_thread_hook = threading.excepthook

    def thread_excepthook(args: Any) -> None:
        global _thread_exception
        if not issubclass(args.exc_type, SystemExit):  # what threading itself ignores
            name = args.thread.name if args.thread is not None else "?"
            _thread_exception = describe(args.exc_type, args.exc_value, args.exc_traceback, thread=name)
        original_thread_hook(args)

    threading.excepthook = thread_excepthook


def _install_sigterm() -> None:
    """Opt-in (``handle_sigterm``): finish runs with code 143 on SIGTERM, then die of it."""
    if threading.current_thread() is threading.main_thread():
        try:
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, _on_sigterm)
        except (ValueError, OSError):
            pass


def _default_sigterm_in_child() -> None:
    # a multiprocessing worker blocked on its queue's semaphore would miss our handler and hang
    # Pool.terminate(): children get the kernel's action back
    try:
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except (ValueError, OSError):
        pass


def _on_sigterm(signum: int, frame: Any) -> None:
    _finish_all(128 + signum, timeout_s=2.0)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _after_fork_child() -> None:
    for run in list(LIVE_RUNS):
        run._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_child)
os.register_at_fork(after_in_child=_default_sigterm_in_child)
