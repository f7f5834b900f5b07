"""The detectors: parts of the agent that holds the store (a single agent, a root) that raise alerts about
a group's health from the data the agent already has (docs/alerts.md, section "Detectors").

One module each: nan.py (the first NaN/±Inf step of a rank and key), diverged.py (a rank whose value leaves
the others' distribution), hang.py (``hang`` and ``stalled``: no progress for ``hang_after``), straggler.py
(step time ≥ 1.5× the group median), crashed.py (a run crashed or failed: its exception, its exit status).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.alerts.detectors.crashed import CrashedDetector
from agent.alerts.detectors.diverged import DivergedDetector
from agent.alerts.detectors.hang import HangDetector
from agent.alerts.detectors.nan import NanDetector
from agent.alerts.detectors.straggler import StragglerDetector

if TYPE_CHECKING:
    from agent.alerts.detectors.base import Detector
    from agent.alerts.detectors.pyspy import Spy
    from agent.ingest import Ingest

DETECTORS = (NanDetector, DivergedDetector, HangDetector, StragglerDetector, CrashedDetector)


def install(ingest: Ingest, spy: Spy | None = None) -> list[Detector]:
    """Append every detector to ``ingest.parts`` (``spy``: how hung ranks' stacks are dumped; tests inject
    one) and return them."""
    made: list[Detector] = []
    for cls in DETECTORS:
        made.append(cls(ingest, spy) if cls is HangDetector else cls(ingest))
    ingest.parts.extend(made)
    return made
