"""Whether the store takes commits, and what the agent does while it does not.

Two kinds of trouble (classified by :func:`agent.store.base.store_problem`):

* the store refuses writes for now (``disk full``, or ``store unavailable: <reason>``: locked,
  read-only, I/O error). Uncommitted work stays pending and is retried; once it reaches the
  agent's byte budget (``RANKWISE_AGENT_PENDING_BYTES``, default 32 MiB) new client batches are
  *held*: neither applied nor acknowledged, so the clients keep them (in memory, then in their
  bounded spill files) and resend them after a HELLO. The episode is logged once when it starts
  and once when it ends, shown by ``rankwise status`` and told to the clients in every WELCOME
  (``warn``) while it lasts;
* the store is *lost*: deleted, replaced, overwritten or corrupt. The agent moves what is left
  aside, starts a fresh store and forgets everything that mirrored the old one (runs, groups,
  writers, pending work): the writers say HELLO again and resend what was not acknowledged.
  Each loss is logged, kept in ``rankwise status`` and told to the clients (``warn``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from agent.errors import StoreError
from agent.store.base import DISK_FULL, LOST, store_problem
from agent.store.sqlite_errors import is_sqlite_error

log = logging.getLogger("rankwise.agent")

MAX_LOSSES_SHOWN = 8  # store losses listed in `rankwise status` (the agent log has them all)


def is_store_error(exc: BaseException) -> bool:
    """An error of the store itself (not of a frame): StoreError, or one of sqlite3's that reached the agent
    unmapped (the SQLite store maps its own at its boundary: agent/store/sqlite_errors.py)."""
    return isinstance(exc, StoreError) or is_sqlite_error(exc)


class StoreHealth:
    """The store's state as the agent's loop sees it; written by the loop thread only."""

    def __init__(self, budget_bytes: int):
        self.budget = int(budget_bytes)
        self.trouble: tuple[str, str, float] | None = None  # (kind, first error, since: wall time)
        self.failures = 0  # failed attempts in the current episode
        self.losses: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        state = "ok" if self.trouble is None else f"{self.trouble[0]} x{self.failures}"
        return f"<StoreHealth {state} budget={self.budget} losses={len(self.losses)}>"

    def failed(self, exc: BaseException, pending_bytes: int, hold_lost: bool = False) -> str:
        """A commit (or a registration) failed: start or continue an episode; returns its kind. A lost store
        is no episode (the agent starts a fresh one) unless ``hold_lost`` (then it is one, like a full disk)."""
        kind, message = store_problem(exc)
        if kind == LOST and not hold_lost:
            return kind
        self.failures += 1
        if self.trouble is None or self.trouble[0] != kind:
            self.trouble = (kind, message, time.time())
            log.error(
                "store write failed: %s (%s). Holding %d uncommitted bytes (budget %d, RANKWISE_AGENT_PENDING_BYTES); "
                "beyond the budget new batches are not acknowledged: clients keep them and resend. Retrying.",
                kind,
                message,
                pending_bytes,
                self.budget,
            )
        return kind

    def recovered(self, points: int) -> None:
        if self.trouble is None:
            return
        kind, _, since = self.trouble
        log.warning(
            "store writable again after %.1f s of %s (%d failed attempts); %d pending points stored",
            time.time() - since,
            kind,
            self.failures,
            points,
        )
        self.trouble = None
        self.failures = 0

    def holding(self, pending_bytes: int) -> bool:
        """New batches must wait in the clients: the store refuses commits and the budget is used up."""
        return self.trouble is not None and pending_bytes >= self.budget

    def lost(self, why: str, moved: str | None, writers: int, points: int) -> None:
        self.losses.append(
            {"at": time.time(), "why": why, "moved_to": moved, "writers": writers, "uncommitted_points": points}
        )
        self.trouble = None
        self.failures = 0
        log.error(
            "STORE LOST: %s. %s. Started a fresh store; %d writer(s) told to say HELLO again and resend what was not "
            "acknowledged (%d uncommitted points dropped here, kept by their clients).",
            why,
            f"What was left of it was moved to {moved}" if moved else "Nothing of it was left to move aside",
            writers,
            points,
        )

    def state(self) -> str:
        """``ok``, ``disk full``, ``store unavailable: <reason>`` or (a root, a node agent's catalog) ``store lost:
        <reason>``: what `rankwise status` shows."""
        if self.trouble is None:
            return "ok"
        kind, message, _ = self.trouble
        return kind if kind == DISK_FULL else f"{kind}: {message}"

    def warning(self, lost_writer: bool) -> str | None:
        """What a client should print (once), or None. ``lost_writer``: a writer the agent knew when it
        lost its store (a new writer has nothing to be told about that)."""
        if self.trouble is not None:
            return (
                f"the rankwise agent cannot write its store ({self.state()}); logged rows wait in this process "
                "and its spill file until it can"
            )
        if self.losses and lost_writer:
            last = self.losses[-1]
            where = f"moved to {last['moved_to']}" if last["moved_to"] else "deleted"
            return (
                f"the rankwise agent's store was lost ({last['why']}; {where}) and a fresh one was started; "
                "rows not acknowledged before are resent to it"
            )
        return None

    def status(self, pending_bytes: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "store_state": self.state(),
            "pending_bytes": pending_bytes,
            "pending_budget_bytes": self.budget,
            "store_losses": self.losses[-MAX_LOSSES_SHOWN:],
        }
        if self.trouble is not None:
            out["store_trouble_since"] = self.trouble[2]
            out["store_failures"] = self.failures
        return out
