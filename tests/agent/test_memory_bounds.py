"""The agent's memory bounds in bytes (issue 11, "agent ≤ 150 MB RSS at any load").

Work the agent has applied but not committed never passes ``RANKWISE_AGENT_PENDING_BYTES`` (it commits first),
the open points of every group together never stay above ``window_max_bytes`` past a tick (the groups share
it; a drain stops as soon as it is passed), a seal reduces a bounded slice per tick without breaking "when
the last rank finishes, every group row is stored", and the WAL is checkpointed back within its bound. The
in-process tests drive a real Ingest over a real SQLite store with client frames (a burst of several writers
that the loop drains without a commit in between); the last test runs a real agent with real ranks. Each
checks the agent's own accounting (exact) and that every row sent is stored. RSS itself is measured by
``make bench`` (agent_throughput against the 150 MB goal), never asserted here.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from agent.apply import batch_cost
from agent.config import AgentConfig
from agent.ingest import Ingest
from agent.store.sqlite import SQLiteStore
from agent.store.sqlite_reader import SQLiteReader
from client import wire
from support import frames
from support.frames import T0


def hello(writer: str, group: str, rank: int, world: int) -> bytes:
    return frames.hello(writer, rank, world, group)


def batch(writer: str, seq: int, steps: np.ndarray, keys: list[str]) -> bytes:
    steps = np.asarray(steps, np.int64)
    return frames.batch(writer, seq, steps, {k: steps * (i + 1.0) for i, k in enumerate(keys)})


def make(tmp_path: Path, **cfg) -> Ingest:
    config = AgentConfig(data_dir=tmp_path, runtime_dir=tmp_path / "rt", rows_per_s=0.0, **cfg)
    return Ingest(SQLiteStore(tmp_path / "store.sqlite"), config, node="n1")


def acks_of(replies) -> dict[str, int]:
    out: dict[str, int] = {}
    for _, frame in replies:
        kind, body = wire.unpack(frame)
        assert kind == wire.ACK, (kind, body)
        out[body["w"]] = max(out.get(body["w"], 0), body["s"])
    return out


def stored_steps(path: Path, group: str) -> dict[str, dict[str, np.ndarray]]:
    """Per run name, per key: the stored steps."""
    reader = SQLiteReader(path)
    try:
        (g,) = [g for g in reader.groups() if g.name == group]
        return {r.name: {k: np.asarray(s) for k, (s, _) in reader.run_history(r.id).items()} for r in reader.runs(g.id)}
    finally:
        reader.close()


def test_applied_batches_never_pass_the_pending_byte_budget(tmp_path):
    """Three writers' batches (each ~12 KiB) arrive as one burst of 90 that the loop drains without committing;
    the agent commits on its own each time the next batch would take its applied-but-uncommitted bytes past
    the 64 KiB budget: after every frame the pending bytes are within it (exact), the high-water mark in its
    status is too and was reached, every batch is acknowledged once committed and every row is stored."""
    budget = 64 << 10
    ingest = make(tmp_path, pending_max_bytes=budget)
    writers = [f"w{r}" for r in range(3)]
    for r, w in enumerate(writers):
        ingest.handle(w.encode(), hello(w, "burst", r, 3))
    keys = ["loss", "acc"]
    frames = []
    for seq in range(1, 31):
        steps = np.arange((seq - 1) * 300, seq * 300)
        frames += [(w, batch(w, seq, steps, keys)) for w in writers]
    one = wire.decode_batch(wire.unpack(frames[0][1])[1], len(frames[0][1]))
    assert 8 << 10 < batch_cost(one) < budget // 4
    acked: dict[str, int] = {}
    for w, frame in frames:
        for writer, seq in acks_of(ingest.handle(w.encode(), frame)).items():
            acked[writer] = max(acked.get(writer, 0), seq)
        assert ingest.next_commit.nbytes <= budget
    status = ingest.status()
    assert budget - batch_cost(one) < status["pending_bytes_max"] <= budget
    assert status["pending_budget_bytes"] == budget
    total = sum(len(f) for _, f in frames)
    assert ingest.counters.values["budget_commits"] >= total // budget - 1
    assert ingest.counters.values.get("held_batches", 0) == 0
    for writer, seq in acks_of(ingest.commit(force=True)).items():
        acked[writer] = max(acked.get(writer, 0), seq)
    assert acked == dict.fromkeys(writers, 30)
    stored = stored_steps(ingest.store.path, "burst")
    assert sorted(stored) == ["rank-0", "rank-1", "rank-2"]
    for steps in stored.values():
        for key in keys:
            assert np.array_equal(np.sort(steps[key]), np.arange(30 * 300))


def test_the_group_windows_share_one_budget_and_a_drain_stops_when_it_is_passed(tmp_path):
    """Two groups of two ranks where only rank 0 of each has said hello (the join grace would hold every
    step open): their windows grow past the agent's 64 KiB window budget, the drain is told to stop (drain_full)
    as soon as the total passes it, and the next tick seals the oldest steps of each group until each holds at
    most its share (half). Every per-rank row is stored (sealing early drops nothing)."""
    budget = 64 << 10
    ingest = make(tmp_path, window_max_bytes=budget, max_commit_points=1 << 30, pending_max_bytes=1 << 30)
    for g in ("ga", "gb"):
        ingest.handle(g.encode(), hello(g, g, 0, 2))
    keys = ["loss", "acc"]
    seq = 0
    passed = None
    while passed is None:
        seq += 1
        for g in ("ga", "gb"):
            ingest.handle(g.encode(), batch(g, seq, np.arange((seq - 1) * 500, seq * 500), keys))
        if ingest.drain_full():
            passed = ingest.window_bytes()
    assert budget < passed <= budget + 2 * 500 * len(keys) * 16  # stopped within one frame per group of the budget
    ingest.tick()
    assert ingest.status()["window_bytes"] <= budget
    for group in ingest.groups.values():
        assert 0 < group.window.nbytes <= budget // 2 and group.record.sealed_through >= 0
    assert not ingest.drain_full()
    ingest.commit(force=True)
    for g in ("ga", "gb"):
        steps = stored_steps(ingest.store.path, g)["rank-0"]
        for key in keys:
            assert np.array_equal(np.sort(steps[key]), np.arange(seq * 500))


def test_a_finished_rank_is_acknowledged_once_its_group_rows_are_stored_after_a_sliced_seal(tmp_path, monkeypatch):
    """A one-rank group's last batch (with ``finish``) leaves more open points than a seal slice (made 16 KiB
    here): the seal runs over several ticks, a slice of keys each, the batch's rows are committed at once but
    its ACK is held until the last slice is committed; when it arrives every key has a group row per step
    (README: when the last rank of a group finishes, every group row is in the store)."""
    import agent.groups

    monkeypatch.setattr(agent.groups, "SEAL_SLICE_BYTES", 16 << 10)
    ingest = make(tmp_path)
    ingest.handle(b"w", hello("w", "fin", 0, 1))
    keys = [f"k{i}" for i in range(8)]
    steps = np.arange(1000)  # 8 keys x 1000 points x 16 bytes = 128 KiB open: 8 slices of one key
    frame = batch("w", 1, steps, keys)
    body = wire.unpack(frame)[1]
    body["ctl"] = [["finish", {"exit_code": 0, "t": T0 + 1000}]]
    assert ingest.handle(b"w", wire.pack(wire.BATCH, body)) == []
    turns = 0
    while True:
        ingest.tick()
        acks = acks_of(ingest.commit())
        turns += 1
        if acks:
            break
        assert turns < 50
        reader = SQLiteReader(ingest.store.path)
        try:
            assert reader.runs(reader.groups()[0].id)[0].rows == 1000  # the rows are committed already
        finally:
            reader.close()
    assert acks == {"w": 1} and turns > 1
    reader = SQLiteReader(ingest.store.path)
    try:
        (g,) = reader.groups()
        for key in keys:
            assert np.array_equal(reader.group_history(g.id, key)["step"], steps)
    finally:
        reader.close()


def test_the_write_ahead_log_stays_within_its_byte_bound(tmp_path):
    """Commits of ~40 KiB each, 200 of them (8 MiB in all), on a store whose WAL bound is 256 KiB, checkpointed
    as the agent's loop does whenever the WAL passed the bound: the WAL file never grows past the bound plus one
    commit (it restarts after each checkpoint and is cut back to the bound), and every row is stored."""
    limit = 256 << 10
    config = AgentConfig(data_dir=tmp_path, runtime_dir=tmp_path / "rt", rows_per_s=0.0, wal_max_bytes=limit)
    store = SQLiteStore(tmp_path / "store.sqlite", wal_max_bytes=limit)
    ingest = Ingest(store, config, node="n1")
    ingest.handle(b"w", hello("w", "wal", 0, 1))
    largest = checkpoints = 0
    for seq in range(1, 201):
        ingest.handle(b"w", batch("w", seq, np.arange((seq - 1) * 1000, seq * 1000), ["loss", "acc"]))
        before = store.wal_bytes()
        assert acks_of(ingest.commit(force=True)) == {"w": seq}
        largest = max(largest, store.wal_bytes() - before)
        if store.wal_full():
            store.checkpoint()
            checkpoints += 1
        assert store.wal_bytes() <= limit + largest
    assert checkpoints >= 8 * (1 << 20) // (limit + largest) - 1
    steps = stored_steps(store.path, "wal")["rank-0"]
    assert np.array_equal(np.sort(steps["loss"]), np.arange(200 * 1000))


RANK = """
import os, rankwise
run = rankwise.init(project="mem", group="g-mem")
for i in range(30000):
    run.log({"loss": 1.0 / (i + 1), "acc": 0.5, "lr": 3e-4, "gn": float(i)})
run.finish()
"""


def test_a_real_agent_under_a_burst_of_several_ranks_keeps_its_pending_bytes_within_budget(rankwise_env):
    """Three ranks log 30k rows of four keys each as fast as they can into an agent whose pending budget is
    256 KiB: the agent's own high-water mark of applied-but-uncommitted bytes (``rankwise status``) stays
    within the budget or a single batch (a batch alone is always taken), and every row of every rank is stored."""
    import rankwise
    from support.probes import status
    from support.processes import run_ranks

    budget = 256 << 10
    # the clients keep every row as logged (no coalescing in the client under its own queue bound)
    run_ranks(
        rankwise_env,
        textwrap.dedent(RANK),
        3,
        "g-mem",
        RANKWISE_AGENT_PENDING_BYTES=str(budget),
        RANKWISE_MAX_QUEUED_BYTES="4G",
    )
    st = status(rankwise_env)
    assert st is not None and st["pending_budget_bytes"] == budget
    # the client cuts batches of at most 8192 rows: 8192 × (4 keys + step, time, runtime) × 8 bytes + framing
    one_batch = 8192 * 7 * 8 + (4 << 10)
    assert 0 < st["pending_bytes_max"] <= max(budget, one_batch)
    assert st["counters"]["batches"] >= 3
    api = rankwise.Api()
    try:
        runs = api.group("mem", "g-mem").runs
        assert sorted(r.rank for r in runs) == [0, 1, 2]
        for r in runs:
            assert (r.state, r.rows) == ("finished", 30000)
            cols = r.history_arrays(["loss", "gn"])
            assert np.array_equal(cols["gn"][0], np.arange(30000))
            assert np.array_equal(cols["gn"][1], np.arange(30000, dtype=np.float64))
    finally:
        api.close()


def test_a_budget_commit_ends_the_drain_so_the_loop_can_checkpoint_between_commits(tmp_path):
    """A client resending a backlog fills the socket with batches that each need a budget commit: the drain
    stops after the first batch that made the agent commit (drain_full), so the loop's WAL check runs between
    commits instead of once after the whole backlog (which, after a disk-full episode, grew the WAL past what
    the disk could still hold: a store stuck in "disk full"). Batches that fit go on draining; nothing is lost."""
    budget = 64 << 10
    ingest = make(tmp_path, pending_max_bytes=budget)
    ingest.handle(b"w0", hello("w0", "drain", 0, 1))
    frames = [batch("w0", seq, np.arange((seq - 1) * 400, seq * 400), ["loss", "acc"]) for seq in range(1, 41)]
    stops = []
    acked: dict[str, int] = {}
    for i, frame in enumerate(frames):
        commits = ingest.counters.values.get("budget_commits", 0)
        acked.update(acks_of(ingest.handle(b"w0", frame)))
        made_room = ingest.counters.values.get("budget_commits", 0) > commits
        full = ingest.drain_full()
        assert full == made_room, (i, full, made_room)
        if full:
            stops.append(i)
    assert len(stops) >= 5  # several budget commits in this backlog: each ended its drain
    acked.update(acks_of(ingest.commit(force=True)))
    assert acked == {"w0": 40}
    assert np.array_equal(stored_steps(tmp_path / "store.sqlite", "drain")["rank-0"]["loss"], np.arange(40 * 400))


def test_the_wal_is_due_for_a_checkpoint_past_a_third_of_the_free_disk_space(tmp_path, monkeypatch):
    """wal_full() asks for a checkpoint once the WAL passes wal_max_bytes or a third of its filesystem's free
    space (a checkpoint copies the WAL into the database file, which needs that room); a WAL within 4 MiB
    (what an emptied one is cut back to) never is for want of space. Free space is the filesystem's own
    answer (statvfs), here replaced to set it."""
    import agent.store.sqlite as sqlite_mod

    store = SQLiteStore(tmp_path / "store.sqlite", wal_max_bytes=64 << 20)
    try:
        sizes = {"wal": 6 << 20, "free": 100 << 20}
        monkeypatch.setattr(store, "wal_bytes", lambda: sizes["wal"])

        class Fs:
            f_frsize = 4096

            @property
            def f_bavail(self):
                return sizes["free"] // 4096

        monkeypatch.setattr(sqlite_mod.os, "statvfs", lambda path: Fs())
        assert not store.wal_full()  # 6 MiB of 100 MiB free
        sizes["free"] = 17 << 20
        assert store.wal_full()  # 6 MiB > 17/3 MiB
        sizes["wal"] = 4 << 20
        sizes["free"] = 1 << 20
        assert not store.wal_full()  # within the size an emptied WAL keeps
        sizes["wal"], sizes["free"] = (64 << 20) + 1, 1 << 40
        assert store.wal_full()  # past wal_max_bytes, whatever the room
    finally:
        store.close()
