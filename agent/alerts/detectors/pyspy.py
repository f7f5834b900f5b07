"""The Python stack of a hung rank, by ``py-spy dump`` (optional: found on PATH or beside the agent's Python).

The dump runs in a worker thread with a timeout, never on the agent's loop thread: :meth:`Spy.start` returns
a future whose result is the ``details`` the hang alert carries (``stack``, or ``py_spy`` saying why there
is none). ``--nonblocking``: the hung process is not paused (it is not moving anyway), and a process frozen
by SIGSTOP is read as well as a running one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

TIMEOUT_S = 10.0  # a dump takes well under a second; a stuck py-spy is killed after this
MAX_STACK = 16000  # characters of the dump kept (the innermost frames come first)
NOT_INSTALLED = "py-spy not installed"


def find_py_spy() -> str | None:
    """The py-spy executable: on PATH, else in the bin directory of the Python running the agent (a venv)."""
    found = shutil.which("py-spy")
    if found:
        return found
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.is_file() else None


def done(details: dict) -> Future:
    future: Future = Future()
    future.set_result(details)
    return future


class Spy:
    """Starts ``py-spy dump`` of a pid on a worker thread (at most ``workers`` at once)."""

    def __init__(self, exe: str | None = None, timeout_s: float = TIMEOUT_S, workers: int = 2):
        self.exe = exe if exe is not None else find_py_spy()
        self.timeout_s = timeout_s
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self.started = 0

    def __repr__(self) -> str:
        return f"<Spy {self.exe or NOT_INSTALLED} started={self.started}>"

    def start(self, pid: int) -> Future:
        if not self.exe:
            return done({"py_spy": NOT_INSTALLED})
        if self._pool is None:  # threads only once there is something to dump
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="rankwise-py-spy")
        self.started += 1
        return self._pool.submit(self.dump, pid)

    def dump(self, pid: int) -> dict:
        """Run on a worker thread: the dump's text, or why there is none."""
        args = [str(self.exe), "dump", "--nonblocking", "--pid", str(pid)]
        try:
            out = subprocess.run(args, capture_output=True, text=True, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            return {"py_spy": f"py-spy dump timed out after {self.timeout_s:g} s"}
        except OSError as exc:
            return {"py_spy": f"py-spy could not run: {exc}"}
        if out.returncode != 0 or not out.stdout.strip():
            why = next((ln for ln in out.stderr.splitlines() if ln.startswith("Error")), out.stderr.strip()[:200])
            return {"py_spy": f"py-spy dump failed (exit {out.returncode}): {why}"}
        return {"stack": out.stdout[:MAX_STACK], "py_spy": "dumped"}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
