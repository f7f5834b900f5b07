"""The rank script of the fault tests: a process that logs until the test creates a file, then finishes and
prints what it sent, so that the test can kill or stall whatever it is testing while rows keep coming.

One template instead of a copy per test file (tests/fault/test_mn_*.py, test_malformed_frames.py,
test_wire_fuzz.py). The last line the script prints is ``n rows_sent unacked_rows`` (plus the ``stats``
named in ``extra_stats``), where n is the number of ``log()`` calls; with ``started_after`` it first prints
``started`` once that many rows are acknowledged.
"""

from __future__ import annotations

_TEMPLATE = """
import os, time, rankwise
from pathlib import Path
rank = int(os.environ.get("RANK", "0"))
run = rankwise.init(project=%(project)r)
stop = Path(os.environ[%(stop_var)r])
s = 0
def burst(k):
    global s
    for _ in range(k):
        run.log(%(row)s)
        s += 1
%(started)swhile not stop.exists() or s < %(min_rows)d:
    burst(%(chunk)d)
    time.sleep(%(pause_s)r)
burst(%(tail)d)
run.finish()
st = run.stats
print(s, *(st[k] for k in %(stats)r), flush=True)
"""

_STARTED = """burst(%d)
assert run.flush(30)
print("started", flush=True)
"""


def log_until_file(
    project: str,
    row: str = '{"x": rank * 1000.0 + s}',
    *,
    stop_var: str = "RW_STOP",
    min_rows: int = 0,
    started_after: int | None = None,
    chunk: int = 1,
    pause_s: float = 0.001,
    tail: int = 0,
    extra_stats: tuple[str, ...] = (),
) -> str:
    """The script: log ``row`` (a Python expression in ``rank`` and the row number ``s``) in bursts of
    ``chunk`` rows with a ``pause_s`` sleep after each, until the file named by the environment variable
    ``stop_var`` exists and at least ``min_rows`` rows are logged; then ``tail`` more rows, ``finish()``,
    and the counts. ``started_after``: log that many rows first, flush, and print ``started``."""
    if chunk < 1:
        raise ValueError(f"chunk={chunk}: a burst logs at least one row (chunk=1 logs them one at a time)")
    return _TEMPLATE % {
        "project": project,
        "row": row,
        "stop_var": stop_var,
        "min_rows": min_rows,
        "chunk": chunk,
        "started": "" if started_after is None else _STARTED % started_after,
        "pause_s": pause_s,
        "tail": tail,
        "stats": ("rows_sent", "unacked_rows", *extra_stats),
    }
