"""Per-node metrics: this machine's CPU, load, memory, swap, the data directory's disk, network interfaces.

Keys (docs/system.md has the table): ``host.cpu_percent`` (all cores, 0–100) with ``host.cpu_max_core_percent``
and ``host.cpu_min_core_percent`` (the busiest and idlest core), ``host.cpu_count``, ``host.load1``,
``host.memory_used_bytes``, ``host.memory_available_bytes``, ``host.memory_total_bytes``,
``host.swap_used_bytes``, ``host.disk_used_bytes``/``host.disk_free_bytes`` (the filesystem of the agent's
data directory), ``host.disk_read_bytes_per_s``/``host.disk_write_bytes_per_s`` (the block device under it;
when no device can be named, an overlay or tmpfs, the sum over every disk, and :attr:`HostSampler.disk`
says so), ``host.net.<iface>.sent_bytes_per_s``/``recv_bytes_per_s`` (at most :data:`MAX_IFACES`
interfaces, loopback left out). Rates and CPU % are deltas between two samples: the first sample has none.
Every reading is guarded on its own: one that fails leaves its keys out.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil

MAX_IFACES = 16
_ERRORS = (psutil.Error, OSError, ValueError, AttributeError, KeyError, ZeroDivisionError)


def device_of(path: Path) -> str | None:
    """The block device (``sda1``, ``nvme0n1p2``) of the filesystem holding ``path``; None when it has none."""
    try:
        real = os.path.realpath(path)
        best = None
        for part in psutil.disk_partitions(all=False):
            mount = part.mountpoint
            if (real == mount or real.startswith(mount.rstrip("/") + "/")) and (
                best is None or len(mount) > len(best.mountpoint)
            ):
                best = part
        if best is None or not best.device.startswith("/dev/"):
            return None
        name = os.path.basename(os.path.realpath(best.device))
        return name if name in psutil.disk_io_counters(perdisk=True) else None
    except _ERRORS:
        return None


class HostSampler:
    """This machine's metrics; keeps the previous counters for rates."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.device = device_of(self.data_dir)
        self.disk = f"device {self.device}" if self.device else "every disk (no device under the data directory)"
        self._cpu: list | None = None
        self._disk: tuple[float, int, int] | None = None
        self._net: tuple[float, dict] | None = None

    def __repr__(self) -> str:
        return f"<HostSampler data_dir={self.data_dir} disk={self.disk!r}>"

    def sample(self, t: float) -> dict[str, float]:
        """The metrics at monotonic time ``t``."""
        row: dict[str, float] = {}
        for part in (self._cpu_row, self._memory_row, self._disk_row, self._net_row):
            try:
                part(row, t)
            except _ERRORS:
                pass
        return row

    def _cpu_row(self, row: dict, t: float) -> None:
        now = psutil.cpu_times(percpu=True)
        row["host.cpu_count"] = float(len(now))
        row["host.load1"] = os.getloadavg()[0]
        before, self._cpu = self._cpu, now
        if before is None or len(before) != len(now):
            return
        busy = []
        for a, b in zip(before, now, strict=True):
            total = sum(b) - sum(a)
            idle = (b.idle - a.idle) + (getattr(b, "iowait", 0.0) - getattr(a, "iowait", 0.0))
            busy.append(100.0 * (1.0 - idle / total) if total > 0 else 0.0)
        row["host.cpu_percent"] = sum(busy) / len(busy)
        row["host.cpu_max_core_percent"] = max(busy)
        row["host.cpu_min_core_percent"] = min(busy)

    def _memory_row(self, row: dict, t: float) -> None:
        vm = psutil.virtual_memory()
        row["host.memory_used_bytes"] = float(vm.used)
        row["host.memory_available_bytes"] = float(vm.available)
        row["host.memory_total_bytes"] = float(vm.total)
        row["host.swap_used_bytes"] = float(psutil.swap_memory().used)

    def _disk_row(self, row: dict, t: float) -> None:
        usage = psutil.disk_usage(str(self.data_dir))
        row["host.disk_used_bytes"] = float(usage.used)
        row["host.disk_free_bytes"] = float(usage.free)
        io = psutil.disk_io_counters(perdisk=True)[self.device] if self.device else psutil.disk_io_counters()
        if io is None:
            return
        before, self._disk = self._disk, (t, io.read_bytes, io.write_bytes)
        if before is not None and t > before[0]:
            dt = t - before[0]
            row["host.disk_read_bytes_per_s"] = max(io.read_bytes - before[1], 0) / dt
            row["host.disk_write_bytes_per_s"] = max(io.write_bytes - before[2], 0) / dt

    def _net_row(self, row: dict, t: float) -> None:
        nics = psutil.net_io_counters(pernic=True)
        now = {n: (c.bytes_sent, c.bytes_recv) for n, c in sorted(nics.items()) if n != "lo"}
        now = dict(list(now.items())[:MAX_IFACES])
        before, self._net = self._net, (t, now)
        if before is None or t <= before[0]:
            return
        dt = t - before[0]
        for name, (sent, recv) in now.items():
            old = before[1].get(name)
            if old is not None:
                row[f"host.net.{name}.sent_bytes_per_s"] = max(sent - old[0], 0) / dt
                row[f"host.net.{name}.recv_bytes_per_s"] = max(recv - old[1], 0) / dt
