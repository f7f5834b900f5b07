"""The tests' process helpers keep every line a child printed: ``read_line`` then ``wait_all`` (as the
fault tests do) must not lose the lines a ``readline()`` read ahead, and ``read_line`` must return a line
the text wrapper already holds without waiting for more output (a CI run lost a rank's last line so)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from support.probes import read_line
from support.processes import communicate, wait_all

# Every line is in the pipe before the test reads the first one: one readline() pulls them all in.
AT_ONCE = "import sys; sys.stdout.write('first\\nsecond\\nlast {}\\n'); sys.stdout.flush()"


def _child(code: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.wait(30)  # the child has exited: all its output waits in the pipe
    return proc


def test_lines_read_ahead_reach_wait_all():
    """read_line returns "first" then "second" (the second from the wrapper's buffer, at once); wait_all
    returns the remaining "last {}" line with exit code 0 and empty stderr."""
    proc = _child(AT_ONCE)
    assert read_line(proc, 5, "the first line") == "first"
    assert read_line(proc, 5, "the buffered second line") == "second"
    assert wait_all([proc], timeout_s=30) == [(0, "last {}\n", "")]


def test_communicate_reads_stderr_and_times_out_like_popen():
    """communicate returns stdout and stderr of an exited child; a child that keeps its pipes open past the
    timeout raises subprocess.TimeoutExpired, as Popen.communicate does."""
    proc = _child("import sys; print('out'); print('err', file=sys.stderr)")
    assert communicate(proc, 30) == ("out\n", "err\n")
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            communicate(sleeper, 0.5)
    finally:
        sleeper.kill()
        sleeper.wait(30)


def test_read_line_reports_an_exit_before_the_line():
    """A child that exits without printing makes read_line fail with its exit code and stderr."""
    proc = _child("import sys; print('boom', file=sys.stderr); sys.exit(3)")
    with pytest.raises(AssertionError, match=r"exited 3 before the line:\nboom"):
        read_line(proc, 5, "the line")
