"""How an agent answers a HELLO: at once, or once its upstream (a root) has said what it knows of the run.

:meth:`Hellos.answer` registers the writer (and its run: agent/registry.py), tells the sink and
answers WELCOME (with the ACK of what the writer already had stored) or REFUSE. A node agent's HELLO for a run it has never seen (an elastic restart on another node, a new node
agent) waits for the root's view of the run (its resume point), at most ``lookup_timeout_s``; it is
asked as soon as the link to the root is up (the node agent may have just been started by that very
rank). Without an answer in time the HELLO is answered from what the node knows. An agent without an
upstream (a single agent, a root) holds nothing. The root's other answer lands here too: groups every
rank of which has joined somewhere (``root_done``), so that the node stops waiting for unseen ranks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from client import wire
from client.errors import ProtocolError

if TYPE_CHECKING:
    from agent.ingest import Ingest
    from agent.runs import WriterState

Reply = tuple[bytes, bytes]

_ADOPTED = (
    ("state", str),
    ("step", int),
    ("runtime", float),
    ("rows", int),
    ("incarnations", int),
    ("pid", int),
    ("node", str),
    ("summary", dict),
    ("config", dict),
)


class Hellos:
    def __init__(self, ingest: Ingest):
        self.ingest = ingest
        # writer -> (peer, HELLO, body, deadline, asked): HELLOs of runs this node does not know, awaiting the root
        self.parked: dict[str, tuple[bytes, wire.Hello, dict, float, bool]] = {}

    def __repr__(self) -> str:
        return f"<Hellos parked={len(self.parked)}>"

    def holds(self, peer: bytes, h: wire.Hello, body: dict) -> bool:
        """Park ``h`` until the root answers (True), or let the agent answer it now (False)."""
        old = self.parked.get(h.writer)
        if old is not None:  # the same HELLO again (the client's retry): answer its latest copy, same deadline
            self.parked[h.writer] = (peer, h, body, old[3], old[4])
            return True
        ingest = self.ingest
        if h.writer in ingest.writers or self.ingest.upstream is None or not self._unknown(h, body):
            return False
        # wait for the root's view of the run (asked now, or once the link is up: a node agent that was
        # just started by this very rank is not connected yet), at most lookup_timeout_s in all
        self.parked[h.writer] = (peer, h, body, ingest.clock() + ingest.cfg.lookup_timeout_s, False)
        self._ask(h.writer)
        return True

    def answer(self, peer: bytes, h: wire.Hello, body: dict, now: float) -> list[Reply]:
        ingest = self.ingest
        new = h.writer not in ingest.writers
        got = ingest.registry.writer_for(peer, h, body, now)
        if isinstance(got, str):
            ingest.counters.add("refused")
            return [(peer, wire.pack(wire.REFUSE, {"w": h.writer, "error": got}))]
        ws, resumed = got
        if new:
            if ingest.sink.rebases_reconnects and h.reconnect and ws.stored == 0 and not ws.fork:
                ingest.registry.rebase.add(ws.id)
            ingest.sink.hello(ws.run, h, body, resumed)
        return self._welcome(peer, ws, resumed, body, now)

    def _welcome(self, peer: bytes, ws: WriterState, resumed: bool, body: dict, now: float) -> list[Reply]:
        run = ws.run
        run.last_seen = now
        r = run.record
        welcome = {
            "w": ws.id,
            "run_id": r.id,
            "step": r.step,
            "summary": r.summary,
            "runtime": r.runtime,
            "resumed": bool(resumed),
            "next_seq": ws.applied + 1,
            "agent": self.ingest.instance,
        }
        if isinstance(body.get("h"), int):
            welcome["h"] = body["h"]  # which HELLO this answers: the writer acts on the latest one only
        warn = self.ingest.health.warning(ws.id in self.ingest.registry.lost_writers)
        if warn:
            welcome["warn"] = warn  # the client logs it once (client/link.py)
        replies = [(peer, wire.pack(wire.WELCOME, welcome))]
        if ws.stored:
            replies.append((peer, wire.pack(wire.ACK, {"w": ws.id, "s": ws.stored})))
        return replies

    def _ask(self, writer: str) -> None:
        peer, h, body, deadline, asked = self.parked[writer]
        upstream = self.ingest.upstream  # agent.upstream.Upstream at a node agent (set by agent/roles.py)
        if not asked and upstream.ready:
            self.parked[writer] = (peer, h, body, deadline, True)
            self.ingest.counters.add("lookups")
            upstream.lookup(writer, h.run["project"], h.run["group"], h.run["name"])

    def _unknown(self, h: wire.Hello, body: dict) -> bool:
        ingest = self.ingest
        if isinstance(body.get("fork_of"), str) and body["fork_of"] in ingest.writers:
            return False
        info = h.run
        key = (info["project"], info["group"], info["name"])
        return ingest.registry.find(*key) is None and ingest.store.find_run(*key) is None

    def tick(self, now: float) -> None:
        """Ask what could not be asked yet (the link is up now); answer HELLOs whose wait is over."""
        mono = self.ingest.clock()
        for writer, (_, _, _, deadline, _) in list(self.parked.items()):
            if mono >= deadline:
                self.ingest.counters.add("lookups_timed_out")
                self.found(writer, None, 0, now)
            else:
                self._ask(writer)

    def found(self, writer: str, run: dict | None, writer_seq: int, now: float) -> None:
        """The root's answer to a lookup: adopt its view of the run, then answer the parked HELLO."""
        parked = self.parked.pop(writer, None)
        if parked is None:
            return
        ingest = self.ingest
        peer, h, body, _, _ = parked
        try:
            if run is not None:
                self._adopt(h, run, writer_seq, now)
                ingest.counters.add("lookups_found")
            ingest.outbox.extend(self.answer(peer, h, body, now))
        except ProtocolError as exc:
            ingest.bad_frame("lookup answer: " + str(exc)[:60], 0, exc)
        except Exception as exc:  # a HELLO must never take the loop down
            ingest.bad_frame(f"internal error: {type(exc).__name__}", 0, exc, trace=True)

    def _adopt(self, h: wire.Hello, found: dict, writer_seq: int, now: float) -> None:
        """Register the run in the catalog as the root knows it (state, step, summary, runtime, ...)."""
        info = h.run
        store = self.ingest.store
        if self.ingest.registry.find(info["project"], info["group"], info["name"]) is not None:
            return
        if store.find_run(info["project"], info["group"], info["name"]) is not None:
            return
        fields = dict(info, run_key=str(info.get("run_id", "")), pid=h.pid)
        _, rec, _ = store.register(info["project"], info["group"], info["world_size"], fields, now)
        for attr, typ in _ADOPTED:
            value = found.get(attr)
            if isinstance(value, typ) and not isinstance(value, bool):
                setattr(rec, attr, value)
        if rec.state not in ("running", "finished", "failed", "crashed"):
            raise ProtocolError(f"unknown run state {rec.state!r}")
        with store.transaction() as txn:
            txn.put_run(rec)
            if writer_seq > 0:
                txn.put_writer(h.writer, rec.id, writer_seq)

    def root_done(self, names: list) -> None:
        """The root says every rank of these groups has joined: stop waiting for unseen ranks."""
        for group in self.ingest.groups.values():
            if [group.record.project, group.record.name] in names:
                group.complete = True
