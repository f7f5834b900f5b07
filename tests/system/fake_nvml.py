"""A fake of the ``pynvml`` module (nvidia-ml-py): the functions agent/system/gpu.py calls, with NVML's names,
argument order, units (milliwatts, KB/s) and error class, over devices a test describes.

``make(devices, init_error=None)`` returns a module object. A device is a dict of the values it reports
(``util``, ``mem_util``, ``used``, ``total``, ``power_mw``, ``limit_mw``, ``temp``, ``sm_mhz``, ``throttle``,
``ecc``: (corrected, uncorrected), ``pcie_kb``: (tx, rx), ``pids``, ``uuid``); a value that is the string
``"unsupported"`` raises ``NVMLError(NVML_ERROR_NOT_SUPPORTED)`` as a consumer card does.
"""

from __future__ import annotations

import types
from typing import Any

NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_DRIVER_NOT_LOADED = 9


class NVMLError(Exception):
    """pynvml's error: ``value`` is the NVML return code."""

    def __init__(self, value: int):
        super().__init__(f"NVML error {value}")
        self.value = value


def make(devices: list[dict[str, Any]], init_error: int | None = None, init_gate: Any = None) -> types.ModuleType:
    """The module; ``init_gate`` (a threading.Event): nvmlInit waits for it, as a slow driver start does."""
    m = types.ModuleType("fake_pynvml")
    m.NVMLError = NVMLError
    m.NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    m.NVML_TEMPERATURE_GPU = 0
    m.NVML_CLOCK_SM = 1
    m.NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
    m.NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    m.NVML_VOLATILE_ECC = 0
    m.NVML_PCIE_UTIL_TX_BYTES = 0
    m.NVML_PCIE_UTIL_RX_BYTES = 1
    m.calls = []  # what the code under test asked, in order
    m.initialised = False

    def field(h: int, name: str) -> Any:
        v = devices[h][name]
        if v == "unsupported":
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return v

    def need_init() -> None:
        if not m.initialised:
            raise NVMLError(1)  # NVML_ERROR_UNINITIALIZED

    def nvmlInit() -> None:
        m.calls.append("nvmlInit")
        if init_gate is not None:
            init_gate.wait(120)
        if init_error is not None:
            raise NVMLError(init_error)
        m.initialised = True

    def nvmlShutdown() -> None:
        m.initialised = False

    def nvmlDeviceGetCount() -> int:
        need_init()
        return len(devices)

    def nvmlDeviceGetHandleByIndex(i: int) -> int:
        need_init()
        if not 0 <= i < len(devices):
            raise NVMLError(2)  # NVML_ERROR_INVALID_ARGUMENT
        return i

    def nvmlDeviceGetUUID(h: int) -> str:
        return field(h, "uuid")

    def nvmlDeviceGetUtilizationRates(h: int) -> Any:
        return types.SimpleNamespace(gpu=field(h, "util"), memory=field(h, "mem_util"))

    def nvmlDeviceGetMemoryInfo(h: int) -> Any:
        used, total = field(h, "used"), field(h, "total")
        return types.SimpleNamespace(used=used, total=total, free=total - used)

    def nvmlDeviceGetPowerUsage(h: int) -> int:
        return field(h, "power_mw")

    def nvmlDeviceGetEnforcedPowerLimit(h: int) -> int:
        return field(h, "limit_mw")

    def nvmlDeviceGetTemperature(h: int, sensor: int) -> int:
        assert sensor == m.NVML_TEMPERATURE_GPU
        return field(h, "temp")

    def nvmlDeviceGetClockInfo(h: int, clock: int) -> int:
        assert clock == m.NVML_CLOCK_SM
        return field(h, "sm_mhz")

    def nvmlDeviceGetCurrentClocksThrottleReasons(h: int) -> int:
        return field(h, "throttle")

    def nvmlDeviceGetTotalEccErrors(h: int, kind: int, counter: int) -> int:
        assert counter == m.NVML_VOLATILE_ECC
        return field(h, "ecc")[kind] if field(h, "ecc") != "unsupported" else field(h, "ecc")

    def nvmlDeviceGetPcieThroughput(h: int, counter: int) -> int:
        return field(h, "pcie_kb")[counter]

    def nvmlDeviceGetComputeRunningProcesses(h: int) -> list:
        return [types.SimpleNamespace(pid=p, usedGpuMemory=1 << 30) for p in field(h, "pids")]

    for fn in list(locals().values()):
        if callable(fn) and getattr(fn, "__name__", "").startswith("nvml"):
            setattr(m, fn.__name__, fn)
    return m


def device(i: int, **over: Any) -> dict[str, Any]:
    """A device with distinct values derived from its index ``i`` (``over`` replaces some)."""
    d = {
        "uuid": f"GPU-{i}{i}{i}{i}-aaaa",
        "util": 10 + i,
        "mem_util": 20 + i,
        "used": (i + 1) << 30,
        "total": 80 << 30,
        "power_mw": 100_000 + 1000 * i,
        "limit_mw": 400_000,
        "temp": 50 + i,
        "sm_mhz": 1400 + i,
        "throttle": 0,
        "ecc": (i, 0),
        "pcie_kb": (1000 + i, 2000 + i),
        "pids": [],
    }
    d.update(over)
    return d
