"""The ClickHouse store: the agent's store interface (agent/store/base.py) over a ClickHouse server or chdb.

Selected by a store URL (agent/store/clickhouse/url.py): ``clickhouse://[user[:password]@]host:port/database``
(a server over the native protocol: clickhouse-driver, the ``clickhouse`` extra) or ``chdb://<dir>`` (the
engine in this process, chdb). Nothing here is imported unless such a URL is used; the engines' packages are
imported only when a store opens (agent/store/clickhouse/conn.py).

Design (measured on Debian's clickhouse-server 18.16 and chdb 4.4 = ClickHouse 26.9, this machine):

* One SQL for both: 18.16 has no column codecs (a CREATE with ``CODEC`` is a syntax error there); they
  are detected by trying one, and used where they work (agent/store/clickhouse/schema.py). No Nullable,
  no LowCardinality, no window functions; ``LIMIT 1 BY`` and ``argMax`` exist on both.
* History: chunks, as the SQLite store keeps them: one row of ``history_chunks`` per (run, key, commit
  chunk) holding the chunk's steps and values as little-endian bytes (SQLite's encodings; a list chunk as
  msgpack; steps left out when they are a range), ``ORDER BY (group_id, key, run_id, step_min, ver)``: a
  group's key is one contiguous range of a few rows per rank (agent/store/clickhouse/points.py). String
  blobs rather than ``Array`` columns: measured on 64 ranks × 100k steps, 3× faster to insert and 2.5×
  to read over clickhouse-driver (no numpy path for arrays), the same on chdb. SQL over points: the
  ``history`` view unpacks chunks into one row per (run, key, step, version) (agent/store/clickhouse/schema.py):
  its ARRAY JOIN copies each chunk's bytes once per point, so its memory grows with points × chunk bytes (a
  chunk of 20k steps: 3 GB, past 18.16's default 1.86 GiB a query): filter it to a few chunks, or decode
  ``history_chunks`` in the client (tests/clickhouse/test_store_down_root.py ``raw_counts``).
  Group rows stay one row per (group, key, step): ``ORDER BY (group_id, key, step, ver)``. Both
  ``ReplacingMergeTree``; reads never wait for merges (agent/store/clickhouse/reader.py).
* Versions: ``commit << 24 | chunk position``, unique and growing (agent/store/clickhouse/txn.py). Later
  chunks win by version; META_KEYS keep the earliest; group-row revisions are later versions. The
  incremental reads' chunk ids are versions.
* Exactly once: a commit is the INSERTs of one Txn, the writers' sequence numbers LAST (a crash between two
  INSERTs leaves the batch unacknowledged and not marked as applied: it is resent and written again
  under a newer version). A replayed commit's chunks are later versions of the same steps: every read
  joins a (run, key)'s chunks in version order, later chunks winning per step (``last_wins``,
  agent/store/base.py; META_KEYS the earliest), so replays are never seen twice. What a half-written
  commit stored twice: drops of that commit count twice (counters, not points), system samples of a
  retried commit appear twice.
* Run and group ids: counters read at open, records INSERTed by register() before it returns.
* Reads fetch chunks (or group rows) unsorted and order them in Python/numpy: 18.16's ORDER BY over the
  former 6.4M point rows took 4.2 s where the unsorted read took 0.3 s (agent/store/clickhouse/reader.py).
* A cluster (``?cluster=NAME``): ``<table>_local`` on every shard and ``Distributed`` tables over them,
  history sharded by run, group rows by group, records by id; synchronous distributed INSERTs keep the
  writers-last order (agent/store/clickhouse/schema.py); the ``history`` view over the Distributed chunks,
  ``history_local`` over a shard's. No ON CLUSTER DDL (it needs ZooKeeper).
  Production: ``Replicated*`` engines with Keeper for replicas are not created by this store.
* Measured on this machine (2 cores shared with the server; benchmark 13, two runs, docs/scale.md): one
  agent stores 1.14-1.50 M points/s into 18.16 (SQLite in the same runs: 1.38-1.76 M), a 64-rank × 100k-step
  group reads back (``group_rank_history``) in 84-86 ms (SQLite: 99-101 ms). The one-row-per-point layout
  before: 0.56 M points/s and 1,260 ms.
"""

from agent.store.clickhouse.reader import ClickHouseReader
from agent.store.clickhouse.store import ClickHouseStore
from agent.store.clickhouse.url import ClickHouseURL, is_clickhouse_url, parse_url

__all__ = ["ClickHouseReader", "ClickHouseStore", "ClickHouseURL", "is_clickhouse_url", "parse_url"]
