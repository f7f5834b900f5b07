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

Every command takes ``--store PATH`` (default ``$RANKWISE_DIR/store.sqlite``)
where it reads, ``--json`` for machine-readable output where it prints tables.
Exit status: 0 ok, 1 not found / not running, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from client.errors import Error
from rankwise._table import ago, duration, safe, sparkline, table


def say(*parts: Any, file: Any = None) -> None:
    """print() for everything the CLI writes: names and keys come from the store (any logged string), so
    non-printable characters are escaped (only line breaks pass), never sent raw to the terminal."""
    print(safe(" ".join(str(p) for p in parts), keep="\n"), file=file)


def _api(args: argparse.Namespace) -> Any:
    from rankwise._api import Api

    return Api(args.store)


def _group(api: Any, args: argparse.Namespace) -> Any:
    return api.group(args.project, args.group)


def cmd_runs(args: argparse.Namespace) -> int:
    api = _api(args)
    if args.group:
        g = _group(api, args)
        runs = g.runs
        if args.json:
            say(json.dumps([_run_json(r) for r in runs], indent=1, default=str))
            return 0
        say(f"{g.project}/{g.name}: {len(runs)} of {g.world_size} ranks, {g.state}")
        rows = [
            [r.rank, r.name, r.node, r.state, r.exit_code, r.step, r.rows, _coalesced(r), duration(r.runtime),
             ago(r.created)]
            for r in runs
        ]  # fmt: skip
        say(table(["rank", "name", "node", "state", "exit", "steps", "rows", "coalesced", "runtime", "started"], rows))
        return 0
    groups = api.groups(args.project)
    if args.json:
        say(json.dumps([_group_json(g) for g in groups], indent=1, default=str))
        return 0
    if not groups:
        say(f"no groups in {api.path}")
        return 0
    rows = []
    for g in groups[: args.limit]:
        runs = g.runs
        states: dict[str, int] = {}
        for r in runs:
            states[r.state] = states.get(r.state, 0) + 1
        steps = max((r.step for r in runs), default=0)
        rows.append(
            [g.project, g.name, f"{len(runs)}/{g.world_size}", " ".join(f"{v} {k}" for k, v in sorted(states.items())),
             steps, len({r.node for r in runs}), ago(g.created), duration(max((r.runtime for r in runs), default=0))]
        )  # fmt: skip
    say(table(["project", "group", "ranks", "states", "steps", "nodes", "started", "duration"], rows))
    return 0


def _coalesced(r: Any) -> str:
    """'12000 → 40 spans' when the agent coalesced rows over the run's budget, else '-'."""
    rows, spans = r.coalesced_rows
    return f"{rows} → {spans} spans" if rows else "-"


def _run_json(r: Any) -> dict[str, Any]:
    return {
        "name": r.name,
        "rank": r.rank,
        "node": r.node,
        "state": r.state,
        "exit_code": r.exit_code,
        "step": r.step,
        "rows": r.rows,
        "coalesced": dict(zip(("rows", "spans"), r.coalesced_rows)),
        "runtime": r.runtime,
        "summary": r.summary,
        "config": r.config,
    }


def _group_json(g: Any) -> dict[str, Any]:
    return {"project": g.project, "name": g.name, "world_size": g.world_size, "state": g.state, "created": g.created}


def group_table(g: Any, keys: list[str] | None = None) -> tuple[list[str], list[list[Any]]]:
    """The per-key table of ``rankwise show``: the last group row of every key, and a trend of the mean."""
    headers = ["key", "step", "ranks", "mean", "min", "min rank", "max", "max rank", "std", "trend (mean)"]
    rows = []
    for key in keys or g.keys():
        h = g.history(key)
        if len(h["step"]) == 0:
            continue
        i = len(h["step"]) - 1
        rows.append(
            [key, int(h["step"][i]), f"{int(h['count'][i])}/{int(h['expected'][i])}", float(h["mean"][i]),
             float(h["min"][i]), int(h["min_rank"][i]), float(h["max"][i]), int(h["max_rank"][i]), float(h["std"][i]),
             sparkline(h["mean"].tolist())]
        )  # fmt: skip
    return headers, rows


def cmd_show(args: argparse.Namespace) -> int:
    api = _api(args)
    g = _group(api, args)
    keys = args.keys.split(",") if args.keys else None
    headers, rows = group_table(g, keys)
    if args.json:
        say(json.dumps({"group": _group_json(g), "keys": [dict(zip(headers[:-1], r[:-1])) for r in rows]}, indent=1))
        return 0
    runs = g.runs
    states: dict[str, int] = {}
    for r in runs:
        states[r.state] = states.get(r.state, 0) + 1
    nodes = sorted({r.node for r in runs})
    say(
        f"group {g.project}/{g.name}: {len(runs)} of {g.world_size} ranks on {len(nodes)} node(s), "
        + ", ".join(f"{v} {k}" for k, v in sorted(states.items()))
        + (f", {g.late_rows} late point(s)" if g.late_rows else "")
    )
    say()
    say(table(headers, rows) if rows else "(no group rows yet)")
    spans = [(r.name, *r.coalesced_rows) for r in runs if r.coalesced_rows[0]]
    if spans:
        say()
        say("coalesced over the row budget (values kept as last/mean/min/max/count per span): "
              + ", ".join(f"{name} {n} rows → {k} spans" for name, n, k in spans))
    say()
    say(f"data: {api.path}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from rankwise._control import request

    reply = request("status", runtime_dir=args.runtime_dir, timeout_s=args.timeout)
    if reply is None:
        say("no agent is running (it starts with the first rankwise.init() on this node)")
        return 1
    from client.paths import open_to_others

    if reply.get("store") and (warning := open_to_others(Path(reply["store"]).parent)):
        say(f"rankwise status: warning: {warning}", file=sys.stderr)
    if args.json:
        say(json.dumps(reply, indent=1, default=str))
        return 0
    c = reply.get("counters", {})
    role = {"node": "node agent", "root": "root agent"}.get(reply.get("role", ""), "agent")
    up = reply.get("upstream")
    where = f"forwarding to {up['endpoint']} as {up['agent_id']}" if up else f"store {reply['store']}"
    say(f"{role} pid {reply['pid']} on {reply['node']}, up {duration(reply['uptime_s'])}, {where}")
    runs = reply.get("runs", {})
    say("runs: " + (", ".join(f"{v} {k}" for k, v in sorted(runs.items())) or "none"))
    kept = (
        f"spooled {c.get('records', 0)} records ({_bytes(c.get('record_bytes', 0))}) for the root"
        if up else f"stored {c.get('stored_points', 0)} points in {c.get('commits', 0)} commits"
    )  # fmt: skip
    say(
        f"received: {c.get('batches', 0)} batches, {c.get('rows', 0)} rows, {c.get('points', 0)} points "
        f"({c.get('late_rows', 0)} late rows); {kept}"
    )
    say(f"open group windows: {reply.get('window_bytes', 0)} bytes; pending commit: {reply.get('pending_points', 0)} points")
    if reply.get("rss_bytes"):  # (agents before issue 11 do not report it)
        say(f"memory: {_bytes(reply['rss_bytes'])} resident, peak {_bytes(reply.get('peak_rss_bytes', 0))}; "
            f"uncommitted batches peaked at {_bytes(reply.get('pending_bytes_max', 0))}")
    _print_store_state(reply)
    malformed = reply.get("malformed", {})
    drops = reply.get("drops", {})
    say("malformed frames: " + (", ".join(f"{v} {k}" for k, v in malformed.items()) or "0"))
    say("drops by cause: " + (", ".join(f"{v} {k}" for k, v in drops.items()) or "0"))
    _print_links(reply)
    running = reply.get("running", [])
    if running:
        say()
        rows = [[r["project"], r["group"], r["name"], r["pid"], r["step"], r["rows"], f"{r['lag_s']:.1f}s"] for r in running]
        say(table(["project", "group", "run", "pid", "step", "rows", "last heard"], rows))
    return 0


def _print_store_state(reply: dict) -> None:
    """The store's trouble (disk full, unavailable) and losses, from agent/storehealth.py; nothing when fine."""
    import time

    state = reply.get("store_state", "ok")
    if state != "ok":
        held = reply.get("counters", {}).get("held_batches", 0)
        say(f"STORE: {state} — {_bytes(reply.get('pending_bytes', 0))} uncommitted of a "
            f"{_bytes(reply.get('pending_budget_bytes', 0))} budget; {held} client batches held back (clients keep them)")
    for loss in reply.get("store_losses") or []:
        where = f"moved to {loss['moved_to']}" if loss.get("moved_to") else "nothing left to move aside"
        say(f"STORE LOST at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(loss['at']))}: {loss['why']} "
            f"({where}); a fresh store was started")


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _print_links(reply: dict) -> None:
    """A node agent: its upstream (lag, spool, retries, drops). A root: the node agents it hears from."""
    up = reply.get("upstream")
    if up:
        state = "connected" if up.get("connected") else "NOT connected (the spool keeps everything)"
        say(
            f"upstream {up['endpoint']} ({state}): lag {up['lag_s']:.1f}s, {up['unacked_records']} record(s) "
            f"unacknowledged, spool {_bytes(up['spool_bytes'])} of {_bytes(up['spool_quota_bytes'])}, "
            f"{up['retries']} retries, {up['resent_records']} records resent"
        )
        drops = dict(up.get("drops") or {})
        held = reply.get("counters", {}).get("deferred_spool_full", 0)
        say(
            "upstream drops by cause: " + (", ".join(f"{v} {k}" for k, v in drops.items()) or "0")
            + (f"; {held} client batches held back while the spool was full" if held else "")
        )  # fmt: skip
        for q in up.get("quarantined") or []:
            say(f"  quarantined spool segment: {q}")
    links = reply.get("links")
    if links is not None:
        listen = reply.get("listen") or {}
        refused = listen.get("refused") or {}
        auth = {"keys": "Curve", "same user": "Curve, same user only", "none": "no Curve"}.get(
            listen.get("auth"), "Curve" if listen.get("curve") else "no Curve")  # fmt: skip
        say(
            f"node agents on {listen.get('endpoint', '?')} ({auth}): "
            f"{len(links)}; refused connections: " + (", ".join(f"{v} {k}" for k, v in refused.items()) or "0")
        )
        if "connections" in listen:
            say(f"connections: {listen['connections']} of at most {listen['max_connections'] or 'any'} "
                f"(peak {listen['peak_connections']}); partial frames can pin at most "
                f"{_bytes(listen['max_bytes_in_flight'])} ({_bytes(listen['max_frame_bytes'])} per connection)")
        if links:
            rows = [[lk["agent"], lk["node"], lk["applied"], lk["stored"], lk["lost_records"],
                     "-" if lk["last_heard_s"] is None else f"{lk['last_heard_s']:.1f}s"] for lk in links]  # fmt: skip
            say(table(["node agent", "node", "records applied", "stored", "lost", "last heard"], rows))


def cmd_agent(args: argparse.Namespace, rest: list[str]) -> int:
    if rest[:1] == ["stop"]:
        from rankwise._control import request

        stop = argparse.ArgumentParser(prog="rankwise agent stop", description="Stop the node agent cleanly.")
        stop.add_argument("--runtime-dir")
        stop.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for it to exit")
        sargs = stop.parse_args(rest[1:])
        from rankwise._control import wait_stopped

        reply = request("stop", runtime_dir=sargs.runtime_dir, timeout_s=2.0)
        if reply is None:
            say("no agent is running")
            return 1
        if not wait_stopped(sargs.runtime_dir, sargs.timeout):
            say(f"agent {reply.get('pid')} did not exit within {sargs.timeout:.0f} s", file=sys.stderr)
            return 1
        say(f"agent {reply.get('pid')} stopped")
        return 0
    from agent.main import main as agent_main

    return agent_main(rest)


def cmd_keygen(args: argparse.Namespace) -> int:
    from agent.keys import keygen

    public, secret = keygen(args.dir, args.name)
    say(f"public key {public}\nsecret key {secret} (keep it private: mode 0600)")
    say(
        "root:  rankwise agent --listen tcp://0.0.0.0:PORT --curve-secret ROOT.key_secret --allow DIR_OF_NODE_KEYS\n"
        "node:  RANKWISE_UPSTREAM=tcp://ROOT:PORT RANKWISE_CURVE_SECRET=NODE.key_secret RANKWISE_ROOT_KEY=ROOT.key"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from rankwise._demo import main as demo_main

    return demo_main(args)


def cmd_ui(args: argparse.Namespace) -> int:
    from rankwise._ui.server import serve

    return serve(args.store, args.host, args.port, token=not args.no_token, allow_hosts=tuple(args.allow_host))


def cmd_tail(args: argparse.Namespace) -> int:
    from rankwise._tail import tail

    keys = args.keys.split(",") if args.keys else None
    return tail(_api(args), args.project, args.group, keys, once=args.once, interval=args.interval)


def cmd_export(args: argparse.Namespace) -> int:
    from rankwise._export import export

    keys = args.keys.split(",") if args.keys else None
    return export(_api(args), args.project, args.group, args.format, per_rank=args.per_rank, out=args.out, keys=keys)


def cmd_artifacts(args: argparse.Namespace) -> int:
    """Artifact versions of a project (all projects without one): name, version, aliases, type, files, size."""
    from rankwise._api import _store_path
    from rankwise._artifact_store import ArtifactStore

    store = ArtifactStore(_store_path(args.store).parent)
    rows = [m for p, n in store.names(args.project) for m in store.versions(p, n)]
    if args.json:
        say(json.dumps([{k: m.get(k) for k in ("project", "name", "version", "aliases", "type", "digest", "created",
                                                "description", "metadata", "entries")} for m in rows],
                       indent=1, default=str))  # fmt: skip
        return 0
    if not rows:
        say(f"no artifacts{' in project ' + repr(args.project) if args.project else ''} in {store.root}")
        return 1
    body = [[m.get("project"), f"{m['name']}:{m['version']}", ",".join(m["aliases"]), m["type"], len(m["entries"]),
             sum(e.get("size", 0) for e in m["entries"].values()), ago(m["created"])] for m in rows]  # fmt: skip
    say(table(["project", "artifact", "aliases", "type", "files", "bytes", "created"], body))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rankwise", description="Logging for distributed training.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--store", help="store file or directory (default: $RANKWISE_DIR/store.sqlite)")
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
    sp = sub.add_parser("keygen", help="create a CurveZMQ key pair (NAME.key, NAME.key_secret) for root and node agents")
    sp.add_argument("name", help="key name, e.g. root or the node's host name")
    sp.add_argument("--dir", default=".", help="where to write the two files (default: current directory)")
    sp = sub.add_parser("demo", help="simulated 8-rank data-parallel training job, then its group view")
    sp.add_argument("--ranks", type=int, default=8)
    sp.add_argument("--steps", type=int, default=300)
    sp.add_argument("--project", default="demo")
    sp.add_argument("--group", help="group name (default: demo-<time>)")
    sp.add_argument("--slow-rank", type=int, default=5, help="rank that computes slower (-1: none)")
    sp = sub.add_parser("ui", help="read-only web UI over the store: every group's charts, live")
    sp.add_argument("--store", help="store file or directory (default: $RANKWISE_DIR/store.sqlite)")
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    sp.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one and prints it)")
    sp.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                    help="also answer requests whose Host header is NAME (repeatable; default: localhost and "
                         "loopback addresses only)")  # fmt: skip
    sp.add_argument("--no-token", action="store_true",
                    help="no token in the address (single-user machine only: any local user can read the store)")
    sp = sub.add_parser("tail", help="latest group row of every key, refreshed until the group finishes")
    sp.add_argument("group", nargs="?", help="a group name (default: newest)")
    sp.add_argument("--keys", help="comma-separated keys (default: all)")
    sp.add_argument("--once", action="store_true", help="print once and exit")
    sp.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    sp.add_argument("--store", help="store file or directory (default: $RANKWISE_DIR/store.sqlite)")
    sp.add_argument("--project", "-p", help="project of the group (needed when a group name is ambiguous)")
    sp = sub.add_parser("export", help="group rows (or --per-rank history) as CSV or JSON lines")
    sp.add_argument("group", nargs="?", help="a group name (default: newest)")
    sp.add_argument("--format", "-f", choices=("csv", "jsonl"), default="csv", help="output format (default csv)")
    sp.add_argument("--per-rank", action="store_true", help="every rank's full history instead of group rows")
    sp.add_argument("--keys", help="comma-separated keys (default: all)")
    sp.add_argument("--out", "-o", help="file to write (default: standard output)")
    sp.add_argument("--store", help="store file or directory (default: $RANKWISE_DIR/store.sqlite)")
    sp.add_argument("--project", "-p", help="project of the group (needed when a group name is ambiguous)")
    sp = sub.add_parser("artifacts", help="artifact versions of a project (all projects without one), with aliases")
    sp.add_argument("project", nargs="?", help="a project (default: all)")
    sp.add_argument("--store", help="store file or directory (default: $RANKWISE_DIR/store.sqlite)")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
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
