"""The ``rankwise`` command line.

    rankwise runs [GROUP]        groups, newest first (or the runs of GROUP)
    rankwise show [GROUP]        per-key table over ranks: final mean/min/max and which rank
    rankwise status              the node agent: runs, rows, window bytes, drops by cause; per upstream:
                                 lag, spool bytes, retries, drops (a root: its node agents)
    rankwise agent [...]         run the agent in the foreground (systemd, SLURM prolog)
    rankwise agent stop          stop the running agent cleanly
    rankwise keygen NAME         CurveZMQ keys for a root or node agent (docs/multinode.md)
    rankwise demo                simulated 8-rank training job, then its group view
    rankwise ui                  web UI over the store: charts of every group, live (127.0.0.1:8765)
    rankwise tail [GROUP]        latest group row of every key, refreshed until the group finishes
    rankwise export [GROUP]      group rows (or --per-rank history) as CSV or JSON lines
    rankwise artifacts [PROJECT] artifact versions with their aliases, types, file counts and sizes
    rankwise alerts [GROUP]      the group's alerts (NaN, hung, slow, crashed ranks; user alerts): docs/alerts.md

Every command takes ``--store PATH`` or ``--store URL`` (default ``$RANKWISE_STORE`` when set, else
``$RANKWISE_DIR/store.sqlite``) where it reads, ``--json`` for machine-readable output where it prints tables.
Exit status: 0 ok, 1 not found / not running, 2 bad usage. A project (``--project``), group (GROUP) or
key (``--keys``) named that the store does not hold is exit 1 with "no ... named X (ARGUMENT); did you mean
..." (rankwise/_lookup.py), never a silent empty table.

This module is the argument tables and the dispatch; each command is a function of its own module
(rankwise/_show.py: runs, show, artifacts; rankwise/_agentctl.py: status, agent, keygen; _demo, _ui,
_tail, _export, _alerts_cli), and those modules share only helpers (rankwise/_table.py), never each other.
"""

from __future__ import annotations

import argparse
import sys

from rankwise._agentctl import cmd_agent, cmd_keygen, cmd_status
from rankwise._alerts_cli import add_parser as add_alerts_parser
from rankwise._lookup import STORE_HELP
from rankwise._show import cmd_artifacts, cmd_runs, cmd_show
from rankwise._table import say
from rankwise.errors import Error

# the commands below load what they need when run: `import rankwise._cli` stays light (no HTTP server,
# no SQLite) for the commands that need neither


def cmd_demo(args: argparse.Namespace) -> int:
    from rankwise._demo import main as demo_main

    return demo_main(args)


def cmd_ui(args: argparse.Namespace) -> int:
    from rankwise._ui.server import serve

    return serve(args.store, args.host, args.port, token=not args.no_token, allow_hosts=tuple(args.allow_host))


def cmd_tail(args: argparse.Namespace) -> int:
    from rankwise._api import Api
    from rankwise._tail import tail

    keys = args.keys.split(",") if args.keys else None
    return tail(Api(args.store), args.project, args.group, keys, once=args.once, interval=args.interval)


def cmd_export(args: argparse.Namespace) -> int:
    from rankwise._api import Api
    from rankwise._export import export

    keys = args.keys.split(",") if args.keys else None
    api = Api(args.store)
    return export(api, args.project, args.group, args.format, per_rank=args.per_rank, out=args.out, keys=keys)


def cmd_alerts(args: argparse.Namespace) -> int:
    from rankwise._alerts_cli import cmd_alerts as alerts

    return alerts(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rankwise", description="Logging for distributed training.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--store", help=STORE_HELP)
        sp.add_argument("--project", "-p", help="project of the group (needed when a group name is ambiguous)")
        sp.add_argument("--json", action="store_true", help="machine-readable output")

    sp = sub.add_parser("runs", help="list groups, newest first; with GROUP, its runs")
    sp.add_argument("group", nargs="?", help="a group name")
    sp.add_argument("--limit", type=int, default=50, help="at most this many groups (default 50)")
    common(sp)
    sp = sub.add_parser("show", help="per-key table over the ranks of a group (default: the newest group)")
    sp.add_argument("group", nargs="?", help="a group name (default: newest)")
    sp.add_argument("--keys", help="comma-separated keys (default: all)")
    common(sp)
    sp = sub.add_parser("status", help="state of the node agent: runs, rows, windows, drops")
    sp.add_argument("--runtime-dir", help="agent directory (default: $RANKWISE_RUNTIME_DIR)")
    sp.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the agent (default 2)")
    sp.add_argument("--json", action="store_true")
    sub.add_parser("agent", help="run the node agent in the foreground; 'rankwise agent stop' stops it", add_help=False)
    sp = sub.add_parser(
        "keygen", help="create a CurveZMQ key pair (NAME.key, NAME.key_secret) for root and node agents"
    )
    sp.add_argument("name", help="key name, e.g. root or the node's host name")
    sp.add_argument("--dir", default=".", help="where to write the two files (default: current directory)")
    sp = sub.add_parser("demo", help="simulated 8-rank data-parallel training job, then its group view")
    sp.add_argument("--ranks", type=int, default=8)
    sp.add_argument("--steps", type=int, default=300)
    sp.add_argument("--project", default="demo")
    sp.add_argument("--group", help="group name (default: demo-<time>)")
    sp.add_argument("--slow-rank", type=int, default=5, help="rank that computes slower (-1: none)")
    sp = sub.add_parser("ui", help="read-only web UI over the store: every group's charts, live")
    sp.add_argument("--store", help=STORE_HELP)
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    sp.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one and prints it)")
    sp.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests whose Host header is NAME (repeatable; default: localhost and "
        "loopback addresses only)",
    )
    sp.add_argument(
        "--no-token",
        action="store_true",
        help="no token in the address (single-user machine only: any local user can read the store)",
    )
    sp = sub.add_parser("tail", help="latest group row of every key, refreshed until the group finishes")
    sp.add_argument("group", nargs="?", help="a group name (default: newest)")
    sp.add_argument("--keys", help="comma-separated keys (default: all)")
    sp.add_argument("--once", action="store_true", help="print once and exit")
    sp.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    sp.add_argument("--store", help=STORE_HELP)
    sp.add_argument("--project", "-p", help="project of the group (needed when a group name is ambiguous)")
    sp = sub.add_parser("export", help="group rows (or --per-rank history) as CSV or JSON lines")
    sp.add_argument("group", nargs="?", help="a group name (default: newest)")
    sp.add_argument("--format", "-f", choices=("csv", "jsonl"), default="csv", help="output format (default csv)")
    sp.add_argument("--per-rank", action="store_true", help="every rank's full history instead of group rows")
    sp.add_argument("--keys", help="comma-separated keys (default: all)")
    sp.add_argument("--out", "-o", help="file to write (default: standard output)")
    sp.add_argument("--store", help=STORE_HELP)
    sp.add_argument("--project", "-p", help="project of the group (needed when a group name is ambiguous)")
    sp = sub.add_parser("artifacts", help="artifact versions of a project (all projects without one), with aliases")
    sp.add_argument("project", nargs="?", help="a project (default: all)")
    sp.add_argument("--store", help=STORE_HELP)
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    add_alerts_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if argv[:1] == ["agent"]:
        args = argparse.Namespace(command="agent")
        rest = argv[1:]
    else:
        args = parser.parse_args(argv)
        rest = []
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "runs":
            return cmd_runs(args)
        if args.command == "show":
            return cmd_show(args)
        if args.command == "status":
            return cmd_status(args)
        if args.command == "agent":
            return cmd_agent(args, rest)
        if args.command == "demo":
            return cmd_demo(args)
        if args.command == "keygen":
            return cmd_keygen(args)
        if args.command == "ui":
            return cmd_ui(args)
        if args.command == "tail":
            return cmd_tail(args)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "artifacts":
            return cmd_artifacts(args)
        if args.command == "alerts":
            return cmd_alerts(args)
    except Error as exc:
        say(f"rankwise {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
