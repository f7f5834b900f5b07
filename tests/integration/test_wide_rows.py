"""Wide rows do not freeze the agent: a batch with thousands of keys is applied, sealed and committed
in slices of at most ``SLICE_KEYS`` keys per loop turn, so the agent answers pings and other ranks
meanwhile; a row wider than the agent's per-row key limit is rejected (NACK, counted), never stored
in part."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import zmq

import rankwise
from agent.apply import MAX_KEYS_PER_ROW, SLICE_KEYS
from agent.config import AgentConfig
from agent.ingest import Ingest
from agent.store import MemoryStore
from client import spawn, wire
from support.offline import offline_run
from support.probes import status

KEYS = 2000  # four slices


def _wide_frames(rows: int, keys: int) -> tuple[dict, list[bytes]]:
    run = offline_run(project="wide", group="g", rank=0, world_size=1)
    for i in range(rows):
        run.log({f"k{j}": float(i * keys + j) for j in range(keys)})
    run._writer.sync()
    frames = [frame for _, frame, _ in run._writer._outbox]
    writer = wire.unpack(frames[0])[1]["w"]
    hello = {"w": writer, "pid": os.getpid(), "run": dict(run._hello_run(), node=socket.gethostname())}
    return hello, frames


def test_a_wide_batch_is_applied_sealed_and_committed_in_bounded_slices(tmp_path):
    """3 rows of 2000 keys in one batch reach an in-process agent: handling the frame applies nothing
    yet (the batch is queued); then every loop turn (work, tick, commit) writes history of at most
    SLICE_KEYS keys and group rows of at most SLICE_KEYS keys; the ACK comes with the last commit only;
    in the end all 2000 keys hold their 3 values and 3 group rows with the exact mean."""
    store = MemoryStore()
    ing = Ingest(store, AgentConfig(data_dir=tmp_path / "d", runtime_dir=tmp_path / "r", rows_per_s=0))
    hello, frames = _wide_frames(3, KEYS)
    assert len(frames) == 1
    assert wire.unpack(ing.handle(b"p", wire.pack(wire.HELLO, hello))[0][1])[0] == wire.WELCOME
    assert ing.handle(b"p", frames[0]) == []
    assert len(ing.backlog) == 1 and ing.busy()
    turns, acks = 0, []
    while ing.busy() or ing.commit_due():
        before_h, before_g = len(store.history), len(store.group_rows)
        assert ing.work(time.time()) == []
        ing.tick(time.time())
        got = ing.commit(time.time())
        turns += 1
        user_keys = {k for _, k, *_ in store.history[before_h:]} - {"_timestamp", "_runtime"}
        assert len(user_keys) <= SLICE_KEYS
        assert len(store.group_rows) - before_g <= SLICE_KEYS
        acks += [(turns, wire.unpack(reply)[1]) for _, reply in got]
        assert turns < 100
    # applied in 4 slices (turns 1-4); sealed in 4 (turns 4-7: the tick after the last slice seals the first)
    assert turns == 2 * KEYS // SLICE_KEYS - 1
    assert acks == [(KEYS // SLICE_KEYS, {"w": hello["w"], "s": 1})]  # after the last slice, not before
    rid = next(iter(ing.runs))
    history = store.run_history(rid)
    assert len(history) == KEYS + 2
    for j in (0, 777, KEYS - 1):
        steps, values = history[f"k{j}"]
        assert steps.tolist() == [0, 1, 2] and list(values) == [float(i * KEYS + j) for i in range(3)]
        g = store.group_history(ing.runs[rid].group.record.id, f"k{j}")
        assert g["step"].tolist() == [0, 1, 2] and g["mean"].tolist() == [float(i * KEYS + j) for i in range(3)]
    assert len(store.group_keys(ing.runs[rid].group.record.id)) == KEYS


def test_the_agent_answers_pings_while_wide_rows_are_stored(rankwise_env):
    """A real agent; one process logs 3 rows of 10,000 keys each (30,000 keys, one log() call per
    row) while another socket pings the agent in a loop. Every row is stored with all its keys, and
    the agent keeps answering while it stores them: pings are answered all along, and the slowest
    round trip is a small part of the time the rows took to store (on the main of issue 9 the agent
    was deaf for most of it, sealing 30,000 keys at once). Relative, not absolute, so that a loaded
    CI machine slowing everything alike does not decide the test; the absolute figure (PING within
    100 ms while wide rows are stored) is for a quiet machine."""
    run = rankwise.init(project="wide", group="live", rank=0, world_size=1)
    info = spawn.read_info(run.settings.runtime_dir)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(info["endpoint"])
    rtts: list[float] = []
    stop = threading.Event()

    def pinger() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            sock.send(wire.pack(wire.PING, {}))
            if not sock.poll(30_000):
                rtts.append(float("inf"))
                return
            sock.recv()
            rtts.append(time.perf_counter() - t0)
            stop.wait(0.005)

    thread = threading.Thread(target=pinger)
    thread.start()
    try:
        wide = MAX_KEYS_PER_ROW
        t0 = time.perf_counter()
        n0 = len(rtts)
        for i in range(3):
            run.log({f"w{i}.k{j}": float(j) for j in range(wide)})
        assert run.flush(120)
        took = time.perf_counter() - t0
        during = rtts[n0:]
    finally:
        stop.set()
        thread.join()
        sock.close(linger=0)
        ctx.term()
    run.finish()
    assert (run.stats["rows_sent"], run.stats["unacked_rows"]) == (3, 0)
    # measured on 2 cores: sliced, 50-70 pings answered while the rows are stored, 90 % of them within
    # 1/40 of that time (the slowest, one in 50, within 1/15 even with 3 busy loops beside); on the main of
    # issue 9, 8 or 9 pings, most of them waiting 1/7 to 1/4 of it. The 90th percentile, not the maximum:
    # one scheduling hiccup of a loaded machine must not decide the test.
    assert len(during) >= 20, (len(during), took)
    assert float(np.percentile(during, 90)) < took / 8, (sorted(during)[-5:], took)
    h = rankwise.Api().group("wide", "live").run(rank=0).history_arrays([f"w{i}.k{wide - 1}" for i in range(3)])
    assert {k: (s.tolist(), v.tolist()) for k, (s, v) in h.items() if not k.startswith("_")} == {
        f"w{i}.k{wide - 1}": ([i], [float(wide - 1)]) for i in range(3)
    }


def test_a_row_wider_than_the_limit_is_rejected_and_counted(rankwise_env):
    """A raw writer sends a batch whose one row has MAX_KEYS_PER_ROW + 1 keys: the agent answers NACK
    "rejected" naming the per-row limit as its cause, stores none of it, counts it under the cause and
    as 1 dropped row, and serves the writer's next batch."""
    run = rankwise.init(project="wide", group="refuse", rank=0, world_size=1)
    info = spawn.read_info(run.settings.runtime_dir)
    run.finish()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(info["endpoint"])
    try:
        fields = {
            "project": "wide",
            "group": "raw",
            "name": "raw",
            "rank": 0,
            "world_size": 1,
            "local_rank": 0,
            "node": socket.gethostname(),
            "launcher": "none",
            "resume": "allow",
            "started": 1.0,
        }
        sock.send(wire.pack(wire.HELLO, {"w": "raw-w", "pid": os.getpid(), "run": fields}))
        assert _reply(sock)[0] == "welcome"
        n = MAX_KEYS_PER_ROW + 1
        one = np.zeros(1).tobytes()
        keys = [f"k{j}" for j in range(n)]
        rows = [1, np.zeros(1, "<i8").tobytes(), one, one, None, [[keys, None, [["f8", one]] * n]]]
        sock.send(msgpack.packb([1, "batch", {"w": "raw-w", "s": 1, "rows": rows}], use_bin_type=True))
        kind, body = _reply(sock)
        assert (kind, body["reason"], body["s"]) == ("nack", "rejected", 1)
        assert body["cause"] == "a row of … keys, above the agent's limit of … keys per row"  # literals stripped
        rows = [1, np.ones(1, "<i8").tobytes(), one, one, None, [[["ok"], None, [["f8", one]]]]]
        sock.send(msgpack.packb([1, "batch", {"w": "raw-w", "s": 2, "rows": rows}], use_bin_type=True))
        acks = [_reply(sock)]
        if acks[0] != ("ack", {"w": "raw-w", "s": 2}):  # the rejected seq is acknowledged with a commit too
            acks.append(_reply(sock))
        assert acks[-1] == ("ack", {"w": "raw-w", "s": 2}), acks
    finally:
        sock.close(linger=0)
        ctx.term()
    st = status(rankwise_env)
    assert st["malformed"] == {"a row of … keys, above the agent's limit of … keys per row": 1}
    raw = rankwise.Api().group("wide", "raw").run(name="raw")
    assert raw.history_arrays(["ok"])["ok"][0].tolist() == [1]
    assert raw.history_arrays(["k0"]).get("k0", (np.empty(0),))[0].tolist() == []


def _reply(sock: zmq.Socket, timeout_s: float = 30.0) -> tuple[str, dict]:
    assert sock.poll(int(timeout_s * 1000)), "the agent did not answer"
    return wire.unpack(sock.recv())


def test_a_seal_cut_into_calls_never_writes_a_group_row_from_part_of_its_points():
    """Sealing step 0 of 5 keys with ``everything`` ignores the budget (5 rows). Then step 1 of the 5
    keys, budget 2 keys per call: the first call seals k0, k1 and leaves the seal in progress
    (``sealing`` 1, sealed_through still 0). Points of rank 1 that arrive now for k0 at steps 0 and 1
    are late (queued for recompute from stored values); one for k4 at step 1 joins the window and is
    in k4's row; the third call completes the seal and moves sealed_through to 1."""
    from agent.groups import GroupState
    from agent.nextcommit import NextCommit
    from agent.store.base import GroupRecord

    g = GroupState(GroupRecord(1, "p", "g", 2, 0.0, 0.0), 0.0)
    cfg = AgentConfig(data_dir=Path("/nonexistent"), runtime_dir=Path("/nonexistent"))
    pending = NextCommit()
    for k in range(5):
        g.add(0, f"k{k}", np.array([0]), np.array([float(k)]), 0.0, pending)
    assert g.seal(0.0, cfg, pending, everything=False, budget=2) == 0  # rank 1 not heard of yet: nothing
    assert g.seal(0.0, cfg, pending, everything=True, budget=2) == 5  # everything ignores the budget
    for k in range(5):
        g.add(0, f"k{k}", np.array([1]), np.array([float(k)]), 0.0, pending)
    g.record.world_size = 1  # now rank 0 alone: step 1 may seal
    g.ranks[0] = type("R", (), {"running": True, "last_seen": 0.0, "watermark": 1})()
    pending = NextCommit()
    assert g.seal(0.0, cfg, pending, budget=2) == 2 and g.sealing == 1 and g.record.sealed_through == 0
    g.add(1, "k0", np.array([0]), np.array([10.0]), 0.0, pending)  # k0 at step 0: already sealed long ago (late)
    g.add(1, "k0", np.array([1]), np.array([10.0]), 0.0, pending)  # k0 at step 1: sealed in this pass (late)
    g.add(1, "k4", np.array([1]), np.array([10.0]), 0.0, pending)  # k4 not sealed yet: joins its row
    assert [s.tolist() for s in pending.recompute[(1, "k0")]] == [[0], [1]]
    assert g.seal(0.0, cfg, pending, budget=2) == 2 and g.sealing == 1
    assert g.seal(0.0, cfg, pending, budget=2) == 1 and g.sealing is None and g.record.sealed_through == 1
    rows = {key: (r["step"].tolist(), r["count"].tolist(), r["mean"].tolist()) for _, key, r, _ in pending.group_rows}
    assert rows == {
        "k0": ([1], [1], [0.0]),
        "k1": ([1], [1], [1.0]),
        "k2": ([1], [1], [2.0]),
        "k3": ([1], [1], [3.0]),
        "k4": ([1], [2], [7.0]),
    }
