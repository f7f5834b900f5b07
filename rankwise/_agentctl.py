"""The agent from the command line: ``rankwise status`` (what the running agent reports: runs, rows,
windows, drops, the store's trouble, its upstream or node agents), ``rankwise agent stop`` and ``rankwise
keygen`` (CurveZMQ keys for a root and its node agents; docs/multinode.md). ``rankwise agent`` itself runs
the agent's own command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rankwise._table import byte_size, duration, say, table


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
        f"spooled {c.get('records', 0)} records ({byte_size(c.get('record_bytes', 0))}) for the root"
        if up
        else f"stored {c.get('stored_points', 0)} points in {c.get('commits', 0)} commits"
    )
    say(
        f"received: {c.get('batches', 0)} batches, {c.get('rows', 0)} rows, {c.get('points', 0)} points "
        f"({c.get('late_rows', 0)} late rows); {kept}"
    )
    say(
        f"open group windows: {reply.get('window_bytes', 0)} bytes; pending commit: {reply.get('pending_points', 0)} points"
    )
    if reply.get("rss_bytes"):  # (agents before issue 11 do not report it)
        say(
            f"memory: {byte_size(reply['rss_bytes'])} resident, peak {byte_size(reply.get('peak_rss_bytes', 0))}; "
            f"uncommitted batches peaked at {byte_size(reply.get('pending_bytes_max', 0))}"
        )
    _print_store_state(reply)
    _print_system(reply)
    malformed = reply.get("malformed", {})
    drops = reply.get("drops", {})
    say("malformed frames: " + (", ".join(f"{v} {k}" for k, v in malformed.items()) or "0"))
    say("drops by cause: " + (", ".join(f"{v} {k}" for k, v in drops.items()) or "0"))
    for name, sink in reply.get("alert_sinks", {}).items():  # agent/alerts/notify.py
        last = f" (last error: {sink['last_error']})" if sink.get("last_error") else ""
        say(f"alert sink {name}: {sink['sent']} sent, {sink['failed']} failed, {sink['dropped']} dropped{last}")
    _print_links(reply)
    running = reply.get("running", [])
    if running:
        say()
        rows = [
            [r["project"], r["group"], r["name"], r["pid"], r["step"], r["rows"], f"{r['lag_s']:.1f}s"] for r in running
        ]
        say(table(["project", "group", "run", "pid", "step", "rows", "last heard"], rows))
    return 0


def _print_store_state(reply: dict) -> None:
    """The store's trouble (disk full, unavailable) and losses, from agent/storehealth.py; nothing when fine."""
    import time

    state = reply.get("store_state", "ok")
    if state != "ok":
        held = reply.get("counters", {}).get("held_batches", 0)
        records = reply.get("counters", {}).get("held_records", 0)  # a root: agent/rootlink.py
        hellos = reply.get("counters", {}).get("held_hellos", 0)
        say(
            f"STORE: {state} — {byte_size(reply.get('pending_bytes', 0))} uncommitted of a "
            f"{byte_size(reply.get('pending_budget_bytes', 0))} budget; {held} client batches held back (clients keep them)"
            + (f"; {records} node records held back (node spools keep them)" if records else "")
            + (f"; {hellos} node HELLOs not answered (node spools keep their records)" if hellos else "")
        )
    for loss in reply.get("store_losses") or []:
        where = f"moved to {loss['moved_to']}" if loss.get("moved_to") else "nothing left to move aside"
        say(
            f"STORE LOST at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(loss['at']))}: {loss['why']} "
            f"({where}); a fresh store was started"
        )


def _print_system(reply: dict) -> None:
    """The system sampler (agent/system/sampler.py ``status``): cadence, samples, its own CPU cost, GPUs."""
    sy = reply.get("system")
    if not sy:  # a root, or an agent with RANKWISE_SYSTEM_INTERVAL=0
        return
    per = sy.get("cpu_s_per_sample")
    cost = f", {per * 1000:.1f} ms CPU a sample" if per is not None else ""
    failed = f", {sy['failures']} failed" if sy.get("failures") else ""
    say(
        f"system sampler: every {sy['interval_s']:g} s, {sy['samples']} samples ({sy['rows']} rows){cost}{failed}; "
        f"GPUs: {sy['gpu']}"
    )


def _print_links(reply: dict) -> None:
    """A node agent: its upstream (lag, spool, retries, drops). A root: the node agents it hears from."""
    up = reply.get("upstream")
    if up:
        state = "connected" if up.get("connected") else "NOT connected (the spool keeps everything)"
        say(
            f"upstream {up['endpoint']} ({state}): lag {up['lag_s']:.1f}s, {up['unacked_records']} record(s) "
            f"unacknowledged, spool {byte_size(up['spool_bytes'])} of {byte_size(up['spool_quota_bytes'])}, "
            f"{up['retries']} retries, {up['resent_records']} records resent"
        )
        drops = dict(up.get("drops") or {})
        held = reply.get("counters", {}).get("deferred_spool_full", 0)
        say(
            "upstream drops by cause: "
            + (", ".join(f"{v} {k}" for k, v in drops.items()) or "0")
            + (f"; {held} client batches held back while the spool was full" if held else "")
        )
        for q in up.get("quarantined") or []:
            say(f"  quarantined spool segment: {q}")
    links = reply.get("links")
    if links is not None:
        listen = reply.get("listen") or {}
        refused = listen.get("refused") or {}
        auth = {"keys": "Curve", "same user": "Curve, same user only", "none": "no Curve"}.get(
            listen.get("auth"), "Curve" if listen.get("curve") else "no Curve"
        )
        say(
            f"node agents on {listen.get('endpoint', '?')} ({auth}): "
            f"{len(links)}; refused connections: " + (", ".join(f"{v} {k}" for k, v in refused.items()) or "0")
        )
        if "connections" in listen:
            say(
                f"connections: {listen['connections']} of at most {listen['max_connections'] or 'any'} "
                f"(peak {listen['peak_connections']}); partial frames can pin at most "
                f"{byte_size(listen['max_bytes_in_flight'])} ({byte_size(listen['max_frame_bytes'])} per connection)"
            )
        if links:
            rows = [
                [
                    lk["agent"],
                    lk["node"],
                    lk["applied"],
                    lk["stored"],
                    lk["lost_records"],
                    "-" if lk["last_heard_s"] is None else f"{lk['last_heard_s']:.1f}s",
                ]
                for lk in links
            ]
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
