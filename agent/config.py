"""The agent's settings: one frozen object, defaults → environment → command-line flags."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from client import paths
from client.errors import InvalidArgumentError


@dataclass(frozen=True)
class AgentConfig:
    data_dir: Path
    runtime_dir: Path
    idle_timeout_s: float = 60.0  # exit after this long with no running run and no message; 0 = never
    seal_timeout_s: float = 30.0  # a step is sealed at most this long after its first value arrived
    join_grace_s: float = 30.0  # ranks that never said hello are waited for this long after the group appeared
    silence_s: float = 60.0  # a running rank silent this long is not waited for (its data, later, is late)
    window_max_bytes: int = 64 << 20  # open-window budget per group; beyond it the oldest steps seal early
    liveness_interval_s: float = 0.5  # how often pids of running ranks are checked
    max_drain: int = 4000  # messages handled per loop turn before a commit
    rows_per_s: float = 1000.0  # per-run stored-row budget (burst 2 s); over it rows coalesce; 0 = no limit
    media_bytes_per_s: float = 64 << 20  # per-run media budget; beyond it media are skipped and counted
    log_level: str = "INFO"

    @property
    def store_path(self) -> Path:
        return self.data_dir / paths.STORE_FILE

    @property
    def log_path(self) -> Path:
        return self.data_dir / "agent.log"

    def replace(self, **changes: Any) -> "AgentConfig":
        return dataclasses.replace(self, **changes)


_ENV = {
    "idle_timeout_s": "RANKWISE_AGENT_IDLE_TIMEOUT",
    "seal_timeout_s": "RANKWISE_SEAL_TIMEOUT",
    "join_grace_s": "RANKWISE_JOIN_GRACE",
    "silence_s": "RANKWISE_SILENCE",
    "liveness_interval_s": "RANKWISE_LIVENESS_INTERVAL",
}


def resolve(env: Mapping[str, str] | None = None, **flags: Any) -> AgentConfig:
    """Defaults, then ``RANKWISE_*`` environment variables, then flags (None = not given)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {"data_dir": paths.data_dir(env), "runtime_dir": paths.runtime_dir(env)}
    for attr, var in _ENV.items():
        raw = env.get(var)
        if raw:
            try:
                values[attr] = float(raw)
            except ValueError:
                raise InvalidArgumentError(f"{var}={raw!r} is not a number of seconds") from None
    if env.get("RANKWISE_ROWS_PER_S"):
        values["rows_per_s"] = float(env["RANKWISE_ROWS_PER_S"])
    if env.get("RANKWISE_MEDIA_BYTES_PER_S"):
        values["media_bytes_per_s"] = float(env["RANKWISE_MEDIA_BYTES_PER_S"])
    if env.get("RANKWISE_WINDOW_MAX_BYTES"):
        values["window_max_bytes"] = int(env["RANKWISE_WINDOW_MAX_BYTES"])
    if env.get("RANKWISE_AGENT_LOG_LEVEL"):
        values["log_level"] = env["RANKWISE_AGENT_LOG_LEVEL"].upper()
    values.update({k: v for k, v in flags.items() if v is not None})
    values["data_dir"] = Path(values["data_dir"]).expanduser()
    values["runtime_dir"] = Path(values["runtime_dir"]).expanduser()
    for attr in ("idle_timeout_s", "seal_timeout_s", "join_grace_s", "silence_s", "liveness_interval_s"):
        if attr in values and not values[attr] >= 0:
            raise InvalidArgumentError(f"{attr}={values[attr]!r} must be >= 0")
    return AgentConfig(**values)
