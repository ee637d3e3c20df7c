"""The scale-out store: ClickHouse over its HTTP interface, shared by many processes.

Layout:

- ``readings`` is a ReplacingMergeTree ordered by (series_id, ts) and partitioned by UTC
  month, with ``version`` (the write's time in µs, rising within a process) deciding which
  row of a key survives. Reads say FINAL, so they are exact before merges have run (a
  WHERE on other columns applies after FINAL's replacement; an argMax formulation would
  not do, as 18.16's argMax skips NULL values and a sensor error rewritten over a value
  must win). Aggregates say it only for months held in several parts, where a key may be
  twice (`meterhub.store.clickhouse_parts`), and find counters' runs in stored order on the
  server, sending only the rows that break them (`_run_heads`).
- Times are Int64 epoch µs: ClickHouse 18.16 has no DateTime64, and DateTime ends in 2106
  where readings may lie anywhere in 1800-2200. Buckets are integer arithmetic
  (`meterhub.store.buckets.bucket_arithmetic_sql`), so the server's time zone never enters.
- ``series_id`` is a hash of (device, channel): processes that create the same channel at
  once give it the same id, with no counter to share.
- The catalog, cursors, sync status, state and API keys are ReplacingMergeTree tables in
  the same database, read with FINAL: an update is an insert of a newer version.
- With ``?cluster=NAME`` each table is a ``Distributed`` table over per-shard local tables
  (``<name>_local``), sharded by series (readings) or by key (the rest), so every key lives
  on one shard and replacement stays correct. ``ON CLUSTER`` needs ZooKeeper, which a
  plain cluster lacks: the store creates the local tables on every shard of
  ``system.clusters`` itself, over HTTP on the URL's port. Inserts go through the
  Distributed tables with ``insert_distributed_sync=1``, so a read right after sees them.

ClickHouse has no transactions. A write stores its rows first and its cursors and state
after, so a crash between them re-fetches and replaces (at least once, and idempotent: no
loss, no duplicate). Checks that can refuse a write all run before anything is sent.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from meterhub.errors import (
    ConflictError,
    InputError,
    NotFoundError,
    StoreError,
    StoreNotFoundError,
)
from meterhub.keys import ApiKey, Scope
from meterhub.model import (
    READING_SCHEMA,
    Channel,
    ChannelKind,
    Device,
    Quality,
    Site,
    check_catalog,
    to_readings,
)
from meterhub.store.aggregation import (
    ERRORS,
    aggregate,
    column,
    order_by_series_and_time,
)
from meterhub.store.base import (
    DELTA_FUNCTIONS,
    INSTANT_FUNCTIONS,
    PageKey,
    Selection,
    SyncCursor,
    WriteResult,
    keys_of,
)
from meterhub.store.buckets import DAY_US, bucket_arithmetic_sql
from meterhub.store.catalog import (
    CatalogCache,
    SeriesRow,
    distinct_keys,
    known_series,
    new_channels,
    to_channel_units,
)
from meterhub.store.clickhouse_http import (
    UNKNOWN_DATABASE,
    UNKNOWN_TABLE,
    ClickHouseClient,
    ClickHouseError,
    ClickHouseURL,
    literal,
)
from meterhub.store.clickhouse_parts import PARTITION_KEY, PartsWatch, Snapshot
from meterhub.store.counters import (
    befores_certain,
    counter_sums,
    counter_sums_of_heads,
    with_bases,
)
from meterhub.store.gaps import GAPS_SCHEMA, find_gaps
from meterhub.store.reads import (
    MAX_US,
    MIN_US,
    Plan,
    clamped_us,
    last_of_each_key,
    page_series,
    plan_page,
    reading_batch,
)
from meterhub.timebase import Every, epoch_us

T = TypeVar("T")

#: 2: readings' partition key divides by a signed number (`PARTITION_KEY`)
SCHEMA_VERSION = "2"
SHORT_WRITE_ROWS = 10_000  #: writes up to this size look their channels up in the cache
_KEYS_IN_LIST = 2_000  #: a write up to this size probes its stored keys one by one
_SERIES_TOGETHER = 200  #: a scan of up to this many series tries them in one query
_RANGES_A_PROBE = 500  #: series ranges one probe of a large write names
#: seconds a process keeps its copy of the catalog: other processes may change it
CATALOG_MAX_AGE = 2.0
#: stores holding readings over at most this span (µs) bucket an aggregate without a time
#: range by the offsets over all of it (see `_data_range`)
HELD_RANGE_US = 3 * 366 * 86_400_000_000
_QUALITY = "Enum8(" + ", ".join(f"'{q.value}' = {i}" for i, q in enumerate(Quality, 1)) + ")"
_GOOD = "quality != 'sensor_error' AND isNotNull(value)"
_ERROR = "quality = 'sensor_error'"
_IN_RANGE = f"ts >= {MIN_US} AND ts < {MAX_US}"

READINGS = (("series_id", "Int64"), ("ts", "Int64"), ("value", "Nullable(Float64)"),
            ("quality", _QUALITY), ("validated", "UInt8"), ("seq", "Nullable(Int64)"),
            ("error_code", "Nullable(String)"), ("version", "UInt64"))
_READING_TYPES = dict(READINGS)
_VALUE_COLUMNS = ("value", "quality", "validated", "seq", "error_code")
_COUNTER_TYPES = {"series_id": "Int64", "t": "Int64", "value": "Nullable(Float64)"}
#: the heads of runs (`counter_sums_of_heads`): 18.16 numbers blocks and rows in them in
#: UInt32 (a fifth fewer bytes to send than UInt64); window functions number rows of a series
_HEAD_TYPES = {"series_id": "Int64", "ts": "Int64", "value": "Float64", "dt": "Int64",
               "before": "Float64", "flags": "UInt8", "position": "UInt32", "block": "UInt32"}
_WINDOW_HEAD_TYPES = {**_HEAD_TYPES, "position": "UInt64", "block": "UInt64"}

#: name -> (columns, ORDER BY, sharding key); every one replaces rows by key
_TABLES: dict[str, tuple[str, str, str]] = {
    "meta": ("key String, value String", "key", "cityHash64(key)"),
    "sites": ("site String, name Nullable(String), timezone Nullable(String), "
              "latitude Nullable(Float64), longitude Nullable(Float64)", "site",
              "cityHash64(site)"),
    "devices": ("device String, source String, site Nullable(String), "
                "name Nullable(String), model Nullable(String), serial Nullable(String), "
                "timezone Nullable(String), latitude Nullable(Float64), "
                "longitude Nullable(Float64)", "device", "cityHash64(device)"),
    "channels": ("series_id Int64, device String, channel String, quantity String, "
                 "unit String, kind String, interval_s Nullable(Int64)", "(device, channel)",
                 "cityHash64(device, channel)"),
    "sync_status": ("source String, device String, last_attempt Nullable(Int64), "
                    "last_success Nullable(Int64), last_error_class Nullable(String), "
                    "last_error Nullable(String), calls Int64, readings Int64",
                    "(source, device)", "cityHash64(source, device)"),
    "sync_cursors": ("source String, device String, cursor String, updated_at Int64",
                     "(source, device)", "cityHash64(source, device)"),
    "state": ("key String, value String, updated_at Int64", "key", "cityHash64(key)"),
    "api_keys": ("key_id String, name String, scope String, hash String, "
                 "rate_limit Nullable(String), created_at Int64, revoked_at Nullable(Int64)",
                 "key_id", "cityHash64(key_id)"),
}


def series_id_of(device: str, channel: str) -> int:
    """A channel's series id: the first 63 bits of a hash of its names (the same in every
    process; a collision is detected when the second channel is created)."""
    digest = hashlib.blake2b(f"{device}\x00{channel}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _in(values: Iterator[Any] | Sequence[Any]) -> str:
    return ", ".join(literal(v) for v in values) or "NULL"


def _ids(series: Sequence[SeriesRow] | Sequence[int]) -> str:
    return ", ".join(str(int(s[0] if isinstance(s, tuple) else s)) for s in series)


def _now_us() -> int:
    return epoch_us(dt.datetime.now(dt.UTC))


def _us_times(table: pa.Table, names: Sequence[str], tz: str | None = None) -> pa.Table:
    """Int64 µs columns as timestamps (naive, or in ``tz``)."""
    for name in names:
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, table.column(name).cast(pa.int64()).cast(
            pa.timestamp("us", tz=tz)))
    return table


class ClickHouseStore:
    """The `Store` on a ClickHouse database, one server or a cluster's shards.

    Any number of processes may use one store at once, each with any number of threads;
    writes within a process take one lock so that their versions rise in write order.
    """

    shared = True  #: any number of processes use one store at once

    def __init__(self, url: str, *, create: bool = True) -> None:
        self._where = ClickHouseURL.parse(url)
        self.url = self._where.redacted()  #: never the password: messages show it
        self._client = ClickHouseClient(self._where)
        self._lock = threading.RLock()
        self._last_version = 0
        self._catalog = CatalogCache(self._load_catalog, max_age=CATALOG_MAX_AGE)
        cluster = self._where.cluster
        self._parts = PartsWatch(
            self._shards if cluster else lambda: [ClickHouseClient(self._where)],
            self._where.database, "readings_local" if cluster else "readings")
        self._proven_parts: Snapshot | None = None  #: last parts `_no_strays` proved
        self._insert_settings: dict[str, str | int] = (
            {"insert_distributed_sync": 1} if cluster else {})
        self._run_settings: dict[str, str | int] = {}
        try:
            self._prepare(create)
        except BaseException:
            self._client.close()
            raise

    # -- schema ----------------------------------------------------------------------------

    def _prepare(self, create: bool) -> None:
        database = self._where.database
        try:
            found = self._client.query_rows(
                "SELECT value FROM meta FINAL WHERE key = 'schema_version'")
        except ClickHouseError as exc:
            if exc.code not in (UNKNOWN_DATABASE, UNKNOWN_TABLE):
                raise
            if not create:
                raise StoreNotFoundError(f"no meterhub store in ClickHouse database "
                                         f"{database} at {self._where.address}",
                                         path=self._where.redacted()) from None
            self._create()
            found = [(SCHEMA_VERSION,)]
        if not found:
            if not create:
                raise StoreNotFoundError(f"no meterhub store in ClickHouse database "
                                         f"{database} at {self._where.address}",
                                         path=self._where.redacted())
            self._create()
        elif found[0][0] != SCHEMA_VERSION:
            raise StoreError(f"ClickHouse database {database} holds a meterhub store of "
                             f"schema {found[0][0]}, this meterhub knows {SCHEMA_VERSION}")
        self._check_readings()
        names = {str(row[0]) for row in self._client.query_rows(
            "SELECT name FROM system.settings WHERE name IN ("
            "'max_partitions_per_insert_block', 'allow_experimental_window_functions') "
            "UNION ALL SELECT name FROM system.functions WHERE name = 'lagInFrame' "
            "UNION ALL SELECT concat('version ', version())")}
        if "max_partitions_per_insert_block" in names:
            # newer servers refuse a block spanning over 100 months by default
            self._insert_settings["max_partitions_per_insert_block"] = 0
        #: how counters find the reading before another (see _run_heads): window functions
        #: (21.x on; some 21.x ask for them to be allowed), the blocks of 18.16's pipeline,
        #: or, on the versions between, which evaluate a block's functions where their
        #: query plan puts them and are not tested here, not at all (all rows come over)
        self._heads: str | None = None
        if "lagInFrame" in names:
            self._heads = "windows"
            if "allow_experimental_window_functions" in names:
                self._run_settings["allow_experimental_window_functions"] = 1
        elif any(name.startswith(("version 1.", "version 18.")) for name in names):
            self._heads = "blocks"

    def _check_readings(self) -> None:
        """Refuse a database whose readings table is not this store's."""
        described = self._client.query_rows(
            f"SELECT name, type FROM system.columns WHERE database = "
            f"{literal(self._where.database)} AND table = 'readings'")
        found = {str(name): str(kind) for name, kind in described}
        for name, kind in READINGS:
            if found.get(name) != kind:
                raise StoreError(f"ClickHouse table {self._where.database}.readings is not "
                                 f"a meterhub readings table (column {name} should be {kind},"
                                 f" it is {found.get(name, 'missing')})")

    def _shards(self) -> list[ClickHouseClient]:
        """A client for each shard of the URL's cluster, on the URL's port."""
        cluster = self._where.cluster
        if cluster is None:
            return [self._client]
        rows = self._client.query_rows(
            f"SELECT DISTINCT shard_num, host_address FROM system.clusters "
            f"WHERE cluster = {literal(cluster)} ORDER BY shard_num", use_database=False)
        if not rows:
            raise StoreError(f"ClickHouse at {self._where.address} knows no cluster "
                             f"{cluster!r}: name one of its <remote_servers>")
        return [ClickHouseClient(dataclasses.replace(self._where, host=str(host)))
                for _, host in rows]

    def _create(self) -> None:
        database, cluster = self._where.database, self._where.cluster
        shards = self._shards()
        local = "_local" if cluster else ""
        try:
            for shard in shards:
                shard.execute(f"CREATE DATABASE IF NOT EXISTS {database}", use_database=False)
                statements = [
                    f"CREATE TABLE IF NOT EXISTS readings{local} ("
                    + ", ".join(f"{n} {t}" for n, t in READINGS)
                    + f") ENGINE = ReplacingMergeTree(version) PARTITION BY {PARTITION_KEY}"
                    " ORDER BY (series_id, ts)"]
                statements += [
                    f"CREATE TABLE IF NOT EXISTS {name}{local} ({columns}, version UInt64) "
                    f"ENGINE = ReplacingMergeTree(version) ORDER BY {order}"
                    for name, (columns, order, _) in _TABLES.items()]
                if cluster:
                    keys = {"readings": "series_id",
                            **{name: shard_key for name, (_, _, shard_key) in _TABLES.items()}}
                    statements += [
                        f"CREATE TABLE IF NOT EXISTS {name} AS {name}_local ENGINE = "
                        f"Distributed({literal(cluster)}, {database}, {name}_local, {key})"
                        for name, key in keys.items()]
                for statement in statements:
                    shard.execute(statement)
        finally:
            for shard in shards:
                if shard is not self._client:
                    shard.close()
        self._insert("meta", pa.table({"key": ["schema_version"], "value": [SCHEMA_VERSION]}),
                     {"key": "String", "value": "String"})

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        self._parts.close()
        self._client.close()

    def ping(self) -> None:
        self._client.query_rows("SELECT 1")

    def size_bytes(self) -> int | None:
        """The active parts of the database's tables, on every shard."""
        cluster = self._where.cluster
        parts = "system.parts" if cluster is None else \
            f"cluster({literal(cluster)}, system.parts)"  # (one replica a shard)
        rows = self._client.query_rows(
            f"SELECT sum(bytes_on_disk) FROM {parts} WHERE database = "
            f"{literal(self._where.database)} AND active", use_database=False)
        return int(rows[0][0] or 0)

    def __enter__(self) -> ClickHouseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _version(self) -> int:
        """A version newer than every earlier one of this process (the clock, or one more
        than the last when the clock stands still or steps back)."""
        with self._lock:
            self._last_version = max(_now_us(), self._last_version + 1)
            return self._last_version

    def _insert(self, name: str, table: pa.Table, types: Mapping[str, str],
                version: int | None = None) -> None:
        """Insert rows into a replacing table (with a new version unless given)."""
        if name in _TABLES or name == "readings":
            stamp = self._version() if version is None else version
            table = table.append_column("version", pa.array(
                np.full(table.num_rows, stamp, dtype=np.uint64)))
            types = {**types, "version": "UInt64"}
        self._client.insert_arrow(name, table, dict(types), self._insert_settings)

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self._client.query_rows(sql)

    # -- writing ---------------------------------------------------------------------------

    def write(self, data: Any, *, source: str | None = None,
              cursors: Sequence[SyncCursor] = (), origin: str = "api",
              state: Mapping[str, str] | None = None) -> WriteResult:
        """Upsert readings by (device, channel, ts); the last row of a key in `data` wins.

        The rows go first, then the sync cursors and the ``state`` values: a failure in
        between leaves rows whose cursor has not moved, which the next sync fetches and
        replaces again. The write's version (its time in µs) is its batch id."""
        table = READING_SCHEMA.empty_table() if data is None else to_readings(
            data, source=source, keep_hints=True)
        # what DuckDB's constraints refuse inside its transaction, refused before any row
        for key, value in (state or {}).items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise InputError(f"state value of {key!r} is {value!r}: state keys and "
                                 "values are text, NOT NULL")
        for cursor in cursors:
            if not all(isinstance(v, str) for v in (cursor.source, cursor.device,
                                                    cursor.value)):
                raise InputError(f"sync cursor {cursor!r}: its source, device and value "
                                 "are text, NOT NULL")
        with self._lock:
            version = self._version()
            counts = (0, 0, 0, 0)
            if table.num_rows:
                ids = (known_series(table, self._catalog.index())
                       if table.num_rows <= SHORT_WRITE_ROWS else None)
                if ids is None:
                    table, series = self._ensure_catalog(table)
                    ids = self._ids_of(table, series)
                counts = self._store_rows(table, ids, version)
            now = _now_us()
            if cursors:
                self._insert("sync_cursors", pa.table({
                    "source": [c.source for c in cursors], "device": [c.device for c in cursors],
                    "cursor": [c.value for c in cursors],
                    "updated_at": pa.array([now] * len(cursors), pa.int64())}),
                    {"source": "String", "device": "String", "cursor": "String",
                     "updated_at": "Int64"})
            if state:
                self._insert("state", pa.table({
                    "key": list(state), "value": list(state.values()),
                    "updated_at": pa.array([now] * len(state), pa.int64())}),
                    {"key": "String", "value": "String", "updated_at": "Int64"})
        written, new, replaced, unchanged = counts
        return WriteResult(rows=table.num_rows, written=written, batch_id=version, new=new,
                           replaced=replaced, unchanged=unchanged, keys=keys_of(table))

    def _ids_of(self, table: pa.Table, series: pa.Table) -> npt.NDArray[np.int64]:
        """Each row's series id, from the (device, channel, series_id) of its channels."""
        def keys(t: pa.Table) -> pa.Array:
            return pc.binary_join_element_wise(t.column("device"), t.column("channel"), "\x00")

        index = pc.index_in(keys(table), value_set=keys(series).combine_chunks())
        return np.asarray(series.column("series_id").to_numpy(), dtype=np.int64)[
            np.asarray(index.to_numpy(zero_copy_only=False), dtype=np.int64)]

    def _ensure_catalog(self, table: pa.Table) -> tuple[pa.Table, pa.Table]:
        """Create missing devices and channels (`new_channels` says which and of which
        kind); return the table in its channels' units, and (device, channel, series_id,
        unit, quantity) of the table's devices. Values their channel's unit cannot take are
        refused before anything is created: no transaction would take the catalog back."""
        distinct = distinct_keys(table)
        names = sorted({d["device"] for d in distinct})
        stored = {str(d) for (d,) in self._rows(
            f"SELECT device FROM devices FINAL WHERE device IN ({_in(names)})")}
        sources: dict[str, str] = {}
        for item in distinct:
            sources.setdefault(item["device"], item["source"])
        rows = [(str(d), str(c), int(s), str(u), str(q), str(k)) for d, c, s, u, q, k in
                self._rows("SELECT device, channel, series_id, unit, quantity, kind FROM "
                           f"channels FINAL WHERE device IN ({_in(names)})")]
        known = {(d, c): k for d, c, _, _, _, k in rows}
        new, _ = new_channels(table, distinct, known)
        if new:
            self._check_ids(new)
        rows += [(c.device, c.channel, series_id_of(c.device, c.channel), c.unit,
                  str(c.quantity), c.kind.value) for c in new]
        series = pa.table({"device": pa.array([r[0] for r in rows], pa.string()),
                           "channel": pa.array([r[1] for r in rows], pa.string()),
                           "series_id": pa.array([r[2] for r in rows], pa.int64()),
                           "unit": pa.array([r[3] for r in rows], pa.string()),
                           "quantity": pa.array([r[4] for r in rows], pa.string())})
        table = to_channel_units(table, series)
        missing = [d for d in names if d not in stored]
        if missing:
            self._insert("devices", pa.table({"device": missing,
                                              "source": [sources[d] for d in missing]}),
                         {"device": "String", "source": "String"})
        if new:
            self._insert_channels(new)
        if new or missing:
            self._catalog.changed()
        return table, series

    def _check_ids(self, channels: Sequence[Channel]) -> None:
        """Refuse a new channel whose series id another channel holds (a hash collision,
        so unlikely that it has never been seen; but never mixed silently)."""
        ids = {series_id_of(c.device, c.channel): c for c in channels}
        for series_id, device, channel in self._rows(
                f"SELECT series_id, device, channel FROM channels FINAL "
                f"WHERE series_id IN ({_ids(list(ids))})"):
            mine = ids[int(series_id)]
            if (device, channel) != (mine.device, mine.channel):
                raise StoreError(f"channel {mine.device}/{mine.channel} would share its "
                                 f"series id with {device}/{channel}: rename one of them")

    def _insert_channels(self, channels: Sequence[Channel]) -> None:
        self._insert("channels", pa.table({
            "series_id": pa.array([series_id_of(c.device, c.channel) for c in channels],
                                  pa.int64()),
            "device": [c.device for c in channels], "channel": [c.channel for c in channels],
            "quantity": [str(c.quantity) for c in channels],
            "unit": [c.unit for c in channels], "kind": [c.kind.value for c in channels],
            "interval_s": pa.array([c.interval_s for c in channels], pa.int64())}),
            {"series_id": "Int64", "device": "String", "channel": "String",
             "quantity": "String", "unit": "String", "kind": "String",
             "interval_s": "Nullable(Int64)"})

    def _store_rows(self, table: pa.Table, ids: npt.NDArray[np.int64],
                    version: int) -> tuple[int, int, int, int]:
        """Insert the write's rows (the later row of a key in it wins) but those stored
        already with the same content; returns (written, new, replaced, unchanged)."""
        ts = np.asarray(table.column("ts").cast(pa.timestamp("us")).cast(pa.int64())
                        .to_numpy(), dtype=np.int64)
        order = last_of_each_key(ids, ts)
        sid, t = ids[order], ts[order]
        stored = self._stored(sid, t)
        # sorted by key: ClickHouse sorts each part it writes, slower than a take here
        rows = table.take(pa.array(order))
        out = _stored_columns(rows, sid, t)
        if not stored.num_rows:  # a backfill of new data: nothing to compare
            self._insert("readings", out, _READING_TYPES, version)
            return len(order), len(order), 0, 0
        existing, same = _matches(sid, t, rows, stored)
        if same.any():  # unchanged rows stay as they are stored
            out = out.filter(pa.array(~same))
        if out.num_rows:
            self._insert("readings", out, _READING_TYPES, version)
        written = len(order)
        found, unchanged = int(existing.sum()), int(same.sum())
        return written, written - found, found - unchanged, unchanged

    def _stored(self, sid: npt.NDArray[np.int64], t: npt.NDArray[np.int64]) -> pa.Table:
        """The stored rows of these keys (and, for a large write, of the range around them
        in each series)."""
        select = ("SELECT series_id, ts, value, quality, validated, seq, error_code "
                  "FROM readings FINAL WHERE ")
        columns = {name: _READING_TYPES[name] for name in ("series_id", "ts", *_VALUE_COLUMNS)}
        if len(sid) <= _KEYS_IN_LIST:
            keys = ", ".join(f"({s}, {x})" for s, x in zip(sid.tolist(), t.tolist(),
                                                          strict=True))
            return self._client.query_arrow(f"{select}(series_id, ts) IN ({keys})",
                                            columns=columns)
        starts = np.r_[0, np.flatnonzero(sid[1:] != sid[:-1]) + 1]
        ends = np.r_[starts[1:], len(sid)] - 1
        ranges = [f"(series_id = {int(sid[a])} AND ts >= {int(t[a])} AND ts <= {int(t[b])})"
                  for a, b in zip(starts, ends, strict=True)]
        # a few hundred series a query: a write into thousands of channels would pass
        # the server's limits on a query's size and elements
        return pa.concat_tables([self._client.query_arrow(
            select + " OR ".join(ranges[i:i + _RANGES_A_PROBE]), columns=columns)
            for i in range(0, len(ranges), _RANGES_A_PROBE)])

    def delete(self, selection: Selection, *, outside_range: bool = False) -> int:
        """Delete the selected readings (bounds as given); returns how many there were.

        A mutation on every shard's table, waited for: ClickHouse deletes in the
        background, and a caller expects the rows gone when this returns."""
        series = self._catalog.select(selection)
        if not series:
            return 0
        where = self._as_given(selection, series, outside_range)
        with self._lock:
            number = self.count(selection, outside_range=outside_range) if outside_range \
                else int(self._rows(f"SELECT count() FROM readings FINAL WHERE {where}")[0][0])
            if not number:
                return 0
            local = "readings_local" if self._where.cluster else "readings"
            shards = self._shards()
            try:
                for shard in shards:
                    shard.execute(f"ALTER TABLE {local} DELETE WHERE {where}")
                for shard in shards:
                    _wait_for_mutations(shard, self._where.database, local)
            finally:
                for shard in shards:
                    if shard is not self._client:
                        shard.close()
        return number

    @staticmethod
    def _bounds(selection: Selection) -> list[str]:
        """The selection's [start, end) as given (not clamped to the times a reading may
        have)."""
        clauses = [] if selection.start is None else [f"ts >= {epoch_us(selection.start)}"]
        if selection.end is not None:
            clauses.append(f"ts < {epoch_us(selection.end)}")
        return clauses

    @classmethod
    def _as_given(cls, selection: Selection, series: Sequence[SeriesRow],
                  outside_range: bool) -> str:
        clauses = [f"series_id IN ({_ids(series)})", *cls._bounds(selection)]
        if outside_range:
            clauses.append(f"NOT ({_IN_RANGE})")
        return " AND ".join(clauses)

    # -- catalog ---------------------------------------------------------------------------

    def upsert_sites(self, sites: Sequence[Site]) -> None:
        sites = [check_catalog(site) for site in sites]
        if sites:
            self._insert("sites", pa.table({
                "site": [s.site for s in sites], "name": [s.name for s in sites],
                "timezone": [s.timezone for s in sites],
                "latitude": pa.array([s.latitude for s in sites], pa.float64()),
                "longitude": pa.array([s.longitude for s in sites], pa.float64())}),
                {"site": "String", "name": "Nullable(String)",
                 "timezone": "Nullable(String)", "latitude": "Nullable(Float64)",
                 "longitude": "Nullable(Float64)"})

    def upsert_devices(self, devices: Sequence[Device]) -> None:
        devices = [check_catalog(device) for device in devices]
        if devices:
            text = "Nullable(String)"
            self._insert("devices", pa.table({
                "device": [d.device for d in devices], "source": [d.source for d in devices],
                "site": pa.array([d.site for d in devices], pa.string()),
                "name": pa.array([d.name for d in devices], pa.string()),
                "model": pa.array([d.model for d in devices], pa.string()),
                "serial": pa.array([d.serial for d in devices], pa.string()),
                "timezone": pa.array([d.timezone for d in devices], pa.string()),
                "latitude": pa.array([d.latitude for d in devices], pa.float64()),
                "longitude": pa.array([d.longitude for d in devices], pa.float64())}),
                {"device": "String", "source": "String", "site": text, "name": text,
                 "model": text, "serial": text, "timezone": text,
                 "latitude": "Nullable(Float64)", "longitude": "Nullable(Float64)"})
            self._catalog.changed()

    def upsert_channels(self, channels: Sequence[Channel]) -> None:
        """Add channels or update their quantity, kind and interval.

        A channel's unit is fixed once it holds readings, since stored values are in it."""
        channels = [check_catalog(ch) for ch in channels]
        if not channels:
            return
        with self._lock:
            stored = {(str(d), str(c)): (int(s), str(u)) for d, c, s, u in self._rows(
                "SELECT device, channel, series_id, unit FROM channels FINAL WHERE device IN "
                f"({_in(sorted({ch.device for ch in channels}))})")}
            for ch in channels:
                known = stored.get((ch.device, ch.channel))
                if known is not None and known[1] != ch.unit:
                    held = self._rows(f"SELECT count() FROM readings WHERE series_id = "
                                      f"{known[0]}")
                    if held and int(held[0][0]):
                        raise InputError(f"channel {ch.device}/{ch.channel} holds readings "
                                         f"in {known[1]}; its unit cannot become {ch.unit}")
            fresh = [ch for ch in channels if (ch.device, ch.channel) not in stored]
            if fresh:
                self._check_ids(fresh)
            devices = sorted({ch.device for ch in fresh})
            if devices:
                have = {str(d) for (d,) in self._rows(
                    f"SELECT device FROM devices FINAL WHERE device IN ({_in(devices)})")}
                missing = [d for d in devices if d not in have]
                if missing:
                    self._insert("devices", pa.table({"device": missing,
                                                      "source": ["manual"] * len(missing)}),
                                 {"device": "String", "source": "String"})
            self._insert_channels(channels)
            self._catalog.changed()

    def set_kind(self, device: str, channel: str, kind: ChannelKind | str) -> ChannelKind:
        """Change how a channel's readings aggregate; returns the kind it had."""
        try:
            new = ChannelKind(kind)
        except ValueError:
            raise InputError(f"kind {kind!r} is not one of "
                             f"{', '.join(k.value for k in ChannelKind)}") from None
        with self._lock:
            found = self.channels(Selection(devices=[device], channels=[channel]))
            if not found:
                raise NotFoundError(f"no channel {device}/{channel}: list them with "
                                    "`meterhub devices`")
            old = found[0]
            if old.kind != new:
                self._insert_channels([dataclasses.replace(old, kind=new)])
                self._catalog.changed()
        return old.kind

    def sites(self) -> list[Site]:
        rows = self._rows("SELECT site, name, timezone, latitude, longitude FROM sites FINAL "
                          "ORDER BY site")
        return [Site(*row) for row in rows]

    def devices(self) -> list[Device]:
        rows = self._rows("SELECT device, source, site, name, model, serial, timezone, "
                          "latitude, longitude FROM devices FINAL ORDER BY device")
        return [Device(*row) for row in rows]

    def channels(self, selection: Selection | None = None) -> list[Channel]:
        selection = selection or Selection()
        clauses = ["1"]
        for name, values in (("c.device", selection.devices),
                             ("c.channel", selection.channels),
                             ("d.source", selection.sources)):
            if values is not None:
                clauses.append(f"{name} IN ({_in(list(values))})")
        rows = self._rows(
            "SELECT c.device, c.channel, c.quantity, c.unit, c.kind, c.interval_s "
            "FROM (SELECT * FROM channels FINAL) AS c "
            "ALL INNER JOIN (SELECT device, source FROM devices FINAL) AS d USING (device) "
            f"WHERE {' AND '.join(clauses)} ORDER BY c.device, c.channel")
        return [Channel(d, c, q, u, ChannelKind(k), None if i is None else int(i))
                for d, c, q, u, k, i in rows]

    def _load_catalog(self) -> list[SeriesRow]:
        rows = self._rows(
            "SELECT c.series_id, c.device, c.channel, c.unit, c.kind, d.source "
            "FROM (SELECT * FROM channels FINAL) AS c "
            "ALL INNER JOIN (SELECT device, source FROM devices FINAL) AS d USING (device) "
            "ORDER BY c.device, c.channel")
        return [SeriesRow(int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def channel_stats(self, selection: Selection | None = None) -> pa.Table:
        channels = {(c.device, c.channel): c for c in self.channels(selection)}
        catalog = {(s.device, s.channel): s for s in self._catalog.rows()}
        items = [(catalog.get(key), channel) for key, channel in channels.items()]
        if any(item is None for item, _ in items):  # created a moment ago elsewhere
            self._catalog.changed()
            catalog = {(s.device, s.channel): s for s in self._catalog.rows()}
            items = [(catalog.get(key), channel) for key, channel in channels.items()]
        known = [(item, channel) for item, channel in items if item is not None]
        stats: dict[int, tuple[int, int, int, int, float | None]] = {}
        if known:
            ids = _ids([item.series_id for item, _ in known])
            # the newest row's value, a sensor error's NULL as NaN (no stored value is
            # one): argMax passes over NULLs, and 18.16's shards garble a Nullable in a tuple
            stats = {int(s): (int(n), int(a), int(b), int(w), None if math.isnan(v) else v)
                     for s, n, a, b, w, v in self._rows(
                         f"SELECT series_id, count(), min(ts), max(ts), max(version), "
                         f"argMax(ifNull(value, nan), ts) FROM readings FINAL "
                         f"WHERE series_id IN ({ids}) AND {_IN_RANGE} GROUP BY series_id")}
        utc = pa.timestamp("us", tz="UTC")

        def times(position: int) -> pa.Array:
            values = [stats[item.series_id][position] if item.series_id in stats else None
                      for item, _ in known]
            return pa.array(values, pa.int64()).cast(utc)

        return pa.table({
            "source": pa.array([item.source for item, _ in known], pa.string()),
            "device": pa.array([item.device for item, _ in known], pa.string()),
            "channel": pa.array([item.channel for item, _ in known], pa.string()),
            "quantity": pa.array([str(channel.quantity) for _, channel in known], pa.string()),
            "kind": pa.array([item.kind for item, _ in known], pa.string()),
            "unit": pa.array([item.unit for item, _ in known], pa.string()),
            "readings": pa.array([stats.get(item.series_id, (0,))[0] for item, _ in known],
                                 pa.int64()),
            "first_ts": times(1), "last_ts": times(2), "written_at": times(3),
            "last_value": pa.array([stats[item.series_id][4] if item.series_id in stats
                                    else None for item, _ in known], pa.float64())})

    # -- sync cursors, state, keys ---------------------------------------------------------

    def get_state(self, key: str) -> str | None:
        rows = self._rows(f"SELECT value FROM state FINAL WHERE key = {literal(key)}")
        return None if not rows else str(rows[0][0])

    def state_values(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self._rows(
            "SELECT key, value FROM state FINAL ORDER BY key")}

    def get_cursor(self, source: str, device: str) -> str | None:
        rows = self._rows(f"SELECT cursor FROM sync_cursors FINAL WHERE source = "
                          f"{literal(source)} AND device = {literal(device)}")
        return None if not rows else str(rows[0][0])

    def cursors(self) -> list[SyncCursor]:
        rows = self._rows("SELECT source, device, cursor FROM sync_cursors FINAL "
                          "ORDER BY source, device")
        return [SyncCursor(str(s), str(d), str(c)) for s, d, c in rows]

    def record_sync(self, source: str, device: str, *, error: BaseException | None = None,
                    calls: int = 0, readings: int = 0) -> None:
        """The outcome of one device's sync, for `meterhub status`."""
        now = _now_us()
        with self._lock:
            success: int | None = now
            if error is not None:
                old = self._rows(f"SELECT last_success FROM sync_status FINAL WHERE source = "
                                 f"{literal(source)} AND device = {literal(device)}")
                success = None if not old or old[0][0] is None else int(old[0][0])
            self._insert("sync_status", pa.table({
                "source": [source], "device": [device],
                "last_attempt": pa.array([now], pa.int64()),
                "last_success": pa.array([success], pa.int64()),
                "last_error_class": pa.array([None if error is None else
                                              type(error).__name__], pa.string()),
                "last_error": pa.array([None if error is None else str(error)], pa.string()),
                "calls": pa.array([calls], pa.int64()),
                "readings": pa.array([readings], pa.int64())}),
                {"source": "String", "device": "String", "last_attempt": "Nullable(Int64)",
                 "last_success": "Nullable(Int64)", "last_error_class": "Nullable(String)",
                 "last_error": "Nullable(String)", "calls": "Int64", "readings": "Int64"})

    def sync_status(self) -> pa.Table:
        table = self._client.query_arrow(
            "SELECT source, device, last_attempt, last_success, last_error_class, "
            "last_error, calls, readings FROM sync_status FINAL ORDER BY source, device",
            columns={"source": "String", "device": "String", "last_attempt": "Nullable(Int64)",
                     "last_success": "Nullable(Int64)", "last_error_class": "Nullable(String)",
                     "last_error": "Nullable(String)", "calls": "Int64", "readings": "Int64"})
        table = pa.table({name: table.column(name) for name in table.column_names})
        return _us_times(table, ("last_attempt", "last_success"))

    def add_key(self, key: ApiKey) -> None:
        with self._lock:
            taken = self._rows(f"SELECT key_id FROM api_keys FINAL WHERE name = "
                               f"{literal(key.name)} AND isNull(revoked_at)")
            if taken and key.revoked_at is None:
                raise ConflictError(f"an active key is already named {key.name!r}: pick "
                                    "another name or revoke that key first")
            self._insert_key(key)

    def _insert_key(self, key: ApiKey) -> None:
        self._insert("api_keys", pa.table({
            "key_id": [key.key_id], "name": [key.name], "scope": [key.scope.value],
            "hash": [key.hash], "rate_limit": pa.array([key.rate_limit], pa.string()),
            "created_at": pa.array([epoch_us(key.created_at)], pa.int64()),
            "revoked_at": pa.array([None if key.revoked_at is None
                                    else epoch_us(key.revoked_at)], pa.int64())}),
            {"key_id": "String", "name": "String", "scope": "String", "hash": "String",
             "rate_limit": "Nullable(String)", "created_at": "Int64",
             "revoked_at": "Nullable(Int64)"})

    def api_keys(self) -> list[ApiKey]:
        rows = self._rows("SELECT key_id, name, scope, hash, rate_limit, created_at, "
                          "revoked_at FROM api_keys FINAL ORDER BY created_at, name")
        return [ApiKey(str(key_id), str(name), Scope(scope), str(hashed), limit,
                       _aware(int(created)), None if revoked is None else _aware(int(revoked)))
                for key_id, name, scope, hashed, limit, created, revoked in rows]

    def revoke_key(self, key_id: str) -> None:
        with self._lock:
            found = [k for k in self.api_keys() if k.key_id == key_id]
            if not found:
                raise NotFoundError(f"no API key with id {key_id!r}: list them with "
                                    "`meterhub keys list`")
            if found[0].revoked_at is None:
                self._insert_key(dataclasses.replace(found[0],
                                                     revoked_at=dt.datetime.now(dt.UTC)))

    # -- reading ---------------------------------------------------------------------------

    @staticmethod
    def _time_filter(selection: Selection) -> str:
        """The selection's [start, end), always within the times a reading may have."""
        lo, hi = clamped_us(selection)
        return f"ts >= {lo} AND ts < {hi}"

    def count(self, selection: Selection, *, outside_range: bool = False) -> int:
        series = self._catalog.select(selection)
        if not series:
            return 0
        where = (self._as_given(selection, series, outside_range=True) if outside_range
                 else f"series_id IN ({_ids(series)}) AND {self._time_filter(selection)}")
        return int(self._rows(f"SELECT count() FROM readings FINAL WHERE {where}")[0][0])

    def scan(self, selection: Selection, *, batch_size: int = 65_536) -> pa.RecordBatchReader:
        """Readings in (device, channel, ts) order, one series at a time, in batches."""
        plan: Plan = [(s, None, None) for s in self._catalog.select(selection)]
        return self._stream(plan, selection, batch_size)

    def page(self, selection: Selection, *, after: PageKey | None, limit: int,
             batch_size: int = 65_536) -> tuple[pa.RecordBatchReader, PageKey | None]:
        """Keyset paging: the first ``limit`` readings after ``after`` in scan order.

        ClickHouse has no snapshot to plan and stream a page from: rows written between the
        two may make a page longer than planned, never one row appear on two pages."""
        if limit < 1:
            raise InputError(f"limit must be at least 1, not {limit}")
        series, first_after = page_series(self._catalog.select(selection), after)
        if not series:
            return pa.RecordBatchReader.from_batches(READING_SCHEMA, iter(())), None
        where = self._time_filter(selection) + "".join(
            f" AND (series_id != {sid} OR ts > {us})" for sid, us in first_after.items())

        def nth(series_id: int, offset: int, n: int) -> list[int]:
            return [int(r[0]) for r in self._rows(
                f"SELECT ts FROM readings FINAL WHERE series_id = {series_id} AND {where} "
                f"ORDER BY ts LIMIT {offset}, {n}")]

        def counts() -> dict[int, tuple[int, int]]:
            return {int(s): (int(n), int(last)) for s, n, last in self._rows(
                f"SELECT series_id, count(), max(ts) FROM readings FINAL WHERE series_id IN "
                f"({_ids(series)}) AND {where} GROUP BY series_id")}

        plan, next_key = plan_page(series, first_after, limit, nth=nth, counts=counts)
        return self._stream(plan, selection, batch_size), next_key

    def _stream(self, plan: Plan, selection: Selection, batch_size: int) -> pa.RecordBatchReader:
        """Stream each planned series within (lower, upper] in epoch µs, a batch per
        query: each resumes after the last row of the one before (bounded memory). A few
        series that hold a batch between them come in one query."""
        where = self._time_filter(selection)
        columns = {"ts": "Int64", "value": "Nullable(Float64)", "quality": _QUALITY,
                   "seq": "Nullable(Int64)", "error_code": "Nullable(String)",
                   "validated": "UInt8"}

        def bounds(lower: int | None, upper: int | None) -> str:
            return (("" if lower is None else f" AND ts > {lower}")
                    + ("" if upper is None else f" AND ts <= {upper}"))

        def together() -> list[pa.RecordBatch] | None:
            """The whole plan from one query, or None when it holds more than a batch."""
            each = " OR ".join(f"(series_id = {item.series_id}{bounds(lower, upper)})"
                               for item, lower, upper in plan)
            table = self._client.query_arrow(
                f"SELECT series_id, ts, value, quality, seq, error_code, validated FROM "
                f"readings FINAL WHERE ({each}) AND {where} ORDER BY series_id, ts "
                f"LIMIT {batch_size + 1}", columns={"series_id": "Int64", **columns})
            if table.num_rows > batch_size:
                return None
            ids = column(table, "series_id", np.int64)
            found = []
            for item, _, _ in plan:  # in the plan's (device, channel) order
                lo, hi = np.searchsorted(ids, item.series_id, "left"), np.searchsorted(
                    ids, item.series_id, "right")
                if hi > lo:
                    found += reading_batch_table(table.slice(int(lo), int(hi - lo)).drop_columns(
                        ["series_id"]), item).to_batches()
            return found

        def batches() -> Iterator[pa.RecordBatch]:
            if 1 < len(plan) <= _SERIES_TOGETHER:
                found = together()
                if found is not None:
                    yield from found
                    return
            for item, lower, upper in plan:
                bound = bounds(None, upper)
                after = lower
                while True:
                    start = "" if after is None else f" AND ts > {after}"
                    table = self._client.query_arrow(
                        f"SELECT ts, value, quality, seq, error_code, validated FROM readings "
                        f"FINAL WHERE series_id = {item.series_id} AND {where}{start}{bound} "
                        f"ORDER BY ts LIMIT {batch_size}", columns=columns)
                    if table.num_rows:
                        last = int(table.column("ts")[-1].as_py())
                        yield from reading_batch_table(table, item).to_batches()
                        after = last
                    if table.num_rows < batch_size:
                        break

        return pa.RecordBatchReader.from_batches(READING_SCHEMA, batches())

    def aggregate(self, selection: Selection, *, every: str, tz: str = "UTC",
                  functions: Sequence[str] | None = None) -> pa.Table:
        """Aggregates per bucket by kind: see `meterhub.store.aggregation.aggregate`."""
        return aggregate(self, selection, self._catalog.select(selection), every=every,
                         tz=tz, functions=functions)

    def _data_range(self, series: Sequence[SeriesRow]) -> tuple[int, int] | None:
        """The months the store holds readings in, from its parts (one small query, where
        the series' own first and last time scan all their times), when they span up to
        `HELD_RANGE_US`; else the series' own (the zone's offsets over centuries of months
        would cost every query more than the scan)."""
        held = self._parts.held_range(MIN_US, MAX_US)
        if held is None or held[1] - held[0] <= HELD_RANGE_US:
            return held
        # no FINAL: replacing a row keeps its key, so the first and last times stand
        rows = self._rows(f"SELECT min(ts), max(ts), count() FROM readings WHERE "
                          f"series_id IN ({_ids(series)}) AND {_IN_RANGE}")
        if not rows or not int(rows[0][2]):
            return None
        return int(rows[0][0]), int(rows[0][1])

    def _exactly(self, selection: Selection, columns: str, where: str,
                 query: Callable[[str], T], *, in_order: bool = False,
                 in_range: bool = False) -> T:
        """``query(source)`` where ``source`` is SQL for ``columns`` of the readings that
        hold ``where``, read as FINAL would give them (see `PartsWatch.exact`);
        ``in_order``: the rows read with FINAL come sorted by (series, time), as 18.16
        gives them anyway and current versions do not; ``in_range``: only the rows of
        ``where`` within the times a reading may have (`_IN_RANGE`, which is left out
        where `_no_strays` proves it keeps nothing out: a tenth of a year's counter sums)."""
        lo, hi = clamped_us(selection)

        def run(plain: str | None, final: str | None, guarded: bool) -> T:
            rows = f"{where} AND {_IN_RANGE}" if in_range and guarded else where
            parts = []
            if plain is not None:
                parts.append(f"SELECT {columns} FROM readings WHERE {rows} AND ({plain})")
            if final is not None:
                replaced = f"SELECT {columns} FROM readings FINAL WHERE {rows} AND ({final})"
                parts.append(f"SELECT * FROM ({replaced} ORDER BY series_id, ts)"
                             if in_order else replaced)
            return query(" UNION ALL ".join(parts))

        return self._parts.exact(lo, hi + 1, run,
                                 unguarded=self._no_strays if in_range else None)

    def _no_strays(self, parts: Snapshot) -> bool:
        """No reading in ``parts`` lies outside the times a reading may have (rows planted
        past the store's checks): one count that the partitions' min/max times prune to no
        rows at all, once per new set of parts."""
        if self._proven_parts == parts:
            return True
        if int(self._rows(f"SELECT count() FROM readings WHERE NOT ({_IN_RANGE})")[0][0]):
            return False
        # the count saw every row of these parts (merges and deletes move or drop rows,
        # never make them) and maybe more: none of them strays
        self._proven_parts = parts
        return True

    def _bucketed(self, selection: Selection, ids: Sequence[int], columns: str, where: str,
                  size: Every, transitions: list[tuple[int, int]], select: str,
                  column: str = "ts", in_range: bool = False) -> pa.Table:
        """``select`` (aggregates) per (series_id, bucket) over ``columns`` of the readings
        of series ``ids`` that hold ``where``."""
        local, steps, bucket = bucket_arithmetic_sql(size, transitions, column)
        outer = ", ".join([*steps, f"{bucket} AS bucket"])
        # one series (a chart's): a key of one column groups faster, and its id need not
        # come back with each bucket
        keys = "bucket" if len(ids) == 1 else "series_id, bucket"
        where = f"series_id IN ({_ids(ids)}) AND {where}"
        table = self._exactly(selection, columns, where, lambda source: (
            self._client.query_arrow(
                f"SELECT {keys}, {select} FROM ("
                f"SELECT *, {outer} FROM (SELECT *, {local} FROM ({source}))) "
                f"GROUP BY {keys}")), in_range=in_range)
        if len(ids) == 1:
            table = table.add_column(0, "series_id",
                                     pa.array(np.full(table.num_rows, ids[0], dtype=np.int64)))
        return _us_times(table, ("bucket",))

    def _sql_buckets(self, selection: Selection, ids: Sequence[int], kind: str, size: Every,
                     transitions: list[tuple[int, int]], wanted: Sequence[str]) -> pa.Table:
        """Instant and delta aggregates: one GROUP BY in ClickHouse."""
        errors = ERRORS in wanted
        # with errors asked for, the rows read are good ones and errors, and the functions
        # look at the good ones only; else every row read is good, and -If is work for
        # nothing (a tenth of an hourly chart's time)
        good, columns = "_good", "series_id, ts, assumeNotNull(value) AS value"
        if errors:
            columns += f", quality, {_GOOD} AS _good"

        def only_good(function: str, *args: str) -> str:
            return (f"{function}If({', '.join([*args, good])})" if errors
                    else f"{function}({', '.join(args)})")

        exprs = {"mean": only_good("avg", "value"), "min": only_good("min", "value"),
                 "max": only_good("max", "value"), "first": only_good("argMin", "value", "ts"),
                 "last": only_good("argMax", "value", "ts"), "sum": only_good("sum", "value"),
                 "count": f"toInt64({only_good('count')})"}
        allowed = INSTANT_FUNCTIONS if kind == ChannelKind.INSTANT else DELTA_FUNCTIONS
        chosen = [name for name in wanted if name in allowed]
        rows = f"(({_GOOD}) OR {_ERROR})" if errors else _GOOD
        select = ", ".join([f"{exprs[name]} AS `{name}`" for name in chosen]
                           + [f"toInt64(countIf({_ERROR})) AS {ERRORS}",
                              f"{exprs['count']} AS _count"] * errors)
        # values are not null where _good holds: the -If aggregates need no null checks
        # the selection's bounds, and the times a reading may have (proven, or asked for)
        table = self._bucketed(selection, ids, columns,
                               " AND ".join([*self._bounds(selection), f"({rows})"]),
                               size, transitions, select, in_range=True)
        if not errors:
            return table  # every bucket holds a good reading
        # a bucket of errors only: its functions are null, not what an empty -If gives
        empty = pc.equal(table.column("_count"), 0)
        for name in chosen:
            if name != "count":
                index = table.schema.get_field_index(name)
                values = table.column(name).cast(pa.float64())
                table = table.set_column(index, name, pc.if_else(
                    empty, pa.scalar(None, pa.float64()), values))
        return table.drop_columns(["_count"])

    def _counter_errors(self, selection: Selection, ids: Sequence[int],
                        size: Every, transitions: list[tuple[int, int]]) -> pa.Table:
        """A counter's sensor errors per bucket, right-closed as its rises are, from the
        same readings: in (start, end]."""
        lo, hi = clamped_us(selection)
        low = f"ts > {lo}" if selection.start is not None else f"ts >= {lo}"
        return self._bucketed(
            selection, ids, "series_id, ts - 1 AS _before",
            f"{low} AND ts <= {hi} AND {_ERROR}", size, transitions,
            f"toInt64(count()) AS {ERRORS}", column="_before")

    def _counter_buckets(self, selection: Selection, ids: Sequence[int], size: Every,
                         transitions: list[tuple[int, int]]) -> pa.Table:
        """Counter consumption: runs of rows in stored order found in ClickHouse,
        joined here (`counter_sums_of_heads`); from all rows in NumPy when the runs
        do not prove their order."""
        where = [f"series_id IN ({_ids(ids)})", _GOOD]
        # right-closed buckets: readings in (start, end] plus the last one at/before start
        if selection.start is not None:
            where.append(f"ts > {epoch_us(selection.start)}")
        if selection.end is not None:
            where.append(f"ts <= {epoch_us(selection.end)}")
        bases = None if selection.start is None else self._bases(ids, selection.start)

        def heads(exact: bool) -> pa.Table:
            return self._exactly(
                selection, "series_id, ts, assumeNotNull(value) AS value", " AND ".join(where),
                lambda source: self._run_heads(source, size, transitions, exact), in_order=True,
                in_range=True)

        # the values before heads that differences do not pin down (a reset, a series that
        # follows one of another magnitude) come exact from a second query
        if self._heads is not None:
            found = heads(self._heads == "windows")
            if self._heads == "blocks" and not befores_certain(found):
                found = heads(True)
            summed = counter_sums_of_heads(found, bases, size, transitions)
            if summed is not None:
                return summed
        rows = self._client.query_arrow(
            f"SELECT series_id, ts AS t, value FROM readings FINAL WHERE {' AND '.join(where)} "
            f"AND {_IN_RANGE}", columns=_COUNTER_TYPES)
        sid, t = column(rows, "series_id", np.int64), column(rows, "t", np.int64)
        value = np.asarray(rows.column("value").to_numpy(zero_copy_only=False),
                           dtype=np.float64)
        order = order_by_series_and_time(sid, t)  # sorted here: 18.16 sorts in full
        if order is not None:
            sid, t, value = sid[order], t[order], value[order]
        if bases is not None:
            sid, t, value = with_bases(sid, t, value, bases)
        return counter_sums(sid, t, value, size, transitions)

    def _bases(self, ids: Sequence[int], start: dt.datetime) -> pa.Table:
        """The last good reading at or before ``start`` of each series (where its first
        rise in the range starts from), sorted by series: looked for a day back, then a
        month, a year and all time, so that a chart's window does not read years of
        history for the reading before it."""
        at = epoch_us(start)
        found, wanted = [], list(ids)
        for back in (DAY_US, 31 * DAY_US, 366 * DAY_US, None):
            if not wanted:
                break
            lo = MIN_US if back is None else max(at - back, MIN_US)
            table = self._exactly(
                Selection(start=_aware(lo), end=_aware(at + 1)), "series_id, ts, value",
                f"series_id IN ({_ids(wanted)}) AND {_GOOD} AND {_IN_RANGE} "
                f"AND ts >= {lo} AND ts <= {at}",
                lambda source: self._client.query_arrow(
                    "SELECT series_id, max(ts) AS t, argMax(value, ts) AS value FROM "
                    f"({source}) GROUP BY series_id", columns=_COUNTER_TYPES))
            found.append(table)
            have = set(column(table, "series_id", np.int64).tolist())
            wanted = [i for i in wanted if i not in have]
        return pa.concat_tables(found).sort_by("series_id")

    def _run_heads(self, source: str, size: Every, transitions: list[tuple[int, int]],
                   exact: bool = True) -> pa.Table:
        """The heads of the runs in the rows of ``source`` (``series_id``, ``ts``,
        ``value``) and the last row of each block (`counter_sums_of_heads` says which
        columns): only the rows that break a run are sent, not every row.

        Where the server has window functions, a series is one block, its rows numbered in
        time order. 18.16 has none, but reads each part in stored order, (series, time), so
        within a block of its pipeline runningDifference gives the row before. (Current
        servers evaluate such functions where their optimiser puts them, before or after
        a filter: the heads would then tell of rows that are not there.) Whatever joins or
        splits blocks, the heads prove or disprove that their runs join up. There the
        value of the row before is the value less runningDifference's, which is exact
        where `befores_certain` proves it; ``exact`` takes it from the bits instead, at a
        fifth more of the query's time."""
        # right-closed: a row's bucket is that of the instant before it
        local, steps, bucket = bucket_arithmetic_sql(size, transitions, "(ts - 1)")
        if len(steps) <= 1:  # a level less where aliases expand to little (not months)
            rows = f"SELECT *, {', '.join([local, *steps, f'{bucket} AS bucket'])} FROM ({source})"
        else:
            rows = (f"SELECT *, {', '.join([*steps, f'{bucket} AS bucket'])} FROM ("
                    f"SELECT *, {local} FROM ({source}))")
        # a bucket is found here, but sent by the time it is of (one column less)
        flags = "toUInt8(fresh + 2 * head + 4 * ends_block) AS flags"
        if self._heads == "windows":
            series = "PARTITION BY series_id"
            before = f"OVER ({series} ORDER BY ts ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)"
            sql = (
                f"SELECT series_id, ts, value, dt, _value AS before, {flags}, position, "
                "reinterpretAsUInt64(series_id) AS block FROM ("
                "SELECT *, ts - _ts AS dt, toUInt8(position = 0) AS fresh, "
                "toUInt8(fresh OR _bucket != bucket OR value < _value OR dt <= 0) "
                "AS head, toUInt8(position + 1 = _rows) AS ends_block FROM ("
                f"SELECT *, toUInt64(row_number() OVER ({series} ORDER BY ts) - 1) AS position, "
                f"count() OVER ({series}) AS _rows, lagInFrame(ts, 1, ts) {before} AS _ts, "
                f"lagInFrame(value, 1, value) {before} AS _value, "
                f"lagInFrame(bucket, 1, bucket) {before} AS _bucket FROM ({rows}))) "
                "WHERE head + ends_block > 0")
            types = _WINDOW_HEAD_TYPES
        else:
            # 18.x computes a subquery's columns over whole blocks before the query around
            # it filters them (blockNumber names a block: one counter for the query).
            if exact:
                # The bits of the value before (18.16 reinterprets a Float64 only through
                # its bytes); as integers they order non-negative numbers as they are and
                # negative ones in reverse, which flipping all bits but the sign undoes
                # (-0.0 below 0.0 only makes a head more).
                def ordered(bits: str) -> str:
                    return f"if({bits} >= 0, {bits}, bitXor({bits}, {2**63 - 1}))"

                earlier = ["reinterpretAsInt64(reinterpretAsString(value)) AS _bits",
                           "_bits - runningDifference(_bits) AS _before"]
                fall = f"{ordered('_bits')} < {ordered('_before')}"
                shown = "reinterpretAsFloat64(reinterpretAsString(_before))"
            else:
                earlier = ["runningDifference(value) AS _rise"]
                fall, shown = "_rise < 0", "value - _rise"
            columns = ", ".join([
                "rowNumberInBlock() AS _position", "blockNumber() AS _block",
                "toUInt8(_position + 1 = blockSize()) AS ends_block",
                "runningDifference(ts) AS dt", *earlier,
                "toUInt8((_position = 0) + (runningDifference(series_id) != 0) > 0) AS fresh",
                "toUInt8(fresh + (runningDifference(bucket) != 0) + (dt <= 0) "
                f"+ ({fall}) > 0) AS head"])
            sql = (f"SELECT series_id, ts, value, dt, {shown} AS before, {flags}, "
                   "toUInt32(_position) AS position, toUInt32(_block) AS block FROM ("
                   f"SELECT *, {columns} FROM ({rows})) WHERE head + ends_block > 0")
            types = _HEAD_TYPES
        # sorted, the answer comes in one block of Native, not one per block read (a
        # tenth of the time went to decoding a hundred small ones)
        return self._client.query_arrow(f"{sql} ORDER BY block, position", self._run_settings,
                                        columns=types)

    def gaps(self, selection: Selection) -> pa.Table:
        """Interior gaps per channel (see `meterhub.store.gaps.find_gaps`)."""
        series = self._catalog.select(selection)
        if not series:
            return GAPS_SCHEMA.empty_table()
        rows = self._client.query_arrow(
            f"SELECT series_id, ts AS t, seq FROM readings FINAL WHERE series_id IN "
            f"({_ids(series)}) AND {self._time_filter(selection)} ORDER BY series_id, ts",
            columns={"series_id": "Int64", "t": "Int64", "seq": "Nullable(Int64)"})
        intervals = {series_id_of(c.device, c.channel): c.interval_s
                     for c in self.channels(Selection(devices=sorted({s.device
                                                                       for s in series})))}
        return find_gaps(series, intervals, rows)

    # -- maintenance -----------------------------------------------------------------------

    def compact(self) -> None:
        """Merge every shard's readings into one part per partition (replacing
        rewritten keys on disk as reads do with FINAL)."""
        local = "readings_local" if self._where.cluster else "readings"
        shards = self._shards()
        try:
            for shard in shards:
                shard.execute(f"OPTIMIZE TABLE {local} FINAL")
        finally:
            for shard in shards:
                if shard is not self._client:
                    shard.close()


def _stored_columns(rows: pa.Table, sid: npt.NDArray[np.int64],
                    ts: npt.NDArray[np.int64]) -> pa.Table:
    """A write's rows as the readings table holds them (its version is added on insert)."""
    return pa.table({"series_id": pa.array(sid), "ts": pa.array(ts),
                     "value": rows.column("value"), "quality": rows.column("quality"),
                     "validated": rows.column("validated").cast(pa.uint8()),
                     "seq": rows.column("seq"), "error_code": rows.column("error_code")})


def reading_batch_table(table: pa.Table, item: SeriesRow) -> pa.Table:
    """Stored columns of one series (ts in epoch µs) as `READING_SCHEMA` rows."""
    table = _us_times(table, ("ts",))
    return pa.Table.from_batches([reading_batch(batch, item)
                                  for batch in table.to_batches()], READING_SCHEMA)


def _matches(sid: npt.NDArray[np.int64], t: npt.NDArray[np.int64], rows: pa.Table,
             stored: pa.Table) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """For each incoming key (sorted, unique): whether it is stored, and whether with the
    same content (two NULL values are equal)."""
    existing = np.zeros(len(sid), dtype=bool)
    same = np.zeros(len(sid), dtype=bool)
    if not stored.num_rows:
        return existing, same
    s_sid = column(stored, "series_id", np.int64)
    s_t = column(stored, "ts", np.int64)
    # incoming keys are sorted by (series, ts): find each stored key's place among them
    order = np.lexsort((s_t, s_sid))
    s_sid, s_t = s_sid[order], s_t[order]
    stored = stored.take(pa.array(order))
    at = _find(sid, t, s_sid, s_t)
    hit = at >= 0
    mine, theirs = at[hit], np.flatnonzero(hit)
    existing[mine] = True
    if not len(mine):
        return existing, same
    equal = np.ones(len(mine), dtype=bool)
    for name in _VALUE_COLUMNS:
        a = rows.column(name).take(pa.array(mine))
        b = stored.column(name).take(pa.array(theirs))
        if name == "validated":
            a, b = a.cast(pa.uint8()), b.cast(pa.uint8())
        if name == "quality":
            a, b = a.cast(pa.string()), b.cast(pa.string())
        both_null = pc.and_(pc.is_null(a), pc.is_null(b))
        eq = pc.fill_null(pc.equal(a, b), False)
        equal &= np.asarray(pc.or_(both_null, eq).to_numpy(zero_copy_only=False), dtype=bool)
    same[mine] = equal
    return existing, same


def _find(sid: npt.NDArray[np.int64], t: npt.NDArray[np.int64],
          s_sid: npt.NDArray[np.int64], s_t: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """For each (s_sid, s_t), its position among the sorted unique (sid, t), or -1."""
    found = np.full(len(s_sid), -1, dtype=np.int64)
    for value in np.unique(s_sid):  # per series: a search in its own sorted times
        lo = int(np.searchsorted(sid, value, "left"))
        hi = int(np.searchsorted(sid, value, "right"))
        if hi == lo:
            continue
        mask = np.flatnonzero(s_sid == value)
        pos = lo + np.searchsorted(t[lo:hi], s_t[mask])
        ok = pos < hi
        ok[ok] = t[pos[ok]] == s_t[mask][ok]
        found[mask[ok]] = pos[ok]
    return found


def _wait_for_mutations(client: ClickHouseClient, database: str, table: str,
                        timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        left = client.query_rows(
            f"SELECT count() FROM system.mutations WHERE database = {literal(database)} "
            f"AND table = {literal(table)} AND is_done = 0")
        if not int(left[0][0]):
            return
        if time.monotonic() > deadline:
            raise StoreError(f"ClickHouse did not finish deleting in {timeout:.0f} s; it goes "
                             "on in the background")
        time.sleep(0.02)


def _aware(us: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)
