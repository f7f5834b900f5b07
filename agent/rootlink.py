"""The root's TCP socket for node agents: authentication, the link protocol, de-duplication.

``rankwise agent --listen tcp://HOST:PORT`` binds a ROUTER socket there. With
``--curve-secret`` and ``--allow`` it is a CurveZMQ server that admits only the
allow-listed node keys (agent/keys.py). Without keys on a loopback address it is
a CurveZMQ server with a key pair only its user can read (agent/localkeys.py):
node agents of the same user on this machine connect, nobody else. Plain TCP
only with ``--insecure``. At most ``root_max_connections``
(``RANKWISE_ROOT_MAX_CONNECTIONS``) connections at once; more are shut at accept.

Per node agent (its stable id, from its HELLO) the root keeps the last record
seq it applied and the last it stored. A record at or below the applied seq is
a duplicate (answered with the stored seq once committed); a record whose
``p`` (the node's previous record) is above the applied seq is a gap (frames lost
with a connection: ``rnack``, the node rewinds); otherwise it is applied, and
records the node declares lost (``p`` below ``seq - 1``: a corrupt spool
segment) are counted as the drop cause ``node_records_lost``. A record that
does not decode is kept in ``$RANKWISE_DIR/quarantine/`` and counted, and
acknowledged so that the node moves on: it can never stall the link. Every
malformed frame is counted by cause; nothing a peer sends stops the root.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

from agent import linkwire as lw
from agent import localkeys
from agent.config import AgentConfig
from agent.malformed import malformed_cause
from agent.nextcommit import LINK_PREFIX
from agent.root import Link, Root
from agent.storehealth import is_store_error
from client.errors import Error, ProtocolError

log = logging.getLogger("rankwise.agent")


class RootLink:
    def __init__(self, ctx: Any, ingest: Root, cfg: AgentConfig):
        import zmq

        from agent import keys

        self.ingest = ingest
        self.cfg = cfg
        self.zap: keys.ZapHandler | None = None
        self.monitor: keys.HandshakeMonitor | None = None
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        # the link protocol's frame limit: each connection pins at most one partial frame of this size, and
        # there are at most root_max_connections of them
        sock.setsockopt(zmq.MAXMSGSIZE, lw.MAX_LINK_FRAME)
        sock.setsockopt(zmq.RCVHWM, 10000)
        self.same_user: tuple[bytes, bytes] | None = None  # the key pair of a keyless loopback root
        loopback = localkeys.loopback_endpoint(cfg.listen)
        if cfg.curve_secret:
            public, secret = keys.load_secret(cfg.curve_secret)
            self.zap = keys.ZapHandler(ctx, keys.AllowList(cfg.curve_allow))
            keys.curve_server(sock, public, secret)
        elif loopback is not None and not cfg.insecure:
            # no ZAP handler: any client that knows this public key (only our user can read it) is admitted
            self.same_user = localkeys.root_pair(loopback[1])
            sock.curve_publickey, sock.curve_secretkey = self.same_user
            sock.curve_server = True
        self.monitor = keys.HandshakeMonitor(sock, cfg.root_max_connections)
        try:
            sock.bind(cfg.listen)
        except zmq.ZMQError as exc:
            self.close()
            sock.close(linger=0)
            raise OSError(f"--listen {cfg.listen}: cannot bind ({exc})") from None
        self.sock = sock
        self.endpoint = sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        port = int(self.endpoint.rsplit(":", 1)[1])
        self.monitor.port = port
        self.key_file = None
        if self.same_user is not None:
            try:
                self.key_file = localkeys.publish(port, *self.same_user)
            except (OSError, Error) as exc:
                self.close()
                sock.close(linger=0)
                raise OSError(
                    f"--listen {cfg.listen}: cannot write the same-user link key ({exc}); set "
                    "RANKWISE_LINK_DIR to a private directory, or give keys (docs/multinode.md)"
                ) from None
            log.info("root on %s admits node agents of this user only (key in %s)", self.endpoint, self.key_file)
        self.malformed = 0
        self._by_peer: dict[bytes, str] = {}

    def __repr__(self) -> str:
        auth = "keys" if self.zap is not None else "same-user" if self.same_user is not None else "none"
        return f"<RootLink {self.endpoint} links={len(self.ingest.links)} auth={auth} {self.monitor!r}>"

    def sockets(self) -> list[Any]:
        return [
            s
            for s in (self.sock, self.zap.sock if self.zap else None, self.monitor.sock if self.monitor else None)
            if s
        ]

    # ------------------------------------------------------------ loop

    def handle(self, events: dict, max_frames: int = 4000) -> None:
        import zmq

        if self.zap is not None and self.zap.sock in events:
            self.zap.handle()
        if self.monitor is not None and self.monitor.sock in events:
            self.monitor.handle()
        if self.sock not in events:
            return
        now = time.time()
        for _ in range(max_frames):
            try:
                parts = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(parts) != 2:
                self._bad("frame of wrong shape", ProtocolError(f"{len(parts)} parts"))
                continue
            peer, frame = parts
            self.ingest.last_message = time.monotonic()
            try:
                for reply in self._on_frame(peer, frame, now):
                    self.send(peer, reply)
            except ProtocolError as exc:
                self._bad(malformed_cause(str(exc)), exc)
            except Exception as exc:
                self._bad(f"internal error: {type(exc).__name__}", exc, trace=True)

    def _bad(self, cause: str, exc: Exception, trace: bool = False) -> None:
        self.malformed += 1
        self.ingest._count_malformed("link: " + cause)
        if self.malformed <= 20:
            log.warning("malformed link frame ignored: %s", exc, exc_info=trace)

    def _on_frame(self, peer: bytes, frame: bytes, now: float) -> list[bytes]:
        kind, body = lw.unpack(frame)
        ingest = self.ingest
        if kind == lw.NHELLO:
            agent = lw.read_agent_id(body)
            link = ingest.links.get(agent)
            if link is None:
                try:
                    seq = ingest.store.writer_seq(LINK_PREFIX + agent)
                except Exception as exc:
                    if not is_store_error(exc):
                        raise
                    # the store cannot say where this node got to (ClickHouse down): no WELCOME; it says HELLO
                    # again, and its records wait in its spool meanwhile
                    ingest.counters.add("held_hellos")
                    ingest.ingest.health.failed(exc, ingest.ingest.uncommitted_bytes(), hold_lost=True)
                    return []
                link = ingest.links[agent] = Link(agent, seq, seq, synced=seq)
                log.info("node agent %s (%s) connected", agent, body.get("n"))
            link.peer = peer
            link.heard = time.monotonic()
            self._by_peer[peer] = agent
            ingest.counters.add("link_hellos")
            # "next" lets the node go on sending after what this root applied; only "acked" (committed and
            # fsynced) may be deleted from its spool: applied records die with the root if it dies now
            welcome = {"next": link.applied + 1, "acked": link.synced, "root": ingest.instance}
            if isinstance(body.get("h"), int):
                welcome["h"] = body["h"]
            return [lw.pack(lw.NWELCOME, welcome)]
        link = ingest.links.get(self._by_peer.get(peer, ""))
        if link is None or link.peer != peer:
            if kind in (lw.REC, lw.STATE, lw.LOOKUP):
                return [lw.pack(lw.RNACK, {"reason": "unknown-agent"})]
            raise ProtocolError(f"unexpected link message kind {kind!r} from a node")
        link.heard = time.monotonic()
        if kind == lw.REC:
            return self._record(link, body, now)
        if kind == lw.LOOKUP:
            writer = lw.need(body, "q", str)
            run, wseq = ingest.lookup(lw.need(body, "p", str), lw.need(body, "g", str), lw.need(body, "n", str), writer)
            return [lw.pack(lw.FOUND, {"q": writer, "run": run, "ws": wseq})]
        if kind == lw.STATE:
            link.state = (lw.seq_field(body, "as_of"), lw.names(body.get("m"), 3, "m"))
            ingest.apply_state(link)
            return []
        raise ProtocolError(f"unexpected link message kind {kind!r} from a node")

    def _record(self, link: Link, body: dict, now: float) -> list[bytes]:
        ingest = self.ingest
        seq = lw.seq_field(body, "s", 1)
        prev = lw.seq_field(body, "p")
        payload = lw.need(body, "d", bytes)
        if seq <= link.applied:
            ingest.counters.add("duplicate_records")
            return [ingest_ack(link)] if seq <= link.synced else []  # else its ack is held for the fsync
        if prev > link.applied or prev >= seq:
            ingest.counters.add("record_gaps")
            return [lw.pack(lw.RNACK, {"expect": link.applied + 1})]
        health = ingest.ingest.health
        if health.trouble is not None and ingest.ingest.next_commit:
            # the store refuses commits (ClickHouse down, disk full): apply nothing more while the pending commit
            # is retried (with nothing pending, the record is applied: it is the probe that finds the store back).
            # The record stays in the node's spool (counted in its `rankwise status`), resent after a gap NACK or
            # a HELLO
            ingest.counters.add("held_records")
            return []
        lost = seq - link.applied - 1
        if lost:
            # the node says records in between are gone (a quarantined spool segment, or a root that lost
            # acknowledged records): counted, never silent
            link.lost += lost
            ingest.next_commit.drops["node_records_lost"] = ingest.next_commit.drops.get("node_records_lost", 0) + lost
            ingest.counters.drop("node_records_lost", lost)
            log.error("node agent %s: records %d..%d are lost", link.agent, link.applied + 1, seq - 1)
        try:
            ingest.apply_record(link, seq, payload, now)
        except Exception as exc:  # malformed, or breaking something: kept aside, counted, acknowledged, never resent
            if is_store_error(exc):
                # the store failed under an op (a registration while ClickHouse is down): not applied, not
                # acknowledged; resent later. Ops before it are batches the writers' seqs de-duplicate
                ingest.counters.add("held_records")
                health.failed(exc, ingest.ingest.uncommitted_bytes(), hold_lost=True)  # status and log say so
                return []
            self._quarantine(link, seq, payload, exc)
            ingest.next_commit.links[link.agent] = seq
        link.applied = seq
        ingest.apply_state(link)
        return []

    def _quarantine(self, link: Link, seq: int, payload: bytes, exc: Exception) -> None:
        ingest = self.ingest
        ingest.counters.add("records_quarantined")
        ingest.next_commit.drops["node_record_malformed"] = ingest.next_commit.drops.get("node_record_malformed", 0) + 1
        ingest.counters.drop("node_record_malformed", 1)
        directory = self.cfg.data_dir / "quarantine"
        name = re.sub(r"[^A-Za-z0-9._-]", "_", link.agent) + f"-{seq}.rec"
        try:
            directory.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
        except OSError:
            pass
        log.error(
            "record %d of node agent %s cannot be applied (%s); kept in %s",
            seq,
            link.agent,
            exc,
            directory / name,
            exc_info=not isinstance(exc, ProtocolError),
        )

    def flush(self, force: bool = False) -> None:
        """Acknowledge what the commits stored, once it is on disk (Root.durable_link_acks)."""
        for peer, frame in self.ingest.durable_link_acks(force):
            self.send(peer, frame)

    def send(self, peer: bytes, frame: bytes) -> None:
        import zmq

        try:
            self.sock.send_multipart([peer, frame], zmq.NOBLOCK)
        except zmq.ZMQError:  # the node went away: it asks again
            self.ingest.counters.add("link_replies_dropped")

    def status(self) -> dict[str, Any]:
        # a refused key fails the handshake too ("auth"): counted once, by the ZAP handler
        refused = {k: v for k, v in (self.monitor.failed if self.monitor else {}).items() if k != "auth"}
        if self.zap is not None:
            refused["not_allowed"] = self.zap.refused
        auth = "keys" if self.zap is not None else "same user" if self.same_user is not None else "none"
        conns = self.monitor.status() if self.monitor else {}
        return {
            "endpoint": self.endpoint,
            "curve": auth != "none",
            "auth": auth,
            "refused": refused,
            "allowed_handshakes": self.zap.allowed if self.zap else None,
            **conns,
            "max_frame_bytes": lw.MAX_LINK_FRAME,
            # what partial frames can pin at most: ZeroMQ does not say how much of a frame has arrived
            "max_bytes_in_flight": conns.get("connections", 0) * lw.MAX_LINK_FRAME,
        }

    def close(self) -> None:
        if getattr(self, "key_file", None) is not None:
            localkeys.withdraw(self.key_file)
            self.key_file = None
        for part in (self.zap, self.monitor):
            if part is not None:
                part.close()
        sock = getattr(self, "sock", None)
        if sock is not None:
            sock.close(linger=0)


def ingest_ack(link: Link) -> bytes:
    from agent.root import record_ack

    return record_ack(link.synced, [])
