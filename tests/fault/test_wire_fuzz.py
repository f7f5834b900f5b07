"""A wire fuzzer against a live agent: hypothesis throws arbitrary and truncated frames at the agent's
socket — random bytes, valid frames cut short, valid msgpack of the wrong shape, valid batches with
one part mutated (sent by a writer the fuzzer registered, so they reach validation and the apply
path) — for a fixed budget, while an honest rank logs. The agent answers PING after every example,
stays the same process, never fails a commit, and the honest rank loses nothing (sent == stored)."""

from __future__ import annotations

import os
import socket
import time

import msgpack
import numpy as np
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client import wire
from support.offline import offline_run
from support.probes import agent_log, raw_steps, read_line, start_script, status_json, wait_for
from support.processes import agent_pid, communicate, torchrun_env
from support.rankscripts import log_until_file

BUDGET_S = 20.0  # wall clock for the examples; hypothesis stops earlier at max_examples
MAX_EXAMPLES = 1500

RANK = log_until_file(
    "honest",
    '{"x": float(s), "s": "tag", "v": {"a": s % 7}}',
    stop_var="RW_DONE",
    started_after=200,
    chunk=10,
    pause_s=0.002,
    tail=100,
)


def _valid_batches() -> list[dict]:
    """Bodies of real batches (numbers, strings, lists, nested keys, config, summary, a pending row)."""
    run = offline_run(project="fz", group="template", rank=0, world_size=1)
    run.config.update({"lr": 0.1, "name": "x"})
    for i in range(5):
        run.log({"loss": 1.0 / (i + 1), "acc": i, "tag": "t" if i % 2 else 3.5, "l": [1, 2.0, "a"], "n": {"d": i}})
    run.summary["best"] = 0.5
    run.log({"pend": 1.0}, commit=False)
    run._writer.sync()
    return [wire.unpack(frame)[1] for _, frame, _ in run._writer._outbox]


TEMPLATES = _valid_batches()
BASE_FRAMES = [wire.pack(wire.BATCH, b) for b in TEMPLATES] + [wire.pack(wire.PING, {})]

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=64),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)


# control ops a writer sends, and the fields of their arguments and of run meta (agent/apply.py _control)
CONTROL_OPS = ["config", "config_del", "summary_del", "define", "finish", "meta", "dropped", "zz"]
CONTROL_ARGS = [
    "metrics",
    "drops",
    "coalesced",
    "via",
    "rows_per_s",
    "name",
    "rate_limit",
    "summary",
    "exit_code",
    "t",
    "rows",
    "cause",
]


def _hello(writer: str, group: str) -> bytes:
    fields = {
        "project": "fz",
        "group": group,
        "name": "r",
        "rank": 0,
        "world_size": 1,
        "local_rank": 0,
        "node": socket.gethostname(),
        "launcher": "none",
        "resume": "allow",
        "started": 1.0,
    }
    return wire.pack(wire.HELLO, {"w": writer, "pid": os.getpid(), "run": fields})


@st.composite
def mutated_batch(draw) -> dict:
    """A real batch body with one part replaced, truncated or bit-flipped (its writer and seq set later)."""
    body = msgpack.unpackb(msgpack.packb(draw(st.sampled_from(TEMPLATES)), use_bin_type=True), raw=False)
    where = draw(st.sampled_from(["top", "rows", "block", "bytes", "ctl"]))
    if where == "ctl":
        args = msgpack_values | st.dictionaries(st.sampled_from(CONTROL_ARGS), msgpack_values, max_size=4)
        body["ctl"] = draw(st.lists(st.tuples(st.sampled_from(CONTROL_OPS), args).map(list), max_size=4))
    elif where == "top":
        body[draw(st.sampled_from(["rows", "pend", "sum", "ctl", "n", "zz"]))] = draw(msgpack_values)
    elif where == "rows" and isinstance(body.get("rows"), list):
        body["rows"][draw(st.integers(0, len(body["rows"]) - 1))] = draw(msgpack_values)
    elif where == "block" and isinstance(body.get("rows"), list) and body["rows"][5]:
        block = body["rows"][5][draw(st.integers(0, len(body["rows"][5]) - 1))]
        i = draw(st.integers(0, 2))
        if i == 2 and block[2]:  # one column: its encoding or its data
            col = block[2][draw(st.integers(0, len(block[2]) - 1))]
            col[draw(st.integers(0, 1))] = draw(msgpack_values | st.sampled_from(["f8", "i8", "b1", "mp"]))
        else:
            block[i] = draw(msgpack_values)
    elif isinstance(body.get("rows"), list):
        i = draw(st.sampled_from([1, 2, 3]))
        raw = bytearray(body["rows"][i])
        if raw:
            pos = draw(st.integers(0, len(raw) - 1))
            raw[pos] ^= draw(st.integers(1, 255))
        body["rows"][i] = bytes(raw[: draw(st.integers(0, len(raw)))])
    return body


frames = st.one_of(
    st.binary(max_size=512).map(lambda b: ("raw", b)),
    st.tuples(st.sampled_from(BASE_FRAMES), st.integers(0, 10_000)).map(
        lambda t: ("raw", t[0][: t[1] % max(1, len(t[0]))])
    ),  # a valid frame cut short
    # every kind but STOP, which any peer of the (0600, same-user) socket may send: it stops the agent by design
    st.tuples(st.integers(0, 3), st.sampled_from(sorted(wire.KINDS - {wire.STOP}) + ["zzz"]), msgpack_values).map(
        lambda t: ("raw", msgpack.packb(list(t), use_bin_type=True))
    ),
    msgpack_values.map(lambda v: ("raw", msgpack.packb(v, use_bin_type=True))),
    st.lists(mutated_batch(), min_size=1, max_size=3).map(lambda bs: ("batches", bs)),
)


def _ping(sock: zmq.Socket, timeout_s: float = 15.0) -> bool:
    sock.send(wire.pack(wire.PING, {}))
    while sock.poll(int(timeout_s * 1000)):
        kind, body = wire.unpack(sock.recv())
        if kind == wire.PING:
            return True
    return False


def test_fuzzed_frames_never_stop_the_agent_nor_cost_an_honest_rank_a_row(rankwise_env, tmp_path):
    """Up to 1500 hypothesis examples (at most 20 s) of garbage, truncated, wrongly shaped and mutated
    frames (a mutated example: a fresh writer's HELLO and 1-3 batches, each with one part replaced) go
    to a live agent while an honest rank logs: after every example the agent answers PING; at the end
    the same agent process serves, no commit failed, nothing broke the agent inside (no "internal
    error" cause), and the honest rank's every row is stored once (steps exactly 0..n-1, x exact)."""
    done = tmp_path / "done"
    rank = start_script(rankwise_env, RANK, {**torchrun_env(0, 1, "g-honest"), "RW_DONE": done})
    ctx = zmq.Context()
    fuzz = ctx.socket(zmq.DEALER)
    pinger = ctx.socket(zmq.DEALER)
    for s in (fuzz, pinger):
        s.setsockopt(zmq.LINGER, 0)
    examples = [0]
    try:
        assert read_line(rank, what="started") == "started"
        pid = agent_pid(rankwise_env)
        endpoint = rankwise_env.agent_info()["endpoint"]
        fuzz.connect(endpoint)
        pinger.connect(endpoint)
        deadline = time.monotonic() + BUDGET_S

        @settings(
            max_examples=MAX_EXAMPLES,
            database=None,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(frame=frames)
        def throw(frame: tuple[str, object]) -> None:
            if time.monotonic() > deadline:
                return
            examples[0] += 1
            kind, payload = frame
            if kind == "batches":  # a writer of its own says HELLO and sends its batches in sequence
                writer = f"fz-{examples[0]}"
                fuzz.send(_hello(writer, f"fz-{examples[0]}"))
                for seq, body in enumerate(payload, 1):  # type: ignore[arg-type]
                    fuzz.send(msgpack.packb([wire.VERSION, wire.BATCH, dict(body, w=writer, s=seq)], use_bin_type=True))
            else:
                fuzz.send(payload)  # type: ignore[arg-type]
            assert _ping(pinger), f"the agent stopped answering after {frame!r:.300}"
            while fuzz.poll(0):  # replies to the fuzzer (welcome, ack, nack, status) are not checked
                fuzz.recv()

        throw()
        done.touch()
        out, err = communicate(rank, 120)
    finally:
        fuzz.close(linger=0)
        pinger.close(linger=0)
        ctx.term()
        if rank.poll() is None:
            rank.kill()
    assert examples[0] >= 50, f"only {examples[0]} examples ran in the budget"
    assert rank.returncode == 0, err
    n, sent, unacked = map(int, out.split())
    assert (sent, unacked) == (n, 0)
    st_ = wait_for(lambda: status_json(rankwise_env), what="status")
    assert st_["pid"] == pid
    assert st_["counters"].get("commit_failures", 0) == 0, st_["counters"]
    # every frame counted under a cause naming what was wrong (none folded into "other": the peer's literals
    # do not make new causes), and nothing broke the agent inside
    assert "other" not in st_["malformed"], st_["malformed"]
    text = agent_log(rankwise_env)
    trace = text[text.find("Traceback") - 300 :][:4000] if "Traceback" in text else ""
    assert not [c for c in st_["malformed"] if c.startswith("internal error")], trace
    assert not trace, trace
    assert np.array_equal(raw_steps(rankwise_env, "honest", "g-honest", "rank-0", "x"), np.arange(n))
    import rankwise

    run = rankwise.Api().group("honest", "g-honest").run(rank=0)
    assert (run.state, run.rows) == ("finished", n)
    assert np.array_equal(run.history_arrays(["x"])["x"][1], np.arange(n, dtype=float))
