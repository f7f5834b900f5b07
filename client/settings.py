"""One frozen :class:`Settings` per run, resolved defaults → environment → keyword arguments.

Every knob has an environment variable so a launcher script can set it for all
ranks; a keyword argument to ``init()`` wins over the environment. Units are in
the names (``_s`` seconds, ``_bytes`` bytes). The agent reads the same
environment for the knobs it shares with clients (paths, idle timeout).

wandb's variables are read too (after rankwise's own): WANDB_PROJECT, WANDB_RUN_GROUP, WANDB_NAME,
WANDB_RUN_ID, WANDB_RESUME, WANDB_MODE (``dryrun`` = ``offline``), WANDB_DISABLED, WANDB_DIR, WANDB_ENTITY.
``init(id=)`` names one run of the project: without an explicit group the id is the group's name, so a
restarted process passing the same id resumes the same run whatever its launcher says. ``init(dir=)`` /
WANDB_DIR (``files_dir``) is where the run's local files go (``run.dir``), never the store (``data_dir``,
RANKWISE_DIR). Offline behaves like online: the agent is on this node either way.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client import launcher, paths
from client.errors import InvalidArgumentError

# wire.MAX_BATCH_ROWS; not imported from client.wire, which needs msgpack and numpy
MAX_BATCH_ROWS = 1 << 20

MODES = ("online", "offline", "disabled")
# wandb's other spellings: "dryrun" (Lightning's offline=True sets WANDB_MODE=dryrun) is offline, "run" and
# "shared" are online. Offline behaves like online: the agent is on this node, nothing leaves it anyway.
MODE_ALIASES = {"dryrun": "offline", "run": "online", "shared": "online"}
RESUME = ("allow", "never", "must")
_NAME_RE = re.compile(r"^[^\x00-\x1f/\\]{1,128}$")
# run and group names may carry '/' (HF's Trainer names the run after its output directory); the agent keeps up to 1024
_LABEL_RE = re.compile(r"^[^\x00-\x1f]{1,512}$")


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know, fixed at ``init()``."""

    # identity
    project: str
    group: str
    name: str
    rank: int
    world_size: int
    local_rank: int
    node: str
    launcher: str
    restart: int = 0
    resume: str = "allow"
    # wandb's run id (init(id=) / WANDB_RUN_ID): names one run of the project; None: derived from the identity
    run_id: str | None = None
    entity: str | None = None  # "team" of project="team/proj" (or entity= / WANDB_ENTITY): kept, not used
    # wandb's init(dir=) / WANDB_DIR: where the run's local files go (run.dir); never where the store lives
    files_dir: Path | None = None
    mode: str = "online"  # "offline" is accepted for wandb scripts and behaves like online: the agent is local
    # places
    data_dir: Path = field(default_factory=lambda: paths.data_dir())
    runtime_dir: Path = field(default_factory=lambda: paths.runtime_dir())
    # transport
    flush_interval_s: float = 0.02
    finish_timeout_s: float = 10.0
    init_timeout_s: float = 15.0
    retry_after_s: float = 2.0
    max_unacked_bytes: int = 256 << 20
    # ops queued for the I/O thread (an estimate in bytes): beyond it log() coalesces rows into spans on the
    # training thread (client/coalesce.py), so a loop that outruns the I/O thread keeps its memory bounded
    max_queued_bytes: int = 24 << 20
    batch_max_rows: int = 8192
    spawn_agent: bool = True
    # SIGTERM stays the kernel's by default: a Python-level handler cannot run while the main thread
    # blocks in C (an NCCL collective, a semaphore) and would delay the stop torchrun/SLURM asked for
    handle_sigterm: bool = False
    # stored rows per second for this run; over it the agent coalesces rows (None: the agent's default)
    max_rows_per_s: float | None = None
    agent_idle_timeout_s: float = 60.0
    # the log() after one that logged a NaN or ±Inf raises NonFiniteValueError (client/stop_on_nan.py)
    stop_on_nan: bool = False

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


# (field, environment variable, parser)
def _float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise InvalidArgumentError(f"{name}={raw!r} is not a number of seconds") from None
    if not value >= 0:
        raise InvalidArgumentError(f"{name}={raw!r} must be >= 0")
    return value


def _bytes(name: str, raw: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)i?[bB]?\s*", raw)
    if not m:
        raise InvalidArgumentError(f"{name}={raw!r} is not a size; use e.g. 268435456, 256M or 1G")
    value = int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2).lower()]
    if value < 1:
        raise InvalidArgumentError(f"{name}={raw!r} must be at least 1 byte")
    return value


def _int_(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgumentError(f"{name}={raw!r} is not an integer") from None
    if value < 1:
        raise InvalidArgumentError(f"{name}={raw!r} must be >= 1")
    return value


def _batch_rows(name: str, raw: str) -> int:
    value = _int_(name, raw)
    if value > MAX_BATCH_ROWS:
        raise InvalidArgumentError(f"{name}={raw!r} must be at most {MAX_BATCH_ROWS} (the agent's batch limit)")
    return value


def _bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise InvalidArgumentError(f"{name}={raw!r} is not a boolean; use 1 or 0")


_ENV_KNOBS = (
    ("flush_interval_s", "RANKWISE_FLUSH_INTERVAL", _float),
    ("finish_timeout_s", "RANKWISE_FINISH_TIMEOUT", _float),
    ("init_timeout_s", "RANKWISE_INIT_TIMEOUT", _float),
    ("retry_after_s", "RANKWISE_RETRY_AFTER", _float),
    ("max_unacked_bytes", "RANKWISE_MAX_UNACKED_BYTES", _bytes),
    ("max_queued_bytes", "RANKWISE_MAX_QUEUED_BYTES", _bytes),
    ("batch_max_rows", "RANKWISE_BATCH_MAX_ROWS", _batch_rows),
    ("spawn_agent", "RANKWISE_SPAWN_AGENT", _bool),
    ("handle_sigterm", "RANKWISE_HANDLE_SIGTERM", _bool),
    ("max_rows_per_s", "RANKWISE_MAX_ROWS_PER_S", _float),
    ("agent_idle_timeout_s", "RANKWISE_AGENT_IDLE_TIMEOUT", _float),
    ("stop_on_nan", "RANKWISE_STOP_ON_NAN", _bool),
)


def _check_name(arg: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise InvalidArgumentError(
            f"{arg}={value!r} must be a non-empty string of at most 128 characters without '/' or control characters"
        )
    return value


def _check_label(arg: str, value: Any) -> str:
    if not isinstance(value, str) or not _LABEL_RE.match(value):
        raise InvalidArgumentError(
            f"{arg}={value!r} must be a non-empty string of at most 512 characters without control characters"
        )
    return value


def _check_int(arg: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgumentError(f"{arg}={value!r} must be an integer >= {minimum}")
    return value


def _bool_env(env: Mapping[str, str], var: str) -> bool:
    return (env.get(var) or "").strip().lower() in ("1", "true", "yes", "on")


def _default_project() -> str:
    script = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-m") else ""
    stem = Path(script).stem if script else ""
    return re.sub(r"[^\w.-]", "_", stem) or "default"


def fresh_group_id() -> str:
    """A group id for a process started without a launcher: time plus random bits, sortable."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + os.urandom(3).hex()


def resolve(env: Mapping[str, str] | None = None, **kwargs: Any) -> Settings:
    """Build the run's settings: defaults, then environment, then ``kwargs`` (None means not given)."""
    env = os.environ if env is None else env
    given = {k: v for k, v in kwargs.items() if v is not None}
    unknown = set(given) - {f.name for f in dataclasses.fields(Settings)}
    if unknown:
        raise InvalidArgumentError(f"unknown setting(s) {sorted(unknown)}")

    launch = launcher.detect(env)
    mode_var = "RANKWISE_MODE" if env.get("RANKWISE_MODE") else ("WANDB_MODE" if env.get("WANDB_MODE") else None)
    explicit_group = given.get("group") or env.get("RANKWISE_GROUP") or env.get("WANDB_RUN_GROUP")
    values: dict[str, Any] = {
        "project": env.get("RANKWISE_PROJECT") or env.get("WANDB_PROJECT") or _default_project(),
        "group": env.get("RANKWISE_GROUP") or env.get("WANDB_RUN_GROUP") or launch.group,
        "rank": launch.rank,
        "world_size": launch.world_size,
        "local_rank": launch.local_rank,
        "node": launch.node,
        "launcher": launch.launcher,
        "restart": launch.restart,
        "mode": (env.get("RANKWISE_MODE") or env.get("WANDB_MODE") or "online").lower(),
        "entity": env.get("WANDB_ENTITY") or None,
        "data_dir": paths.data_dir(env),
        "runtime_dir": paths.runtime_dir(env),
    }
    if env.get("RANKWISE_NAME") or env.get("WANDB_NAME"):
        values["name"] = env.get("RANKWISE_NAME") or env["WANDB_NAME"]
    if env.get("WANDB_RUN_ID"):
        values["run_id"] = env["WANDB_RUN_ID"]
    if env.get("WANDB_RESUME"):
        values["resume"] = env["WANDB_RESUME"]
    if env.get("WANDB_DIR"):
        values["files_dir"] = env["WANDB_DIR"]
    if _bool_env(env, "WANDB_DISABLED"):
        values["mode"] = "disabled"
    for attr, var, parse in _ENV_KNOBS:
        if env.get(var) not in (None, ""):
            values[attr] = parse(var, env[var])
    values.update(given)

    if isinstance(values["project"], str) and values["project"].count("/") == 1:
        # wandb's "entity/project"
        entity, values["project"] = values["project"].split("/")
        values["entity"] = given.get("entity") or entity
    if values.get("run_id") is not None:
        _check_name("id", values["run_id"])
        if not explicit_group:
            # an id names one run of the project: a restarted process passing the same id finds the same
            # group (and, with the same rank, the same run) whatever its launcher says
            values["group"] = values["run_id"]
    if values.get("group") is None:
        values["group"] = fresh_group_id()
    _check_name("project", values["project"])
    _check_label("group", values["group"])
    _check_int("rank", values["rank"], 0)
    _check_int("world_size", values["world_size"], 1)
    _check_int("local_rank", values["local_rank"], 0)
    if values["rank"] >= values["world_size"]:
        raise InvalidArgumentError(
            f"rank={values['rank']} is not below world_size={values['world_size']}; pass both or neither"
        )
    values.setdefault("name", f"rank-{values['rank']}")
    if isinstance(values["name"], str) and "{rank}" in values["name"]:
        # RANKWISE_NAME=worker-{rank}: one variable for every rank of a launcher, distinct names
        values["name"] = values["name"].replace("{rank}", str(values["rank"]))
    _check_label("name", values["name"])
    if isinstance(values["mode"], str):
        values["mode"] = MODE_ALIASES.get(values["mode"].lower(), values["mode"].lower())
    if values["mode"] not in MODES:
        source = mode_var if "mode" not in given and mode_var else "mode"
        raise InvalidArgumentError(f"{source}={values['mode']!r} must be one of {MODES}")
    if values.get("resume") in (True, "auto", "true", "1"):
        values["resume"] = "allow"
    if values.get("resume", "allow") not in RESUME:
        raise InvalidArgumentError(f"resume={values['resume']!r} must be one of {RESUME}")
    values["data_dir"] = Path(values["data_dir"]).expanduser()
    values["runtime_dir"] = Path(values["runtime_dir"]).expanduser()
    if values.get("files_dir") is not None:
        values["files_dir"] = Path(values["files_dir"]).expanduser()
    rate = values.get("max_rows_per_s")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate >= 0):
        raise InvalidArgumentError(f"max_rows_per_s={rate!r} must be a number >= 0 (0: no limit) or None")
    for attr in ("flush_interval_s", "finish_timeout_s", "init_timeout_s", "retry_after_s", "agent_idle_timeout_s"):
        if attr in values and not (
            isinstance(values[attr], (int, float)) and not isinstance(values[attr], bool) and values[attr] >= 0
        ):
            raise InvalidArgumentError(f"{attr}={values[attr]!r} must be a number of seconds >= 0")
    if "batch_max_rows" in values:
        # 0 would never empty the row buffer; more than MAX_BATCH_ROWS is a batch the agent rejects
        _check_int("batch_max_rows", values["batch_max_rows"], 1)
        if values["batch_max_rows"] > MAX_BATCH_ROWS:
            raise InvalidArgumentError(f"batch_max_rows={values['batch_max_rows']!r} must be at most {MAX_BATCH_ROWS}")
    if "max_unacked_bytes" in values:
        _check_int("max_unacked_bytes", values["max_unacked_bytes"], 1)
    if "max_queued_bytes" in values:
        _check_int("max_queued_bytes", values["max_queued_bytes"], 1)
    if "spawn_agent" in values and not isinstance(values["spawn_agent"], bool):
        raise InvalidArgumentError(f"spawn_agent={values['spawn_agent']!r} must be True or False")
    if "stop_on_nan" in values and not isinstance(values["stop_on_nan"], bool):
        raise InvalidArgumentError(f"stop_on_nan={values['stop_on_nan']!r} must be True or False")
    return Settings(**values)
