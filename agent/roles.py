"""The agent's three roles, set up from its configuration. One program:

* **single** (neither ``--listen`` nor ``--upstream``): the node agent stores into
  ``$RANKWISE_DIR/store.sqlite`` itself — everything on one machine (or into the store ``RANKWISE_STORE``
  / ``--store`` names: a ClickHouse server or cluster, agent/store/open.py);
* **root** (``--listen tcp://HOST:PORT``): the same, plus a TCP socket that node
  agents forward to (agent/root.py, agent/rootlink.py);
* **node** (``--upstream tcp://HOST:PORT`` or ``RANKWISE_UPSTREAM``): no store;
  commits go to a write-ahead spool (``$RANKWISE_DIR/spool``) and from there to
  the root (agent/node.py, agent/upstream.py). A small catalog
  (``$RANKWISE_DIR/node.sqlite``) remembers runs and writers across restarts.

Ranks never know which role their agent has: they talk to it over ipc as always.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from typing import Any, NamedTuple, Protocol

from agent.config import AgentConfig
from client.errors import InvalidArgumentError

log = logging.getLogger("rankwise.agent")


class Link(Protocol):
    """A socket of the agent's besides its clients' (a root's node link, a node agent's upstream), as the
    loop drives it (agent/loop.py): its sockets are polled with the clients' one, ``handle`` gets what each
    poll returned, ``flush`` runs after each commit (``force``: at shutdown), ``close`` at the end."""

    def sockets(self) -> list: ...

    def handle(self, events: dict) -> None: ...

    def flush(self, force: bool = False) -> None: ...

    def close(self) -> None: ...


class Started(NamedTuple):
    ingest: Any  # agent.ingest.Ingest
    links: list[Link]
    info: dict  # what agent.json says of the role, besides pid and endpoint
    where: str  # the start-up log line's words for it


class UpstreamLink:
    """A node agent's upstream (agent/upstream.py) as the loop drives it."""

    def __init__(self, upstream: Any, flush_s: float):
        self.upstream = upstream
        self.flush_s = flush_s  # at shutdown: how long the root may take to take what the spool holds

    def __repr__(self) -> str:
        return f"<UpstreamLink {self.upstream!r}>"

    def sockets(self) -> list:
        return [self.upstream.sock]

    def handle(self, events: dict) -> None:
        if self.upstream.sock in events:
            self.upstream.handle()

    def flush(self, force: bool = False) -> None:
        if force:
            flush_upstream(self.upstream, self.flush_s)
        else:
            self.upstream.pump()

    def close(self) -> None:
        self.upstream.close()


def start(cfg: AgentConfig, ctx: Any) -> Started:
    """The agent's ingest and its links, as its configuration says (module docstring)."""
    return start_node(cfg, ctx) if cfg.upstream else start_store(cfg, ctx)


def start_store(cfg: AgentConfig, ctx: Any) -> Started:
    """A single agent or, with ``listen``, a root (its node link: the one link)."""
    from agent.ingest import Ingest
    from agent.media import MediaSink, MediaStore
    from agent.plugged import plug
    from agent.store.open import open_store

    if cfg.listen:
        check_listen(cfg)
    # SQLite by default; RANKWISE_STORE / --store may name a ClickHouse server or cluster (docs/scale.md)
    store = open_store(cfg.store_spec, cfg.wal_max_bytes)
    # content-addressed files beside the store; fsync like the store's synchronous=NORMAL: a crash
    # never leaves a torn file (write, then rename), a power loss may lose the newest
    media = MediaSink(MediaStore(cfg.media_dir, fsync=False), bytes_per_s=cfg.media_bytes_per_s)
    if not cfg.listen:
        ingest = Ingest(store, cfg, node=cfg.node_name or None, media=media)
        plug(ingest, "single")
        ingest.recover()
        return Started(ingest, [], {}, f"store {cfg.store_label}")
    from agent.root import Root
    from agent.rootlink import RootLink

    root = Root(store, cfg, node=cfg.node_name or None, media=media)
    root.recover()
    try:
        link = RootLink(ctx, root, cfg)
    except Exception:
        store.close()
        raise
    root.link_status = link.status
    where = f"store {cfg.store_label}, node agents on {link.endpoint}"
    return Started(root.ingest, [link], {"role": "root", "listen": link.endpoint}, where)


def check_listen(cfg: AgentConfig) -> None:
    """Plain TCP is for loopback only, unless the operator says ``--insecure``."""
    host = str(cfg.listen)[len("tcp://") :].rsplit(":", 1)[0].strip("[]")
    if cfg.curve_secret:
        return
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        # agent/localkeys.py: a keyless loopback root is a Curve server with a key only its user can read
        log.info("root listening on %s with a same-user key (agent/localkeys.py): this machine only", cfg.listen)
        return
    if not cfg.insecure:
        raise InvalidArgumentError(
            f"--listen {cfg.listen} without --curve-secret/--allow would accept anyone who can reach the port; "
            "create keys with rankwise keygen (docs/multinode.md) or pass --insecure"
        )
    log.warning("root listening on %s without Curve keys (--insecure): anyone reaching the port can write", cfg.listen)


def start_node(cfg: AgentConfig, ctx: Any) -> Started:
    """A forwarding node agent (its upstream: the one link)."""
    from agent import keys
    from agent.node import node_ingest
    from agent.spool import Spool
    from agent.store.sqlite import SQLiteStore
    from agent.upstream import Upstream

    curve = None
    if cfg.curve_secret:
        public, secret = keys.load_secret(cfg.curve_secret)
        curve = (public, secret, keys.load_public(cfg.root_key or ""))
    spool = Spool(
        cfg.data_dir / "spool",
        segment_bytes=cfg.spool_segment_bytes,
        fsync_interval_s=cfg.spool_fsync_s,
        quota_bytes=cfg.spool_quota_bytes,
    )
    for what in spool.counters.quarantined:
        log.error("spool segment quarantined (its records are lost, the root counts them): %s", what)
    catalog = SQLiteStore(cfg.data_dir / "node.sqlite")
    ingest = node_ingest(catalog, cfg, spool, node=cfg.node_name or None)
    ingest.recover()
    up = Upstream(
        ctx,
        str(cfg.upstream),
        spool,
        agent_id(spool, ingest.node),
        ingest.instance,
        ingest.node,
        curve=curve,
        retry_after_s=cfg.upstream_retry_s,
    )
    up.on_found = ingest.found
    up.on_done = ingest.root_done
    up.watermarks = ingest.sink.watermarks  # type: ignore[attr-defined]
    ingest.upstream = up
    if spool.unacked:
        log.info("spool holds %d record(s) not yet acknowledged by the root; sending them first", spool.unacked)
    info = {"role": "node", "upstream": cfg.upstream, "store": None}
    return Started(ingest, [UpstreamLink(up, cfg.shutdown_flush_s)], info, f"forwarding to {cfg.upstream}")


def agent_id(spool: Any, node: str) -> str:
    """This node agent's stable id: kept beside its spool, so that its record seqs mean the same after a
    restart (the root de-duplicates by (agent id, seq)). A spool with no trace of any record (new, or its
    files lost) gets a new id: its seqs start again at 1 and must not meet the old ones at the root."""
    path = spool.dir / "agent.id"
    try:
        text = path.read_text().strip()
        if text and spool.last_seq > 0:
            return text
    except FileNotFoundError:
        pass
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in node)[:80] or "node"
    text = f"{safe}-{os.urandom(4).hex()}"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return text


def flush_upstream(upstream: Any, timeout_s: float) -> None:
    """At shutdown: give the root a moment to take what the spool holds (the rest waits for the next start)."""
    import zmq

    deadline = time.monotonic() + timeout_s
    upstream.spool.maybe_fsync(force=True)
    while upstream.spool.unacked and time.monotonic() < deadline:
        upstream.pump()
        if upstream.sock.poll(20, zmq.POLLIN):
            upstream.handle()
