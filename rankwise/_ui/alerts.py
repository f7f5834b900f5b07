"""The alerts endpoint: ``/api/projects/P/groups/G/alerts`` (documented in docs/ui.md), the group's stored
alerts (agent/alerts/alert.py ``Alert.to_dict``, read through ``Reader.alerts``) in the order they were
raised, plus a count per kind. The group page draws them as a banner, as markers on the chart of the
alert's key at its step, and as badges in the runs table row of the alert's rank (rankwise/_ui/static/alerts.js).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from typing import Any

from agent.errors import StoreError
from rankwise._ui.data import UIData
from rankwise._ui.params import Params, clean


def stored_alerts(data: UIData, group_id: int) -> list[dict[str, Any]]:
    """The group's alerts, JSON-safe; none from a store written before alerts existed (no table yet)."""
    read = getattr(data.api._reader, "alerts", None)
    if read is None:
        return []
    try:
        return [clean(a) for a in read(group_id)]
    except (StoreError, sqlite3.OperationalError) as exc:
        if "no such table" in str(exc):
            return []
        raise


def alert_count(data: UIData, group_id: int) -> int:
    """How many alerts the group has: part of the live page's change signature (rankwise/_ui/events.py), so an
    alert stored while no rank commits anything (``stalled``) still reaches an open page. Counted from their
    identities (``Reader.alert_identities``): each open page asks every poll, and the messages and details
    ``stored_alerts`` decodes are not needed for a count."""
    try:
        return len(data.api._reader.alert_identities(group_id))
    except (StoreError, sqlite3.OperationalError) as exc:
        if "no such table" in str(exc):
            return 0
        raise


def alerts(data: UIData, p: Params, project: str, name: str) -> dict[str, Any]:
    """``{"alerts": [...], "kinds": {kind: n}}``: every stored alert of the group, oldest first; with ``x=A``
    each alert also has ``x``, its step's x on the chart axis A (:mod:`rankwise._ui.alertx`)."""
    g = data.group(project, name)
    out = stored_alerts(data, g.id)
    axis = p.str("x")
    if axis:
        from rankwise._ui.alertx import with_x

        out = with_x(data, g, out, axis)
    return {"alerts": out, "kinds": dict(sorted(Counter(a["kind"] for a in out).items()))}
