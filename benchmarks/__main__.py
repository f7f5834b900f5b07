"""``python -m benchmarks [--quick] [--only a,b] [--out PATH] [--compare|--no-compare]``

Runs the benchmarks in order, prints a table (machine at the top, targets at the
bottom) and writes every number as JSON (default
``benchmarks/results/<timestamp>.json``). A benchmark that fails is recorded with
its error and the rest still run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import BENCHMARKS, TARGETS
from benchmarks._harness import REPO

SCHEMA = 1


@dataclass
class Context:
    """What a benchmark's ``run(ctx)`` gets: the mode and the results of the benchmarks before it."""

    quick: bool = False
    compare: bool = True
    results: dict[str, Any] = field(default_factory=dict)

    def timeout(self, limit_s: float) -> float:
        """A hard limit for one worker: a guard against hangs, generous because a loaded machine
        (a test suite running beside us) is slow; the same in quick and full runs."""
        return limit_s


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[1])
    p.add_argument("--quick", action="store_true", help="short smoke run (~30 s): fewer calls, shorter loops")
    p.add_argument("--only", help=f"comma-separated benchmarks to run (of: {', '.join(BENCHMARKS)})")
    p.add_argument("--out", help="JSON output path (default benchmarks/results/<timestamp>.json)")
    cmp = p.add_mutually_exclusive_group()
    cmp.add_argument(
        "--compare",
        dest="compare",
        action="store_true",
        default=None,
        help="run wandb / MLflow / tensorboardX side by side (default: on, off with --quick)",
    )
    cmp.add_argument("--no-compare", dest="compare", action="store_false", help="rankwise only")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = p.parse_args(argv)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BENCHMARKS]
        if unknown:
            p.error(f"--only: unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
        args.only = names
    if args.compare is None:
        args.compare = not args.quick
    return args


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The lead's targets against this run's numbers (only those that were measured)."""
    checks: list[dict[str, Any]] = []

    def add(name: str, value: float | None, target: float, unit: str, higher_is_better: bool = False) -> None:
        if value is None:
            return
        ok = value >= target if higher_is_better else value <= target
        checks.append({"target": name, "value": value, "limit": target, "unit": unit, "met": bool(ok)})

    ll = results.get("log_latency", {})
    if "log" in ll:
        add("log() p50 ≤ 1 µs (net of timer)", ll["net_p50_ns"] / 1000, TARGETS["log_p50_us"], "µs")
        add("log() p99 ≤ 5 µs (net of timer)", ll["net_p99_ns"] / 1000, TARGETS["log_p99_us"], "µs")
    lf = results.get("log_forms", {})
    if "forms" in lf:
        from benchmarks.log_forms import target_checks

        for name, value, limit, unit in target_checks(lf, TARGETS):
            add(name, value, limit, unit)
    at = results.get("agent_throughput", {})
    for cfg in at.get("configs", []):
        if cfg.get("ranks") == 8 and cfg.get("keys") == 4:
            add(
                "≥ 1M points/s stored, 8 ranks",
                cfg["stored_points_per_s"],
                TARGETS["agent_points_per_s_8_ranks"],
                "points/s",
                higher_is_better=True,
            )
    if at.get("configs"):
        from benchmarks.agent_throughput import peak_rss_check

        add(*peak_rss_check(at, TARGETS))
    ft = results.get("finish_time", {})
    for sc in ft.get("scenarios", []):
        if sc.get("burst") == 1000:
            add(
                "finish() ≤ 50 ms after a 1k-row burst (median)",
                sc["finish_s"]["median"] * 1000,
                TARGETS["finish_ms"],
                "ms",
            )
        if sc.get("burst") == 20_000:
            add(
                "finish() ≤ 50 ms after a 20k-row burst (median)",
                sc["finish_s"]["median"] * 1000,
                TARGETS["finish_20k_ms"],
                "ms",
            )
    mem = results.get("memory", {})
    if mem.get("overhead_peak_mb") is not None:
        add(
            "client RSS ≤ 64 MB over its baseline, 1M calls (peak)",
            mem["overhead_peak_mb"],
            TARGETS["client_overhead_mb"],
            "MB",
        )
    st = results.get("startup", {})
    if "import" in st:
        add(
            "import rankwise ≤ 150 ms (median)",
            st["import"]["in_process_s"]["median"] * 1000,
            TARGETS["import_ms"],
            "ms",
        )
    for ph in results.get("init_concurrency", {}).get("phases", []):
        if ph["ranks"] == 200 and ph["preimported_transport"]:
            add("init() p99 < 1 s, 200 ranks at once", ph["init_s"]["p99"], TARGETS["init_p99_s_200_ranks"], "s")
    ss = results.get("system_sampler", {})
    if ss.get("percent_of_core_at_1s") is not None:
        add(
            "system sampler ≤ 1 % of a core, 8 ranks at 1 s",
            ss["percent_of_core_at_1s"],
            TARGETS["system_sampler_percent_of_core"],
            "%",
        )
    fc = results.get("ui_first_chart", {})
    if fc.get("modes") and fc.get("ranks") == 64:  # the full run's group (quick: 16 ranks)
        for mode, label in (("mean_band", "mean and band"), ("per_rank_lines", "per-rank lines")):
            add(
                f"UI first chart ≤ 1.5 s, 64 ranks x 3k steps, {label}",
                fc["modes"][mode]["first_chart_ms"],
                TARGETS["ui_first_chart_ms"],
                "ms",
            )
    se = results.get("store_engines", {}).get("engines", {})
    if "sqlite" in se and "clickhouse 18.16" in se and se["sqlite"]["read"].get("ranks") == 64:
        sq, ch = se["sqlite"], se["clickhouse 18.16"]
        add(
            "ClickHouse ingest within 2x of SQLite's (SQLite pts/s over ClickHouse's)",
            sq["ingest"]["stored_points_per_s"] / ch["ingest"]["stored_points_per_s"],
            TARGETS["store_ch_ingest_slowdown"],
            "x",
        )
        add(
            "ClickHouse reads a 64-rank x 100k-step group as fast as SQLite (time over SQLite's)",
            ch["read"]["rank_history_s"] / sq["read"]["rank_history_s"],
            TARGETS["store_ch_read_slowdown"],
            "x",
        )
    return checks


def render(report: dict[str, Any], modules: dict[str, Any]) -> str:
    from benchmarks import _table

    lines = [
        f"rankwise benchmarks · {report['started']} · {'quick' if report['quick'] else 'full'} run "
        f"· {report['duration_s']:.0f} s"
    ]
    lines += _table.machine_lines(report["machine"])
    for name, res in report["benchmarks"].items():
        mod = modules[name]
        lines.append("")
        lines.append(f"{mod.TITLE}  [{res.get('duration_s', 0):.1f} s]")
        if "error" in res:
            lines.append("  ERROR: " + res["error"].strip().splitlines()[-1])
            continue
        try:
            lines += mod.render(res) if hasattr(mod, "render") else _table.render_rows(mod.rows(res))
        except Exception:  # a formatting bug must not hide the JSON
            lines.append("  (could not format: " + traceback.format_exc().strip().splitlines()[-1] + ")")
        for note in res.get("notes", []):
            lines.append(f"  note: {note}")
    if report["targets"]:
        lines.append("")
        lines.append("Targets (verified on a quiet machine; this run's numbers)")
        rows = [
            (
                c["target"],
                f"{c['value']:,.2f} {c['unit']}" if c["value"] < 1e4 else f"{c['value']:,.0f} {c['unit']}",
                "met" if c["met"] else "MISSED",
            )
            for c in report["targets"]
        ]
        lines += _table.render_rows(rows)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for name in BENCHMARKS:
            print(f"{name:18} {importlib.import_module(f'benchmarks.{name}').TITLE}")
        return 0
    from benchmarks._machine import describe

    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    t0 = time.perf_counter()
    ctx = Context(quick=args.quick, compare=args.compare)
    names = args.only or list(BENCHMARKS)
    modules = {n: importlib.import_module(f"benchmarks.{n}") for n in names}
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "started": started,
        "quick": args.quick,
        "compare": args.compare,
        "argv": sys.argv[1:] if argv is None else argv,
        "machine": describe(),
        "benchmarks": {},
    }
    failed = []
    for name in names:
        print(f"[bench] {name} …", file=sys.stderr, flush=True)
        tb = time.perf_counter()
        try:
            res = modules[name].run(ctx)
        except KeyboardInterrupt:
            raise
        except Exception:
            res = {"error": traceback.format_exc()}
            failed.append(name)
            print(res["error"], file=sys.stderr)
        res["duration_s"] = time.perf_counter() - tb
        ctx.results[name] = res
        report["benchmarks"][name] = res
        print(f"[bench] {name} done in {res['duration_s']:.1f} s", file=sys.stderr, flush=True)
    report["duration_s"] = time.perf_counter() - t0
    report["targets"] = evaluate_targets(ctx.results)
    print(render(report, modules))
    out = Path(args.out) if args.out else REPO / "benchmarks" / "results" / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"\nJSON: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
