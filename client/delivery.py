"""A run handle's writer: started at ``init()``, replaced in a forked child, drained at ``finish()``.

``Run`` (client/run.py) owns the step rules and what it pushes; this module owns the link to the writer's
I/O thread (``client.transport.Writer``): connecting to (or starting, ``client.spawn``) the node agent and
waiting, bounded by ``init_timeout_s``, for the WELCOME that says where a resumed run goes on; a forked child's
own writer, started on the child's first ``log()``; and the delivery that ``finish()`` waits for, bounded by
``finish_timeout_s``. Nothing here runs on the ``log()`` path.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import time
from functools import partial
from typing import TYPE_CHECKING

from client.errors import RunConflictError

if TYPE_CHECKING:
    from client.run import Run

log = logging.getLogger("rankwise")


def discard(op: tuple) -> None:
    """``Run._push`` of a run without a writer (mode "disabled", or refused by the agent)."""


def start(run: Run) -> None:
    """Connect to (or start) the node agent and wait for the resume point; bounded by init_timeout_s."""
    s = run.settings
    if s.mode == "disabled":
        return
    from client import spawn
    from client.transport import Writer

    writer = Writer(s, run._hello_run())
    run._writer = writer
    run._push = writer.ops.extend
    writer.bind(run)  # under overload the writer switches _push to its coalescer and back (client/coalesce.py)
    t0 = time.monotonic()
    agent = spawn.ensure_agent(s, timeout_s=s.init_timeout_s)
    if agent is None:
        log.warning(
            "rankwise: no agent is running for runtime dir %s; logging continues and is delivered once an agent is up",
            s.runtime_dir,
        )
        writer.on_late_welcome = partial(late_welcome, run)
        writer.start(None)  # nobody can answer now: do not wait out init_timeout_s for a WELCOME
        return
    writer.start(agent)
    remaining = max(0.1, s.init_timeout_s - (time.monotonic() - t0))
    if not writer.welcomed.wait(remaining):
        log.warning("rankwise: agent did not answer within %.1f s; continuing from step 0", s.init_timeout_s)
        writer.on_late_welcome = partial(late_welcome, run)
        return
    if writer.refusal is not None:
        run._writer = None
        run._push = discard
        raise RunConflictError(writer.refusal)
    apply_welcome(run, writer.welcome or {})
    writer.on_late_welcome = partial(late_welcome, run)


def apply_welcome(run: Run, welcome: dict) -> None:
    step = int(welcome.get("step", 0))
    if welcome.get("resumed"):
        run.resumed = True
        run._step = max(run._step, step)
        assert run._writer is not None
        with run._writer.lock:
            run._writer.assembler.runtime_offset = float(welcome.get("runtime", 0.0))
            summary = welcome.get("summary") or {}
            run._writer.assembler.summary.update(summary)


def late_welcome(run: Run, welcome: dict) -> None:
    if welcome.get("resumed") and int(welcome.get("step", 0)) > run._step and not run.resumed:
        log.warning(
            "rankwise: run %s resumes at step %s but the agent answered late; rows logged meanwhile "
            "start at step 0 and count as late updates",
            run.settings.name,
            welcome.get("step"),
        )


def close(run: Run, code: int) -> None:
    """``finish()``'s delivery: everything this process logged reaches the agent (bounded by
    finish_timeout_s); the owner of the run also sends the finish op, and warns of drops and a timeout."""
    writer = run._writer
    if writer is not None and os.getpid() == run._pid and run._pid != run._owner_pid:
        # a forked child (exit hooks, SIGTERM handler, with-block): deliver what it logged, but the
        # run's state belongs to the parent, which is still running
        if writer._thread is not None:
            writer.close(run.settings.finish_timeout_s)
    elif writer is not None and os.getpid() == run._pid:
        done = {"exit_code": code, "t": time.time(), "late": run._late}
        if code and run._failure is not None:
            done["exception"] = run._failure  # why (client/failure.py): kept in the run's meta
        run._control("finish", done)
        ok = writer.close(run.settings.finish_timeout_s)
        drops = writer.drop_counts()
        if drops:
            log.warning(
                "rankwise: finish() of %s: data was dropped on the way to the agent, by cause: %s "
                "(rows, or values for 'oversized value' and 'bad value'; see run.stats['drops'])",
                run.name,
                ", ".join(f"{cause}: {n}" for cause, n in sorted(drops.items())),
            )
        if not ok:
            log.warning(
                "rankwise: finish() of %s timed out after %.1f s with %d row(s) not acknowledged by the "
                "agent (runtime dir %s)",
                run.name,
                run.settings.finish_timeout_s,
                writer.unacked_rows(),
                run.settings.runtime_dir,
            )


def after_fork_in_child(run: Run) -> None:
    """In a forked child: leave the parent's writer alone, log through a new one started on first use."""
    parent = run._writer
    run._pid = os.getpid()
    if parent is None or run._finished:
        return
    try:
        os.close(parent._wake_r)
        os.close(parent._wake_w)
    except OSError:
        pass
    from client import spawn
    from client.transport import Writer

    hello = run._hello_run()
    child = Writer(run.settings, hello, fork_of=parent.id)
    child.assembler.summary.update(parent.assembler.summary)
    run._writer = child

    def first_append(op: tuple) -> None:
        run._push = child.ops.extend
        child.bind(run)
        child.ops.extend(op)
        agent = spawn.agent_ready(run.settings.runtime_dir)
        child.start(agent)
        _register_child_flush(run)

    run._push = first_append


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
