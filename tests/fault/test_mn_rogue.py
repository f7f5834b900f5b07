"""The root's TCP port under attack while a real node agent streams to it: malformed link frames from a
peer holding an allowed key, a record that does not decode, peers without Curve or with a key that is
not on the allow-list. Every bad frame is counted by cause, a bad record is quarantined (never stalls
the link), unauthenticated peers never get anything stored and are counted as refused, and the real
job loses nothing."""

from __future__ import annotations

import time
from pathlib import Path

import msgpack
import zmq
import zmq.auth

import rankwise
from agent import linkwire as lw
from agent import record
from client import wire
from support.mncluster import check_exactly_once, wait_exit
from support.probes import read_line, wait_for
from support.rankscripts import log_until_file

SCRIPT = log_until_file("mnrogue", min_rows=300, started_after=100, pause_s=0.001)


def _dealer(ctx, endpoint: str, keys: Path | None = None, name: str | None = None, keypair=None) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if name is not None or keypair is not None:
        public, secret = keypair or zmq.auth.load_certificate(str(keys / f"{name}.key_secret"))
        sock.curve_publickey, sock.curve_secretkey = public, secret
        sock.curve_serverkey, _ = zmq.auth.load_certificate(str(keys / "root.key"))
    sock.connect(endpoint)
    return sock


def _reply(sock: zmq.Socket, timeout_s: float = 30.0) -> tuple[str, dict]:
    assert sock.poll(int(timeout_s * 1000)), "the root did not answer"
    return lw.unpack(sock.recv())


def _garbage() -> list[tuple[bytes, str]]:
    """(frame, the malformed cause the root must count it under)."""
    hello = wire.pack(wire.HELLO, {"w": "x", "pid": 1, "run": {}})
    return [
        (b"\xc1\x00garbage", "link: undecodable link frame: FormatError"),
        (msgpack.packb({"a": 1}), "link: link frame is not [version, kind, body]"),
        (lw.pack("zzz", {}), "link: unknown link message kind …"),
        (hello, "link: unknown link message kind …"),  # a client's frame on the node port
        (
            lw.pack(lw.NHELLO, {"a": "bad id!", "i": "x", "h": 1}),
            "link: bad agent id (up to a few dozen letters, digits and ._@:- only)",
        ),
        (lw.pack(lw.NHELLO, {"a": 7}), "link: link field … missing or of type int"),
    ]


def test_rogue_link_frames_and_peers_without_a_valid_key(curve_cluster, tmp_path):
    """While node-a's 2 ranks stream to a Curve root: a peer with an allowed key sends 6 malformed frames
    of 5 causes (each counted, no answer), a record before saying HELLO (told unknown-agent), then as
    agent "rogue" a record that does not decode (quarantined to $RANKWISE_DIR/quarantine, counted as a
    drop, acknowledged), a record with a gap (told which seq is expected), a record whose batch op is
    garbage (counted, nothing registered), a lookup missing fields. A peer without Curve and a peer
    whose key is not on the allow-list send a HELLO and a record: no answer, nothing stored, both
    counted as refused. The root keeps serving; the real job's rows are all stored once."""
    c = curve_cluster
    c.start_root()
    stop = tmp_path / "stop"
    procs = [c.start_rank("node-a", SCRIPT, r, 2, "job-real", RW_STOP=stop) for r in range(2)]
    for p in procs:
        assert read_line(p, what="started") == "started"
    ctx = zmq.Context()
    rogue = _dealer(ctx, c.listen, c.keys, "node-c")
    plain = _dealer(ctx, c.listen)
    stranger = _dealer(ctx, c.listen, c.keys, keypair=zmq.curve_keypair())
    try:
        frames = _garbage()
        for frame, _ in frames:
            rogue.send(frame)
        rogue.send(lw.pack(lw.REC, {"s": 1, "p": 0, "d": b"x"}))
        assert _reply(rogue) == (lw.RNACK, {"reason": "unknown-agent"})
        rogue.send(lw.pack(lw.NHELLO, {"a": "rogue", "i": "i1", "n": "evil", "h": 1}))
        kind, welcome = _reply(rogue)
        assert (kind, welcome["next"], welcome["h"]) == (lw.NWELCOME, 1, 1)
        rogue.send(lw.pack(lw.REC, {"s": 1, "p": 0, "d": b"not a record"}))
        assert _reply(rogue) == (lw.RACK, {"s": 1})
        rogue.send(lw.pack(lw.REC, {"s": 5, "p": 3, "d": b"x"}))
        assert _reply(rogue) == (lw.RNACK, {"expect": 2})
        run = {
            "project": "rogue",
            "group": "g",
            "name": "r",
            "rank": 0,
            "world_size": 1,
            "local_rank": 0,
            "node": "evil",
            "pid": 1,
        }
        bad_op = record.encode("i1", "evil", 1.0, [run], [], [["b", 0, b"\xc1garbage"]], [], [], [])
        rogue.send(lw.pack(lw.REC, {"s": 2, "p": 1, "d": bad_op}))
        assert _reply(rogue) == (lw.RACK, {"s": 2})
        rogue.send(lw.pack(lw.LOOKUP, {"q": "w"}))
        for sock in (plain, stranger):
            for frame in (
                lw.pack(lw.NHELLO, {"a": "intruder", "i": "i2", "n": "evil", "h": 1}),
                lw.pack(lw.REC, {"s": 1, "p": 0, "d": bad_op}),
            ):
                try:  # a refused peer may have no connection to queue on: never block
                    sock.send(frame, zmq.NOBLOCK)
                except zmq.Again:
                    pass
        time.sleep(0.5)  # give the refused peers every chance to be answered (they must not be)
        assert not plain.poll(0) and not stranger.poll(0)

        expected = {}
        for _, cause in frames + [(None, "link: link field … missing or of type NoneType")]:
            expected[cause] = expected.get(cause, 0) + 1
        expected["record op: undecodable frame: FormatError"] = 1
        st = wait_for(
            lambda: (
                (s := c.status())
                and sum(s["malformed"].values()) >= 8
                and s["listen"]["refused"].get("not_allowed", 0) >= 1
                and sum(v for k, v in s["listen"]["refused"].items() if k != "not_allowed") >= 1
                and s
            ),
            what="every bad frame and refused peer to be counted",
        )
        assert st["malformed"] == expected
        assert st["counters"]["records_quarantined"] == 1
        assert st["drops"] == {"node_record_malformed": 1}
        assert sorted(lk["agent"] for lk in st["links"]) == sorted(["rogue", _node_agent(c)])
        assert list((Path(c.root.data) / "quarantine").iterdir())[0].read_bytes() == b"not a record"
    finally:
        for sock in (rogue, plain, stranger):
            sock.close(linger=0)
        ctx.term()
    stop.touch()
    counts = {}
    for rank, (code, out, err) in enumerate(wait_exit(procs)):
        assert code == 0, err
        n, sent, unacked = map(int, out.split())
        assert (sent, unacked) == (n, 0)
        counts[rank] = n
    check_exactly_once(c, "mnrogue", "job-real", counts, lambda r, s: r * 1000.0 + s)
    assert [g.name for g in rankwise.Api(str(c.root.store)).groups()] == ["job-real"]


def _node_agent(c) -> str:
    return (Path(c.node("node-a").data) / "spool" / "agent.id").read_text().strip()
