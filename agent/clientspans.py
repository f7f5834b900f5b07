"""Spans a client coalesced under overload (client/coalesce.py), stored like the agent's own spans.

A client whose ``log()`` outran its I/O thread sends, instead of rows, a block of spans
(``wire.SpanBlock``). Each span is stored exactly as :meth:`agent.apply.Applier._coalesced_rows`
stores one of its own: a row record at the span's last step (``_timestamp``, ``_runtime`` of its last
row, ``_first_step``, ``_rows``: the rows it stands for) and per key a coalesced chunk (``enc ==
"span"``: first step, count, last, mean, min, max) at the key's last step in the span; so
``history()``, ``coalesced()`` and the UI show it as a rate-limited span, and counts add up to the
rows logged. Keys that opted out of rate limiting (``define_metric(key, rate_limit=False)``) come
with every value and are stored row for row, as with the agent's own spans.

Group rows: a client span contributes its last value at its last step (the raw values never reached
the agent); a key kept row for row, every value. The run's summary is the client's, exact over every logged value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from agent.ratelimit import SPAN_FIELDS

if TYPE_CHECKING:
    from agent.runs import RunState
    from client.wire import SpanBlock


def apply_client_spans(updates: Any, run: RunState, sb: SpanBlock, now: float) -> None:
    """Store one batch's span block (``updates``: the agent's Applier, for its next commit and counters)."""
    r = run.record
    rid = r.id
    nc = updates.next_commit
    nc.add_history(rid, "_timestamp", sb.step, sb.t, False)
    nc.add_history(rid, "_runtime", sb.step, sb.runtime, False)
    nc.add_history(rid, "_first_step", sb.step, sb.first, False)
    nc.add_history(rid, "_rows", sb.step, sb.rows, False)
    for col in sb.columns:
        f = col.fields
        # the same fields as agent/ratelimit.py coalesce_column (a chunk may join the agent's own spans)
        nc.add_history(rid, col.key, f["step"], {"step": f["step"], **{k: f[k] for k in SPAN_FIELDS}}, False)
    for key, steps, values in sb.raw:  # keys that opted out of rate limiting: every value, row for row
        updates.add_column(run, key, steps, values, None)
    count_client_spans(updates, run, sb, now)
    tally = r.meta.setdefault("coalesced", {"rows": 0, "spans": 0})
    tally["rows"] += int(sb.rows.sum())
    tally["spans"] += sb.m


def count_client_spans(updates: Any, run: RunState, sb: SpanBlock, now: float) -> None:
    """What a span block does besides the history (a node agent that forwards batches does only this):
    group points, the run's step, rows and runtime, the counters."""
    r = run.record
    nc = updates.next_commit
    points = 0
    for col in sb.columns:
        f = col.fields
        run.group.add_column(r.rank, col.key, f["step"], np.ascontiguousarray(f["last"]), now, nc)
        points += int(f["count"].sum())
    for key, steps, values in sb.raw:
        run.group.add_column(r.rank, key, steps, values, now, nc)
        points += len(steps)
    total = int(sb.rows.sum())
    r.step = max(r.step, int(sb.step.max()) + 1)
    r.rows += total
    r.runtime = max(r.runtime, float(sb.runtime.max()))
    updates.counters.add("rows", total)
    updates.counters.add("points", points)
    updates.counters.add("client_spans", sb.m)
    updates.counters.add("client_coalesced_rows", total)
