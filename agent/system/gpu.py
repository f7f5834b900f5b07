"""GPUs through NVML: each device's metrics and the pids of its compute processes.

The NVML module is a parameter (:class:`Gpus` ``nvml``): the agent passes ``pynvml`` from the optional
``nvidia-ml-py`` package (``pip install 'rankwise[gpu]'``), imported lazily by :func:`load_nvml` and never
at ``import rankwise``; tests pass a fake of its shape (tests/system/fake_nvml.py). Every field is read on
its own: an ``NVMLError`` (``NVML_ERROR_NOT_SUPPORTED`` on a consumer card, ``GPU_IS_LOST``) or anything
else leaves that field's keys out. An ``nvmlInit`` that fails leaves no GPU key at all and says why in
:attr:`Gpus.note` (``rankwise status``, ``system.gpu``). The sampler runs :meth:`Gpus.start` on a thread
(agent/system/sampler.py): :attr:`Gpus.ready` says when it is over.

Keys of one device (under ``gpu.<index>.`` in host rows, under ``gpu.`` in the rows of the rank it is
attributed to: agent/system/attribution.py): ``util_percent``, ``memory_util_percent``,
``memory_used_bytes``, ``memory_total_bytes``, ``power_watts``, ``power_limit_watts``, ``temperature_c``,
``sm_clock_mhz``, ``throttle_reasons`` (NVML's bitmask) and ``throttle.<name>`` (1 when that reason
holds the clocks down, 0 when not), ``ecc_corrected_errors``/``ecc_uncorrected_errors`` (volatile:
since the driver loaded), ``pcie_tx_bytes_per_s``/``pcie_rx_bytes_per_s``.
"""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any

# NVML's clock-throttle (clock-event) reason bits (nvml.h nvmlClocksThrottleReason*)
THROTTLE_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
# nvml.h enum values, used when the module does not define the names
_CONSTANTS = {
    "NVML_TEMPERATURE_GPU": 0,
    "NVML_CLOCK_SM": 1,
    "NVML_MEMORY_ERROR_TYPE_CORRECTED": 0,
    "NVML_MEMORY_ERROR_TYPE_UNCORRECTED": 1,
    "NVML_VOLATILE_ECC": 0,
    "NVML_PCIE_UTIL_TX_BYTES": 0,
    "NVML_PCIE_UTIL_RX_BYTES": 1,
}


def throttle_names(mask: int) -> list[str]:
    """The names of the reasons set in an NVML throttle bitmask (unknown bits as ``bit<N>``)."""
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    names += [f"bit{i}" for i in range(64) if mask & (1 << i) and (1 << i) not in THROTTLE_REASONS]
    return names


def load_nvml() -> tuple[ModuleType | None, str]:
    """``pynvml`` when ``nvidia-ml-py`` is installed, else None and why."""
    try:
        import pynvml
    except Exception as exc:  # ImportError, or a broken install: no GPU metrics, never an agent crash
        return None, f"no GPU metrics: nvidia-ml-py is not installed (pip install 'rankwise[gpu]'): {exc}"
    return pynvml, "pynvml"


class Device:
    """One GPU as read at one sample: its index, UUID, metrics and compute-process pids."""

    __slots__ = ("index", "uuid", "metrics", "pids")

    def __init__(self, index: int, uuid: str, metrics: dict[str, float], pids: set[int]):
        self.index, self.uuid, self.metrics, self.pids = index, uuid, metrics, pids

    def __repr__(self) -> str:
        return f"<Device {self.index} {self.uuid} keys={len(self.metrics)} pids={sorted(self.pids)}>"


class Gpus:
    """The devices NVML sees; :meth:`read` never raises."""

    def __init__(self, nvml: Any):
        self.nvml = nvml
        self.handles: list[tuple[int, Any, str]] = []  # (index, handle, uuid)
        self.note = "not started"
        self.started = False
        self.ready = threading.Event()  # start() is over (succeeded or not): the sampler runs it off its loop
        self.errors = 0  # field reads that failed (NOT_SUPPORTED and the like)

    def __repr__(self) -> str:
        return f"<Gpus devices={len(self.handles)} note={self.note!r} errors={self.errors}>"

    def start(self) -> bool:
        """nvmlInit and the device handles; False (with :attr:`note` saying why) when NVML cannot be used.
        :attr:`ready` is set when it returns, either way."""
        try:
            return self._start()
        finally:
            self.ready.set()

    def _start(self) -> bool:
        if self.nvml is None:
            return False
        self.note = "starting NVML"
        try:
            self.nvml.nvmlInit()
            count = int(self.nvml.nvmlDeviceGetCount())
            handles = []
            for i in range(count):
                h = self.nvml.nvmlDeviceGetHandleByIndex(i)
                uuid = self._get(lambda h=h: self.nvml.nvmlDeviceGetUUID(h))
                handles.append((i, h, uuid.decode() if isinstance(uuid, bytes) else str(uuid or "")))
        except Exception as exc:  # NVMLError (no driver, no device), or a broken module
            self.note = f"NVML unavailable: {type(exc).__name__}: {exc}"
            return False
        self.handles = handles
        self.started = True
        self.note = f"{count} GPU(s) through NVML"
        return True

    def _get(self, read: Any) -> Any:
        try:
            return read()
        except Exception:  # NVMLError (NOT_SUPPORTED, GPU_IS_LOST, ...): the field is left out
            self.errors += 1
            return None

    def _c(self, name: str) -> int:
        return getattr(self.nvml, name, _CONSTANTS[name])

    def read(self) -> list[Device]:
        out = []
        for index, h, uuid in self.handles:
            try:
                out.append(Device(index, uuid, self._metrics(h), self._pids(h)))
            except Exception:  # a bug in a fake, a module of another shape: that device is left out
                self.errors += 1
        return out

    def _metrics(self, h: Any) -> dict[str, float]:
        nv, get, m = self.nvml, self._get, {}
        util = get(lambda: nv.nvmlDeviceGetUtilizationRates(h))
        if util is not None:
            m["util_percent"], m["memory_util_percent"] = float(util.gpu), float(util.memory)
        mem = get(lambda: nv.nvmlDeviceGetMemoryInfo(h))
        if mem is not None:
            m["memory_used_bytes"], m["memory_total_bytes"] = float(mem.used), float(mem.total)
        for key, read, scale in (
            ("power_watts", lambda: nv.nvmlDeviceGetPowerUsage(h), 1e-3),  # milliwatts
            ("power_limit_watts", lambda: nv.nvmlDeviceGetEnforcedPowerLimit(h), 1e-3),
            ("temperature_c", lambda: nv.nvmlDeviceGetTemperature(h, self._c("NVML_TEMPERATURE_GPU")), 1.0),
            ("sm_clock_mhz", lambda: nv.nvmlDeviceGetClockInfo(h, self._c("NVML_CLOCK_SM")), 1.0),
            ("ecc_corrected_errors", lambda: self._ecc(h, "NVML_MEMORY_ERROR_TYPE_CORRECTED"), 1.0),
            ("ecc_uncorrected_errors", lambda: self._ecc(h, "NVML_MEMORY_ERROR_TYPE_UNCORRECTED"), 1.0),
            (
                "pcie_tx_bytes_per_s",
                lambda: nv.nvmlDeviceGetPcieThroughput(h, self._c("NVML_PCIE_UTIL_TX_BYTES")),
                1024.0,
            ),
            (
                "pcie_rx_bytes_per_s",
                lambda: nv.nvmlDeviceGetPcieThroughput(h, self._c("NVML_PCIE_UTIL_RX_BYTES")),
                1024.0,
            ),
        ):
            v = get(read)
            if v is not None:
                m[key] = float(v) * scale
        mask = get(lambda: self._throttle(h))
        if mask is not None:
            m["throttle_reasons"] = float(mask)
            for bit, name in THROTTLE_REASONS.items():
                m[f"throttle.{name}"] = 1.0 if mask & bit else 0.0
        return m

    def _ecc(self, h: Any, kind: str) -> int:
        return self.nvml.nvmlDeviceGetTotalEccErrors(h, self._c(kind), self._c("NVML_VOLATILE_ECC"))

    def _throttle(self, h: Any) -> int:
        # renamed "clock event reasons" in newer NVML; the bits are the same
        read = getattr(self.nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        if read is None:
            read = self.nvml.nvmlDeviceGetCurrentClocksThrottleReasons
        return int(read(h))

    def _pids(self, h: Any) -> set[int]:
        procs = self._get(lambda: self.nvml.nvmlDeviceGetComputeRunningProcesses(h))
        return {int(p.pid) for p in procs or ()}

    def close(self) -> None:
        if self.started:
            self._get(self.nvml.nvmlShutdown)
            self.started = False
