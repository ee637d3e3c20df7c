"""The embedded default store: one DuckDB file, owned by one process.

Layout follows what PERF.md measured on this machine kind:

- ``readings`` holds an integer ``series_id`` (one per device channel) and a naive-UTC
  ``TIMESTAMP``; no PRIMARY KEY (11x slower loads, 4-7x larger files). Uniqueness of
  (device, channel, ts) is kept at write time: each write deduplicates its own rows, deletes
  the keys it replaces and inserts, all in one transaction.
- Each write is inserted sorted by (series_id, ts), and `compact` rewrites the whole table in
  that order, so range reads and aggregates prune row groups by zone maps.
- Small writes (pushed telegrams, a few rows every few seconds) take a short path: series
  ids from the cached catalog, in-batch duplicates dropped in NumPy, and the replace-by-key
  DELETE only for rows not newer than their series' newest stored time. A write's fixed
  cost is then a few statements instead of a dozen (about 20 ms -> 3 ms).
- Writes are Arrow tables handed to DuckDB without a Python object per reading.
- Time zones never reach SQL as TIMESTAMPTZ: bucketing adds a per-range UTC offset taken
  from a small table of the zone's transitions (see `meterhub.timebase`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import itertools
import logging
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from meterhub.errors import (
    ConflictError,
    InputError,
    NotFoundError,
    StoreError,
    StoreInUseError,
)
from meterhub.keys import ApiKey, Scope
from meterhub.model import (
    READING_SCHEMA,
    TS_MAX,
    TS_MIN,
    Channel,
    ChannelKind,
    Device,
    Quality,
    Site,
    check_catalog,
    in_reading_form,
    to_readings,
)
from meterhub.store.aggregation import (
    ERRORS,
    aggregate,
    column,
    sorted_by_series_and_time,
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
from meterhub.store.buckets import bucket_sql
from meterhub.store.catalog import (
    CatalogCache,
    KnownLayouts,
    SeriesRow,
    distinct_keys,
    known_series,
    new_channels,
    to_channel_units,
)
from meterhub.store.counters import counter_sums, with_bases
from meterhub.store.gaps import GAPS_SCHEMA, find_gaps
from meterhub.store.journal import Journal, Journaled, Record, encode, sync_folder
from meterhub.store.reads import (
    Plan,
    clamped,
    last_of_each_key,
    page_series,
    plan_page,
    reading_batch,
)
from meterhub.timebase import (
    UTC,
    Every,
    naive_utc,
)

log = logging.getLogger("meterhub.store")
SCHEMA_VERSION = "1"

#: what one batch adds to `series_stats`, per series
_STATS_TYPE = ("STRUCT(series_id INTEGER, added BIGINT, first_ts TIMESTAMP, last_ts TIMESTAMP, "
               "last_value DOUBLE)[]")
_DDL = [
    f"CREATE TYPE IF NOT EXISTS quality AS ENUM ({', '.join(repr(q.value) for q in Quality)})",
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE IF NOT EXISTS sites (
        site VARCHAR PRIMARY KEY, name VARCHAR, timezone VARCHAR,
        latitude DOUBLE, longitude DOUBLE)""",
    """CREATE TABLE IF NOT EXISTS devices (
        device VARCHAR PRIMARY KEY, source VARCHAR NOT NULL, site VARCHAR, name VARCHAR,
        model VARCHAR, serial VARCHAR, timezone VARCHAR, latitude DOUBLE, longitude DOUBLE)""",
    """CREATE TABLE IF NOT EXISTS channels (
        series_id INTEGER PRIMARY KEY, device VARCHAR NOT NULL, channel VARCHAR NOT NULL,
        quantity VARCHAR NOT NULL, unit VARCHAR NOT NULL, kind VARCHAR NOT NULL,
        interval_s INTEGER, UNIQUE (device, channel))""",
    """CREATE TABLE IF NOT EXISTS readings (
        series_id INTEGER NOT NULL, ts TIMESTAMP NOT NULL, value DOUBLE,
        quality quality NOT NULL, validated BOOLEAN NOT NULL, seq BIGINT,
        error_code VARCHAR, batch_id INTEGER NOT NULL)""",
    # each series' count, first and newest time, newest value and last write, as of the
    # batch `meta.series_stats_batch`; each later batch carries what it adds (`stats`), in
    # its write's transaction: "newest per channel" without a scan of the readings
    """CREATE TABLE IF NOT EXISTS series_stats (
        series_id INTEGER PRIMARY KEY, readings BIGINT NOT NULL, first_ts TIMESTAMP,
        last_ts TIMESTAMP, last_value DOUBLE, written_at TIMESTAMP)""",
    f"""CREATE TABLE IF NOT EXISTS batches (
        batch_id INTEGER PRIMARY KEY, origin VARCHAR, written_at TIMESTAMP NOT NULL,
        rows BIGINT NOT NULL, stats {_STATS_TYPE})""",
    """CREATE TABLE IF NOT EXISTS sync_status (
        source VARCHAR NOT NULL, device VARCHAR NOT NULL, last_attempt TIMESTAMP,
        last_success TIMESTAMP, last_error_class VARCHAR, last_error VARCHAR,
        calls BIGINT, readings BIGINT, PRIMARY KEY (source, device))""",
    """CREATE TABLE IF NOT EXISTS sync_cursors (
        source VARCHAR NOT NULL, device VARCHAR NOT NULL, cursor VARCHAR NOT NULL,
        updated_at TIMESTAMP NOT NULL, PRIMARY KEY (source, device))""",
    """CREATE TABLE IF NOT EXISTS state (
        key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL, updated_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS api_keys (
        key_id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, scope VARCHAR NOT NULL,
        hash VARCHAR NOT NULL, rate_limit VARCHAR, created_at TIMESTAMP NOT NULL,
        revoked_at TIMESTAMP)""",
]

SHORT_WRITE_ROWS = 10_000  #: writes up to this size may take the short path (see above)
SMALL_PAGE = 20_000  #: a page of one series up to this size is read in one statement
FOLD_BATCHES = 500  #: batches whose stats are folded into series_stats at once
#: journaled readings folded into the store at once (a fold is due; reads fold sooner)
FOLD_ROWS = 8_000
_FOLDED = "journal.folded"  #: state key: the last journal record in the store
COMPACT_PIECE_ROWS = 20_000_000  #: readings compact sorts at once (about 1.3 GB unspilled)
_PROBE_ROWS = 50_000  #: stored rows a short write reads to find which of its keys exist
_VALUE_COLUMNS = ("ts", "value", "quality", "validated", "seq", "error_code")
def _same_as(incoming: pa.Table) -> tuple[str, list[Any]]:
    """The condition that a stored row ``r`` holds the same content as an incoming row
    ``s`` of the same key (rows ``s`` from ``incoming``), with its parameters: a column that
    holds one value (or only nulls) in all of ``incoming`` is compared with that value, so
    the join carries no payload for it (a bulk write's quality, validated, seq and
    error_code mostly are such columns; comparing them row by row doubled the join)."""
    clauses, params = ["r.value IS NOT DISTINCT FROM s.value"], []
    for name, cast in (("quality", "quality"), ("validated", "BOOLEAN"), ("seq", "BIGINT"),
                       ("error_code", "VARCHAR")):
        column = incoming.column(name)
        if column.null_count == len(column):
            clauses.append(f"r.{name} IS NULL")
            continue
        if column.null_count == 0 and pc.all(pc.equal(column, column[0])).as_py():
            clauses.append(f"r.{name} = CAST(? AS {cast})")
            params.append(column[0].as_py())
            continue
        compare = "=" if name in ("quality", "validated") else "IS NOT DISTINCT FROM"
        clauses.append(f"r.{name} {compare} s.{name}")
    return " AND ".join(clauses), params


class _Counts(NamedTuple):
    """Distinct keys a write wrote, split as `WriteResult` reports them."""

    written: int
    new: int
    replaced: int
    unchanged: int


class _Newest(NamedTuple):
    """Where a series' stored rows end: no stored row is later than ``ts`` (epoch µs);
    ``values`` are the row at ``ts`` when it is known to be stored, else None."""

    ts: int
    values: tuple[Any, ...] | None


def _stats_delta(sid: npt.NDArray[np.int64], t: npt.NDArray[np.int64],
                 value: pa.ChunkedArray, deleted: Mapping[int, int]) -> list[dict[str, Any]]:
    """A batch's `stats` for inserted rows sorted by (series, time): per series the count
    less the ``deleted`` rows they replace, first and last time, and the value at the
    last."""
    starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
    ends = np.r_[starts[1:], len(sid)] - 1
    counts = np.diff(np.r_[starts, len(sid)])
    values = value.take(pa.array(ends)).to_pylist()
    return [{"series_id": int(series), "added": int(n) - deleted.get(int(series), 0),
             "first_ts": _naive(int(first)), "last_ts": _naive(int(last)), "last_value": v}
            for series, n, first, last, v in zip(sid[starts], counts, t[starts], t[ends],
                                                 values, strict=True)]


def _naive(us: int) -> dt.datetime:
    return _EPOCH_NAIVE + dt.timedelta(microseconds=us)


_EPOCH_NAIVE = dt.datetime(1970, 1, 1, tzinfo=UTC).replace(tzinfo=None)


def _values(rows: pa.Table, index: int) -> tuple[Any, ...]:
    """A row's values after ts, as `_Newest.values` holds them."""
    return tuple(rows.column(name)[index].as_py() for name in _VALUE_COLUMNS[1:])

#: DuckDB's memory for its buffers, sorts and joins unless the store URL says otherwise.
#: DuckDB's own default is 80 % of the machine's RAM, which a long-running writer grows
#: into (4 GB seen) as its buffer pool keeps every block it read. 1 GB leaves a small home
#: server (a Raspberry Pi with 2-4 GB) room for the system and the rest of meterhub; every
#: query meterhub makes, a compact included, works within it (a sort spills to disk).
MEMORY_LIMIT = "1GB"
_SIZE = re.compile(r"(\d+(\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB|%)", re.I)
_UNIT_BYTES = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 2**10,
               "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
MIN_MEMORY = 64e6  #: below this DuckDB cannot even prepare the store
_LOCK_PID = re.compile(r"PID (\d+)")
_USES_T = re.compile(r"\bt\b")  # a bucket expression that needs epoch µs as column t
_GOOD = "quality <> 'sensor_error' AND value IS NOT NULL"
_ERROR = "quality = 'sensor_error'"
_GOOD_OR_ERROR = f"(({_GOOD}) OR {_ERROR})"
_ERROR_COUNT = f"count(*) FILTER (WHERE {_ERROR})"
#: Reads keep to the times a reading may have (see `meterhub.store.reads.MIN_US`).
_NAIVE_MIN, _NAIVE_MAX = naive_utc(TS_MIN), naive_utc(TS_MAX)
_IN_RANGE = (f"ts >= TIMESTAMP '{_NAIVE_MIN.isoformat(sep=' ')}' "
             f"AND ts < TIMESTAMP '{_NAIVE_MAX.isoformat(sep=' ')}'")


def path_from_url(url: str) -> str:
    """The file path of a ``duckdb:///path`` URL (``duckdb:///:memory:`` for memory)."""
    if not url.startswith("duckdb://"):
        raise StoreError(f"not a DuckDB URL: {url!r}: use duckdb:///path/file.duckdb")
    path = url[len("duckdb://"):].partition("?")[0]
    if path.startswith("/") and not path.startswith("//"):
        path = path[1:]  # duckdb:///rel/file -> rel/file; duckdb:////abs/file -> /abs/file
    elif path.startswith("//"):
        path = path[1:]
    if not path:
        raise StoreError(f"no file in store URL {url!r}: use duckdb:///path/file.duckdb")
    return path


def memory_limit_of(url: str) -> str:
    """The ``memory_limit`` of a store URL (``duckdb:///f.duckdb?memory_limit=2GB``), else
    `MEMORY_LIMIT`; any other parameter is refused."""
    query = url.partition("?")[2]
    limit = MEMORY_LIMIT
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if name != "memory_limit":
            raise StoreError(f"unknown parameter {name!r} in store URL: a DuckDB store takes "
                             "memory_limit (e.g. duckdb:///meterhub.duckdb?memory_limit=2GB)")
        limit = value.strip()
        size = _SIZE.fullmatch(limit)
        if not size:
            raise StoreError(f"memory_limit {value!r} is not a size: give one like 512MB, "
                             "2GB or 50%")
        amount, unit = float(size.group(1)), size.group(3).upper()
        if unit == "%":
            if not 1 <= amount <= 100:
                raise StoreError(f"memory_limit {value!r}: a share of the memory is 1% to "
                                 "100%")
        elif amount * _UNIT_BYTES[unit] < MIN_MEMORY:
            raise StoreError(f"memory_limit {value!r} is too small: give 64MB or more")
    return limit


def _connect(path: str) -> duckdb.DuckDBPyConnection:
    try:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return duckdb.connect(path)
    except duckdb.IOException as exc:
        text = str(exc)
        if "lock" in text.lower():
            pid = _LOCK_PID.search(text)
            holder = f" (PID {pid.group(1)})" if pid else ""
            raise StoreInUseError(
                f"store {path} is in use by another process{holder}: stop that process, "
                "or run this command through it") from None
        raise StoreError(f"cannot open store {path}: {text.splitlines()[0]}") from None
    except duckdb.Error as exc:
        raise StoreError(f"cannot open store {path}: {str(exc).splitlines()[0]}") from None


_COPY = "meterhub_compact_copy"  #: compact's name for the copy it writes


def _quoted(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _quoted_name(name: str) -> str:
    """A SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _first(result: duckdb.DuckDBPyConnection) -> tuple[Any, ...] | None:
    """The first row of a result, reading it to the end (DuckDB 2 wants results finished)."""
    rows = result.fetchall()
    return rows[0] if rows else None


def _in_list(values: Iterable[Any]) -> str:
    return ", ".join(str(int(v)) for v in values)


def _as_given(selection: Selection, series: Sequence[tuple[Any, ...]],
              outside_range: bool) -> tuple[str, list[Any]]:
    """The condition for the selection's rows with its bounds as given (not clamped to the
    times reads keep to); with ``outside_range`` only rows outside those times."""
    clauses, params = [f"series_id IN ({_in_list(s[0] for s in series)})"], []
    if selection.start is not None:
        clauses.append("ts >= ?")
        params.append(naive_utc(selection.start))
    if selection.end is not None:
        clauses.append("ts < ?")
        params.append(naive_utc(selection.end))
    if outside_range:
        clauses.append(f"NOT ({_IN_RANGE})")
    return " AND ".join(clauses), params


_F = TypeVar("_F", bound=Callable[..., Any])


def _exclusive(method: _F) -> _F:
    """Run a writing method under the store's lock: one writer at a time, any thread.
    What the journal acknowledged is folded in first, never inside the method (in its
    transaction)."""

    @functools.wraps(method)
    def locked(self: DuckDBStore, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if not self._in_write() and self._stored_seq < self._acked_seq:
                self._fold()
            with self._writing_method():
                return method(self, *args, **kwargs)

    return locked  # type: ignore[return-value]


class DuckDBStore:
    """The `Store` on one DuckDB file, owned by one process.

    Threads of that process may share it (the API serves from a thread pool while the
    sync writes from the event loop): each thread reads through its own DuckDB cursor,
    and writes take one lock, so they never interleave.
    """

    shared = False  #: one process owns the file

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = path_from_url(url)
        self.memory_limit = memory_limit_of(url)
        self._main = _connect(self.path)
        self._owner = threading.get_ident()
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._lock = threading.RLock()
        # this process owns the file, so only its own writes change the catalog
        self._catalog = CatalogCache(self._load_catalog)
        self._newest: dict[int, _Newest] = {}  #: series id -> where its stored rows end
        self._next_batch: int | None = None
        self._stats_batch = 0  #: the batch series_stats is as of (meta.series_stats_batch)
        # writes acknowledged from the journal (`journal_write`), not yet folded in: every
        # statement (`_con`) folds them in first, so every read sees them
        self._journal = None if self.path == ":memory:" else Journal(
            Path(f"{self.path}.journal"))
        self._held: list[Record] = []
        self._held_rows = 0
        self._seq = 0  #: the last journal record's sequence number
        self._acked_seq = 0  #: the last record appended and synced (so acknowledged)
        self._stored_seq = 0  #: the last record a fold committed to the store
        #: how deep this thread is in writing methods (a fold is one)
        self._writing = threading.local()
        self._closed = False  #: the journal takes nothing more (the store closed)
        self._compacting = False  #: the journal takes nothing while compact copies
        #: appends to the journal and _held: not the store's lock, which a fold holds while
        #: it writes (appends go on meanwhile, into the journal's next segment)
        self._journal_lock = threading.Lock()
        self._known_layouts = KnownLayouts()  #: under the journal's lock
        try:
            self._main.execute(f"SET memory_limit = '{self.memory_limit}'")
            for statement in _DDL:
                self._main.execute(statement)
            self._main.execute("INSERT INTO meta VALUES ('schema_version', ?) "
                               "ON CONFLICT DO NOTHING", [SCHEMA_VERSION])
            if not _first(self._main.execute(
                    "SELECT 1 FROM duckdb_columns() WHERE database_name = current_database() "
                    "AND table_name = 'batches' AND column_name = 'stats'")):
                self._main.execute(f"ALTER TABLE batches ADD COLUMN stats {_STATS_TYPE}")
            self._load_stats_batch()
            if not self._stats_hold():
                self._main.execute("BEGIN TRANSACTION")
                self._count_stats()
                self._main.execute("COMMIT")
        except duckdb.Error as exc:
            self._main.close()
            raise StoreError(f"cannot prepare store {self.path}: "
                             f"{str(exc).splitlines()[0]}") from None
        self._replay()

    @property
    def _con(self) -> duckdb.DuckDBPyConnection:
        """This thread's connection: the main one for the opening thread, else a cursor;
        journaled writes are folded in first (`fold_journal`), except inside a writing
        method (its transaction), which folded them before it began."""
        # _stored_seq before _acked_seq: a fold completing in between only makes this fold again
        if self._stored_seq < self._acked_seq and not self._in_write():
            self.fold_journal()
        if threading.get_ident() == self._owner:
            return self._main
        con: duckdb.DuckDBPyConnection | None = getattr(self._local, "con", None)
        if con is None:
            with self._lock:
                con = self._main.cursor()
                self._cursors.append(con)
            self._local.con = con
        return con

    # -- lifecycle -------------------------------------------------------------------------

    def _in_write(self) -> bool:
        """Whether this thread is inside a writing method (its transaction): journaled
        writes are folded before one begins, never inside."""
        return bool(getattr(self._writing, "depth", 0))

    @contextlib.contextmanager
    def _writing_method(self) -> Iterator[None]:
        depth = getattr(self._writing, "depth", 0)
        self._writing.depth = depth + 1
        try:
            yield
        finally:
            self._writing.depth = depth

    def close(self) -> None:
        with self._lock:
            try:
                self.fold_journal()
            finally:
                with self._journal_lock:  # nothing is journaled after this
                    self._closed = True
                    left = bool(self._held)  # a failed fold: the next open replays them
                for con in self._cursors:
                    con.close()
                self._cursors.clear()
                self._main.close()
                if self._journal is not None:
                    if left:
                        self._journal.close()
                    else:
                        self._journal.remove()

    def ping(self) -> None:
        _first(self._con.execute("SELECT 1"))

    def size_bytes(self) -> int | None:
        """The file's size and its journal's."""
        if self.path == ":memory:":
            return None
        files = [Path(self.path), Path(f"{self.path}.journal"), Path(f"{self.path}.wal")]
        return sum(f.stat().st_size for f in files if f.exists())

    def __enter__(self) -> DuckDBStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------

    @_exclusive
    def write(self, data: Any, *, source: str | None = None,
              cursors: Sequence[SyncCursor] = (), origin: str = "api",
              state: Mapping[str, str] | None = None) -> WriteResult:
        """Upsert readings by (device, channel, ts); the last row of a key in `data` wins.

        The rows, any new devices and channels, the batch record, the sync cursors and the
        ``state`` values are committed together or not at all. ``data`` None writes no rows.
        """
        table = READING_SCHEMA.empty_table() if data is None else to_readings(
            data, source=source, keep_hints=True)
        con = self._con
        con.execute("BEGIN TRANSACTION")
        try:
            result, grew, newest = self._write(table, cursors, origin, state or {})
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            self._load_stats_batch()  # a fold in the write went with it
            raise
        self._next_batch = result.batch_id + 1
        for series_id, row in newest.items():  # only now: a rolled-back write changes nothing
            if row is None:
                self._newest.pop(series_id, None)
            else:
                self._newest[series_id] = row
        if grew:  # only a write that added channels changes the cached catalog
            self._catalog.changed()
        return result

    def journal_write(self, data: Any, *, origin: str = "api",
                      state: Mapping[str, str] | None = None,
                      checked: bool = False) -> Journaled | None:
        """Store readings of known channels, and ``state`` values, by the journal: durable
        when this returns and seen by every read from then on, folded into the store with
        other journaled writes in one commit later (`fold_journal`; reads fold first).

        None, with nothing written, when the write cannot go by the journal (a store in
        memory, a new channel or unit, more than `SHORT_WRITE_ROWS` rows, a journal whose
        last append failed and could not be taken back, a compact copying the store, a
        closed store): `write` it.
        Readings are checked here as `write` checks them, so a fold cannot refuse them;
        ``checked`` says a meterhub parser made them in reading form (`Telegram.join`),
        which then costs no second check (a fold checks again, and leaves out what fails).
        """
        if self._journal is None or self._journal.broken:
            return None
        if data is None:
            table = READING_SCHEMA.empty_table()
        elif checked and isinstance(data, pa.Table) and in_reading_form(data):
            table = data
        else:
            table = to_readings(data, keep_hints=True)
        if table.num_rows > SHORT_WRITE_ROWS:
            return None
        index = self._catalog.index()  # not under the journal's lock: loading it may fold
        with self._journal_lock:
            if self._closed or self._compacting:
                return None
            if table.num_rows:
                if not self._known_layouts.known(table, index):
                    return None
                # the channels are known: kind and quantity hints only describe new ones
                table = table.select(READING_SCHEMA.names)
            self._seq += 1
            values = dict(state or {})
            self._journal.append(encode(self._seq, table, origin, values))
            self._held.append(Record(self._seq, table, origin, values))
            self._held_rows += table.num_rows
            self._acked_seq = self._seq  # after _held has it: a read that sees it folds it
            due = self._held_rows >= FOLD_ROWS
        return Journaled(keys=keys_of(table), fold_due=due)

    def fold_journal(self) -> None:
        """Write the journaled writes not yet in the store in one commit and drop them from
        the journal; in another thread's fold, wait for it."""
        with self._lock:
            self._fold()

    def _fold(self) -> None:
        if not self._held:  # (a store in memory holds none: it has no journal)
            return
        assert self._journal is not None
        with self._journal_lock:
            held, self._held, self._held_rows = self._held, [], 0
            through = self._journal.rotate()
        try:
            tables = [record.table for record in held if record.table.num_rows]
            state: dict[str, str] = {}
            for record in held:
                state.update(record.state)
            state[_FOLDED] = str(held[-1].seq)
            origins = {record.origin for record in held}
            with self._writing_method():  # its writes do not fold again
                try:
                    self.write(pa.concat_tables(tables, promote_options="permissive")
                               if tables else None,
                               origin=origins.pop() if len(origins) == 1 else "journal",
                               state=state)
                except (InputError, pa.ArrowException):  # checked when journaled: a bug
                    self._fold_one_by_one(held)
            self._stored_seq = max(self._stored_seq, held[-1].seq)
        except BaseException:  # the journal keeps them: the next read or open folds again
            with self._journal_lock:
                self._held = held + self._held
                self._held_rows = sum(record.table.num_rows for record in self._held)
            raise
        self._journal.drop_through(through)

    def _fold_one_by_one(self, held: Sequence[Record]) -> None:
        """Fold each record alone; one the store refuses is told and left out, so that
        reads are not refused for good."""
        for record in held:
            try:
                self.write(record.table if record.table.num_rows else None,
                           origin=record.origin,
                           state={**record.state, _FOLDED: str(record.seq)})
            except (InputError, pa.ArrowException) as exc:
                log.error("a journaled write (%d readings, %s) was refused and left out: "
                          "%s", record.table.num_rows, record.origin, exc)

    def _replay(self) -> None:
        """Fold in what the journal kept of a process that ended without folding it."""
        if self._journal is None:
            return
        folded = int(self.get_state(_FOLDED) or 0)
        records = [record for record in self._journal.records() if record.seq > folded]
        self._seq = self._stored_seq = max([folded, *(record.seq for record in records)])
        if records:
            log.warning("replaying %d journaled write(s) into %s", len(records), self.path)
            with self._lock:
                self._held = records
                self._held_rows = sum(record.table.num_rows for record in records)
                try:
                    self._fold()
                except Exception as exc:  # noqa: BLE001 - any of them: the store won't open
                    self._main.close()
                    raise StoreError(f"cannot replay the journal {self._journal.base}.* "
                                     f"into {self.path}: {str(exc).splitlines()[0]}"
                                     ) from None
        else:
            self._journal.drop_through(self._journal.current)

    def _write(self, table: pa.Table, cursors: Sequence[SyncCursor], origin: str,
               state: Mapping[str, str]) -> tuple[WriteResult, bool, dict[int, _Newest | None]]:
        """(result, whether channels were added, each touched series' newest row, or None
        when it is not known)."""
        con = self._con
        if self._next_batch is None:
            row = _first(con.execute("SELECT coalesce(max(batch_id), 0) + 1 FROM batches"))
            assert row is not None
            self._next_batch = int(row[0])
        batch_id = self._next_batch
        counts, grew = _Counts(0, 0, 0, 0), False
        newest: dict[int, _Newest | None] = {}
        stats: list[dict[str, Any]] | None = None
        now = naive_utc(dt.datetime.now(UTC))
        if table.num_rows:
            series_ids = (known_series(table, self._catalog.index())
                          if table.num_rows <= SHORT_WRITE_ROWS else None)
            if series_ids is not None:
                counts, newest, stats = self._append_rows(table, series_ids, batch_id)
            else:
                series, grew, all_new = self._ensure_catalog(table)
                table = to_channel_units(table, series)
                counts, stats = self._upsert_rows(table, series, batch_id, all_new=all_new)
                newest = dict.fromkeys(series.column("series_id").to_pylist())
        # the batch carries what it adds to series_stats: a parameter of a statement made
        # anyway, where an upsert of series_stats cost a commit's worth (3 ms) per write
        con.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?)",
                    [batch_id, origin, now, table.num_rows, stats or None])
        if batch_id - self._stats_batch >= FOLD_BATCHES:
            self._fold_stats(batch_id)
        for cursor in cursors:
            con.execute("INSERT OR REPLACE INTO sync_cursors VALUES (?, ?, ?, ?)",
                        [cursor.source, cursor.device, cursor.value, now])
        for key, value in state.items():
            # an UPDATE costs half an INSERT OR REPLACE here, and a key is mostly there
            updated = _first(con.execute("UPDATE state SET value = ?, updated_at = ? "
                                         "WHERE key = ?", [value, now, key]))
            if not updated or not updated[0]:
                con.execute("INSERT INTO state VALUES (?, ?, ?)", [key, value, now])
        return WriteResult(rows=table.num_rows, written=counts.written, batch_id=batch_id,
                           new=counts.new, replaced=counts.replaced,
                           unchanged=counts.unchanged, keys=keys_of(table)), grew, newest

    def _append_rows(self, table: pa.Table, series_ids: npt.NDArray[np.int64],
                     batch_id: int
                     ) -> tuple[_Counts, dict[int, _Newest | None], list[dict[str, Any]]]:
        """The short write path: returns (keys written, each series' newest row after it).

        Rows newer than their series' newest stored row are appended as they are (new keys).
        A row equal to that newest row (a meter repeating its last gas reading for an hour)
        is already stored and skipped (unchanged). Only other rows pay for the
        replace-by-key DELETE; the key probe tells which of them are stored and whether
        with the same content.
        """
        con = self._con
        ts = table.column("ts").cast(pa.timestamp("us")).to_numpy().view(np.int64)
        order = last_of_each_key(series_ids, ts)
        sid, t = series_ids[order], ts[order]
        rows = table.take(pa.array(order)).select(list(_VALUE_COLUMNS))
        starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
        ends = np.r_[starts[1:], len(sid)] - 1
        series = [int(s) for s in sid[starts]]
        self._learn_newest([s for s in series if s not in self._newest], int(t.min()))
        floor = np.repeat(np.array([self._newest[s].ts for s in series], dtype=np.int64),
                          np.diff(np.r_[starts, len(sid)]))
        keep = np.ones(len(sid), dtype=bool)
        stale = np.flatnonzero(t <= floor)
        existing = unchanged = 0  # keys stored before this write, and those kept as they are
        if len(stale):
            for i in np.flatnonzero(t == floor):
                if self._newest[int(sid[i])].values == _values(rows, int(i)):
                    keep[i] = False
            existing = unchanged = len(keep) - int(np.count_nonzero(keep))
            stale = stale[keep[stale]]
        probed = True  # whether the probe told which stale keys are stored, and how
        deleted: dict[int, int] = {}  # stored rows this write replaces, by series
        if len(stale):  # rows at or before their series' newest: delete only those stored
            found = self._stored(sid[stale], t[stale])
            if found is None:
                probed = False
            else:
                incoming = rows.take(pa.array(stale)).select(list(_VALUE_COLUMNS[1:]))
                mask = np.zeros(len(stale), dtype=bool)
                for j, (key, values) in enumerate(zip(
                        zip(sid[stale].tolist(), t[stale].tolist(), strict=True),
                        zip(*(c.to_pylist() for c in incoming.columns), strict=True),
                        strict=True)):
                    held = found.get(key)
                    if held is not None:
                        mask[j] = True
                        unchanged += held == values
                stale = stale[mask]
                existing += len(stale)
        rows = rows.set_column(0, "ts", pa.array(t, pa.timestamp("us"))).append_column(
            "series_id", pa.array(sid, pa.int32()))
        newest = {s: _Newest(int(t[e]), _values(rows, int(e))) for s, e in zip(
            series, ends, strict=True) if t[e] >= self._newest[s].ts}
        if not keep.all():
            rows = rows.filter(pa.array(keep))
        con.register("_rows", rows)
        try:
            if len(stale):
                stale_rows = rows.take(pa.array(np.cumsum(keep)[stale] - 1))
                con.register("_stale", stale_rows)
                if not probed:  # too many stored rows to probe: count in SQL
                    same, params = _same_as(stale_rows)
                    deleted, stored, same_count = self._stored_keys("_stale", same, params)
                    existing, unchanged = existing + stored, unchanged + same_count
                con.execute("DELETE FROM readings r USING _stale s "
                            "WHERE r.series_id = s.series_id AND r.ts = s.ts")
                con.unregister("_stale")
            if rows.num_rows:
                con.execute(f"""
                    INSERT INTO readings
                    SELECT series_id, ts, value, quality::quality, validated, seq, error_code,
                           {batch_id}
                    FROM _rows""")
        finally:
            con.unregister("_rows")
        if probed:
            deleted = {int(s): int(n) for s, n in zip(
                *np.unique(sid[stale], return_counts=True), strict=True)}
        stats = _stats_delta(sid[keep], t[keep], rows.column("value"), deleted) \
            if rows.num_rows else []
        written = len(order)
        return _Counts(written, written - existing, existing - unchanged, unchanged), \
            dict(newest), stats

    def _stored_keys(self, staged: str, same: str, params: list[Any]
                     ) -> tuple[dict[int, int], int, int]:
        """Of the keys in table ``staged``: how many are stored, by series; how many in
        all; and how many of those hold the same content (``same``, see `_same_as`)."""
        by_series, stored, unchanged = {}, 0, 0
        for series_id, count, same_count in self._con.execute(
                f"SELECT s.series_id, count(*), count(*) FILTER (WHERE {same}) "
                f"FROM readings r JOIN {staged} s ON r.series_id = s.series_id "
                f"AND r.ts = s.ts GROUP BY s.series_id", params).fetchall():
            by_series[int(series_id)] = int(count)
            stored, unchanged = stored + int(count), unchanged + int(same_count)
        return by_series, stored, unchanged

    def _merged_stats(self) -> str:
        """SQL of each series' stats: `series_stats` with what the batches since add."""
        return f"""
            SELECT series_id, sum(added)::BIGINT AS readings, min(first_ts) AS first_ts,
                   max(last_ts) AS last_ts,
                   arg_max_null(last_value, (coalesce(last_ts, TIMESTAMP '0001-01-01'),
                                             batch_id)) AS last_value,
                   max(written_at) AS written_at
            FROM (SELECT series_id, readings AS added, first_ts, last_ts, last_value,
                         written_at, -1 AS batch_id FROM series_stats
                  UNION ALL
                  SELECT s.series_id, s.added, s.first_ts, s.last_ts, s.last_value,
                         written_at, batch_id
                  FROM (SELECT batch_id, written_at, unnest(stats) AS s FROM batches
                        WHERE batch_id > {self._stats_batch} AND stats IS NOT NULL))
            GROUP BY series_id"""

    def _fold_stats(self, batch_id: int) -> None:
        """Fold the batches up to ``batch_id`` into `series_stats` (in the caller's
        transaction): every `FOLD_BATCHES` writes, and before a delete counts again."""
        con = self._con
        con.execute(f"CREATE OR REPLACE TEMP TABLE _folded AS {self._merged_stats()}")
        con.execute("DELETE FROM series_stats")
        con.execute("INSERT INTO series_stats SELECT series_id, readings, first_ts, last_ts, "
                    "last_value, written_at FROM _folded")
        con.execute("DROP TABLE _folded")
        self._set_stats_batch(batch_id)

    def _load_stats_batch(self) -> None:
        """The batch `series_stats` is as of, from the store (after a rollback too)."""
        held = _first(self._con.execute(
            "SELECT value FROM meta WHERE key = 'series_stats_batch'"))
        self._stats_batch = int(held[0]) if held else 0

    def _set_stats_batch(self, batch_id: int) -> None:
        self._con.execute("INSERT OR REPLACE INTO meta VALUES ('series_stats_batch', ?)",
                          [str(batch_id)])
        self._stats_batch = batch_id

    def _stats_hold(self) -> bool:
        """Whether `series_stats` was kept by this meterhub's writes and still adds up to
        the readings (an older meterhub writing to the store would not have kept it): the
        count of all rows comes from the table's metadata, that of rows outside the kept
        times from the few row groups whose zone maps reach there."""
        if not _first(self._main.execute(
                "SELECT 1 FROM meta WHERE key = 'series_stats_batch'")):
            return False
        row = _first(self._main.execute(
            f"SELECT (SELECT count(*) FROM readings), "
            f"(SELECT count(*) FROM readings WHERE NOT ({_IN_RANGE})), "
            f"(SELECT coalesce(sum(readings), 0) FROM ({self._merged_stats()}))"))
        return row is not None and int(row[0]) - int(row[1]) == int(row[2])

    def _count_stats(self, series: Sequence[int] | None = None) -> None:
        """Count `series_stats` from the readings again: of ``series`` (after folding the
        batches in), or of all (a store made before the table was)."""
        con = self._con
        last = _first(con.execute("SELECT coalesce(max(batch_id), 0) FROM batches"))
        assert last is not None
        if series is not None:
            self._fold_stats(int(last[0]))
        else:
            self._set_stats_batch(int(last[0]))
        only = "" if series is None else f"AND series_id IN ({_in_list(series)})"
        con.execute("DELETE FROM series_stats" + (
            "" if series is None else f" WHERE series_id IN ({_in_list(series)})"))
        con.execute(f"""
            INSERT INTO series_stats
            SELECT series_id, count(*), min(ts), max(ts), arg_max_null(value, ts),
                   max(b.written_at)
            FROM readings JOIN batches b USING (batch_id)
            WHERE {_IN_RANGE} {only} GROUP BY series_id""")

    def _stored(self, series_ids: npt.NDArray[np.int64], ts: npt.NDArray[np.int64]
                ) -> dict[tuple[int, int], tuple[Any, ...]] | None:
        """The stored rows in the range of these keys (older than or at their series'
        newest): (series id, epoch µs) -> values as `_values` gives them.

        One range read (a few zone maps, about a third of a DELETE join); None when the
        range holds too many rows to bring over (every key then goes to the DELETE).
        """
        first, last = int(ts.min()), int(ts.max())
        found = self._con.execute(
            f"SELECT series_id, epoch_us(ts), value, quality::VARCHAR, validated, seq, "
            f"error_code FROM readings WHERE ts BETWEEN "
            f"make_timestamp({first}) AND make_timestamp({last}) AND series_id IN "
            f"({_in_list(set(series_ids.tolist()))}) LIMIT {_PROBE_ROWS + 1}").fetchall()
        if len(found) > _PROBE_ROWS:
            return None
        return {(int(s), int(at)): tuple(values) for s, at, *values in found}

    def _learn_newest(self, series: Sequence[int], since: int) -> None:
        """Learn where each series' stored rows end, looking only from ``since`` (epoch µs,
        the write's oldest row) on: zone maps keep that read to the recent end of a large
        store. A series with nothing stored from ``since`` on ends before it, its row
        unknown. Learnt from committed rows, so kept if the write rolls back."""
        if not series:
            return
        found = dict.fromkeys(series, _Newest(since - 1, None))
        for series_id, ts, *values in self._con.execute(f"""
                SELECT series_id, epoch_us(ts), value, quality::VARCHAR, validated, seq,
                       error_code
                FROM readings WHERE series_id IN ({_in_list(series)})
                                AND ts >= make_timestamp({since}) AND {_IN_RANGE}
                QUALIFY row_number() OVER (PARTITION BY series_id ORDER BY ts DESC) = 1
                """).fetchall():
            found[int(series_id)] = _Newest(int(ts), tuple(values))
        self._newest.update(found)

    def _ensure_catalog(self, table: pa.Table) -> tuple[pa.Table, bool, bool]:
        """Create missing devices and channels (`new_channels` says which and of which
        kind); return (device, channel, series_id, unit, quantity) of the table's devices,
        whether any channel (and so any device) was new, and whether every channel of the
        table was (so none of its keys can be stored yet)."""
        con = self._con
        distinct = distinct_keys(table)
        con.register("_keys", pa.Table.from_pylist(
            [{"source": d["source"], "device": d["device"]} for d in distinct]))
        con.execute("INSERT INTO devices (device, source) SELECT DISTINCT device, "
                    "first(source) OVER (PARTITION BY device) FROM _keys "
                    "WHERE device NOT IN (SELECT device FROM devices)")
        con.unregister("_keys")
        devices = [sorted({d["device"] for d in distinct})]
        known: dict[tuple[str, str], str] = {(d, c): k for d, c, k in con.execute(
            "SELECT device, channel, kind FROM channels WHERE device IN (SELECT unnest(?))",
            devices).fetchall()}
        new, all_new = new_channels(table, distinct, known)
        if new:
            self._insert_channels(new)
        return con.sql("SELECT device, channel, series_id, unit, quantity FROM channels "
                       "WHERE device IN (SELECT unnest(?))", params=devices
                       ).to_arrow_table(), bool(new), all_new

    def _insert_channels(self, channels: Sequence[Channel]) -> None:
        con = self._con
        row = _first(con.execute("SELECT coalesce(max(series_id), 0) FROM channels"))
        assert row is not None
        next_id = int(row[0]) + 1
        con.executemany(
            "INSERT INTO channels VALUES (?, ?, ?, ?, ?, ?, ?)",
            [[next_id + i, c.device, c.channel, c.quantity, c.unit, c.kind.value, c.interval_s]
             for i, c in enumerate(channels)])

    def _upsert_rows(self, table: pa.Table, series: pa.Table, batch_id: int, *,
                     all_new: bool = False) -> tuple[_Counts, list[dict[str, Any]]]:
        """The general write path. ``all_new``: no key of the table's channels can be
        stored yet (every channel was created by this write), so nothing is looked up.

        One join finds the stored keys and how many hold the same content; only when it
        finds any does the replace-by-key DELETE run."""
        con = self._con
        incoming = table.select(["device", "channel", "ts", "value", "quality", "validated",
                                 "seq", "error_code"])
        incoming = incoming.set_column(2, "ts", incoming.column("ts").cast(pa.timestamp("us")))
        incoming = incoming.append_column("_row", pa.array(np.arange(incoming.num_rows)))
        con.register("_incoming", incoming)
        con.register("_series", series)
        try:
            con.execute("""
                CREATE OR REPLACE TEMP TABLE _staged AS
                SELECT s.series_id, i.ts, i.value, i.quality::quality AS quality, i.validated,
                       i.seq, i.error_code, i._row
                FROM _incoming i JOIN _series s USING (device, channel)""")
            row = _first(con.execute("SELECT count(*) - count(DISTINCT (series_id, ts)) "
                                     "FROM _staged"))
            assert row is not None
            if row[0]:
                # The same key twice in one write: the later row wins.
                con.execute("""
                    CREATE OR REPLACE TEMP TABLE _staged AS SELECT * FROM _staged
                    QUALIFY row_number() OVER (PARTITION BY series_id, ts
                                               ORDER BY _row DESC) = 1""")
            existing = unchanged = 0
            deleted: dict[int, int] = {}  # stored rows this write replaces, by series
            if not all_new:
                same, params = _same_as(incoming)
                deleted, existing, unchanged = self._stored_keys("_staged", same, params)
            if existing:
                con.execute("DELETE FROM readings r USING _staged s "
                            "WHERE r.series_id = s.series_id AND r.ts = s.ts")
            con.execute(f"""
                INSERT INTO readings
                SELECT series_id, ts, value, quality, validated, seq, error_code, {batch_id}
                FROM _staged ORDER BY series_id, ts""")
            delta = con.sql("""
                SELECT series_id, count(*) AS added, min(ts) AS first_ts, max(ts) AS last_ts,
                       arg_max_null(value, ts) AS last_value
                FROM _staged GROUP BY series_id""").to_arrow_table()
            con.execute("DROP TABLE _staged")
            stats = delta.to_pylist()
            written = sum(item["added"] for item in stats)
            for item in stats:
                item["added"] -= deleted.get(item["series_id"], 0)
            return _Counts(written, written - existing, existing - unchanged,
                           unchanged), stats
        finally:
            con.unregister("_incoming")
            con.unregister("_series")

    @_exclusive
    def delete(self, selection: Selection, *, outside_range: bool = False) -> int:
        """Delete the selected readings; returns how many there were.

        ``start`` and ``end`` are taken as given, even outside the times reads keep to, so
        that rows stored there before writes were checked can be removed; with
        ``outside_range`` only those rows (outside [`TS_MIN`, `TS_MAX`)) go.
        """
        series = self._catalog.select(selection)
        if not series:
            return 0
        where, params = _as_given(selection, series, outside_range)
        con = self._con
        con.execute("BEGIN TRANSACTION")
        try:
            row = _first(con.execute(f"DELETE FROM readings WHERE {where}", params))
            if row and row[0]:  # a delete of nothing changes nothing
                self._count_stats([s[0] for s in series])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            self._load_stats_batch()
            raise
        finally:
            # where each series ends may have gone with the rows: learn it again
            for series_id, *_ in series:
                self._newest.pop(series_id, None)
        return int(row[0]) if row else 0

    # -- catalog ---------------------------------------------------------------------------

    @_exclusive
    def upsert_sites(self, sites: Sequence[Site]) -> None:
        sites = [check_catalog(site) for site in sites]
        if sites:
            self._con.executemany(
                "INSERT OR REPLACE INTO sites VALUES (?, ?, ?, ?, ?)",
                [[s.site, s.name, s.timezone, s.latitude, s.longitude] for s in sites])

    @_exclusive
    def upsert_devices(self, devices: Sequence[Device]) -> None:
        devices = [check_catalog(device) for device in devices]
        if devices:
            self._con.executemany(
                "INSERT OR REPLACE INTO devices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [[d.device, d.source, d.site, d.name, d.model, d.serial, d.timezone,
                  d.latitude, d.longitude] for d in devices])
            self._catalog.changed()

    @_exclusive
    def upsert_channels(self, channels: Sequence[Channel]) -> None:
        """Add channels or update their quantity, kind and interval.

        A channel's unit is fixed once it holds readings, since stored values are in it,
        and must fit its quantity (`meterhub.model.check_catalog`).
        """
        channels = [check_catalog(ch) for ch in channels]
        con = self._con
        con.execute("BEGIN TRANSACTION")
        try:
            fresh = []
            for ch in channels:
                unit = ch.unit
                row = _first(con.execute(
                    "SELECT series_id, unit FROM channels WHERE device = ? AND channel = ?",
                    [ch.device, ch.channel]))
                if row is None:
                    fresh.append(Channel(ch.device, ch.channel, ch.quantity, unit, ch.kind,
                                         ch.interval_s))
                    continue
                series_id, stored_unit = row
                if stored_unit != unit:
                    held = _first(con.execute("SELECT count(*) FROM readings WHERE series_id = ?",
                                       [series_id]))
                    if held and held[0]:
                        raise InputError(f"channel {ch.device}/{ch.channel} holds readings "
                                         f"in {stored_unit}; its unit cannot become {unit}")
                con.execute("UPDATE channels SET quantity = ?, unit = ?, kind = ?, "
                            "interval_s = ? WHERE series_id = ?",
                            [ch.quantity, unit, ch.kind.value, ch.interval_s, series_id])
            for device in sorted({ch.device for ch in fresh}):
                con.execute("INSERT INTO devices (device, source) VALUES (?, 'manual') "
                            "ON CONFLICT DO NOTHING", [device])
            if fresh:
                self._insert_channels(fresh)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            self._catalog.changed()

    @_exclusive
    def set_kind(self, device: str, channel: str, kind: ChannelKind | str) -> ChannelKind:
        """Change how a channel's readings aggregate; returns the kind it had.

        The readings stay as stored: only their meaning (a level, a register, an amount per
        interval) changes, and with it what `aggregate` computes.
        """
        try:
            new = ChannelKind(kind)
        except ValueError:
            raise InputError(f"kind {kind!r} is not one of "
                             f"{', '.join(k.value for k in ChannelKind)}") from None
        row = _first(self._con.execute(
            "SELECT series_id, kind FROM channels WHERE device = ? AND channel = ?",
            [device, channel]))
        if row is None:
            raise NotFoundError(f"no channel {device}/{channel}: list them with "
                                "`meterhub devices`")
        if row[1] != new.value:
            self._con.execute("UPDATE channels SET kind = ? WHERE series_id = ?",
                              [new.value, row[0]])
            self._catalog.changed()
        return ChannelKind(row[1])

    def sites(self) -> list[Site]:
        rows = self._con.execute("SELECT * FROM sites ORDER BY site").fetchall()
        return [Site(*row) for row in rows]

    def devices(self) -> list[Device]:
        rows = self._con.execute("SELECT * FROM devices ORDER BY device").fetchall()
        return [Device(*row) for row in rows]

    def channels(self, selection: Selection | None = None) -> list[Channel]:
        where, params = self._series_filter(selection or Selection(), alias="c")
        rows = self._con.execute(
            f"SELECT c.device, c.channel, c.quantity, c.unit, c.kind, c.interval_s "
            f"FROM channels c JOIN devices d USING (device) WHERE {where} "
            "ORDER BY c.device, c.channel", params).fetchall()
        return [Channel(d, c, q, u, ChannelKind(k), i) for d, c, q, u, k, i in rows]

    def channel_stats(self, selection: Selection | None = None) -> pa.Table:
        where, params = self._series_filter(selection or Selection(), alias="c")
        table = self._con.sql(f"""
            SELECT d.source, c.device, c.channel, c.quantity, c.kind, c.unit,
                   coalesce(s.readings, 0) AS readings,
                   timezone('UTC', s.first_ts) AS first_ts,
                   timezone('UTC', s.last_ts) AS last_ts,
                   timezone('UTC', s.written_at) AS written_at, s.last_value
            FROM channels c JOIN devices d USING (device)
            LEFT JOIN ({self._merged_stats()}) s USING (series_id)
            WHERE {where} ORDER BY c.device, c.channel""", params=params).to_arrow_table()
        # stored times are UTC: read as such (a bare cast would take the host's zone) and
        # labelled UTC, whatever zone DuckDB shows TIMESTAMPTZ in
        utc = pa.timestamp("us", tz="UTC")
        for name in ("first_ts", "last_ts", "written_at"):
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, table.column(name).cast(utc))
        return table

    def _series_filter(self, selection: Selection, alias: str = "c") -> tuple[str, list[Any]]:
        clauses, params = ["TRUE"], []
        for name, values in ((f"{alias}.device", selection.devices),
                             (f"{alias}.channel", selection.channels),
                             ("d.source", selection.sources)):
            if values is not None:
                clauses.append(f"{name} IN (SELECT unnest(?))")
                params.append(list(values))
        return " AND ".join(clauses), params

    def _load_catalog(self) -> list[SeriesRow]:
        return [SeriesRow(int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in self._con.execute(
            "SELECT c.series_id, c.device, c.channel, c.unit, c.kind, d.source "
            "FROM channels c JOIN devices d USING (device) "
            "ORDER BY c.device, c.channel").fetchall()]

    # -- sync cursors ----------------------------------------------------------------------

    def get_state(self, key: str) -> str | None:
        row = _first(self._con.execute("SELECT value FROM state WHERE key = ?", [key]))
        return None if row is None else str(row[0])

    def state_values(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self._con.execute(
            "SELECT key, value FROM state ORDER BY key").fetchall()}

    def get_cursor(self, source: str, device: str) -> str | None:
        row = _first(self._con.execute("SELECT cursor FROM sync_cursors WHERE source = ? AND "
                                "device = ?", [source, device]))
        return None if row is None else str(row[0])

    @_exclusive
    def record_sync(self, source: str, device: str, *, error: BaseException | None = None,
                    calls: int = 0, readings: int = 0) -> None:
        """The outcome of one device's sync, for `meterhub status`."""
        now = naive_utc(dt.datetime.now(UTC))
        old = _first(self._con.execute(
            "SELECT last_success FROM sync_status WHERE source = ? AND device = ?",
            [source, device]))
        success = now if error is None else (old[0] if old else None)
        self._con.execute(
            "INSERT OR REPLACE INTO sync_status VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [source, device, now, success,
             None if error is None else type(error).__name__,
             None if error is None else str(error), calls, readings])

    def sync_status(self) -> pa.Table:
        return self._con.sql("SELECT * FROM sync_status ORDER BY source, device"
                             ).to_arrow_table()

    def cursors(self) -> list[SyncCursor]:
        rows = self._con.execute("SELECT source, device, cursor FROM sync_cursors "
                                 "ORDER BY source, device").fetchall()
        return [SyncCursor(*row) for row in rows]

    # -- API keys --------------------------------------------------------------------------

    @_exclusive
    def add_key(self, key: ApiKey) -> None:
        taken = _first(self._con.execute(
            "SELECT key_id FROM api_keys WHERE name = ? AND revoked_at IS NULL", [key.name]))
        if taken is not None and key.revoked_at is None:
            raise ConflictError(f"an active key is already named {key.name!r}: pick another "
                             "name or revoke that key first")
        self._con.execute("INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?)",
                          [key.key_id, key.name, key.scope.value, key.hash, key.rate_limit,
                           naive_utc(key.created_at),
                           None if key.revoked_at is None else naive_utc(key.revoked_at)])

    def api_keys(self) -> list[ApiKey]:
        rows = self._con.execute("SELECT * FROM api_keys ORDER BY created_at, name").fetchall()
        return [ApiKey(key_id, name, Scope(scope), hashed, limit, created.replace(tzinfo=UTC),
                       None if revoked is None else revoked.replace(tzinfo=UTC))
                for key_id, name, scope, hashed, limit, created, revoked in rows]

    @_exclusive
    def revoke_key(self, key_id: str) -> None:
        row = _first(self._con.execute("SELECT revoked_at FROM api_keys WHERE key_id = ?",
                                       [key_id]))
        if row is None:
            raise NotFoundError(f"no API key with id {key_id!r}: list them with "
                                "`meterhub keys list`")
        if row[0] is None:
            self._con.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ?",
                              [naive_utc(dt.datetime.now(UTC)), key_id])

    # -- reading ---------------------------------------------------------------------------

    @staticmethod
    def _time_filter(selection: Selection, column: str = "ts") -> tuple[str, list[Any]]:
        """The selection's [start, end), always within the times a reading may have."""
        start, end = clamped(selection)
        return f"{column} >= ? AND {column} < ?", [naive_utc(start), naive_utc(end)]

    def count(self, selection: Selection, *, outside_range: bool = False) -> int:
        """The selected readings; with ``outside_range`` those that reads skip because
        they lie outside [`TS_MIN`, `TS_MAX`) (and within the selection's bounds as given),
        which `delete` removes."""
        series = self._catalog.select(selection)
        if not series:
            return 0
        if outside_range:
            where, params = _as_given(selection, series, outside_range=True)
            row = _first(self._con.execute(f"SELECT count(*) FROM readings WHERE {where}",
                                           params))
            return int(row[0]) if row else 0
        where, params = self._time_filter(selection)
        row = _first(self._con.execute(
            f"SELECT count(*) FROM readings WHERE series_id IN ({_in_list(s[0] for s in series)})"
            f" AND {where}", params))
        return int(row[0]) if row else 0

    def scan(self, selection: Selection, *, batch_size: int = 65_536) -> pa.RecordBatchReader:
        """Readings in (device, channel, ts) order, one series at a time, in batches."""
        plan: Plan = [(s, None, None) for s in self._catalog.select(selection)]
        return self._stream(plan, selection, batch_size, self._snapshot())

    def _snapshot(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own in a read transaction: a page is planned and streamed from
        one snapshot, so rows the sync writes meanwhile never appear twice or in excess."""
        cursor = self._con.cursor()
        cursor.execute("BEGIN TRANSACTION")
        return cursor

    def page(self, selection: Selection, *, after: PageKey | None, limit: int,
             batch_size: int = 65_536) -> tuple[pa.RecordBatchReader, PageKey | None]:
        """Keyset paging: the first ``limit`` readings after ``after`` in scan order.

        The page's extent is planned from per-series counts (one bounded lookup for a
        single series), so it is streamed like a scan and its next key is known before the
        first byte goes out. Planning and streaming share one snapshot.
        """
        if limit < 1:
            raise InputError(f"limit must be at least 1, not {limit}")
        series, first_after = page_series(self._catalog.select(selection), after)
        if not series:
            return pa.RecordBatchReader.from_batches(READING_SCHEMA, iter(())), None
        where, params = self._time_filter(selection)
        skip = "".join(f" AND (series_id <> {sid} OR ts > make_timestamp({us}))"
                       for sid, us in first_after.items())
        if len(series) == 1 and limit <= SMALL_PAGE:
            return self._small_page(series[0], f"{where}{skip}", params, limit)
        con = self._snapshot()

        def nth(series_id: int, offset: int, n: int) -> list[int]:
            return [int(r[0]) for r in con.execute(
                f"SELECT epoch_us(ts) FROM readings WHERE series_id = {series_id} AND "
                f"{where}{skip} ORDER BY ts LIMIT {n} OFFSET {offset}", params).fetchall()]

        def counts() -> dict[int, tuple[int, int]]:
            return {int(sid): (int(n), int(last)) for sid, n, last in con.execute(
                f"SELECT series_id, count(*), epoch_us(max(ts)) FROM readings "
                f"WHERE series_id IN ({_in_list(s.series_id for s in series)}) "
                f"AND {where}{skip} GROUP BY series_id", params).fetchall()}

        try:
            plan, next_key = plan_page(series, first_after, limit, nth=nth, counts=counts)
        except BaseException:
            con.close()
            raise
        return self._stream(plan, selection, batch_size, con), next_key

    def _small_page(self, item: SeriesRow, where: str, params: list[Any], limit: int
                    ) -> tuple[pa.RecordBatchReader, PageKey | None]:
        """A page of one series in one statement (so from one snapshot): its rows and the
        one after them, which tells whether a next page follows."""
        rows = self._con.sql(f"""
            SELECT ts, value, quality::VARCHAR AS quality, seq, error_code, validated
            FROM readings WHERE series_id = {item.series_id} AND {where}
            ORDER BY ts LIMIT {limit + 1}""", params=params).to_arrow_table()
        next_key = None
        if rows.num_rows > limit:
            rows = rows.slice(0, limit)
            last = rows.column("ts")[limit - 1].cast(pa.timestamp("us")).cast(pa.int64())
            next_key = PageKey(item.device, item.channel, last.as_py())
        batches = [reading_batch(batch, item) for batch in rows.to_batches()]
        return pa.RecordBatchReader.from_batches(READING_SCHEMA, iter(batches)), next_key

    def _stream(self, plan: Plan, selection: Selection, batch_size: int,
                cursor: duckdb.DuckDBPyConnection) -> pa.RecordBatchReader:
        """Stream each planned series, optionally within (lower, upper] in epoch µs, on
        ``cursor`` (its own connection, closed when the stream ends)."""
        where, params = self._time_filter(selection)

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                for item, lower, upper in plan:
                    bounds = "" if lower is None else f" AND ts > make_timestamp({lower})"
                    if upper is not None:
                        bounds += f" AND ts <= make_timestamp({upper})"
                    reader = cursor.sql(f"""
                        SELECT ts, value, quality::VARCHAR AS quality, seq, error_code,
                               validated
                        FROM readings WHERE series_id = {item.series_id} AND {where}{bounds}
                        ORDER BY ts""", params=params).to_arrow_reader(batch_size)
                    for batch in reader:
                        yield reading_batch(batch, item)
            finally:
                cursor.close()

        return pa.RecordBatchReader.from_batches(READING_SCHEMA, batches())

    def aggregate(self, selection: Selection, *, every: str, tz: str = "UTC",
                  functions: Sequence[str] | None = None) -> pa.Table:
        """Aggregates per bucket by kind: see `meterhub.store.aggregation.aggregate`."""
        return aggregate(self, selection, self._catalog.select(selection), every=every,
                         tz=tz, functions=functions)

    def _sql_buckets(self, selection: Selection, ids: Sequence[int], kind: str, size: Every,
                     transitions: list[tuple[int, int]], wanted: Sequence[str]) -> pa.Table:
        """Instant and delta aggregates: one GROUP BY in DuckDB."""
        exprs = {"mean": "avg(value)", "min": "min(value)", "max": "max(value)",
                 "first": "arg_min(value, ts)", "last": "arg_max(value, ts)",
                 "sum": "sum(value)", "count": "count(*)"}
        allowed = INSTANT_FUNCTIONS if kind == ChannelKind.INSTANT else DELTA_FUNCTIONS
        chosen = [name for name in wanted if name in allowed]
        # asked for errors: read every row, the other functions over the good ones only
        good, rows = ((f" FILTER (WHERE {_GOOD})", _GOOD_OR_ERROR) if ERRORS in wanted
                      else ("", _GOOD))
        select = ", ".join([f"{exprs[name]}{good} AS \"{name}\"" for name in chosen]
                           + [f"{_ERROR_COUNT} AS {ERRORS}"] * (ERRORS in wanted))
        time_where, params = self._time_filter(selection)
        bucket = bucket_sql(size, transitions)
        epoch = "epoch_us(ts) AS t, " if _USES_T.search(bucket) else ""
        # a few dozen rows: NumPy arrays cost a third less than a relation's Arrow table
        return pa.table(self._con.execute(f"""
            SELECT series_id, {bucket} AS bucket{', ' + select if select else ''}
            FROM (SELECT series_id, ts, {epoch}value, quality
                  FROM readings
                  WHERE series_id IN ({_in_list(ids)}) AND {time_where} AND {rows})
            GROUP BY ALL""", params).fetchnumpy())

    def _counter_errors(self, selection: Selection, ids: Sequence[int],
                        size: Every, transitions: list[tuple[int, int]]) -> pa.Table:
        """A counter's sensor errors per bucket, right-closed as its rises are (an error on
        an edge belongs to the bucket it closes), from the same readings: in (start, end]."""
        start, end = clamped(selection)
        time_where = f"ts {'>' if selection.start is not None else '>='} ? AND ts <= ?"
        params = [naive_utc(start), naive_utc(end)]
        bucket = bucket_sql(size, transitions)
        return self._con.sql(f"""
            SELECT series_id, {bucket} AS bucket, count(*) AS {ERRORS}
            FROM (SELECT series_id, ts - INTERVAL 1 MICROSECOND AS ts, epoch_us(ts) - 1 AS t
                  FROM readings
                  WHERE series_id IN ({_in_list(ids)}) AND {time_where} AND {_ERROR})
            GROUP BY ALL""", params=params).to_arrow_table()

    def _counter_buckets(self, selection: Selection, ids: Sequence[int], size: Every,
                         transitions: list[tuple[int, int]]) -> pa.Table:
        """Counter consumption, vectorised in NumPy over rows sorted by (series, time).

        A window function over the whole range was 5x slower in DuckDB than fetching the
        clustered rows as Arrow and differencing them here.
        """
        inner, params = [f"series_id IN ({_in_list(ids)})", _GOOD, _IN_RANGE], []
        # Right-closed buckets: readings in (start, end] plus the last one at/before start.
        if selection.start is not None:
            inner.append("ts > ?")
            params.append(naive_utc(selection.start))
        if selection.end is not None:
            inner.append("ts <= ?")
            params.append(naive_utc(selection.end))
        query = f"SELECT series_id, epoch_us(ts) AS t, value FROM readings " \
                f"WHERE {' AND '.join(inner)}"
        rows = self._con.sql(query, params=params).to_arrow_table()
        sid, t = column(rows, "series_id", np.int64), column(rows, "t", np.int64)
        if not sorted_by_series_and_time(sid, t):
            rows = self._con.sql(query + " ORDER BY series_id, ts",
                                 params=params).to_arrow_table()
            sid, t = column(rows, "series_id", np.int64), column(rows, "t", np.int64)
        value = column(rows, "value", np.float64)
        if selection.start is not None:
            before = self._con.sql(
                f"SELECT series_id, epoch_us(max(ts)) AS t, arg_max(value, ts) AS value "
                f"FROM readings WHERE series_id IN ({_in_list(ids)}) AND {_GOOD} "
                f"AND {_IN_RANGE} AND ts <= ? "
                "GROUP BY series_id ORDER BY series_id",
                params=[naive_utc(selection.start)]).to_arrow_table()
            sid, t, value = with_bases(sid, t, value, before)
        return counter_sums(sid, t, value, size, transitions)


    def _data_range(self, series: Sequence[SeriesRow]) -> tuple[int, int] | None:
        """The first and last stored µs of these series, None when they hold nothing."""
        row = _first(self._con.execute(
            "SELECT epoch_us(min(ts)), epoch_us(max(ts)) FROM readings WHERE series_id IN "
            f"({_in_list(s.series_id for s in series)}) AND {_IN_RANGE}"))
        if row is None or row[0] is None:
            return None
        return int(row[0]), int(row[1])

    def gaps(self, selection: Selection) -> pa.Table:
        """Interior gaps per channel (see `meterhub.store.gaps.find_gaps`)."""
        series = self._catalog.select(selection)
        if not series:
            return GAPS_SCHEMA.empty_table()
        where, params = self._time_filter(selection)
        ids = _in_list(s.series_id for s in series)
        rows = self._con.sql(f"""
            SELECT series_id, epoch_us(ts) AS t, seq FROM readings
            WHERE series_id IN ({ids}) AND {where} ORDER BY series_id, ts""",
                             params=params).to_arrow_table()
        intervals = dict(self._con.execute(
            f"SELECT series_id, interval_s FROM channels WHERE series_id IN ({ids})").fetchall())
        return find_gaps(series, intervals, rows)

    # -- maintenance -----------------------------------------------------------------------

    @_exclusive
    def compact(self) -> None:
        """Rewrite the store with its readings in (series, time) order, into a new file
        that then takes the old one's place.

        Sorting in place held the whole table in memory (66 bytes a reading) and left the
        file twice its size for good (DuckDB reuses freed blocks but never gives them
        back). The copy sorts `COMPACT_PIECE_ROWS` readings at a time (a piece of series),
        within the store's memory limit, and is as large as its rows. Killed at any moment
        the store is untouched: the copy only replaces it, in one rename, once complete;
        a copy left by a killed compact is removed by the next.
        """
        if self.path == ":memory:":
            self._sort_in_place()
            return
        with self._journal_lock:  # pushes meanwhile are written after it, to the new file
            self._compacting = True
        try:
            self._compact()
        finally:
            with self._journal_lock:
                self._compacting = False

    def _compact(self) -> None:
        self.fold_journal()
        if self._cursors:
            raise StoreError("compact needs the store to itself: other threads of this "
                             "process are reading it")
        copy = Path(f"{self.path}.compacting")
        leftovers = (copy, Path(f"{copy}.wal"))
        for stale in leftovers:
            stale.unlink(missing_ok=True)
        con = self._main
        con.execute("CHECKPOINT")
        original = str(_first(con.execute("SELECT current_database()"))[0])  # type: ignore[index]
        con.execute(f"ATTACH {_quoted(str(copy))} AS {_COPY}")
        try:
            con.execute(f"USE {_COPY}")
            for statement in _DDL:
                con.execute(statement)
            con.execute(f"USE {_quoted_name(original)}")
            for (table,) in con.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE database_name = ? "
                    "AND schema_name = 'main' AND table_name <> 'readings'",
                    [original]).fetchall():
                con.execute(f"INSERT INTO {_COPY}.main.{_quoted_name(table)} "
                            f"SELECT * FROM {_quoted_name(table)}")
            for low, high in self._pieces():
                where = " AND ".join(
                    [f"series_id >= {low}"] * (low is not None)
                    + [f"series_id < {high}"] * (high is not None)) or "TRUE"
                con.execute(f"INSERT INTO {_COPY}.main.readings SELECT * FROM readings "
                            f"WHERE {where} ORDER BY series_id, ts")
            con.execute(f"CHECKPOINT {_COPY}")
        except BaseException:
            with contextlib.suppress(duckdb.Error):  # the first error is the one to tell
                con.execute(f"USE {_quoted_name(original)}")
                con.execute(f"DETACH {_COPY}")
            for stale in leftovers:
                stale.unlink(missing_ok=True)
            raise
        con.execute(f"DETACH {_COPY}")
        try:
            self.close()
            # the old file's log is checkpointed (nothing was written since): it must not
            # be replayed into the new file
            Path(f"{self.path}.wal").unlink(missing_ok=True)
            copy.replace(self.path)
            sync_folder(Path(self.path).parent)
        finally:
            self._reopen()  # the new file, or the old one if closing or the rename failed

    def _pieces(self) -> list[tuple[int | None, int | None]]:
        """Ranges [low, high) of series ids of about `COMPACT_PIECE_ROWS` readings each (by
        `series_stats`); the first open below, the last open above, so that every row is
        in one (rows outside the kept times too)."""
        counts = self._main.execute(
            f"SELECT c.series_id, coalesce(s.readings, 0) FROM channels c "
            f"LEFT JOIN ({self._merged_stats()}) s USING (series_id) "
            f"ORDER BY c.series_id").fetchall()
        bounds: list[int] = []
        held = 0
        for series_id, readings in counts:
            if held and held + readings > COMPACT_PIECE_ROWS:
                bounds.append(int(series_id))
                held = 0
            held += int(readings)
        edges: list[int | None] = [None, *bounds, None]
        return list(itertools.pairwise(edges))

    def _reopen(self) -> None:
        """Open the file again in this thread after `close` (compact's new file)."""
        self._main = _connect(self.path)
        self._main.execute(f"SET memory_limit = '{self.memory_limit}'")
        self._owner = threading.get_ident()
        self._local = threading.local()
        with self._journal_lock:
            self._closed = False
        self._catalog.changed()
        self._newest.clear()

    def _sort_in_place(self) -> None:
        """compact for a store in memory: there is no file to replace."""
        con = self._con
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute("CREATE TEMP TABLE _sorted AS SELECT * FROM readings "
                        "ORDER BY series_id, ts")
            con.execute("DELETE FROM readings")
            con.execute("INSERT INTO readings SELECT * FROM _sorted")
            con.execute("DROP TABLE _sorted")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
