"""The Python API: `meterhub.open(url)` returns a `Hub`, the one facade CLI and API share."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from meterhub.answers import AnswerCache
from meterhub.errors import InputError
from meterhub.model import READING_SCHEMA, Channel, ChannelKind, Device, Site, catalog_rows
from meterhub.store import PageKey, Selection, Store, SyncCursor, WriteResult, open_store
from meterhub.timebase import to_utc, zone
from meterhub.units import check_convertible, convert, normalize_unit

Names = str | Sequence[str] | None
Frame = Literal["pandas", "polars", "arrow"]
AGGREGATE_VALUE_COLUMNS = ("mean", "min", "max", "first", "last", "consumption", "sum")


def _names(value: Names) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def _frame(table: pa.Table, as_: Frame) -> Any:
    if as_ == "arrow":
        return table
    if as_ == "polars":
        import polars as pl

        return pl.from_arrow(table)
    if as_ == "pandas":
        return table.to_pandas()
    raise InputError(f"unknown frame type {as_!r}: use pandas, polars or arrow")


def convert_readings(batch: pa.RecordBatch, unit: str) -> pa.RecordBatch:
    """A readings batch with values expressed in ``unit`` (one conversion per stored unit)."""
    target = normalize_unit(unit)
    units = pc.unique(batch.column("unit")).to_pylist()
    for src in units:
        check_convertible(src, target)
    values = batch.column("value").to_numpy(zero_copy_only=False).astype(np.float64)
    if len(units) == 1:
        values = convert(values, units[0], target)
    else:
        unit_column = batch.column("unit").to_numpy(zero_copy_only=False)
        for src in units:
            mask = unit_column == src
            values[mask] = convert(values[mask], src, target)
    arrays = list(batch.columns)
    arrays[batch.schema.get_field_index("value")] = pa.array(
        values, mask=pc.is_null(batch.column("value")).to_numpy(zero_copy_only=False))
    arrays[batch.schema.get_field_index("unit")] = pa.array([target] * batch.num_rows,
                                                            pa.string())
    return pa.RecordBatch.from_arrays(arrays, schema=batch.schema)


def _converted(reader: pa.RecordBatchReader, unit: str | None) -> pa.RecordBatchReader:
    if unit is None:
        return reader

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            yield convert_readings(batch, unit)

    return pa.RecordBatchReader.from_batches(READING_SCHEMA, batches())


class Hub:
    """Readings, aggregates and the catalog of one store, as pandas, polars or Arrow."""

    def __init__(self, store: Store) -> None:
        self.store = store
        #: answers kept for repeated reads (the API's), None when other processes may change
        #: the store unseen: only this process's writes tell which answers they change
        self.answers: AnswerCache | None = None if store.shared else AnswerCache()
        self._listeners: list[Callable[[pa.Table | None], None]] = []

    def _changed(self, keys: pa.Table | None) -> None:
        if self.answers is not None:
            self.answers.changed(keys)
        for listener in self._listeners:
            listener(keys)

    def listen(self, listener: Callable[[pa.Table | None], None]) -> Callable[[], None]:
        """Call ``listener`` after each of this process's writes with the rows' device,
        channel and ts (None after a delete or a catalog change: anything may have
        changed), in the writing thread; it must be quick. Returns what stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    @property
    def url(self) -> str:
        return self.store.url

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------

    def write(self, data: Any, *, source: str | None = None,
              cursors: Sequence[SyncCursor] = (), origin: str = "python",
              state: Mapping[str, str] | None = None) -> WriteResult:
        """Store readings (Arrow table, pandas/polars frame or list of dicts) idempotently.

        Rows need ``device, channel, ts, value, unit`` and may carry ``source, quality, seq,
        error_code, validated``, plus ``quantity`` and ``kind`` for channels new to the store.
        A new channel without a kind is instant when its unit measures a level (°C, %, kPa,
        kW, V, ...); one in energy or volume units (kWh, m³, ...) is a counter only when
        its rows prove a meter register (at least 4 readings that never fall, rise, and
        start at 10 times their rise or more), and one in length units (mm) always needs a
        kind: else the write is refused (`InputError`). A ``kind`` that contradicts a
        stored channel's is refused too: `set_kind` changes it. ``state`` values (see
        `get_state`) are committed with the rows; ``data`` may be None. The result counts
        the keys written as ``new``, ``replaced`` and ``unchanged``.
        """
        result = self.store.write(data, source=source, cursors=cursors, origin=origin,
                                  state=state)
        if result.keys is not None:
            self._changed(result.keys)
        return result

    def write_soon(self, data: Any, *, origin: str = "python",
                   state: Mapping[str, str] | None = None, checked: bool = False) -> bool:
        """`write` for many small pushes: stored (durable, and seen by every read) when it
        returns, but by the store's journal where it has one (a DuckDB file), folded into
        the store with other such writes in one commit later (`fold_journal`). A journal
        append and sync cost a fraction of a commit. True when a fold is due; elsewhere,
        and for writes the journal does not take (new channels), this is `write`.
        ``checked``: an Arrow table a meterhub parser made in reading form (see
        `meterhub.store.duckdb.DuckDBStore.journal_write`)."""
        journal_write = getattr(self.store, "journal_write", None)
        done = None if journal_write is None else journal_write(
            data, origin=origin, state=state, checked=checked)
        if done is None:
            self.write(data, origin=origin, state=state)
            return False
        if done.keys is not None:
            self._changed(done.keys)
        return bool(done.fold_due)

    def fold_journal(self) -> None:
        """Fold the writes `write_soon` journaled into the store (reads do it first)."""
        fold = getattr(self.store, "fold_journal", None)
        if fold is not None:
            fold()

    def get_state(self, key: str) -> str | None:
        """A value written with `write`'s ``state``: kept across restarts, None if never set."""
        return self.store.get_state(key)

    def drop_answers(self) -> None:
        """Drop every kept answer: for a change the store's rows do not show (a meter's
        prices, kept as a `write` state value, change every cost)."""
        self._changed(None)

    # catalog changes and deletes are rare: every kept answer goes (try/finally: a
    # failure part-way may have changed something)

    def add_sites(self, sites: Sequence[Site]) -> None:
        try:
            self.store.upsert_sites(sites)
        finally:
            self._changed(None)

    def add_devices(self, devices: Sequence[Device]) -> None:
        try:
            self.store.upsert_devices(devices)
        finally:
            self._changed(None)

    def add_channels(self, channels: Sequence[Channel]) -> None:
        try:
            self.store.upsert_channels(channels)
        finally:
            self._changed(None)

    def set_kind(self, device: str, channel: str, kind: str | ChannelKind) -> ChannelKind:
        """Change a channel's kind: ``instant`` (a level), ``counter`` (a meter register)
        or ``delta`` (an amount per interval); returns the kind it had.

        Stored readings stay as they are; aggregates follow the new kind (a counter gives
        ``consumption`` where an instant channel gave ``mean``). A write never changes a
        kind: one whose ``kind`` column contradicts the stored kind is refused.
        `InputError` for an unknown kind, `NotFoundError` for an unknown channel.
        """
        try:
            return self.store.set_kind(device, channel, kind)
        finally:
            self._changed(None)

    # -- reading ---------------------------------------------------------------------------

    @staticmethod
    def selection(device: Names = None, channel: Names = None, start: object = None,
                  end: object = None, source: Names = None, tz: str | None = None, *,
                  any_time: bool = False) -> Selection:
        """A `Selection`; naive start/end are read in ``tz`` when given, else as UTC.

        Bounds must lie within the times meterhub keeps (`meterhub.model.TS_MIN` to
        `TS_MAX`; the end may be `TS_MAX` itself), else `InputError`: every read takes its
        bounds from here. ``any_time`` accepts any time Python holds (for `delete`).
        """
        begin = to_utc(start, tz, what="start", checked=not any_time)
        finish = to_utc(end, tz, what="end", checked=not any_time, end=True)
        if begin is not None and finish is not None and finish <= begin:
            raise InputError(f"end {finish.isoformat()} is not after start "
                             f"{begin.isoformat()}: give a later end")
        return Selection(devices=_names(device), channels=_names(channel), start=begin,
                         end=finish, sources=_names(source))

    def scan(self, *, device: Names = None, channel: Names = None, start: object = None,
             end: object = None, unit: str | None = None, source: Names = None,
             batch_size: int = 65_536) -> pa.RecordBatchReader:
        """Readings streamed as Arrow record batches, never the whole range in memory."""
        selection = self.selection(device, channel, start, end, source)
        self._check_unit(selection, unit)
        return _converted(self.store.scan(selection, batch_size=batch_size), unit)

    def page(self, *, device: Names = None, channel: Names = None, start: object = None,
             end: object = None, unit: str | None = None, source: Names = None,
             after: PageKey | None = None, limit: int = 10_000, tz: str | None = None,
             batch_size: int = 65_536) -> tuple[pa.RecordBatchReader, PageKey | None]:
        """One page of a scan: ``limit`` readings after the key ``after`` (keyset paging),
        streamed, with the key the next page starts after (None on the last page).

        Naive ``start``/``end`` are read in ``tz`` when given, else as UTC."""
        if tz is not None:
            zone(tz)
        selection = self.selection(device, channel, start, end, source, tz=tz)
        self._check_unit(selection, unit)
        reader, next_key = self.store.page(selection, after=after, limit=limit,
                                           batch_size=batch_size)
        return _converted(reader, unit), next_key

    def _check_unit(self, selection: Selection, unit: str | None) -> None:
        if unit is None:
            return
        normalize_unit(unit)
        for ch in self.store.channels(selection):
            check_convertible(ch.unit, unit)

    def readings(self, *, device: Names = None, channel: Names = None, start: object = None,
                 end: object = None, unit: str | None = None, source: Names = None,
                 as_: Frame = "pandas") -> Any:
        """Readings in [start, end) as a pandas DataFrame (``as_`` = "polars" or "arrow")."""
        table = self.scan(device=device, channel=channel, start=start, end=end, unit=unit,
                          source=source).read_all()
        return _frame(table, as_)

    def count(self, *, device: Names = None, channel: Names = None, start: object = None,
              end: object = None, source: Names = None) -> int:
        return self.store.count(self.selection(device, channel, start, end, source))

    def aggregate(self, *, device: Names = None, channel: Names = None, start: object = None,
                  end: object = None, every: str = "1h", tz: str = "UTC",
                  fn: str | Sequence[str] | None = None, unit: str | None = None,
                  source: Names = None, as_: Frame = "pandas") -> Any:
        """Per-kind aggregates per bucket, buckets aligned and labelled in ``tz``.

        instant channels give mean/min/max/first/last/count, counters ``consumption``
        (reset-safe), delta channels ``sum``. ``fn`` picks a subset; ``errors`` (any kind,
        only when picked) counts each bucket's sensor_error readings, never converted.
        """
        zone(tz)
        selection = self.selection(device, channel, start, end, source, tz=tz)
        functions = _names(fn)
        table = self.store.aggregate(selection, every=every, tz=tz, functions=functions)
        if unit is not None:
            table = self._convert_aggregate(table, unit)
        local = pa.timestamp("us", tz=tz)
        for name in ("bucket", "bucket_end"):
            table = table.set_column(table.schema.get_field_index(name), name,
                                     table.column(name).cast(local))
        return _frame(table, as_)

    @staticmethod
    def _convert_aggregate(table: pa.Table, unit: str) -> pa.Table:
        target = normalize_unit(unit)
        units = pc.unique(table.column("unit")).to_pylist()
        for src in units:
            check_convertible(src, target)
        for name in AGGREGATE_VALUE_COLUMNS:
            if name not in table.column_names:
                continue
            column = table.column(name)
            values = column.to_numpy(zero_copy_only=False).astype(np.float64)
            unit_column = table.column("unit").to_numpy(zero_copy_only=False)
            for src in units:
                mask = unit_column == src
                values[mask] = convert(values[mask], src, target)
            new = pa.array(values, mask=pc.is_null(column).to_numpy(zero_copy_only=False))
            table = table.set_column(table.schema.get_field_index(name), name, new)
        return table.set_column(table.schema.get_field_index("unit"), "unit",
                                pa.array([target] * table.num_rows, pa.string()))

    def gaps(self, *, device: Names = None, channel: Names = None, start: object = None,
             end: object = None, source: Names = None, as_: Frame = "pandas") -> Any:
        """Missing expected intervals and seq jumps per channel."""
        return _frame(self.store.gaps(self.selection(device, channel, start, end, source)),
                      as_)

    def delete(self, *, device: Names, channel: Names = None, start: object = None,
               end: object = None, source: Names = None, tz: str | None = None,
               outside_range: bool = False) -> int:
        """Delete readings of ``device`` (required), optionally only of ``channel`` and in
        [start, end); returns how many were deleted.

        ``start``/``end`` may be any time Python holds (years 1 to 9999), so that rows
        stored outside the times meterhub keeps before writes were checked can be reached;
        ``outside_range`` deletes only those rows, which reads skip. Devices and channels
        stay in the catalog. `NotFoundError` when nothing matches device/channel.
        """
        if not _names(device):
            raise InputError("name the device whose readings to delete")
        if tz is not None:
            zone(tz)
        selection = self.selection(device, channel, start, end, source, tz=tz, any_time=True)
        try:
            return self.store.delete(selection, outside_range=outside_range)
        finally:
            self._changed(None)

    def count_outside_range(self, *, device: Names = None, channel: Names = None,
                            source: Names = None) -> int:
        """Readings stored outside the times meterhub keeps (written before writes were
        checked): reads skip them, `delete` with ``outside_range`` removes them."""
        return self.store.count(self.selection(device, channel, source=source),
                                outside_range=True)

    # -- catalog ---------------------------------------------------------------------------

    def sites(self, *, as_: Frame = "pandas") -> Any:
        return _frame(_catalog_table(self.store.sites(), Site), as_)

    def devices(self, *, as_: Frame = "pandas") -> Any:
        """Devices with their source, site and metadata."""
        return _frame(_catalog_table(self.store.devices(), Device), as_)

    def channels(self, *, device: Names = None, source: Names = None,
                 as_: Frame = "pandas") -> Any:
        """Channels with kind, unit, reading count, first and newest measurement time."""
        selection = self.selection(device=device, source=source)
        return _frame(self.store.channel_stats(selection), as_)

    def cursors(self) -> list[SyncCursor]:
        return self.store.cursors()

    def compact(self) -> None:
        """Rewrite the store clustered by (device, channel, ts) for faster range queries."""
        self.store.compact()


def _catalog_table(items: Sequence[Any], cls: Any) -> pa.Table:
    rows = catalog_rows(items)
    if rows:
        return pa.Table.from_pylist(list(rows))
    return pa.table({name: pa.array([], pa.string()) for name in cls.__slots__})


def open(url: str | None = None, *, create: bool = True) -> Hub:
    """Open the store at ``url`` (default ``duckdb:///meterhub.duckdb``) as a `Hub`;
    ``create=False`` refuses a store that does not exist (`StoreNotFoundError`)."""
    return Hub(open_store(url, create=create))

