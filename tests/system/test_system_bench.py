"""The sampler's benchmark (benchmarks/system_sampler.py, `make bench` row 10) runs in quick mode and reports
consistent numbers: the configuration it calls "as configured at 1 s" reads USS every 5th sample, CPU per
sample is positive, and the %-of-a-core figure is that mean CPU per 1 s interval. No timing threshold: speed
is judged on a quiet machine, from the numbers."""

from __future__ import annotations

import pytest

from benchmarks import BENCHMARKS, TARGETS
from benchmarks import system_sampler as bench
from benchmarks.__main__ import Context, evaluate_targets


def test_quick_run_is_consistent():
    """8 ranks x 3 processes sampled; USS read every sample costs more than none; the target is evaluated."""
    r = bench.run(Context(quick=True, compare=False))
    assert "system_sampler" in BENCHMARKS and r["ranks"] == 8 and r["processes_sampled"] == 24
    assert r["default"]["uss_every"] == 5 and r["with_uss"]["uss_every"] == 1
    for label in ("with_uss", "without_uss", "default"):
        assert 0 < r[label]["cpu_ms_median"] <= r[label]["cpu_ms_p90"]
    assert r["percent_of_core_at_1s"] == pytest.approx(r["default"]["cpu_ms_mean"] / 10.0)
    assert r["machine_processes"] >= 25 and r["scan_ms"] > 0
    (check,) = [c for c in evaluate_targets({"system_sampler": r}) if c["target"].startswith("system sampler")]
    assert check["limit"] == TARGETS["system_sampler_percent_of_core"] == 1.0
    assert [row[0] for row in bench.rows(r)][-1] == "% of one core at a 1 s interval"
