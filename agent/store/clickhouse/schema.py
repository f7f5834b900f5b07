"""The ClickHouse store's tables, created at start on the server (or chdb) it opens, and what that engine
can do (codecs), detected then.

The SQL here and in the reader runs unchanged on Debian's clickhouse-server 18.16 and on chdb 26.x:
MergeTree-family tables in the ``ENGINE = … ORDER BY …`` syntax, no Nullable columns (None is a sentinel:
run id 0, rank -1, key ''), no LowCardinality, no window functions. Column codecs (DoubleDelta for steps,
Delta for versions, Gorilla for values, ZSTD for bytes) exist from ClickHouse 19.x on; whether the engine
takes them is tried once with a CREATE of a temporary Memory table (18.16 answers with a syntax error at
``CODEC``: measured), and the tables get them only then (:attr:`Schema.codecs`).

Every table is a ``ReplacingMergeTree``. Rows that stand for the same thing written twice (a commit that
failed half-way and was written again, a replay after a crash) have the same sorting key only when
they carry the same version; reads never rely on merges having happened: each read picks the latest
version itself (agent/store/clickhouse/reader.py). Mutable records (runs, groups, writers) are rows
versioned by ``ver``: ``ReplacingMergeTree(ver)`` keeps the latest one per id after merges, reads take
it with ``ORDER BY id, ver DESC LIMIT 1 BY id``.
"""

from __future__ import annotations

from agent.errors import StoreError
from agent.store.base import GROUP_FIELDS
from agent.store.clickhouse.conn import Conn

# columns of the group-rows table: what grouping's finalize() gives, typed as the SQLite store reads them
GROUP_TYPES = {f: ("Float64" if f in ("mean", "min", "max", "std") else "Int64") for f in GROUP_FIELDS}

# table → (columns as name → (type, codec), sorting key, version column or "")
TABLES: dict[str, tuple[dict[str, tuple[str, str]], str, str]] = {
    "history_chunks": (
        {
            "group_id": ("UInt64", ""),
            "key": ("String", ""),
            "run_id": ("UInt64", ""),
            "step_min": ("Int64", "DoubleDelta"),
            "step_max": ("Int64", "DoubleDelta"),
            "ver": ("UInt64", "Delta, LZ4"),
            "n": ("UInt64", ""),
            "late": ("UInt8", ""),
            "enc": ("String", ""),
            "steps": ("String", "ZSTD(1)"),
            "vals": ("String", ""),
        },
        "group_id, key, run_id, step_min, ver",
        "",
    ),
    "group_rows": (
        {
            "group_id": ("UInt64", ""),
            "key": ("String", ""),
            "ver": ("UInt64", "Delta, LZ4"),
            "revision": ("UInt8", ""),
            **{
                f: (t, "DoubleDelta" if f == "step" else "Gorilla" if t == "Float64" else "")
                for f, t in GROUP_TYPES.items()
            },
        },
        "group_id, key, step, ver",
        "",
    ),
    "groups": (
        {
            "id": ("UInt64", ""),
            "project": ("String", ""),
            "name": ("String", ""),
            "ver": ("UInt64", ""),
            "rec": ("String", ""),
        },
        "id",
        "ver",
    ),
    "runs": (
        {
            "id": ("UInt64", ""),
            "group_id": ("UInt64", ""),
            "name": ("String", ""),
            "state": ("String", ""),
            "ver": ("UInt64", ""),
            "rec": ("String", "ZSTD(1)"),
        },
        "id",
        "ver",
    ),
    "writers": (
        {"writer": ("String", ""), "run_id": ("UInt64", ""), "seq": ("Int64", ""), "ver": ("UInt64", "")},
        "writer",
        "ver",
    ),
    "drops": ({"cause": ("String", ""), "ver": ("UInt64", ""), "n": ("Int64", "")}, "cause, ver", ""),
    "alerts": (
        {
            "group_id": ("UInt64", ""),
            "kind": ("String", ""),
            "rank": ("Int64", ""),
            "key": ("String", ""),
            "token": ("String", ""),
            "ver": ("UInt64", ""),
            "doc": ("String", ""),
        },
        "group_id, kind, rank, key, token, ver",
        "",
    ),
    "system": (
        {
            "group_id": ("UInt64", ""),
            "run_id": ("UInt64", ""),
            "node": ("String", ""),
            "ver": ("UInt64", ""),
            "data": ("String", "ZSTD(1)"),
        },
        "group_id, run_id, node, ver",
        "",
    ),
}
# how a cluster's Distributed tables spread rows over shards: a run's rows (and their replays) on one shard,
# a group's rows on one shard, records by id (every version of a record on one shard: LIMIT 1 BY per shard)
SHARD_BY = {
    "history_chunks": "run_id",
    "group_rows": "group_id",
    "groups": "id",
    "runs": "id",
    "writers": "cityHash64(writer)",
    "drops": "cityHash64(cause)",
    "alerts": "group_id",
    "system": "group_id",
}
# SQL over single points: a view unpacking the chunks (agent/store/clickhouse/points.py) into one row per
# (run, key, step, version) with the value as Float64 (a span's last value; NaN for every value of a list chunk:
# its msgpack is not readable in SQL, the store's reads decode it).
# reinterpretAs* of substrings: 18.16 has no function from a String of bytes to an array of numbers.
_AT = "substring(vals, i * 8 + 1, 8)"
HISTORY_VIEW = (
    "SELECT group_id, key, run_id, ver, late, enc, "
    "if(steps = '', step_min + toInt64(i), reinterpretAsInt64(substring(steps, i * 8 + 1, 8))) AS step, "
    f"multiIf(enc = 'f8', reinterpretAsFloat64({_AT}), enc = 'i8', toFloat64(reinterpretAsInt64({_AT})), "
    "enc = 'b1', toFloat64(reinterpretAsUInt8(substring(vals, i + 1, 1))), "
    "enc = 'span', reinterpretAsFloat64(substring(vals, (2 * n + i) * 8 + 1, 8)), nan) AS value "
    "FROM {chunks} ARRAY JOIN range(n) AS i"
)
VERSIONED = tuple(t for t, (cols, _, _) in TABLES.items() if "ver" in cols)


def types(table: str) -> dict[str, str]:
    return {c: t for c, (t, _) in TABLES[table][0].items()}


def probe_codecs(conn: Conn, database: str) -> bool:
    """Whether the engine takes the column codecs the tables would use (a CREATE of a Memory table)."""
    probe = f"{database}.rankwise_codec_probe"
    try:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {probe} (s Int64 CODEC(DoubleDelta), v UInt64 CODEC(Delta, LZ4), "
            "x Float64 CODEC(Gorilla), b String CODEC(ZSTD(1))) ENGINE = Memory"
        )
    except StoreError:
        return False
    conn.execute(f"DROP TABLE IF EXISTS {probe}")
    return True


class Schema:
    """The store's tables in ``database``, created if missing. ``codecs``: whether they were given codecs.

    With ``cluster`` (a cluster of the server's ``remote_servers``): on every shard (``system.clusters``,
    reached with the same user) the tables ``<table>_local`` and over them ``<table>``, a ``Distributed``
    table sharded by :data:`SHARD_BY`; the store reads and writes the Distributed ones (inserts synchronous:
    ``insert_distributed_sync``, set by agent/store/clickhouse/conn.py). No ``ON CLUSTER``: that needs
    ZooKeeper, which a sharded cluster without replicas does not have."""

    def __init__(self, conn: Conn, database: str, create: bool = True, cluster: str = "", shard_conns=None):
        self.conn = conn
        self.database = database
        self.cluster = cluster
        self.shard_conns = shard_conns  # a callable: the cluster's shards → connections (create only)
        self.codecs = False
        if create:  # the store's side; a reader never changes the schema
            self.create()

    def __repr__(self) -> str:
        where = f" cluster={self.cluster}" if self.cluster else ""
        return f"<Schema {self.database}{where} on {self.conn.engine} {self.conn.version} codecs={self.codecs}>"

    def t(self, table: str) -> str:
        """A table's qualified name (a cluster's Distributed table)."""
        return f"{self.database}.{table}"

    def create(self) -> None:
        self.codecs = probe_codecs_in(self.conn, self.database)
        conns = self.shard_conns(self.conn, self.cluster) if self.cluster else [self.conn]
        try:
            for conn in conns:
                conn.execute(f"CREATE DATABASE IF NOT EXISTS {self.database}")
                for table in TABLES:
                    if not self.cluster:
                        conn.execute(self.ddl(table, self.t(table)))
                        continue
                    conn.execute(self.ddl(table, self.t(table) + "_local"))
                    conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {self.t(table)} AS {self.t(table)}_local "
                        f"ENGINE = Distributed({self.cluster}, {self.database}, {table}_local, {SHARD_BY[table]})"
                    )
                views = {"history": self.t("history_chunks")}
                if self.cluster:
                    views["history_local"] = self.t("history_chunks") + "_local"
                for view, chunks in views.items():
                    conn.execute(f"CREATE VIEW IF NOT EXISTS {self.t(view)} AS {HISTORY_VIEW.format(chunks=chunks)}")
        finally:
            for conn in conns:
                if conn is not self.conn:
                    conn.close()

    def ddl(self, table: str, name: str) -> str:
        cols, order, ver = TABLES[table]
        parts = []
        for col, (typ, codec) in cols.items():
            parts.append(f"`{col}` {typ}" + (f" CODEC({codec})" if codec and self.codecs else ""))
        return (
            f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(parts)}) "
            f"ENGINE = ReplacingMergeTree({ver}) ORDER BY ({order})"
        )


def probe_codecs_in(conn: Conn, database: str) -> bool:
    conn.execute(f"CREATE DATABASE IF NOT EXISTS {database}")
    return probe_codecs(conn, database)
