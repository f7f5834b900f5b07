"""Node agents and a root in one process, for deterministic tests of hierarchical aggregation.

Each :class:`SimNode` is a real node agent's ingest (:func:`agent.node.node_ingest`) with a real spool and SQLite
catalog in a temporary directory; the root is a real :class:`agent.root.Root` over a
SQLite store. Client frames are built with the client's wire encoder, records are carried
from each node's spool to the root by :meth:`Sim.carry` (what agent/upstream.py and
agent/rootlink.py do over TCP), acknowledgements go back by hand. Time is passed in, pids
are alive unless a test says otherwise. "Restarts" drop an ingest object and build a new one
over the same files, as a SIGKILL and a new process would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent import linkwire
from agent.config import AgentConfig
from agent.node import node_ingest
from agent.root import Link, Root
from agent.runs import PidWatch
from agent.spool import Spool
from agent.store.sqlite import SQLiteStore
from client import wire
from support import frames
from support.frames import T0
from support.grouprows import nan_aware_row


def hello(
    writer: str,
    rank: int,
    world: int,
    group: str,
    node: str,
    pid: int,
    project: str = "sim",
    reconnect: bool = False,
    name: str | None = None,
) -> bytes:
    """The HELLO a rank of node ``node`` sends (tests/support/frames.py), in project "sim" unless said."""
    return frames.hello(writer, rank, world, group, project=project, node=node, pid=pid, name=name, reconnect=reconnect)


class SimNode:
    def __init__(self, sim: Sim, name: str):
        self.sim = sim
        self.name = name
        self.dir = sim.tmp / name
        self.link = Link(name, 0, 0, peer=name.encode())
        self.dead_pids: set[int] = set()
        self.start()

    def start(self) -> None:
        cfg = self.sim.cfg.replace(data_dir=self.dir, node_name=self.name)
        self.spool = Spool(self.dir / "spool")
        self.catalog = SQLiteStore(self.dir / "node.sqlite")
        self.ingest = node_ingest(
            self.catalog,
            cfg,
            self.spool,
            node=self.name,
            pids=PidWatch(lambda pid: None if pid in self.dead_pids else 1.0),
        )
        self.ingest.recover(self.sim.now)
        self.replies: list = []

    def kill(self) -> None:
        """SIGKILL: memory is gone, files stay (the spool's page cache survives a process crash)."""
        self.catalog.con.close()
        self.spool._close_active(fsync=False)
        self.start()

    def send(self, frame: bytes, peer: bytes = b"p") -> list:
        out = self.ingest.handle(peer, frame, self.sim.now)
        self.replies.extend(out)
        return out

    def turn(self) -> list:
        """tick + commit, as one loop turn of the daemon; returns the ACK replies."""
        self.ingest.tick(self.sim.now)
        acks = self.ingest.commit(self.sim.now)
        self.replies.extend(acks)
        return acks

    def acked(self, writer: str) -> int:
        best = 0
        for _, frame in self.replies:
            kind, body = wire.unpack(frame)
            if kind == wire.ACK and body["w"] == writer:
                best = max(best, body["s"])
        return best


class Sim:
    def __init__(self, tmp: Path, nodes: int = 2, **cfg):
        self.tmp = Path(tmp)
        cfg.setdefault("seal_timeout_s", 1000.0)
        cfg.setdefault("join_grace_s", 1000.0)
        cfg.setdefault("silence_s", 1000.0)
        cfg.setdefault("liveness_interval_s", 0.0)
        cfg.setdefault("rows_per_s", 0.0)
        self.cfg = AgentConfig(
            data_dir=self.tmp / "root", runtime_dir=self.tmp / "rt", upstream="tcp://127.0.0.1:1", **cfg
        )
        self.now = T0
        self.start_root()
        self.nodes = [SimNode(self, f"node{i}") for i in range(nodes)]

    def start_root(self) -> None:
        self.store = SQLiteStore(self.tmp / "root.sqlite")
        self.root = Root(
            self.store,
            self.cfg.replace(upstream=None, listen="tcp://127.0.0.1:1"),
            node="rootnode",
            pids=PidWatch(lambda pid: 1.0),
        )
        self.root.recover(self.now)

    def kill_root(self) -> None:
        self.store.con.close()
        self.start_root()
        for node in getattr(self, "nodes", []):
            stored = self.store.writer_seq("agent:" + node.name)
            node.link = Link(node.name, stored, stored, synced=stored, peer=node.name.encode())

    def carry(self, node: SimNode, upto: int | None = None) -> int:
        """Send a node's unacknowledged records (through ``upto``) to the root; return how many."""
        link = node.link
        self.root.links[link.agent] = link
        n = 0
        for seq, payload in node.spool.replay(after_seq=link.applied):
            if upto is not None and seq > upto:
                break
            self.root.apply_record(link, seq, payload, self.now)
            link.applied = seq
            self.root.apply_state(link)
            n += 1
        return n

    def root_turn(self) -> None:
        """Root tick + commit, then the acknowledgements (and 'group complete' hints) back to the nodes."""
        self.root.tick(self.now)
        self.root.commit(self.now)
        acks = self.root.durable_link_acks(force=True)
        by_peer = {n.link.peer: n for n in self.nodes}
        for peer, frame in acks:
            node = by_peer[peer]
            _, body = linkwire.unpack(frame)
            if body["s"] > node.spool.acked_seq:
                node.spool.ack(body["s"])
            if body.get("done"):
                node.ingest.root_done(body["done"])

    def cycle(self, dt: float = 0.1) -> None:
        """Every node takes a loop turn, records go up, the root takes a turn; time advances."""
        for node in self.nodes:
            node.turn()
        for node in self.nodes:
            self.carry(node)
        self.root_turn()
        self.now += dt

    def group(self, name: str, project: str = "sim"):
        reader = self.store.reader()
        g = reader.group(project, name)
        return reader, g


def numpy_rows(values: dict[int, dict[int, float]]) -> dict[str, np.ndarray]:
    """{rank: {step: value}} → what numpy gives per step over the ranks that reported, rank-ordered: the
    nan-reductions over the finite values and the non-finite ones counted (support/grouprows.py)."""
    fields = ("count", "mean", "min", "max", "std", "min_rank", "max_rank", "nan_count", "nan_rank")
    steps = sorted({s for per in values.values() for s in per})
    out = {f: [] for f in ("step", *fields)}
    for s in steps:
        ranks = sorted(r for r, per in values.items() if s in per)
        out["step"].append(s)
        for f, x in zip(fields, nan_aware_row(ranks, [values[r][s] for r in ranks]), strict=True):
            out[f].append(x)
    return {k: np.array(v) for k, v in out.items()}


def assert_rows_equal(got: dict[str, np.ndarray], want: dict[str, np.ndarray], expected: int) -> None:
    assert np.array_equal(got["step"], want["step"]), (got["step"], want["step"])
    for f in ("count", "min_rank", "max_rank", "nan_count", "nan_rank"):
        assert np.array_equal(got[f], want[f]), f
    assert np.array_equal(got["expected"], np.full(len(want["step"]), expected))
    for f in ("min", "max"):
        assert np.array_equal(got[f], want[f], equal_nan=True), f
    for f in ("mean", "std"):
        np.testing.assert_allclose(got[f], want[f], rtol=1e-12, atol=1e-12, equal_nan=True, err_msg=f)
