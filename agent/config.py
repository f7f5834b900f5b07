"""The agent's settings: one frozen object, defaults → environment → command-line flags."""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    # open-window budget of the agent, shared by the groups holding points; beyond it the oldest steps seal
    # early (a rank behind by more than that then sends late points: its group rows are recomputed)
    window_max_bytes: int = 32 << 20
    liveness_interval_s: float = 0.5  # how often pids of running ranks are checked
    max_drain: int = 4000  # messages handled per loop turn before a commit
    # points folded into memory before a commit: a commit's transient memory (group rows, encodings) is
    # ~500 bytes per point, so this bounds the agent's peak however far behind its socket queue is
    max_commit_points: int = 1 << 17
    # bytes of client batches applied but not yet committed (frames, plus decoded Python objects of list
    # columns: agent.ingest.batch_cost); a batch that would pass it is applied after a commit of the others,
    # and while the store refuses commits (disk full) it is not applied nor acknowledged: clients keep it
    pending_max_bytes: int = 32 << 20
    # frames ZeroMQ may queue per client connection before the agent reads them (ZMQ_RCVHWM): a client beyond
    # it keeps its batches (memory, then its spill file). With the byte budget above this bounds what waits in
    # the agent: about connections × (recv_hwm + 1) × frame size (a scalar batch of 8192 rows: 0.5–2.5 MB)
    recv_hwm: int = 1
    # the store's write-ahead log: checkpointed even under load once it passes this size (or a third of the
    # free space of its filesystem), so a long burst does not grow it to gigabytes; an emptied WAL is cut back
    # to 4 MiB (agent/store/sqlite.py WAL_KEEP_BYTES)
    wal_max_bytes: int = 64 << 20
    rows_per_s: float = 1000.0  # per-run stored-row budget (burst 2 s); over it rows coalesce; 0 = no limit
    media_bytes_per_s: float = 64 << 20  # per-run media budget; beyond it media are skipped and counted
    log_level: str = "INFO"
    node_name: str = ""  # this machine's name as ranks report it (RANKWISE_NODE, SLURMD_NODENAME, hostname)
    # multi-node (docs/multinode.md): a root listens for node agents, a node agent forwards to a root
    listen: str | None = None  # tcp://HOST:PORT
    upstream: str | None = None  # tcp://HOST:PORT of the root
    curve_secret: str | None = None  # this agent's NAME.key_secret (rankwise keygen)
    curve_allow: str | None = None  # root: directory of the node public keys it accepts
    root_key: str | None = None  # node: the root's public key file
    insecure: bool = False  # root: allow plain TCP on a non-loopback address
    # root: node-agent connections at once; a peer past it is disconnected at accept. Each connection can pin
    # at most one partial frame (ZMQ_MAXMSGSIZE) in the root's memory, so this bounds that memory too
    root_max_connections: int = 256
    spool_quota_bytes: int = 4 << 30  # node: spool byte quota; when full, clients are held back (not dropped)
    spool_fsync_s: float = 0.2  # node: the spool is fsynced at least this often (power-loss window)
    spool_segment_bytes: int = 16 << 20  # node: spool segment size (deleted whole once acknowledged)
    lookup_timeout_s: float = 1.0  # node: how long a HELLO of an unknown run waits for the root's resume point
    upstream_retry_s: float = 2.0  # node: no answer from the root for this long: say HELLO again (backing off)
    shutdown_flush_s: float = 2.0  # node: on stop, how long to keep sending spooled records (the rest waits)
    # node, idle with records the root has not acknowledged: how long it keeps trying after the root last
    # answered before it exits anyway (the spool stays; the next node agent here sends it); 0 = forever
    upstream_linger_s: float = 3600.0
    # system metrics of local ranks' process trees and of this machine (agent/system/, docs/system.md): seconds
    # between samples; 0 = off
    system_interval_s: float = 5.0
    # alert sinks (agent/alerts/notify.py, docs/alerts.md): a command given each alert as JSON on stdin, a
    # Slack-compatible webhook; each attempt bounded by alert_timeout_s, queued alerts at exit by alert_drain_s
    alert_cmd: str | None = None
    alert_webhook: str | None = None
    alert_timeout_s: float = 10.0
    alert_drain_s: float = 5.0
    # seconds without a commit that make a running rank hung (its group stalled); 0 = derived per group from
    # its own commit interval with a floor (agent/alerts/detectors/hang.py)
    hang_after_s: float = 0.0
    # where a single agent or a root stores (agent/store/open.py, docs/scale.md): a SQLite file path or a
    # clickhouse:// / chdb:// URL; None = $RANKWISE_DIR/store.sqlite. Media stay under data_dir either way
    store: str | None = None

    @property
    def store_path(self) -> Path:
        return self.data_dir / paths.STORE_FILE

    @property
    def store_spec(self) -> str | Path:
        """What agent/store/open.py opens: ``store`` when set (a directory meaning its store.sqlite, as for
        readers: rankwise/_stores.py ``store_path``), else the default SQLite file."""
        from agent.store.open import is_url

        if not self.store:
            return self.store_path
        if is_url(self.store):
            return self.store
        path = Path(self.store).expanduser()
        return path / paths.STORE_FILE if path.is_dir() else path

    @property
    def media_dir(self) -> Path:
        """Where media files go (its ``media/``): beside a SQLite store, where readers look for them
        (rankwise/_stores.py ``media_root_of``); ``data_dir`` for a URL store (docs/scale.md)."""
        spec = self.store_spec
        return self.data_dir if isinstance(spec, str) else spec.parent

    @property
    def store_label(self) -> str:
        """``store_spec`` for logs and status (a URL's password replaced by ``***``)."""
        from agent.store.open import redact

        return redact(self.store_spec)

    @property
    def log_path(self) -> Path:
        return self.data_dir / "agent.log"

    def replace(self, **changes: Any) -> AgentConfig:
        return dataclasses.replace(self, **changes)


_ENV = {
    "idle_timeout_s": "RANKWISE_AGENT_IDLE_TIMEOUT",
    "seal_timeout_s": "RANKWISE_SEAL_TIMEOUT",
    "join_grace_s": "RANKWISE_JOIN_GRACE",
    "silence_s": "RANKWISE_SILENCE",
    "liveness_interval_s": "RANKWISE_LIVENESS_INTERVAL",
    "system_interval_s": "RANKWISE_SYSTEM_INTERVAL",
}


_ENV_TEXT = {
    "listen": "RANKWISE_LISTEN",
    "upstream": "RANKWISE_UPSTREAM",
    "curve_secret": "RANKWISE_CURVE_SECRET",
    "curve_allow": "RANKWISE_CURVE_ALLOW",
    "root_key": "RANKWISE_ROOT_KEY",
    "node_name": "RANKWISE_NODE",
    "alert_cmd": "RANKWISE_ALERT_CMD",
    "alert_webhook": "RANKWISE_ALERT_WEBHOOK",
    "store": "RANKWISE_STORE",
}
_ENV_SECONDS = {
    "spool_fsync_s": "RANKWISE_SPOOL_FSYNC",
    "lookup_timeout_s": "RANKWISE_LOOKUP_TIMEOUT",
    "upstream_retry_s": "RANKWISE_UPSTREAM_RETRY",
    "upstream_linger_s": "RANKWISE_UPSTREAM_LINGER",
    "alert_timeout_s": "RANKWISE_ALERT_TIMEOUT",
    "alert_drain_s": "RANKWISE_ALERT_DRAIN",
    "hang_after_s": "RANKWISE_HANG_AFTER",
}
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _number(var: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise InvalidArgumentError(f"{var}={raw!r} is not a number of seconds") from None


def parse_bytes(what: str, raw: str | int) -> int:
    """``4G``, ``512M``, ``65536``: a byte count."""
    text = str(raw).strip().upper().removesuffix("B").removesuffix("I")
    unit = text[-1:] if text[-1:] in _UNITS and text[-1:] else ""
    try:
        value = int(float(text[: len(text) - len(unit)]) * _UNITS[unit])
    except ValueError:
        raise InvalidArgumentError(f"{what}={raw!r} is not a byte count (e.g. 4G, 512M)") from None
    if value <= 0:
        raise InvalidArgumentError(f"{what}={raw!r} must be positive")
    return value


def _check_roles(values: dict[str, Any]) -> None:
    listen, upstream = values.get("listen"), values.get("upstream")
    if listen and upstream:
        raise InvalidArgumentError("--listen (root) and --upstream (node agent) exclude each other: pick one role")
    for flag, endpoint in (("--listen", listen), ("--upstream", upstream)):
        if endpoint and not str(endpoint).startswith("tcp://"):
            raise InvalidArgumentError(f"{flag} {endpoint!r}: expected tcp://HOST:PORT")
    if listen and bool(values.get("curve_secret")) != bool(values.get("curve_allow")):
        raise InvalidArgumentError(
            "a root with Curve needs both --curve-secret FILE and --allow DIR (node public keys)"
        )
    if upstream and bool(values.get("curve_secret")) != bool(values.get("root_key")):
        raise InvalidArgumentError("a node agent with Curve needs both --curve-secret FILE and --root-key FILE")


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
        values["window_max_bytes"] = parse_bytes("RANKWISE_WINDOW_MAX_BYTES", env["RANKWISE_WINDOW_MAX_BYTES"])
    if env.get("RANKWISE_AGENT_LOG_LEVEL"):
        values["log_level"] = env["RANKWISE_AGENT_LOG_LEVEL"].upper()
    for attr, var in _ENV_TEXT.items():
        if env.get(var):
            values[attr] = env[var]
    for attr, var in _ENV_SECONDS.items():
        if env.get(var):
            values[attr] = _number(var, env[var])
    if env.get("RANKWISE_AGENT_PENDING_BYTES"):
        values["pending_max_bytes"] = parse_bytes("RANKWISE_AGENT_PENDING_BYTES", env["RANKWISE_AGENT_PENDING_BYTES"])
    if env.get("RANKWISE_AGENT_RCVHWM"):
        raw = env["RANKWISE_AGENT_RCVHWM"]
        if not raw.strip().isdigit() or int(raw) < 1:
            raise InvalidArgumentError(f"RANKWISE_AGENT_RCVHWM={raw!r} must be a whole number of frames >= 1 (e.g. 1)")
        values["recv_hwm"] = int(raw)
    if env.get("RANKWISE_WAL_MAX_BYTES"):
        values["wal_max_bytes"] = parse_bytes("RANKWISE_WAL_MAX_BYTES", env["RANKWISE_WAL_MAX_BYTES"])
    if env.get("RANKWISE_ROOT_MAX_CONNECTIONS"):
        values["root_max_connections"] = int(
            _number("RANKWISE_ROOT_MAX_CONNECTIONS", env["RANKWISE_ROOT_MAX_CONNECTIONS"])
        )
    if env.get("RANKWISE_SPOOL_BYTES"):
        values["spool_quota_bytes"] = parse_bytes("RANKWISE_SPOOL_BYTES", env["RANKWISE_SPOOL_BYTES"])
    if env.get("RANKWISE_SPOOL_SEGMENT_BYTES"):
        values["spool_segment_bytes"] = parse_bytes("RANKWISE_SPOOL_SEGMENT_BYTES", env["RANKWISE_SPOOL_SEGMENT_BYTES"])
    values.update({k: v for k, v in flags.items() if v is not None})
    values.setdefault("node_name", env.get("SLURMD_NODENAME") or socket.gethostname())
    if values.get("listen") and "idle_timeout_s" not in values:
        values["idle_timeout_s"] = 0.0  # a root is started by hand and serves until stopped
    _check_roles(values)
    if values.get("store"):
        from agent.store.open import check

        check(values["store"])  # a malformed URL is a bad setting (exit 2), not a store that fails to open
    values["data_dir"] = Path(values["data_dir"]).expanduser()
    values["runtime_dir"] = Path(values["runtime_dir"]).expanduser()
    for attr in (
        "idle_timeout_s",
        "seal_timeout_s",
        "join_grace_s",
        "silence_s",
        "liveness_interval_s",
        "upstream_linger_s",
        "system_interval_s",
        "alert_timeout_s",
        "alert_drain_s",
        "hang_after_s",
    ):
        if attr in values and not values[attr] >= 0:
            raise InvalidArgumentError(f"{attr}={values[attr]!r} must be >= 0")
    return AgentConfig(**values)
