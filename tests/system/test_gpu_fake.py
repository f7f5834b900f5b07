"""The NVML path driven by a fake of pynvml (tests/system/fake_nvml.py): fields and units, NOT_SUPPORTED
fields left out, throttle bitmask names, attribution of devices to ranks (NVML's compute-process pids
against each rank's process tree, else CUDA_VISIBLE_DEVICES x LOCAL_RANK), an NVML that cannot start, and
the same code for real where ``nvidia-smi`` works."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time

import fake_nvml
import numpy as np
import pytest

from agent.config import AgentConfig
from agent.ingest import Ingest
from agent.sinks.memory import MemorySink
from agent.store.memory import MemoryStore
from agent.system.gpu import THROTTLE_REASONS, Gpus, load_nvml, throttle_names
from agent.system.sampler import SystemSampler
from support import frames
from support.probes import read_line, wait_for
from support.processes import child_env, spawn

GB = 1 << 30


def test_fields_units_and_unsupported_fields_left_out():
    """Every field of a full device arrives in the documented unit (W, bytes, bytes/s, 0/1 throttle flags);
    a device whose power, ECC and throttle reads raise NOT_SUPPORTED has exactly those keys missing."""
    nv = fake_nvml.make(
        [
            fake_nvml.device(0, throttle=0x44),
            fake_nvml.device(1, power_mw="unsupported", ecc="unsupported", throttle="unsupported"),
        ]
    )
    gpus = Gpus(nv)
    assert gpus.start() and gpus.note == "2 GPU(s) through NVML"
    d0, d1 = gpus.read()
    assert d0.index == 0 and d0.uuid == "GPU-0000-aaaa"
    flags = {f"throttle.{n}": 0.0 for n in THROTTLE_REASONS.values()}
    flags["throttle.sw_power_cap"] = flags["throttle.hw_thermal_slowdown"] = 1.0
    assert d0.metrics == {
        "util_percent": 10.0,
        "memory_util_percent": 20.0,
        "memory_used_bytes": float(GB),
        "memory_total_bytes": float(80 * GB),
        "power_watts": 100.0,
        "power_limit_watts": 400.0,
        "temperature_c": 50.0,
        "sm_clock_mhz": 1400.0,
        "ecc_corrected_errors": 0.0,
        "ecc_uncorrected_errors": 0.0,
        "pcie_tx_bytes_per_s": 1000.0 * 1024,
        "pcie_rx_bytes_per_s": 2000.0 * 1024,
        "throttle_reasons": float(0x44),
        **flags,
    }
    missing = set(d0.metrics) - set(d1.metrics)
    assert missing == {"power_watts", "ecc_corrected_errors", "ecc_uncorrected_errors", "throttle_reasons", *flags}
    assert d1.metrics["power_limit_watts"] == 400.0 and d1.metrics["temperature_c"] == 51.0
    assert gpus.errors == 1 + 2 + 1  # power, two ECC counters, throttle


def test_throttle_names():
    """Bitmask → reason names in bit order; unknown bits are named by their position."""
    assert throttle_names(0) == []
    assert throttle_names(0x44) == ["sw_power_cap", "hw_thermal_slowdown"]
    assert throttle_names(0x1 | (1 << 12)) == ["gpu_idle", "bit12"]


def test_nvml_module_missing_is_a_note():
    """Without nvidia-ml-py (this machine) the loader says how to get it instead of raising."""
    try:
        import pynvml  # noqa: F401
    except ImportError:
        nvml, why = load_nvml()
        assert nvml is None and "pip install 'rankwise[gpu]'" in why
    else:
        pytest.skip("pynvml is installed here: the missing-module note cannot be seen")


def _agent(tmp_path, nvml) -> tuple[Ingest, MemoryStore, SystemSampler]:
    """A real agent core over the memory store, node "n1", with a sampler on the given NVML module."""
    cfg = AgentConfig(data_dir=tmp_path, runtime_dir=tmp_path, system_interval_s=0)
    store = MemoryStore()
    ingest = Ingest(store, cfg, node="n1", sink=MemorySink())
    sampler = SystemSampler(ingest, 1.0, nvml=nvml)
    ingest.parts.append(sampler)
    return ingest, store, sampler


_SLEEPER = "import time; time.sleep(300)"
_PARENT = (
    "import subprocess, sys, time; "
    "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
    "print(c.pid, flush=True); time.sleep(300)"
)


def _register(ingest: Ingest, rank: int, pid: int) -> int:
    """HELLO of rank ``rank`` (local rank = rank) from process ``pid``; its run id."""
    ingest.handle(b"p%d" % rank, frames.hello(f"w{rank}", rank, 4, "job", node="n1", pid=pid))
    return next(r.record.id for r in ingest.runs.values() if r.record.rank == rank)


def test_devices_land_under_the_right_rank(tmp_path):
    """Four real rank processes, four fake GPUs. Rank 0's child (a DataLoader-style worker) is a compute process
    of GPU 1: rank 0 gets GPU 1's values (pid match beats its LOCAL_RANK 0). Rank 1 has
    CUDA_VISIBLE_DEVICES=2,3 and LOCAL_RANK 1: GPU 3. Rank 2 has none set and LOCAL_RANK 2: GPU 2. Rank 3
    names GPU 0 by UUID. Host rows carry every device under gpu.<index>.*; the status says which rule
    attributed each rank. NVML starts on a thread of the sampler's own: the sample after it is checked."""
    parent = spawn([sys.executable, "-c", _PARENT], child_env(), stdout=subprocess.PIPE, text=True)
    child_pid = int(read_line(parent, 60, "the rank's child pid"))
    r1 = spawn([sys.executable, "-c", _SLEEPER], child_env(CUDA_VISIBLE_DEVICES="2,3"))
    r2 = spawn([sys.executable, "-c", _SLEEPER], {k: v for k, v in child_env().items() if k != "CUDA_VISIBLE_DEVICES"})
    r3 = spawn([sys.executable, "-c", _SLEEPER], child_env(CUDA_VISIBLE_DEVICES="GPU-0000"))
    nv = fake_nvml.make([fake_nvml.device(i, pids=[child_pid] if i == 1 else []) for i in range(4)])
    ingest, store, sampler = _agent(tmp_path, nv)
    ids = [_register(ingest, rank, p.pid) for rank, p in enumerate((parent, r1, r2, r3))]
    assert sampler.sample(time.time(), time.monotonic()) == 4  # starts NVML on a thread of its own
    assert sampler.gpus.ready.wait(60)
    assert sampler.sample(time.time() + 1, time.monotonic()) == 4
    ingest.commit()
    want = {ids[0]: 1, ids[1]: 3, ids[2]: 2, ids[3]: 0}
    for run_id, index in want.items():
        cols = {k: v[-1] for k, v in store.run_system(run_id).items()}  # the sample after NVML started
        assert cols["gpu.index"] == float(index)
        assert cols["gpu.util_percent"] == 10.0 + index
        assert cols["gpu.power_watts"] == 100.0 + index
        assert cols["gpu.memory_used_bytes"] == float((index + 1) * GB)
    assert sampler.attributed == {ids[0]: "pid", ids[1]: "env", ids[2]: "env", ids[3]: "env"}
    (host,) = store.group_system(ingest.runs[ids[0]].group.record.id).values()
    for i in range(4):
        assert host[f"gpu.{i}.temperature_c"][-1] == 50.0 + i
        assert host[f"gpu.{i}.pcie_rx_bytes_per_s"][-1] == (2000.0 + i) * 1024
    assert ingest.status()["system"]["gpu"] == "4 GPU(s) through NVML"


def test_nvml_init_failure_means_no_gpu_keys_and_a_note(tmp_path):
    """nvmlInit raising (driver not loaded; tried on the sampler's NVML thread): the samples go on without
    any gpu key, the status says why, nothing raises and the failure counter stays 0; NVML is not asked
    again at the next sample."""
    nv = fake_nvml.make([fake_nvml.device(0)], init_error=fake_nvml.NVML_ERROR_DRIVER_NOT_LOADED)
    proc = spawn([sys.executable, "-c", _SLEEPER], child_env())
    ingest, store, sampler = _agent(tmp_path, nv)
    run_id = _register(ingest, 0, proc.pid)
    assert sampler.sample(time.time(), time.monotonic()) == 1
    assert sampler.gpus.ready.wait(60)
    assert sampler.sample(time.time() + 1, time.monotonic()) == 1
    ingest.commit()
    cols = store.run_system(run_id)
    assert len(cols["_timestamp"]) == 2 and "proc.rss_bytes" in cols
    assert not [k for k in cols if k.startswith("gpu.")]
    (host,) = store.group_system(ingest.runs[run_id].group.record.id).values()
    assert not [k for k in host if k.startswith("gpu.")] and "host.memory_used_bytes" in host
    status = ingest.status()["system"]
    assert status["gpu"] == "NVML unavailable: NVMLError: NVML error 9" and status["failures"] == 0
    assert nv.calls == ["nvmlInit"]


def test_a_slow_nvml_start_does_not_hold_the_loop(tmp_path):
    """nvmlInit blocked (a driver that takes seconds to start): samples return at once, without GPU keys, while
    it is; once it returns, the next sample has them."""
    gate = threading.Event()
    nv = fake_nvml.make([fake_nvml.device(0)], init_gate=gate)
    proc = spawn([sys.executable, "-c", _SLEEPER], child_env())
    ingest, store, sampler = _agent(tmp_path, nv)
    run_id = _register(ingest, 0, proc.pid)
    try:
        assert sampler.sample(1000.0, time.monotonic()) == 1  # starts NVML on the sampler's thread
        wait_for(lambda: nv.calls == ["nvmlInit"], 60, "nvmlInit called (and blocked) on the NVML thread")
        for k in (1, 2):
            t0 = time.monotonic()
            assert sampler.sample(1000.0 + k, time.monotonic()) == 1
            assert time.monotonic() - t0 < 10  # the sample does not wait for nvmlInit (blocked until the gate)
        assert ingest.status()["system"]["gpu"] == "starting NVML" and not sampler.gpus.ready.is_set()
    finally:
        gate.set()
    assert sampler.gpus.ready.wait(60)
    sampler.sample(1003.0, time.monotonic())
    ingest.commit()
    cols = store.run_system(run_id)
    assert np.isnan(cols["gpu.util_percent"][:3]).all() and cols["gpu.util_percent"][3] == 10.0


def _nvidia_smi_works() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _nvidia_smi_works(), reason="no working nvidia-smi on this machine: no GPU to read for real")
def test_real_nvml_reads_every_gpu():
    """On a machine with GPUs: the real pynvml (the `gpu` extra) starts, reads as many devices as nvidia-smi
    lists, each with a memory total and a utilisation."""
    nvml, why = load_nvml()
    assert nvml is not None, why
    gpus = Gpus(nvml)
    assert gpus.start(), gpus.note
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    devices = gpus.read()
    assert len(devices) == len([line for line in listed.splitlines() if line.startswith("GPU ")])
    for d in devices:
        assert d.metrics["memory_total_bytes"] > 0 and 0 <= d.metrics["util_percent"] <= 100
    gpus.close()
