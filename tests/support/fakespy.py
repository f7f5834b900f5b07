"""A stand-in for py-spy in the detector specs (tests/agent/test_detector_specs.py, test_detector_jobs.py): the
hang detector's stack dumper (agent/alerts/detectors/pyspy.py ``Spy``) without a process to dump."""

from __future__ import annotations

from concurrent.futures import Future

from agent.alerts.detectors.pyspy import done


class FakeSpy:
    """``start(pid)`` returns ``next`` (a future the spec completes) or a dump at once; ``started``: the pids."""

    def __repr__(self) -> str:
        return f"<FakeSpy started={self.started} next={self.next!r}>"

    def __init__(self) -> None:
        self.started: list[int] = []
        self.next: Future | None = None

    def start(self, pid: int) -> Future:
        self.started.append(pid)
        if self.next is not None:
            future, self.next = self.next, None
            return future
        return done({"py_spy": "dumped", "stack": f"Thread {pid}: train_step (train.py:42)"})

    def close(self) -> None:
        pass
