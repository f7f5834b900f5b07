"""The ClickHouse store: the agent's store interface (agent/store/base.py) over a ClickHouse server or chdb.

Selected by a store URL (agent/store/clickhouse/url.py): ``clickhouse://[user[:password]@]host:port/database``
(a server over the native protocol: clickhouse-driver, the ``clickhouse`` extra) or ``chdb://<dir>`` (the
engine in this process, chdb). Nothing here is imported unless such a URL is used; the engines' packages are
imported only when a store opens (agent/store/clickhouse/conn.py).

Design (measured on Debian's clickhouse-server 18.16 and chdb 4.4 = ClickHouse 26.9, this machine):

* One SQL for both: 18.16 has no column codecs (a CREATE with ``CODEC`` is a syntax error there); they
  are detected by trying one, and used where they work (agent/store/clickhouse/schema.py). No Nullable,
  no LowCardinality, no window functions; ``LIMIT 1 BY`` and ``argMax`` exist on both.
* History: one row per (run, key, step) of a chunk, ``ORDER BY (group_id, key, run_id, step, ver)``: a
  group's key is one contiguous range (the group and rank views read it whole). Group rows:
  ``ORDER BY (group_id, key, step, ver)``. Both ``ReplacingMergeTree``: identical replays collapse when
  parts merge; reads never wait for that (agent/store/clickhouse/reader.py).
* Versions: ``commit << 24 | chunk position``, unique and growing (agent/store/clickhouse/txn.py). Later
  chunks win by version; META_KEYS keep the earliest; group-row revisions are later versions. The
  incremental reads' chunk ids are versions.
* Exactly once: a commit is the INSERTs of one Txn, the writers' sequence numbers LAST (a crash between two
  INSERTs leaves the batch unacknowledged and not marked as applied: it is resent and written again
  under a newer version). Every read keeps one row per (run, key, step) / (group, key, step): replays
  are never seen twice. What a half-written commit stored twice: drops of that commit count twice
  (counters, not points), system samples of a retried commit appear twice.
* Run and group ids: counters read at open, records INSERTed by register() before it returns.
* Reads fetch rows unsorted and sort them in numpy: 18.16's ORDER BY over 6.4M rows took 4.2 s, the
  unsorted read 0.3 s and the numpy sort 0.26 s (agent/store/clickhouse/reader.py).
* A cluster (``?cluster=NAME``): ``<table>_local`` on every shard and ``Distributed`` tables over them,
  history sharded by run, group rows by group, records by id; synchronous distributed INSERTs keep the
  writers-last order (agent/store/clickhouse/schema.py). No ON CLUSTER DDL (it needs ZooKeeper).
  Production: ``Replicated*`` engines with Keeper for replicas are not created by this store.
* Measured on this machine (2 cores shared): 64 ranks × 100k steps of one key inserted at 0.8-1.0 M
  points/s (server 18.16 and chdb; SQLite's column chunks: 20 M points/s), read back by
  ``group_rank_history`` in 1.6-3.3 s (SQLite: 0.36 s). Inserts are one row per point through
  clickhouse-driver's Python encoder; reads are dominated by the transfer of 6.4M rows.
"""

from agent.store.clickhouse.reader import ClickHouseReader
from agent.store.clickhouse.store import ClickHouseStore
from agent.store.clickhouse.url import ClickHouseURL, is_clickhouse_url, parse_url

__all__ = ["ClickHouseReader", "ClickHouseStore", "ClickHouseURL", "is_clickhouse_url", "parse_url"]
