"""The exception that ended a training process (or killed one of its threads), described for the agent.

A rank that fails shows ``failed, exit 1`` and, with this, why: the exception's type, message and
traceback as the process saw them, sent with the run's ``finish`` op (client/delivery.py) and kept in the
run's meta as ``exception`` (agent/apply.py), read by ``RunView.exception`` and ``rankwise runs --json``.
Bounded: a message of 4 KiB and the last 32 KiB of the traceback (its innermost frames and the message)
travel, whatever the exception holds.

Caught by client/state.py (``sys.excepthook`` and ``threading.excepthook``, installed at ``init()``) and by
``with rankwise.init() as run:`` blocks (client/run.py ``Run.__exit__``).
"""

from __future__ import annotations

import traceback
from types import TracebackType
from typing import Any

MESSAGE_CHARS = 4096
TRACEBACK_CHARS = 32768
TYPE_CHARS = 256
THREAD_CHARS = 128


def describe(
    exc_type: type[BaseException], exc: BaseException | None, tb: TracebackType | None, thread: str | None = None
) -> dict[str, str]:
    """``{"type", "message", "traceback"}`` (and ``"thread"`` for a thread's exception), bounded. Never
    raises: it runs inside exception hooks, where an error of ours would hide the training script's."""
    try:
        module = getattr(exc_type, "__module__", "") or ""
        name = getattr(exc_type, "__qualname__", None) or getattr(exc_type, "__name__", "Exception")
        kind = name if module in ("builtins", "__main__") else f"{module}.{name}"
        try:
            message = str(exc) if exc is not None else ""
        except Exception:  # noqa: BLE001 - an exception whose __str__ fails still has a type
            message = "<unprintable message>"
        text = "".join(traceback.format_exception(exc_type, exc, tb))
    except Exception:  # noqa: BLE001
        kind, message, text = "Exception", "", ""
    out = {"type": kind[:TYPE_CHARS], "message": message[:MESSAGE_CHARS], "traceback": text[-TRACEBACK_CHARS:]}
    if thread is not None:
        out["thread"] = thread[:THREAD_CHARS]
    return out


# what the agent takes (agent/apply.py ``finish``): these fields, strings within these bounds (chars)
FIELDS = {"type": TYPE_CHARS, "message": MESSAGE_CHARS, "traceback": TRACEBACK_CHARS, "thread": THREAD_CHARS}


def checked(arg: Any) -> dict[str, str] | None:
    """A finish op's ``exception`` as ``describe`` makes it, or None when it is anything else (a peer's
    frame: the agent counts it as malformed; the run still fails)."""
    if not isinstance(arg, dict) or not {"type", "message", "traceback"} <= arg.keys() <= FIELDS.keys():
        return None
    if not all(isinstance(v, str) and len(v) <= FIELDS[k] for k, v in arg.items()):
        return None
    return dict(arg)
