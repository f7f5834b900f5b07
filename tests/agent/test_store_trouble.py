"""The agent's store under a full disk, deletion and corruption, in-process: a real Ingest over a real SQLite
store. A full disk is SQLite's own SQLITE_FULL, produced by ``PRAGMA max_page_count`` on the agent's
connection (the database may not grow: every write that needs a new page fails exactly as on a full disk);
deletion and corruption are done to the files. Client frames are built with the client's wire encoder.
The same failures with a real agent, a real client and a real full filesystem: tests/fault/test_disk_full.py
and tests/fault/test_store_lost.py."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from agent.config import AgentConfig
from agent.ingest import Ingest
from agent.sinks.store import StoreSink
from agent.store.sqlite import SQLiteStore
from agent.store.sqlite_reader import SQLiteReader
from client import wire
from support import frames
from support.frames import T0, batch


def hello(writer: str, name: str, reconnect: bool = False, h: int = 1) -> bytes:
    return frames.hello(writer, name=name, run_id=name, reconnect=reconnect, h=h)


def replies_of(replies) -> list[tuple[bytes, str, dict]]:
    out = []
    for peer, frame in replies:
        kind, body = wire.unpack(frame)
        out.append((peer, kind, body))
    return out


def acked(replies, writer: str) -> int:
    return max([b["s"] for _, k, b in replies_of(replies) if k == wire.ACK and b["w"] == writer], default=0)


def fill(store: SQLiteStore, full: bool) -> None:
    """SQLITE_FULL for every write that needs a new page (full=True), or room again."""
    if full:
        pages = store.con.execute("PRAGMA page_count").fetchone()[0]
        store.con.execute(f"PRAGMA max_page_count = {pages}")
    else:
        store.con.execute("PRAGMA max_page_count = 1073741823")


def make(tmp_path: Path, **cfg) -> tuple[Ingest, SQLiteStore]:
    config = AgentConfig(data_dir=tmp_path, runtime_dir=tmp_path / "rt", rows_per_s=0.0, **cfg)
    store = SQLiteStore(tmp_path / "store.sqlite")
    return Ingest(store, config, node="n1"), store


def history(path: Path, name: str) -> dict[str, tuple[list[int], list[float]]]:
    reader = SQLiteReader(path)
    try:
        (run,) = [r for g in reader.groups() for r in reader.runs(g.id) if r.name == name]
        hist = reader.run_history(run.id)
        return {
            k: (np.asarray(s).tolist(), np.asarray(v).tolist()) for k, (s, v) in hist.items() if not k.startswith("_")
        }
    finally:
        reader.close()


def test_new_key_logged_while_commits_fail_is_stored_under_its_own_id(tmp_path, caplog):
    """A new key whose commits fail for lack of space keeps its values once space returns, and a key of
    another run registered afterwards does not show them (the key-id cache rolls back with the transaction);
    the agent log names the real error, not a failed ROLLBACK."""
    ingest, store = make(tmp_path)
    ingest.handle(b"a", hello("wa", "run-a"))
    ingest.handle(b"a", batch("wa", 1, [0, 1], {"loss": [1.0, 2.0]}))
    assert acked(ingest.commit(), "wa") == 1
    fill(store, True)
    with caplog.at_level(logging.INFO, logger="rankwise.agent"):
        ingest.handle(
            b"a", batch("wa", 2, np.arange(2, 400), {"acc": np.arange(2, 400) * 0.5, "loss": np.arange(2, 400) * 1.0})
        )
        assert ingest.commit(force=True) == []
        assert ingest.commit(force=True) == []
    forgot = "acc" not in store.keys.ids  # the id it had inside the rolled-back transaction is forgotten
    state = ingest.status().get("store_state")
    text = caplog.text
    fill(store, False)
    assert acked(ingest.commit(force=True), "wa") == 2
    after = ingest.status().get("store_state")
    ingest.handle(b"b", hello("wb", "run-b"))
    ingest.handle(b"b", batch("wb", 1, [0, 1, 2], {"other": [7.0, 8.0, 9.0]}))
    assert acked(ingest.commit(), "wb") == 1
    a = history(store.path, "run-a")
    assert a["acc"] == (list(range(2, 400)), [s * 0.5 for s in range(2, 400)])
    assert a["loss"] == (list(range(0, 400)), [1.0, 2.0] + [float(s) for s in range(2, 400)])
    assert history(store.path, "run-b") == {"other": ([0, 1, 2], [7.0, 8.0, 9.0])}
    assert forgot and (state, after) == ("disk full", "ok")
    assert "disk is full" in text and "cannot rollback" not in text
    assert text.count("store write failed") == 1  # once per episode


def test_registration_while_the_disk_is_full_is_not_a_malformed_frame(tmp_path):
    """A HELLO whose registration hits a full disk is answered later (the client says HELLO again), counted
    as a store error, not as a malformed frame, and leaves no run behind in memory."""
    ingest, store = make(tmp_path)
    ingest.handle(b"a", hello("wa", "run-a"))
    fill(store, True)
    big = "x" * 20000  # a config that needs new pages
    run = {
        "project": "p",
        "group": "g2",
        "name": "run-z",
        "rank": 0,
        "world_size": 1,
        "local_rank": 0,
        "node": "n1",
        "launcher": "none",
        "resume": "allow",
        "started": 1.0,
        "run_id": "z",
        "config": {"c": big},
    }
    frame = wire.pack(wire.HELLO, {"w": "wz", "pid": os.getpid(), "run": run, "re": False, "h": 1})
    assert ingest.handle(b"z", frame) == []
    assert ingest.counters.malformed == {} and ingest.counters.values["store_errors"] == 1
    assert "wz" not in ingest.writers and len(ingest.runs) == 1
    assert ingest.status()["store_state"] == "disk full"
    fill(store, False)
    (welcome,) = [b for _, k, b in replies_of(ingest.handle(b"z", frame)) if k == wire.WELCOME]
    assert welcome["next_seq"] == 1 and len(ingest.runs) == 2


def test_uncommitted_batches_stay_within_the_byte_budget_while_the_disk_is_full(tmp_path):
    """While commits fail, batches are applied only up to the pending byte budget; beyond it they are neither
    applied nor acknowledged (held in the client), pending bytes never exceed budget + one batch, and every
    row is stored once space returns and the client resends after its HELLO."""
    budget = 64 << 10
    ingest, store = make(tmp_path, pending_max_bytes=budget)
    ingest.handle(b"a", hello("wa", "run-a"))
    ingest.handle(b"a", batch("wa", 1, [0], {"v": [0.0]}))
    assert acked(ingest.commit(), "wa") == 1
    fill(store, True)
    frames = {}
    step = 1
    for seq in range(2, 42):  # 40 batches of ~8 KiB: 5x the budget
        steps = np.arange(step, step + 500)
        step += 500
        frames[seq] = batch("wa", seq, steps, {"v": steps * 2.0})
    one = max(len(f) for f in frames.values())
    most = 0
    for frame in frames.values():
        assert ingest.handle(b"a", frame) == []
        ingest.commit(force=True)
        most = max(most, ingest.status()["pending_bytes"])
    status = ingest.status()
    assert status["store_state"] == "disk full"
    assert 0 < most <= budget + one
    applied = ingest.writers["wa"].applied
    assert 2 < applied < 41 and ingest.counters.values["held_batches"] == 41 - applied
    fill(store, False)
    assert acked(ingest.commit(force=True), "wa") == applied
    # the client's retry: HELLO again, resend from the WELCOME's next_seq
    (welcome,) = [b for _, k, b in replies_of(ingest.handle(b"a", hello("wa", "run-a", True, 2))) if k == wire.WELCOME]
    assert welcome["next_seq"] == applied + 1
    for seq in range(applied + 1, 42):
        ingest.handle(b"a", frames[seq])
    assert acked(ingest.commit(), "wa") == 41
    steps, values = history(store.path, "run-a")["v"]
    assert steps == list(range(0, step)) and values == [s * 2.0 for s in range(0, step)]


def _lost_store_scenario(tmp_path, damage) -> tuple[Ingest, SQLiteStore, list]:
    ingest, store = make(tmp_path)
    ingest.handle(b"a", hello("wa", "run-a"))
    ingest.handle(b"a", batch("wa", 1, [0, 1], {"v": [0.0, 1.0]}))
    assert acked(ingest.commit(), "wa") == 1
    store.checkpoint()
    ingest.handle(b"a", batch("wa", 2, [2, 3], {"v": [2.0, 3.0]}))
    assert acked(ingest.commit(), "wa") == 2
    damage(store.path)
    ingest.handle(b"a", batch("wa", 3, [4, 5], {"v": [4.0, 5.0]}))
    replies = replies_of(ingest.commit())
    return ingest, store, replies


def _resend(ingest: Ingest, store: SQLiteStore, replies) -> None:
    # not acknowledged: batch 3. The agent told the writer it does not know it (with a warning)...
    assert [(k, b["reason"]) for _, k, b in replies] == [(wire.NACK, "unknown-writer")]
    assert "store was lost" in replies[0][2]["warn"]
    # ... the writer says HELLO again, is told to start at 1 and resends what it holds: batch 3 on
    (welcome,) = [b for _, k, b in replies_of(ingest.handle(b"a", hello("wa", "run-a", True, 2))) if k == wire.WELCOME]
    assert welcome["next_seq"] == 1 and "store was lost" in welcome["warn"]
    ingest.handle(b"a", batch("wa", 3, [4, 5], {"v": [4.0, 5.0]}))
    ingest.handle(b"a", batch("wa", 4, [6], {"v": [6.0]}))
    assert acked(ingest.commit(), "wa") == 4
    assert history(store.path, "run-a") == {"v": ([4, 5, 6], [4.0, 5.0, 6.0])}
    status = ingest.status()
    assert status["store_state"] == "ok" and len(status["store_losses"]) == 1


def test_deleted_store_is_detected_before_acknowledging_and_writers_resend(tmp_path):
    """``rm store.sqlite*`` under the agent: the next commit does not go into the unlinked file; a fresh
    store starts, the writer is told and resends from its first unacknowledged batch, and everything
    logged after the deletion is stored."""

    def delete(path: Path) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)

    ingest, store, replies = _lost_store_scenario(tmp_path, delete)
    _resend(ingest, store, replies)
    assert store.moved_aside == []


def test_overwritten_store_is_moved_aside_and_a_fresh_one_started(tmp_path):
    """Random bytes over the store file: detected at the next commit, the damaged file moved to
    store.sqlite.corrupt-<time>, a fresh store started, and the writer resends what was not
    acknowledged."""
    garbage = {}

    def overwrite(path: Path) -> None:
        size = path.stat().st_size
        garbage["bytes"] = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
        with open(path, "r+b") as f:
            f.write(garbage["bytes"])

    ingest, store, replies = _lost_store_scenario(tmp_path, overwrite)
    _resend(ingest, store, replies)
    (moved,) = store.moved_aside
    # the damaged file itself, moved (closing the old connection copied its WAL's pages into it: the last
    # acknowledged commits stay with it), never deleted
    kept = Path(moved).read_bytes()
    assert Path(moved).name.startswith("store.sqlite.corrupt-") and len(kept) >= len(garbage["bytes"])
    assert sum(a == b for a, b in zip(kept, garbage["bytes"])) > len(garbage["bytes"]) // 2


def test_corrupt_store_makes_a_new_run_register_in_a_fresh_store(tmp_path):
    """A store whose pages are garbage (SQLITE_NOTADB) found by a new run's registration: moved aside, a
    fresh store started, and the run's next HELLO is welcomed (instead of failing for ever)."""
    ingest, store = make(tmp_path)
    ingest.handle(b"a", hello("wa", "run-a"))
    store.close()
    store.path.write_bytes(b"\0" * 8192)  # a new file: replaced, not a database
    store.__init__(store.path)  # noqa: PLC2801 -- an agent restart over the damaged file
    assert len(store.moved_aside) == 1
    (welcome,) = [b for _, k, b in replies_of(ingest.handle(b"z", hello("wz", "run-z"))) if k == wire.WELCOME]
    assert welcome["next_seq"] == 1


def test_key_registration_is_one_statement_per_commit(tmp_path):
    """Registering the new keys of a commit costs a fixed number of statements, not one per key."""
    ingest, store = make(tmp_path)
    ingest.handle(b"a", hello("wa", "run-a"))
    ingest.commit()
    statements: list[str] = []
    store.con.set_trace_callback(statements.append)
    keys = {f"k{i}": [float(i)] for i in range(2000)}
    ingest.handle(b"a", batch("wa", 1, [0], keys))
    while getattr(ingest, "backlog", None):  # a wide row is applied in slices (one per loop turn in the agent)
        ingest.work(T0)
    assert acked(ingest.commit(), "wa") == 1
    store.con.set_trace_callback(None)
    assert sum("INTO keys" in s for s in statements) == 1
    assert sum("FROM keys" in s for s in statements) == 1
    hist = history(store.path, "run-a")
    assert len(hist) == 2000 and hist["k1999"] == ([0], [1999.0])


def test_an_agent_that_cannot_start_over_holds_and_says_so_when_its_store_is_lost(tmp_path):
    """A root (resets_store_on_loss = False: its node links' acknowledged seqs live in the store) whose
    store is deleted acknowledges nothing more, keeps what it has, reports "store lost: ..." in status and
    holds new batches beyond its budget; nothing is moved or recreated."""

    config = AgentConfig(data_dir=tmp_path, runtime_dir=tmp_path / "rt", rows_per_s=0.0, pending_max_bytes=1)
    store = SQLiteStore(tmp_path / "store.sqlite")
    ingest = Ingest(store, config, node="n1", sink=StoreSink(resets_on_loss=False))
    ingest.handle(b"a", hello("wa", "run-a"))
    ingest.handle(b"a", batch("wa", 1, [0], {"v": [0.0]}))
    assert acked(ingest.commit(), "wa") == 1
    for suffix in ("", "-wal", "-shm"):
        Path(str(store.path) + suffix).unlink(missing_ok=True)
    ingest.handle(b"a", batch("wa", 2, [1], {"v": [1.0]}))
    assert ingest.commit(force=True) == []
    assert ingest.status()["store_state"].startswith("store lost: ")
    ingest.handle(b"a", batch("wa", 3, [2], {"v": [2.0]}))
    assert ingest.writers["wa"].applied == 2 and ingest.counters.values["held_batches"] == 1
    assert not store.path.exists() and store.moved_aside == [] and ingest.status()["store_losses"] == []
