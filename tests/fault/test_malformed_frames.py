"""A rogue peer on the agent's socket: garbage, wrong shapes, inconsistent batches, values that
do not fit the store, an oversize frame, a writer nobody registered, an attempt to take over a
live rank's run. The agent counts each frame by cause, answers nothing to garbage, keeps serving,
and a real run logging at the same time loses nothing."""

from __future__ import annotations

import os
import random
import socket

import msgpack
import numpy as np
import zmq

import rankwise
from client import wire
from support.probes import raw_steps, read_line, start_script, status_json, wait_for
from support.processes import agent_pid, communicate, torchrun_env
from support.rankscripts import log_until_file

RANK = log_until_file(
    "rogue", '{"x": float(s)}', stop_var="RW_DONE", started_after=1000, chunk=20, pause_s=0.001, tail=500
)


def _pack(*msg) -> bytes:
    return msgpack.packb(list(msg), use_bin_type=True)


def _f8(n: int) -> bytes:
    return np.zeros(n).tobytes()


def _i4(*idx: int) -> bytes:
    return np.array(idx, "<i4").tobytes()


def _rows(n: int, t: bytes | None = None, blocks: list | None = None, step: bytes | None = None) -> list:
    return [n, step or np.arange(n, dtype="<i8").tobytes(), t or _f8(n), _f8(n), None, blocks or []]


def _run_fields(**over) -> dict:
    fields = {
        "project": "rogue",
        "group": "g-evil",
        "name": "evil",
        "rank": 0,
        "world_size": 1,
        "local_rank": 0,
        "node": socket.gethostname(),
        "launcher": "none",
        "resume": "allow",
        "started": 1.0,
    }
    fields.update(over)
    return fields


def garbage() -> list[tuple[bytes, str]]:
    """(frame, the malformed cause the agent must count it under)."""
    rng = random.Random(20240611)
    hello = lambda w, pid, **run: _pack(1, "hello", {"w": w, "pid": pid, "run": _run_fields(**run)})  # noqa: E731
    return [
        *[(b"\xc1" + rng.randbytes(rng.randrange(1, 200)), "undecodable frame: FormatError") for _ in range(3)],
        (b"", "undecodable frame: ValueError"),
        (msgpack.packb({"a": 1}), "frame is not [version, kind, body]"),
        (_pack(2, "batch", {}), "protocol version …, expected …"),
        (_pack(1, "zzz", {}), "unknown message kind …"),
        (_pack(1, "batch", [1, 2]), "body is not a map"),
        (_pack(1, "batch", {"w": 5, "s": 1}), "field … missing or of type int"),
        (_pack(1, "hello", {"w": "x", "pid": 1, "run": {}}), "field … missing or of type NoneType"),
        (_pack(1, "ack", {"w": "x", "s": 1}), "unexpected message kind … from a client"),
        # a batch whose arrays disagree with its row count
        (_pack(1, "batch", {"w": "x", "s": 1, "rows": _rows(10, t=_f8(9))}), "t: expected … values of <f8"),
        (
            _pack(1, "batch", {"w": "x", "s": 1, "rows": _rows(10, blocks=[[["k"], None, [["f8", _f8(9)]]]])}),
            "column …: expected … values of <f8",
        ),
        (
            _pack(1, "batch", {"w": "x", "s": 1, "rows": _rows(4, blocks=[[["k"], _i4(0, 9), [["f8", _f8(2)]]]])}),
            "block row index out of range",
        ),
        # well-formed, but values that would break the store or the sealing loop
        (hello("big-pid", 2**64 - 1), "pid … out of range"),
        (hello("big-world", 1, world_size=10**9, group="g-evil-world"), "world_size … above …"),
        (b"\x00" * (wire.MAX_FRAME_BYTES + 1), "frame of … bytes exceeds …"),
    ]


def test_rogue_frames_are_counted_and_the_real_run_is_complete(rankwise_env, tmp_path):
    """While a real rank logs, a rogue DEALER sends 17 bad frames of 15 causes, a batch from an
    unknown writer (answered NACK unknown-writer, counted), a HELLO claiming the live rank's run
    (refused), and as a registered writer of its own run a finish with exit code 2**64-1 and a
    step of 2**63-1. The same agent process serves throughout; ``rankwise status --json`` shows
    exactly the expected count per cause, no failed commit; the real run finishes with every row
    it logged stored once, and the rogue's own run is failed with exit code 1 and no rows."""
    done = tmp_path / "done"
    rank = start_script(rankwise_env, RANK, {**torchrun_env(0, 1, "g-real"), "RW_DONE": done})
    ctx = zmq.Context()
    rogue = ctx.socket(zmq.DEALER)
    rogue.setsockopt(zmq.LINGER, 0)
    try:
        assert read_line(rank, what="started") == "started"
        pid = agent_pid(rankwise_env)
        rogue.connect(rankwise_env.agent_info()["endpoint"])
        frames = garbage()
        for frame, _ in frames:
            rogue.send(frame)
        rogue.send(_pack(1, "batch", {"w": "nobody", "s": 1, "rows": _rows(3)}))
        assert _reply(rogue) == ("nack", {"w": "nobody", "reason": "unknown-writer"})

        real = _run_fields(group="g-real", name="rank-0", launcher="torchrun")
        rogue.send(_pack(1, "hello", {"w": "thief", "pid": rank.pid + 100000, "run": real}))
        kind, body = _reply(rogue)
        assert kind == "refuse" and "already running as pid" in body["error"], body
        rogue.send(_pack(1, "hello", {"w": "evil-w", "pid": os.getpid(), "run": _run_fields()}))
        assert _reply(rogue)[0] == "welcome"
        finish = [["finish", {"exit_code": 2**64 - 1}]]
        rogue.send(_pack(1, "batch", {"w": "evil-w", "s": 1, "rows": None, "ctl": finish}))
        assert _reply(rogue) == ("ack", {"w": "evil-w", "s": 1})
        huge_step = np.array([2**63 - 1], "<i8").tobytes()
        rogue.send(_pack(1, "batch", {"w": "evil-w", "s": 2, "rows": _rows(1, step=huge_step)}))
        done.touch()
        out, err = communicate(rank, 120)
    finally:
        rogue.close(linger=0)
        ctx.term()
        if rank.poll() is None:
            rank.kill()
    assert rank.returncode == 0, err
    n, sent, unacked = map(int, out.split())
    assert (sent, unacked) == (n, 0)

    expected: dict[str, int] = {}
    for _, cause in frames:
        expected[cause] = expected.get(cause, 0) + 1
    expected["finish exit_code not a 32-bit integer"] = 1
    expected["step … at or above …"] = 1
    assert sum(expected.values()) == 19 and len(expected) == 17

    st = wait_for(
        lambda: (s := status_json(rankwise_env)) and sum(s["malformed"].values()) >= 19 and s,
        what="every rogue frame to be counted",
    )
    assert st["pid"] == pid
    assert st["malformed"] == expected
    counters = st["counters"]
    assert counters["unknown_writer"] == 1
    assert counters["refused"] == 1
    assert counters.get("commit_failures", 0) == 0
    assert counters["rows"] == n  # only the real run's rows were applied

    api = rankwise.Api()
    run = api.group("rogue", "g-real").run(rank=0)
    assert (run.state, run.exit_code, run.rows, run.incarnations) == ("finished", 0, n, 1)
    assert np.array_equal(raw_steps(rankwise_env, "rogue", "g-real", "rank-0", "x"), np.arange(n))
    assert np.array_equal(run.history_arrays(["x"])["x"][1], np.arange(n, dtype=float))
    evil = api.group("rogue", "g-evil").run(name="evil")
    assert (evil.state, evil.exit_code, evil.rows) == ("failed", 1, 0)
    assert [g.name for g in api.groups("rogue")] == ["g-evil", "g-real"]  # nothing registered for the rest


def _reply(sock: zmq.Socket, timeout_s: float = 30.0) -> tuple[str, dict]:
    assert sock.poll(int(timeout_s * 1000)), "the agent did not answer"
    return wire.unpack(sock.recv())


def test_a_flood_of_one_cause_never_silences_a_new_one(tmp_path, caplog, monkeypatch):
    """100 undecodable frames, then a frame that breaks the agent inside (an internal error): the flood
    gets 5 log lines (one cause, rate-limited per cause), the internal error still gets its line with
    the traceback, and every frame is counted under its cause. A minute later the flooding cause gets
    one more line saying how many were not logged."""
    import logging

    from agent import ingest as ingest_mod
    from agent.config import AgentConfig
    from agent.ingest import Ingest
    from agent.store import MemoryStore

    clock = [1000.0]
    monkeypatch.setattr(ingest_mod.time, "monotonic", lambda: clock[0])
    ing = Ingest(MemoryStore(), AgentConfig(data_dir=tmp_path / "d", runtime_dir=tmp_path / "r"))
    caplog.set_level(logging.WARNING, logger="rankwise.agent")
    for _ in range(100):
        assert ing.handle(b"p", b"\xc1garbage") == []

    def broken(*_):
        raise KeyError("inside")

    monkeypatch.setattr(ing, "status", broken)
    assert ing.handle(b"p", _pack(1, "status", {})) == []
    lines = [r for r in caplog.records if r.name == "rankwise.agent"]
    assert [r.getMessage().split(": ", 1)[1] for r in lines] == ["undecodable frame: FormatError"] * 5 + ["'inside'"]
    assert lines[-1].exc_info is not None and lines[-1].exc_info[0] is KeyError
    assert ing.counters.malformed == {"undecodable frame: FormatError": 100, "internal error: KeyError": 1}

    caplog.clear()
    clock[0] += 61.0
    ing.handle(b"p", b"\xc1garbage")
    ing.handle(b"p", b"\xc1garbage")
    assert [r.getMessage() for r in caplog.records] == [
        "malformed frame (8 bytes) ignored: undecodable frame: FormatError (95 more of this cause not logged)"
    ]
