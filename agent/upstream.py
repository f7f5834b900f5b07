"""A node agent's link to the root: spool records go up in order, acknowledged ones are deleted.

The same scheme as a client's link to its agent (client/link.py), with the
spool in place of the in-memory unacknowledged batches:

* a DEALER socket with ``ZMQ_IMMEDIATE`` (nothing queued for a root that is not
  there), ``ZMQ_MAXMSGSIZE``, CurveZMQ when keys are configured;
* ``nhello`` → ``nwelcome {next, acked}``: the root says which record it expects
  (the one after the last it applied) and through which one it has committed and
  fsynced (it stores the last record seq in the same transaction as the record's
  data). Sending resumes at ``next``; only records through ``acked`` are deleted
  from the spool: what was applied but not yet durable dies with a root killed
  now, and the next root's ``next`` rewinds to it.
  Every ``nhello`` carries a number the ``nwelcome`` echoes, so only the answer to
  the latest one counts;
* records are sent in seq order while the bytes in flight stay under a window;
  ``rack {s}`` (sent after the root's commit and fsync) deletes whole spool segments
  through ``s``; ``rnack {expect}`` (a gap: frames lost with a connection)
  rewinds, at most once per retry period;
* no acknowledgement for ``retry_after_s`` while records are in flight (or no
  welcome): ``nhello`` again, backing off to 10 s. The root restarting, being
  unreachable or not started yet all look like this; the spool keeps the data
  meanwhile (bounded by its quota).

Records read back after a restart or an outage come from the segment files, in
one sequential pass; recent ones from a bounded cache. ``status()`` is what
``rankwise status`` shows per upstream: lag (age of the oldest unacknowledged
record), spool bytes, retries, records lost and why.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from agent import linkwire as lw
from agent import localkeys
from agent.nonblocking import queued
from agent.spool import Spool
from client.errors import ProtocolError

log = logging.getLogger("rankwise.agent")


class Upstream:
    def __init__(
        self,
        ctx: Any,
        endpoint: str,
        spool: Spool,
        agent_id: str,
        instance: str,
        node: str,
        curve: tuple[bytes, bytes, bytes] | None = None,
        retry_after_s: float = 2.0,
        window_bytes: int = 64 << 20,
        cache_bytes: int = 64 << 20,
    ):
        import zmq

        self.endpoint = endpoint
        self.spool = spool
        self.agent_id = agent_id
        self.instance = instance
        self.node = node
        self.retry_after_s = retry_after_s
        self.window_bytes = window_bytes
        self.cache_bytes = cache_bytes
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, lw.MAX_LINK_FRAME)
        self.sock.setsockopt(zmq.IMMEDIATE, 1)
        self.sock.setsockopt(zmq.RECONNECT_IVL, 100)
        self.sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        self.sock.setsockopt(zmq.SNDHWM, 100000)
        # no keys given and the root on loopback: the root's same-user key (agent/localkeys.py), read when
        # it is published (the root may start later) and again when it changes; never plain TCP, which
        # another user's process listening on that port first would receive
        self.same_user = curve is None and localkeys.loopback_endpoint(endpoint) is not None
        self._server_key: bytes | None = None
        self._keys_checked_at = -1e9
        self._connected_to: str | None = None
        if curve is not None:
            from agent.keys import curve_client

            curve_client(self.sock, *curve)
        elif self.same_user:
            self.sock.curve_publickey, self.sock.curve_secretkey = zmq.curve_keypair()
        # callbacks into the node's ingest
        self.on_found: Callable[[str, dict | None, int], None] = lambda w, r, s: None
        self.on_done: Callable[[list], None] = lambda names: None
        self.watermarks: Callable[[], list] = lambda: []
        self.welcomed = False
        self.root: str | None = None  # the root instance that welcomed us
        self._hello_n = 0
        self._hello_pending = True
        self._hello_at = -1e9
        self._retry = retry_after_s
        self._progress_at = time.monotonic()
        self.heard_at = time.monotonic()  # the root's last frame of any kind (a node agent's linger counts from it)
        self._next = spool.acked_seq + 1  # next record to send
        self._prev: int | None = None  # the "p" of the next record sent (None: the seq before it)
        self._inflight: collections.OrderedDict[int, int] = collections.OrderedDict()  # seq -> bytes
        self._inflight_bytes = 0
        self._cache: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._cached = 0
        self._disk: Iterator[tuple[int, bytes]] | None = None
        self._disk_next = 0
        self._gap_at = (0, 0.0)
        self._appended_at: collections.deque[tuple[int, float]] = collections.deque()
        if spool.unacked:
            self._appended_at.append((spool.acked_seq + 1, time.time()))  # left by an earlier agent: age unknown
        self.counters: collections.Counter[str] = collections.Counter()
        if self.same_user:
            self._same_user_key(time.monotonic())
        else:
            self._connect()

    def __repr__(self) -> str:
        return (
            f"<Upstream {self.endpoint} {'welcomed' if self.welcomed else 'waiting'} next={self._next} "
            f"inflight={len(self._inflight)} spool={self.spool!r}>"
        )

    @property
    def ready(self) -> bool:
        """Welcomed and answering: worth waiting a moment for (HELLO lookups)."""
        return self.welcomed and time.monotonic() - self._progress_at < self.retry_after_s

    # ------------------------------------------------------------ from the node's loop

    def appended(self, seq: int, payload: bytes) -> None:
        self._appended_at.append((seq, time.time()))
        if len(payload) <= self.cache_bytes:
            self._cache[seq] = payload
            self._cached += len(payload)
            while self._cached > self.cache_bytes:
                _, old = self._cache.popitem(last=False)
                self._cached -= len(old)

    def lookup(self, writer: str, project: str, group: str, name: str) -> None:
        self._send(lw.pack(lw.LOOKUP, {"q": writer, "p": project, "g": group, "n": name}))

    def handle(self) -> None:
        """Everything the root sent."""
        for frame in queued(self.sock.recv):
            self.heard_at = time.monotonic()
            try:
                kind, body = lw.unpack(frame)
                self._dispatch(kind, body)
            except ProtocolError as exc:
                self.counters["malformed_replies"] += 1
                if self.counters["malformed_replies"] <= 5:
                    log.warning("malformed frame from the root ignored: %s", exc)

    def _dispatch(self, kind: str, body: dict) -> None:
        now = time.monotonic()
        if kind == lw.RACK:
            self._on_ack(lw.seq_field(body, "s"), now)
            done = body.get("done")
            if done:
                self.on_done(lw.names(done, 2, "done"))
        elif kind == lw.NWELCOME:
            if body.get("h") != self._hello_n:
                return  # the answer to an older HELLO
            expect = lw.seq_field(body, "next", 1)
            # records the root applied but has not yet made durable are not resent, and not deleted either:
            # if the root dies before its commit and fsync, the next root's "next" rewinds to them
            acked = min(lw.seq_field(body, "acked"), expect - 1)
            self.root = body.get("root") if isinstance(body.get("root"), str) else None
            if acked > self.spool.acked_seq:
                self._ack_spool(acked)
            self._inflight.clear()
            self._inflight_bytes = 0
            self._rewind(max(expect, self.spool.acked_seq + 1), expect - 1)
            self.welcomed = True
            self._progress_at = now
            self._retry = self.retry_after_s
            self.counters["welcomes"] += 1
            self._send(lw.pack(lw.STATE, {"as_of": self.spool.last_seq, "m": self.watermarks()}))
        elif kind == lw.RNACK:
            if body.get("reason") == "unknown-agent":
                self._hello_pending = True
                return
            expect = lw.seq_field(body, "expect", 1)
            last_from, last_at = self._gap_at
            if expect == last_from and now - last_at < self._retry:
                return
            self._gap_at = (expect, now)
            self.counters["gaps"] += 1
            self._inflight.clear()
            self._inflight_bytes = 0
            self._rewind(max(expect, self.spool.acked_seq + 1), expect - 1)
        elif kind == lw.FOUND:
            writer = lw.need(body, "q", str)
            run = body.get("run")
            ws = body.get("ws")
            self.on_found(writer, run if isinstance(run, dict) else None, ws if isinstance(ws, int) else 0)
        elif kind == lw.REFUSE:
            self.counters["refused"] += 1
            log.error("the root refused this node agent: %s", body.get("error"))

    def _on_ack(self, seq: int, now: float) -> None:
        if seq <= self.spool.acked_seq:
            return
        self._ack_spool(seq)
        self._progress_at = now
        self._retry = self.retry_after_s
        while self._inflight and next(iter(self._inflight)) <= seq:
            _, n = self._inflight.popitem(last=False)
            self._inflight_bytes -= n
        if self._next <= seq:
            self._rewind(seq + 1, seq)

    def _ack_spool(self, seq: int) -> None:
        before = self.spool.acked_seq
        self.spool.ack(seq)
        self.counters["records_acked"] += self.spool.acked_seq - before
        while self._cache and next(iter(self._cache)) <= seq:
            _, old = self._cache.popitem(last=False)
            self._cached -= len(old)
        while self._appended_at and self._appended_at[0][0] <= seq:
            self._appended_at.popleft()
        if self.spool.unacked and not self._appended_at:
            self._appended_at.append((seq + 1, time.time()))

    def _rewind(self, seq: int, prev: int) -> None:
        if seq < self._next:
            self.counters["records_resent"] += self._next - seq
        self._next = seq
        self._prev = prev

    # ------------------------------------------------------------ connecting

    def _connect(self) -> None:
        if self._connected_to is not None:
            self.sock.disconnect(self._connected_to)
        self.sock.connect(self.endpoint)
        self._connected_to = self.endpoint

    def _same_user_key(self, now: float) -> None:
        """(Re)connect with the root's published same-user key when it appears or changes (twice a second)."""
        if now - self._keys_checked_at < 0.5:
            return
        self._keys_checked_at = now
        ep = localkeys.loopback_endpoint(self.endpoint)
        found = localkeys.read(ep[1]) if ep else None
        if found is None or found[0] == self._server_key:
            return
        self._server_key = found[0]
        self.sock.curve_serverkey = found[0]
        self.counters["same_user_keys"] += 1
        self._connect()

    def reconnect(self, endpoint: str) -> None:
        """Talk to the root at ``endpoint`` from now on (its key read again)."""
        self.endpoint = endpoint
        self._server_key = None
        self._keys_checked_at = -1e9
        if self.same_user:
            self._same_user_key(time.monotonic())
        else:
            self._connect()

    # ------------------------------------------------------------ sending

    def pump(self) -> None:
        """Say HELLO when due, then send what the window allows."""
        now = time.monotonic()
        if self.welcomed and not self._inflight and self.spool.acked_seq >= self._next - 1:
            self._progress_at = now  # nothing asked of the root: its silence means nothing
        # (records a welcome said were applied but not yet durable are still asked: if their acknowledgement
        # is lost, silence makes this node say HELLO again, and the welcome names how far the root got)
        elif now - max(self._progress_at, self._hello_at) >= self._retry:
            if self.welcomed or self._hello_n:
                self.counters["retries"] += 1
            self._retry = min(self._retry * 2, 10.0)
            self.welcomed = False
            self._hello_pending = True
        if self.same_user and not self.welcomed:
            self._same_user_key(now)
        if self._hello_pending:
            self._say_hello(now)
        if not self.welcomed:
            return
        # only fsynced records leave: after a power failure this node must not forget a record the root has
        while self._inflight_bytes < self.window_bytes and self._next <= self.spool.durable_seq:
            got = self._read(self._next)
            if got is None:
                return
            seq, payload = got
            prev = self._prev if self._prev is not None else seq - 1
            if not self._send(lw.pack(lw.REC, {"s": seq, "p": min(prev, seq - 1), "d": payload})):
                return
            if seq in self._inflight:
                self._inflight_bytes -= self._inflight.pop(seq)
            self._inflight[seq] = len(payload)
            self._inflight_bytes += len(payload)
            self.counters["records_sent"] += 1
            self._next = seq + 1
            self._prev = seq

    def _say_hello(self, now: float) -> None:
        self._hello_n += 1
        body = {"a": self.agent_id, "i": self.instance, "n": self.node, "h": self._hello_n}
        if self._send(lw.pack(lw.NHELLO, body)):
            self._hello_pending = False
            self._hello_at = now
            self.counters["hellos"] += 1
        else:
            self._hello_n -= 1

    def _read(self, seq: int) -> tuple[int, bytes] | None:
        """The record with ``seq`` or, if a quarantined segment left a hole, the first one after it."""
        payload = self._cache.get(seq)
        if payload is not None:
            return seq, payload
        try:
            if self._disk is None or self._disk_next != seq:
                self._disk = self.spool.replay(after_seq=seq - 1)
            got = next(self._disk, None)
        except OSError:  # a segment deleted under the reader (acknowledged meanwhile): start over next turn
            got = None
        if got is None:
            self._disk = None
            return None
        self._disk_next = got[0] + 1
        return got

    def _send(self, frame: bytes) -> bool:
        import zmq

        try:
            self.sock.send(frame, zmq.NOBLOCK)
            return True
        except zmq.Again:  # no live connection (ZMQ_IMMEDIATE) or the queue is full: later
            return False

    # ------------------------------------------------------------ status

    def lag_s(self) -> float:
        return 0.0 if not self._appended_at else max(0.0, time.time() - self._appended_at[0][1])

    def status(self) -> dict[str, Any]:
        sc = self.spool.counters
        drops = {}
        if sc.quarantined:
            drops["spool_quarantined_segments"] = len(sc.quarantined)
        return {
            "endpoint": self.endpoint,
            "auth": "keys" if not self.same_user else "same user" if self._server_key else "waiting for the root's key",
            "agent_id": self.agent_id,
            "connected": self.ready,
            "root": self.root,
            "lag_s": self.lag_s(),
            "unacked_records": self.spool.unacked,
            "spool_bytes": self.spool.nbytes,
            "spool_quota_bytes": self.spool.quota_bytes,
            "acked_seq": self.spool.acked_seq,
            "last_seq": self.spool.last_seq,
            "retries": self.counters["retries"],
            "resent_records": self.counters["records_resent"],
            "quota_full": sc.quota_full,
            "quarantined": list(sc.quarantined),
            "drops": drops,
            "counters": dict(self.counters),
        }

    def close(self) -> None:
        self.sock.close(linger=0)
