"""When a live view ends (``rankwise/_settle.py``, shared by ``rankwise tail`` and the UI's event stream):
not while a rank runs, at once when every committed step has its group row, else after ``settle_s``."""

from __future__ import annotations

from types import SimpleNamespace

from rankwise._settle import Settling


def test_a_stopped_group_ends_when_caught_up_or_after_the_bound():
    """Caught up: ends at the first stopped poll. Not caught up: ends only once settle_s has passed since the
    group was first seen stopped; running again starts that wait over."""
    now = [100.0]
    runs = [SimpleNamespace(step=10), SimpleNamespace(step=8)]  # step: the next step each run commits
    assert Settling(clock=lambda: now[0]).stopped(9, runs)
    s = Settling(settle_s=5.0, clock=lambda: now[0])
    assert not s.stopped(7, runs)
    now[0] += 4.0
    assert not s.stopped(7, runs)
    s.running()
    now[0] += 2.0
    assert not s.stopped(7, runs) and "stopped" in repr(s)
    now[0] += 5.5
    assert s.stopped(7, runs)
