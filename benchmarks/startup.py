"""6. ``import rankwise`` and ``init()`` times.

* import: a fresh ``python -c`` per repetition times ``import rankwise`` inside
  the process (interpreter start excluded) and lists which heavy modules it
  pulled in (none of numpy, zmq, sqlite3 or the agent should load: the
  transport loads on ``init()``). The whole process (``python -c "import
  rankwise"`` minus ``python -c pass``, wall clock from outside) is reported too.
* init, agent running: a fresh process times its first ``init()`` (which also
  imports the transport: zmq, numpy, msgpack) and then a second ``init()`` of
  a new run in the same process, each up to the agent's WELCOME. The first
  ``init()`` is timed twice: in a bare process, and with numpy imported
  beforehand, as it always is in a PyTorch / JAX training process.
* init, cold: no agent yet; ``init()`` spawns one and waits until it is ready
  (a new sandbox per repetition, so the store is new as well).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

NAME = "startup"
TITLE = "6. import rankwise and init() time"
HEAVY = ("numpy", "zmq", "msgpack", "sqlite3", "agent", "psutil", "rankwise._api")

_IMPORT_PROBE = (
    "import time; t0 = time.perf_counter(); import rankwise; t1 = time.perf_counter(); import sys, json; "
    f"print(json.dumps({{'s': t1 - t0, 'modules': len(sys.modules), 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))"
)


def params(quick: bool) -> dict[str, int]:
    return {"import_reps": 3 if quick else 9, "warm_reps": 1 if quick else 5, "cold_reps": 1 if quick else 3}


def init_times(args: dict, barrier: Any) -> dict:
    """Worker: time import, first init(), finish, second init()."""
    from time import perf_counter

    if args.get("preload_numpy"):
        import numpy  # noqa: F401

    t0 = perf_counter()
    import rankwise

    t1 = perf_counter()
    run = rankwise.init(project="bench", group=args["group"] + "-a", rank=0, world_size=1)
    t2 = perf_counter()
    run.log({"loss": 1.0})
    run.finish()
    t3 = perf_counter()
    run = rankwise.init(project="bench", group=args["group"] + "-b", rank=0, world_size=1)
    t4 = perf_counter()
    run.finish()
    return {
        "import_s": t1 - t0,
        "first_init_s": t2 - t1,
        "finish_s": t3 - t2,
        "second_init_s": t4 - t3,
        "spawns": run.stats.get("spawns", 0),
    }


def run(ctx: Any) -> dict:
    from benchmarks._harness import Sandbox, clean_env
    from benchmarks._stats import summary

    p = params(ctx.quick)
    env = clean_env()
    in_proc, wall_import, wall_bare, heavy, nmods = [], [], [], set(), []
    for _ in range(p["import_reps"]):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
        wall_bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], env=env, check=True, capture_output=True, text=True)
        wall_import.append(time.perf_counter() - t0)
        probe = json.loads(out.stdout.strip().splitlines()[-1])
        in_proc.append(probe["s"])
        heavy.update(probe["heavy"])
        nmods.append(probe["modules"])

    warm = []
    with Sandbox(f"{NAME}-warm") as box:
        box.start_agent()
        for i in range(p["warm_reps"]):
            for preload in (False, True):
                res = box.worker(f"{NAME}:init_times", {"group": f"warm{i}{preload:d}", "preload_numpy": preload})
                warm.append(dict(res.result(ctx.timeout(60)), preload_numpy=preload))
    cold = []
    for i in range(p["cold_reps"]):
        with Sandbox(f"{NAME}-cold") as box:
            res = box.worker(f"{NAME}:init_times", {"group": f"cold{i}"}).result(ctx.timeout(60))
            res["agent_spawned"] = box.agent_pid() is not None
            cold.append(res)
    return {
        "params": p,
        "import": {
            "in_process_s": summary(in_proc),
            "process_wall_s": summary(wall_import),
            "bare_python_wall_s": summary(wall_bare),
            "process_delta_s": float(
                sorted(wall_import)[len(wall_import) // 2] - sorted(wall_bare)[len(wall_bare) // 2]
            ),
            "heavy_modules_loaded": sorted(heavy),
            "modules_loaded": int(max(nmods)),
        },
        "init_warm": {
            "first_init_s": summary([r["first_init_s"] for r in warm if not r["preload_numpy"]]),
            "first_init_numpy_loaded_s": summary([r["first_init_s"] for r in warm if r["preload_numpy"]]),
            "second_init_s": summary([r["second_init_s"] for r in warm]),
        },
        "init_cold": {
            "first_init_s": summary([r["first_init_s"] for r in cold]),
            "agent_spawned": all(r["agent_spawned"] for r in cold),
        },
    }


def rows(r: dict) -> list:
    from benchmarks._table import ms

    im, w, c = r["import"], r["init_warm"], r["init_cold"]
    heavy = ", ".join(im["heavy_modules_loaded"]) or "none of " + "/".join(HEAVY[:4])
    return [
        (
            "import rankwise (in process)",
            f"{ms(im['in_process_s']['min'])} / {ms(im['in_process_s']['median'])}",
            f"min / median of {im['in_process_s']['n']} fresh processes; {im['modules_loaded']} modules, heavy: {heavy}",
        ),
        (
            "python -c 'import rankwise'",
            ms(im["process_wall_s"]["median"]),
            f"median wall; bare interpreter {ms(im['bare_python_wall_s']['median'])} → +{ms(im['process_delta_s'])}",
        ),
        (
            "init(), agent running: first",
            f"{ms(w['first_init_s']['min'])} / {ms(w['first_init_s']['median'])}",
            "min / median; includes loading the transport (zmq, numpy, msgpack)",
        ),
        (
            "init(), agent running: numpy loaded",
            f"{ms(w['first_init_numpy_loaded_s']['min'])} / {ms(w['first_init_numpy_loaded_s']['median'])}",
            "min / median; first init() when numpy is already imported (any PyTorch process)",
        ),
        (
            "init(), agent running: again",
            f"{ms(w['second_init_s']['min'])} / {ms(w['second_init_s']['median'])}",
            "min / median; a new run in the same process",
        ),
        (
            "init(), cold: spawns the agent",
            f"{ms(c['first_init_s']['min'])} / {ms(c['first_init_s']['median'])}",
            f"min / median of {c['first_init_s']['n']}; agent spawned: {c['agent_spawned']}",
        ),
    ]
