"""Entry point of a worker process: ``python -m benchmarks._worker module:function args.json``.

Runs ``benchmarks.<module>.<function>(args, barrier)`` and writes its return value as
JSON to ``args["_out"]``. ``barrier.wait()`` prints READY and blocks until the
orchestrator writes a line to stdin (so N workers start their loops together).

Kept free of heavy imports: the startup and memory benchmarks measure what a
training process pays, not what this harness does.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from typing import Any

READY = "@@RANKWISE-BENCH-READY"


class Barrier:
    def wait(self) -> float:
        """Tell the orchestrator we are ready, wait for "go"; returns ``perf_counter()`` at release."""
        sys.stdout.write(READY + "\n")
        sys.stdout.flush()
        sys.stdin.readline()
        return time.perf_counter()


def rss_bytes() -> int:
    """Resident memory of this process (Linux /proc; psutil elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss


def peak_rss_bytes() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def main(argv: list[str]) -> int:
    target, args_path = argv[1], argv[2]
    with open(args_path) as fh:
        args: dict[str, Any] = json.load(fh)
    module, func = target.split(":")
    fn = getattr(importlib.import_module(f"benchmarks.{module}"), func)
    result = fn(args, Barrier())
    tmp = args["_out"] + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(result, fh)
    os.replace(tmp, args["_out"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
