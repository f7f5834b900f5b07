"""Live updates of a group's page: ``/api/projects/P/groups/G/events``, server-sent events.

The group is checked twice a second with two cheap queries (its signature: rankwise/_ui/api.py, and its
alert count: rankwise/_ui/alerts.py); ``update`` (the group summary) is sent when the agent committed
something for it or stored an alert, a comment line as heartbeat, and
``end`` once no rank runs any more and the last steps are sealed (rankwise/_settle.py).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from agent.errors import StoreError
from rankwise._settle import Settling
from rankwise._ui import api
from rankwise._ui.alerts import alert_count
from rankwise._ui.params import Params
from rankwise.errors import ApiError, NotFound, StoreMissing

if TYPE_CHECKING:
    from rankwise._ui.handler import Handler

EVENT_POLL_S = 0.5
EVENT_HEARTBEAT_S = 15.0


def stream_events(handler: Handler, project: str, name: str, query: dict[str, list[str]]) -> None:
    """Answer the request ``handler`` holds with the group's event stream until the group has ended or the
    server stops: ``update`` (the group summary) whenever the agent committed something for the group, a
    comment line as heartbeat, and ``end`` once no rank is running any more."""
    data = handler.server.data
    try:
        Params(query, ())
        g = data.group(project, name)
    except ApiError as exc:
        handler.reply_error(exc.status, exc.message)
        return
    except (StoreMissing, StoreError) as exc:  # no store yet, or its tables not yet: the page retries
        handler.reply_error(503, str(exc))
        return
    except NotFound as exc:
        handler.reply_error(404, str(exc))
        return
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Cache-Control", "no-cache")
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.close_connection = True
    handler.wfile.write(b"retry: 2000\n\n")
    handler.wfile.flush()
    last_sig: tuple | None = None
    last_write = time.monotonic()
    settling = Settling()
    while not handler.server.stopping.is_set():
        try:
            g = data.group(project, name)
            runs = data.runs(g)
            n_alerts = alert_count(data, g.id)
        except StoreError:  # the store briefly unreadable (busy, being created): try again
            handler.server.stopping.wait(EVENT_POLL_S)
            continue
        sig = (api.signature(g, runs), n_alerts)
        if sig != last_sig:
            summary = api.group_summary(data, g, runs)
            payload = json.dumps(summary, separators=(",", ":"), allow_nan=False)
            handler.wfile.write(f"event: update\ndata: {payload}\n\n".encode())
            handler.wfile.flush()
            last_sig, last_write = sig, time.monotonic()
        if not runs or any(r.state == "running" for r in runs):
            settling.running()
        elif settling.stopped(g.sealed_through, runs):
            handler.wfile.write(b"event: end\ndata: {}\n\n")
            handler.wfile.flush()
            return
        if time.monotonic() - last_write > EVENT_HEARTBEAT_S:
            handler.wfile.write(b": heartbeat\n\n")
            handler.wfile.flush()
            last_write = time.monotonic()
        handler.server.stopping.wait(EVENT_POLL_S)
