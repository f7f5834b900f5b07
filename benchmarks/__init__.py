"""Reproducible benchmarks for rankwise: ``python -m benchmarks`` (``make bench``).

Issue "Never slow training down": every number the README promises comes from
here. One command runs every benchmark, prints a table and writes the same
numbers as JSON (``benchmarks/results/<timestamp>.json``, ``--out`` to choose).

Each benchmark module exposes ``NAME``, ``TITLE``, ``run(ctx) -> dict`` (runs in
the orchestrating process; the measured code runs in fresh worker processes
started through :mod:`benchmarks._harness`) and ``rows(result) -> list`` (table
lines). Every benchmark gets its own temporary ``RANKWISE_DIR`` /
``RANKWISE_RUNTIME_DIR`` and stops the agent it started, so a run never touches
the user's store or agent. ``docs/benchmarks.md`` says what each number means.
"""

from __future__ import annotations

# Order of execution and of the table. The compare benchmark runs rankwise through the same
# loop as wandb / MLflow / tensorboardX so that its ratios are like for like.
BENCHMARKS = (
    "log_latency",
    "log_forms",
    "calls_per_second",
    "agent_throughput",
    "e2e_latency",
    "finish_time",
    "startup",
    "init_concurrency",
    "memory",
    "media",
    "system_sampler",
    "ui_transfer",  # issue 14: bytes of one chart's per-rank series, plain and gzipped
    "ui_first_chart",  # issue 14: time to first chart of a 64-rank group page in Chromium, bytes fetched
    "store_engines",  # issue 15: one agent into SQLite / ClickHouse; a 64-rank x 100k-step group read back
    "compare",
)

# What the lead verifies on a quiet machine (issue "Never slow training down").
TARGETS = {
    "log_p50_us": 1.0,
    "log_p99_us": 5.0,
    "agent_points_per_s_8_ranks": 1_000_000,
    "agent_peak_rss_mb": 150.0,  # issue 11: the agent's peak RSS, every agent_throughput configuration
    "finish_ms": 50.0,
    "finish_20k_ms": 50.0,
    "client_overhead_mb": 64.0,  # issue 11: client RSS over its after-init baseline, 1M calls in a tight loop  # issue 11: finish() after a burst of 20k rows (benchmark finish_time)
    "import_ms": 150.0,
    "init_p99_s_200_ranks": 1.0,  # 200 ranks call init() at once, transport loaded, agent running
    # issue 11: every form of log() (benchmark log_forms), net of the timer
    "forms_p50_us": 1.0,  # every Python and numpy form
    "forms_p99_us": 5.0,
    "forms_torch_p50_us": 2.0,  # torch 0-d CPU tensors
    "forms_contended_p99_us": 20.0,  # 4 busy processes on the machine's cores
    "system_sampler_percent_of_core": 1.0,  # issue 13: 8 ranks at a 1 s interval (benchmark system_sampler)
    # issue 15 (store_engines, full run): one agent's points/s into SQLite over into ClickHouse (≤ 2: ingest within
    # 2x), and ClickHouse's time over SQLite's to read a 64-rank x 100k-step group (≤ 1: at least as fast)
    "store_ch_ingest_slowdown": 2.0,
    "store_ch_read_slowdown": 1.0,
    "ui_first_chart_ms": 1500.0,  # issue 14: group page of 64 ranks x 3k steps, per-rank lines on (ui_first_chart)
}
