"""The `Store` protocol: what every backend offers, in Arrow and typed records only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from meterhub.keys import ApiKey
from meterhub.model import Channel, ChannelKind, Device, Site

#: Aggregate functions per channel kind; the first list entry set is the default.
INSTANT_FUNCTIONS = ("mean", "min", "max", "first", "last", "count")
COUNTER_FUNCTIONS = ("consumption", "count")
DELTA_FUNCTIONS = ("sum", "count")


@dataclass(frozen=True, slots=True)
class SyncCursor:
    """Where the sync of one (source, device) stands; ``value`` is the connector's own text."""

    source: str
    device: str
    value: str


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one write did: rows received, distinct keys written, and the batch id.

    ``written`` splits into ``new`` (keys not stored before), ``replaced`` (keys stored
    before with a different value, quality, error_code, seq or validated) and
    ``unchanged`` (keys stored before with identical content; two NULL values are
    equal): ``new + replaced + unchanged == written``. ``keys`` holds the ``device``,
    ``channel`` and ``ts`` of the rows received (None when there were none): what the
    write may have changed, for answers kept in memory (`meterhub.answers`).
    """

    rows: int
    written: int
    batch_id: int
    new: int = 0
    replaced: int = 0
    unchanged: int = 0
    keys: pa.Table | None = field(default=None, repr=False, compare=False)


def keys_of(table: pa.Table) -> pa.Table | None:
    """A write's `WriteResult.keys`: its rows' device, channel and ts (no copy)."""
    return table.select(["device", "channel", "ts"]) if table.num_rows else None


@dataclass(frozen=True, slots=True)
class Selection:
    """Which series and which time range a read covers; None means "all"."""

    devices: Sequence[str] | None = None
    channels: Sequence[str] | None = None
    #: inclusive, aware UTC; reads keep to [`meterhub.model.TS_MIN`, `TS_MAX`) whatever
    #: the bounds, only `Store.delete` takes them as given
    start: dt.datetime | None = None
    end: dt.datetime | None = None  #: exclusive, aware UTC
    sources: Sequence[str] | None = None


@dataclass(frozen=True, slots=True)
class PageKey:
    """A position in (device, channel, ts) order: a page starts after it (keyset paging)."""

    device: str
    channel: str
    ts_us: int  #: microseconds since the epoch, UTC


@runtime_checkable
class Store(Protocol):
    """A readings store. Every method takes and returns Arrow data or typed records."""

    url: str  #: never with a password: messages show it
    #: whether other processes may change the store at once (then caches must expire)
    shared: bool

    def close(self) -> None: ...

    def ping(self) -> None:
        """Raise unless the store answers a trivial query."""
        ...

    def size_bytes(self) -> int | None:
        """What the store takes on disk (None: in memory)."""
        ...

    def write(self, data: Any, *, source: str | None = None,
              cursors: Sequence[SyncCursor] = (), origin: str = "api",
              state: Mapping[str, str] | None = None) -> WriteResult:
        """Idempotent upsert keyed by (device, channel, ts), with cursors and state values
        in one transaction (``data`` None writes only those)."""
        ...

    def get_state(self, key: str) -> str | None:
        """A small value kept across restarts (a counter, a meter's latest status)."""
        ...

    def state_values(self) -> dict[str, str]:
        """Every state value by key."""
        ...

    def scan(self, selection: Selection, *, batch_size: int = 65_536) -> pa.RecordBatchReader:
        """Readings in (device, channel, ts) order, streamed as record batches."""
        ...

    def page(self, selection: Selection, *, after: PageKey | None, limit: int,
             batch_size: int = 65_536) -> tuple[pa.RecordBatchReader, PageKey | None]:
        """The first ``limit`` readings after ``after`` in scan order, and the key a next
        page starts after (None when nothing follows)."""
        ...

    def aggregate(self, selection: Selection, *, every: str, tz: str = "UTC",
                  functions: Sequence[str] | None = None) -> pa.Table:
        """Per-kind aggregates per bucket (see `INSTANT_FUNCTIONS` and friends)."""
        ...

    def gaps(self, selection: Selection) -> pa.Table:
        """Missing expected intervals and seq discontinuities per channel."""
        ...

    def count(self, selection: Selection, *, outside_range: bool = False) -> int:
        """The selected readings within [`meterhub.model.TS_MIN`, `TS_MAX`); with
        ``outside_range`` those outside it (which reads skip), within the bounds as given."""
        ...

    def delete(self, selection: Selection, *, outside_range: bool = False) -> int:
        """Delete the selected readings, bounds taken as given (they may lie outside the
        times reads keep to); with ``outside_range`` only rows outside those times.
        Returns how many were deleted."""
        ...

    def upsert_sites(self, sites: Sequence[Site]) -> None: ...

    def upsert_devices(self, devices: Sequence[Device]) -> None: ...

    def upsert_channels(self, channels: Sequence[Channel]) -> None: ...

    def set_kind(self, device: str, channel: str, kind: ChannelKind | str) -> ChannelKind:
        """Change a channel's kind (how its readings aggregate); returns the kind it had.
        `InputError` for an unknown kind, `NotFoundError` for an unknown channel."""
        ...

    def sites(self) -> list[Site]: ...

    def devices(self) -> list[Device]: ...

    def channels(self, selection: Selection | None = None) -> list[Channel]: ...

    def channel_stats(self, selection: Selection | None = None) -> pa.Table:
        """Per channel: kind, unit, reading count, first and newest measurement, last write."""
        ...

    def get_cursor(self, source: str, device: str) -> str | None: ...

    def cursors(self) -> list[SyncCursor]: ...

    def record_sync(self, source: str, device: str, *, error: BaseException | None = None,
                    calls: int = 0, readings: int = 0) -> None:
        """The outcome of one device's sync (last success, last error), for status."""
        ...

    def sync_status(self) -> pa.Table: ...

    def compact(self) -> None:
        """Rewrite readings clustered by (device, channel, ts)."""
        ...

    def add_key(self, key: ApiKey) -> None:
        """Keep a new API key (its hash, never the secret; a revoked one stays revoked)."""
        ...

    def api_keys(self) -> list[ApiKey]: ...

    def revoke_key(self, key_id: str) -> None: ...
