"""The machine and software a run was measured on (top of the table and in the JSON)."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str, attr: str = "__version__") -> str | None:
    try:
        mod = __import__(module)
    except Exception:
        return None
    return str(getattr(mod, attr, None))


def describe() -> dict[str, Any]:
    import psutil
    import zmq

    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu_model": _cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_total_gb": psutil.virtual_memory().total / 2**30,
        "platform": platform.platform(),
        "hostname": platform.node(),
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        "python_executable": sys.executable,
        "numpy": _version("numpy"),
        "pyzmq": zmq.pyzmq_version(),
        "libzmq": zmq.zmq_version(),
        "msgpack": ".".join(map(str, __import__("msgpack").version)),
        "psutil": psutil.__version__,
        "rankwise": _version("rankwise"),
        "load_avg_start": load,
    }
