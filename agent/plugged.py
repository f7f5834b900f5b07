"""The parts each role's agent runs beside its sink (agent/sinks/base.py ``Part``), in the order they hear hooks.

A single agent and a root hold the store: the detectors run there, on every rank's data (a root sees the
per-rank batches its node agents forward). Every agent samples its machine and the processes of the ranks it
serves there: a node agent its ranks, a root the ranks of its own machine that talk to it directly (those
behind node agents are sampled by them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.ingest import Ingest

ROLES = ("single", "root", "node")


def plug(ingest: Ingest, role: str) -> None:
    """Append ``role``'s parts to ``ingest.parts`` (called once, when the agent is built)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    # system metrics of this machine and its local ranks (agent/system/sampler.py; ``Ingest.is_local``)
    from agent.system.sampler import SystemSampler

    ingest.parts.append(SystemSampler(ingest, ingest.cfg.system_interval_s))
    if role in ("single", "root"):  # the agents that store alerts: user alerts, and the sinks they go to
        from agent.alerts.notify import plug_notifiers
        from agent.alerts.user import UserAlerts

        ingest.applier.user_alert = UserAlerts(ingest)
        plug_notifiers(ingest, ingest.cfg)
    if role in ("single", "root"):  # the agents that hold the store see every rank (agent/alerts/detectors/)
        from agent.alerts.detectors import install

        install(ingest)
