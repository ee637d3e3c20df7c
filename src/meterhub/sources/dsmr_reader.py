"""Remote DSMR-reader instances: readings and hour and day statistics from their v2 API.

Three streams per instance, each a meterhub device with its own sync cursor, so that each
resumes on its own:

- readings, device ``<device>``: ``GET /api/v2/datalogger/dsmrreading``, filter
  ``timestamp__gte``; DSMR-reader's reading fields as channels (see `meterhub.dsmr.fields`).
- hour statistics, device ``<device>-hourly``: ``GET /api/v2/statistics/hour``, filter
  ``hour_start__gte``; energy per register and direction (kWh) and gas (m³) per local hour,
  kind delta, stamped at the hour's start.
- day statistics, device ``<device>-daily``: ``GET /api/v2/statistics/day``, filter
  ``day__gte``; the same per local day (23 or 25 hours on DST days) and its costs (unit
  ``currency``: DSMR-reader keeps no currency), stamped at the day's local midnight; the
  day's outside temperatures (instant, °C); the meter positions at the start of the day
  (counters, at their own reading times).

DSMR-reader's retention deletes old readings but keeps statistics, so for an old instance
they are the only history; ``statistics = false`` pulls readings only.

Each call asks for a thousand rows, oldest first. A sync's first call asks from the
stream's cursor (the newest stored row's time) less ``lookback`` (an hour by default): rows
that reach the instance late, with times before the cursor (a datalogger flushing its buffer,
a reading POSTed a day late), are pulled by the next sync while within that window. Rows read
again are written again, which changes nothing; the sync counts only the rows its writes add
(`ConnectorInfo.rereads`). Each next call asks from the newest row of the page before: the
filters are inclusive and read in the instance's zone, so the boundary row comes again, and a
page with nothing newer ends the fetch. The hour stream's bound is the start of its local
hour, the day stream's the local midnight, as their rows are stamped. DSMR-reader documents
no rate limit; two calls a second, all three streams of an instance together, keep a small
home server responsive. At a reading every 10 s, an hour is 360 readings: a sync that finds
nothing new is one call.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import orjson
import pyarrow as pa
from pydantic import Field, SecretStr

from meterhub.clock import Clock, RealClock
from meterhub.dsmr.fields import FIELDS, GAS
from meterhub.dsmr.fields import Field as MeterField
from meterhub.errors import MalformedResponseError, NotFoundError
from meterhub.http import Limit, RateLimiter, VendorClient, make_client
from meterhub.model import Channel, ChannelKind, Device
from meterhub.sources.base import ConnectorInfo, Discovery, Page, SourceConfig, register
from meterhub.units import Quantity

PATH = "/api/v2/datalogger/dsmrreading"
PAGE_SIZE = 1000
GENTLE = Limit("account", 2, 1.0, "2 calls per second (DSMR-reader documents no limit)")
_BY_CHANNEL = {field.channel: field for field in FIELDS.values()}
_Parsed = tuple[pa.Table, list[dt.datetime]]  #: a page's rows and its row times (aware)


def _series(names: tuple[str, ...], quantity: Quantity, unit: str,
            kind: ChannelKind = ChannelKind.DELTA) -> dict[str, MeterField]:
    return {name: MeterField(name, quantity.value, unit, kind) for name in names}


_PERIOD = ("electricity1", "electricity2", "electricity1_returned", "electricity2_returned")
COSTS = ("electricity1_cost", "electricity2_cost", "gas_cost", "fixed_cost", "total_cost")
#: DSMR-reader answers 0.0 for all three when it has no weather data: then none is kept
TEMPERATURES = ("lowest_temperature", "highest_temperature", "average_temperature")


@dataclass(frozen=True, slots=True)
class Statistics:
    """One of DSMR-reader's statistics endpoints, as data. Channels keep its field names."""

    label: str
    suffix: str  #: the stream's device id is the readings' device id, a dash and this
    path: str
    key: str  #: the period field, its ordering and (with ``__gte``) its filter
    dated: bool  #: periods are named by a local date (else by a time with offset)
    interval_s: int
    required: dict[str, MeterField]  #: values per period that every version sends
    optional: dict[str, MeterField]  #: values per period, read when sent
    #: meter positions, each group stamped with its own time field
    positions: tuple[tuple[str, dict[str, MeterField]], ...] = ()

    def device(self, readings_device: str) -> str:
        return f"{readings_device}-{self.suffix}"

    def fields(self) -> list[MeterField]:
        grouped = [f for _, group in self.positions for f in group.values()]
        return [*self.required.values(), *self.optional.values(), *grouped]


_PER_PERIOD = {**_series(_PERIOD, Quantity.ENERGY, "kWh"),
               **_series(("gas",), Quantity.VOLUME, "m³")}
HOURS = Statistics("hour statistics", "hourly", "/api/v2/statistics/hour", "hour_start",
                   dated=False, interval_s=3600, required=_PER_PERIOD, optional={})
DAYS = Statistics(
    "day statistics", "daily", "/api/v2/statistics/day", "day", dated=True, interval_s=86400,
    required=_PER_PERIOD,
    optional={**_series(COSTS, Quantity.COST, "currency"),
              **_series(TEMPERATURES, Quantity.AIR_TEMPERATURE, "°C", ChannelKind.INSTANT)},
    positions=(("electricity_reading_timestamp",
                _series(tuple(f"{n}_reading" for n in _PERIOD), Quantity.ENERGY, "kWh",
                        ChannelKind.COUNTER)),
               ("gas_reading_timestamp",
                _series(("gas_reading",), Quantity.VOLUME, "m³", ChannelKind.COUNTER))))


class DsmrReaderConfig(SourceConfig):
    api_key: SecretStr = Field(description="The instance's API key (X-AUTHKEY)")
    device: str = Field(default="p1", min_length=1,
                        description="Device id the instance's meter gets in meterhub")
    timezone: str = Field(default="Europe/Amsterdam",
                          description="The instance's TIME_ZONE (its filters are local)")
    statistics: bool = Field(
        default=True,
        description="Also pull the hour and day statistics, as devices <device>-hourly and "
                    "<device>-daily (DSMR-reader keeps them after its retention deletes "
                    "old readings)")
    lookback: int = Field(
        default=3600, ge=0,
        description="Seconds before each stream's newest stored row that every sync reads "
                    "again, for rows that reach the instance late (a datalogger's buffer, "
                    "a reading POSTed late); 0 reads only what is newer")


def parse_page(payload: Any, *, source: str, device: str) -> tuple[pa.Table, list[dt.datetime]]:
    """Readings rows of one page, and the page's reading times (aware)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("results"), list):
        raise MalformedResponseError("DSMR-reader: dsmrreading answer has no results list")
    rows: list[dict[str, Any]] = []
    stamps: list[dt.datetime] = []
    try:
        for item in payload["results"]:
            at = dt.datetime.fromisoformat(item["timestamp"].replace("Z", "+00:00"))
            stamps.append(at)
            for name, field in _BY_CHANNEL.items():
                if item.get(name) is not None:
                    rows.append(_row(source, device, field.channel, at, item[name], field.unit,
                                     field.quantity, field.kind.value))
            if item.get("extra_device_delivered") is not None and \
                    item.get("extra_device_timestamp"):
                gas_at = dt.datetime.fromisoformat(
                    item["extra_device_timestamp"].replace("Z", "+00:00"))
                rows.append(_row(source, device, GAS.channel, gas_at,
                                 item["extra_device_delivered"], GAS.unit, GAS.quantity,
                                 GAS.kind.value))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedResponseError(f"DSMR-reader: a reading without the documented "
                                     f"fields ({exc})") from None
    return pa.Table.from_pylist(rows) if rows else pa.table({}), stamps


def _row(source: str, device: str, channel: str, at: dt.datetime, value: Any, unit: str,
         quantity: str, kind: str) -> dict[str, Any]:
    return {"source": source, "device": device, "channel": channel, "ts": at,
            "value": float(value), "unit": unit, "quantity": quantity, "kind": kind}


def _decode(response: httpx.Response, what: str) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise MalformedResponseError(f"DSMR-reader: {what} body is not JSON "
                                     "(cut short?)") from None


def _number(item: dict[str, Any], name: str, where: str) -> float | None:
    """A decimal string (or JSON number) as a float; None when null (absent, not zero)."""
    value = item.get(name)
    if value is None:
        return None
    try:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError
        number = float(value)
    except ValueError:
        raise MalformedResponseError(f"DSMR-reader: {where}: {name} {value!r} is not a "
                                     "number") from None
    if not math.isfinite(number):
        raise MalformedResponseError(f"DSMR-reader: {where}: {name} {value!r} is not a "
                                     "number")
    return number


def _moment(item: dict[str, Any], name: str, where: str) -> dt.datetime | None:
    """An aware time of a statistics row (DSMR-reader writes local times with offset)."""
    value = item.get(name)
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise MalformedResponseError(f"DSMR-reader: {where}: {name} {value!r} is not an "
                                     "ISO 8601 time") from None
    if moment.tzinfo is None:
        raise MalformedResponseError(f"DSMR-reader: {where}: {name} {value!r} has no UTC "
                                     "offset")
    return moment


def _period_start(item: dict[str, Any], stream: Statistics, tz: str, where: str
                  ) -> dt.datetime:
    """When a statistics row's period starts, aware: a day starts at its local midnight."""
    if item.get(stream.key) is None:
        raise MalformedResponseError(f"DSMR-reader: {where} has no {stream.key}")
    if not stream.dated:
        moment = _moment(item, stream.key, where)
        assert moment is not None
        return moment
    try:
        day = dt.date.fromisoformat(str(item[stream.key]))
    except ValueError:
        raise MalformedResponseError(f"DSMR-reader: {where}: {stream.key} "
                                     f"{item[stream.key]!r} is not a date") from None
    from meterhub.timebase import to_utc

    midnight = to_utc(day, tz)
    assert midnight is not None
    return midnight


def parse_statistics(payload: Any, stream: Statistics, *, source: str, device: str,
                     tz: str) -> _Parsed:
    """Rows of one page of hour or day statistics, and the periods' starts (aware)."""
    what = stream.path.removeprefix("/api/v2/")
    if not isinstance(payload, dict) or not isinstance(payload.get("results"), list):
        raise MalformedResponseError(f"DSMR-reader: {what} answer has no results list")
    rows: list[dict[str, Any]] = []
    starts: list[dt.datetime] = []
    for number, item in enumerate(payload["results"], start=1):
        where = f"{what} row {number}"
        if not isinstance(item, dict):
            raise MalformedResponseError(f"DSMR-reader: {where} is not an object")
        start = _period_start(item, stream, tz, where)
        starts.append(start)
        missing = [name for name in stream.required if name not in item]
        if missing:
            raise MalformedResponseError(f"DSMR-reader: {where} has no {missing[0]}")
        values = {name: _number(item, name, where)
                  for name in (*stream.required, *stream.optional)}
        if all(values.get(name) == 0 for name in TEMPERATURES):
            for name in TEMPERATURES:
                values.pop(name, None)
        for name, value in values.items():
            series = stream.required.get(name) or stream.optional[name]
            if value is not None:
                rows.append(_row(source, device, series.channel, start, value, series.unit,
                                 series.quantity, series.kind.value))
        for stamp_name, group in stream.positions:
            at = _moment(item, stamp_name, where)
            for name, series in group.items():
                value = _number(item, name, where)
                if at is not None and value is not None:
                    rows.append(_row(source, device, series.channel, at, value, series.unit,
                                     series.quantity, series.kind.value))
    return pa.Table.from_pylist(rows) if rows else pa.table({}), starts


def local_filter(moment: dt.datetime, tz: str) -> str:
    """``moment`` as DSMR-reader's time filters take it: the naive local time, which they
    read in the instance's zone.

    In the hour a fall-back night repeats, a naive time names the first of the two hours
    (Django reads it with fold 0), so a cursor in the second would send the pull an hour
    back; with more rows in that hour than a page holds it would never get past it. Then
    the time goes with its offset, which Django's ISO 8601 parsing takes as it is.
    """
    from meterhub.timebase import zone

    local = moment.astimezone(zone(tz))
    wall = local.replace(tzinfo=None)
    offsets = {wall.replace(tzinfo=zone(tz), fold=fold).utcoffset() for fold in (0, 1)}
    return wall.isoformat(sep=" ") if len(offsets) == 1 else local.isoformat(sep=" ")


def hour_start(moment: dt.datetime, tz: str) -> dt.datetime:
    """The start of the local hour holding ``moment`` (UTC), as hour statistics are stamped;
    in the hour a fall-back night repeats, the start of the one ``moment`` is in."""
    from meterhub.timebase import zone

    local = moment.astimezone(zone(tz))  # its fold names which of two repeated hours
    return local.replace(minute=0, second=0, microsecond=0).astimezone(dt.UTC)


@register("dsmr_reader")
class DsmrReaderConnector:
    """Pulls a DSMR-reader instance's readings and statistics, each by its time cursor."""

    info: ClassVar[ConnectorInfo] = ConnectorInfo(
        name="dsmr_reader", config=DsmrReaderConfig, quantities=(), cursor="time",
        limits=(GENTLE,), page_size=PAGE_SIZE, interval_s=10,
        notes="time cursor per stream (readings, hour and day statistics), 1,000 rows per "
              "call, the last hour (lookback) read again", credentials=("api_key",),
        rereads=True)

    def __init__(self, config: DsmrReaderConfig, *, clock: Clock | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 limiter: RateLimiter | None = None) -> None:
        self.config = config
        self.clock = clock or RealClock()
        client = make_client(str(config.base_url).rstrip("/"), transport=transport,
                             headers={"X-AUTHKEY": config.api_key.get_secret_value()})
        self.http = VendorClient("DSMR-reader", client, limiter or RateLimiter(self.clock),
                                 self.clock)

    async def aclose(self) -> None:
        await self.http.client.aclose()

    async def check(self) -> str:
        """One cheap authenticated call: a single reading."""
        payload = await self.http.call(
            "GET", PATH, lambda response: _decode(response, "datalogger/dsmrreading"),
            limits=[(GENTLE, "instance")], params={"limit": 1})
        count = payload.get("count") if isinstance(payload, dict) else None
        return "API key accepted" + (f"; {count} readings" if count is not None else "")

    def _streams(self) -> dict[str, Statistics]:
        """The statistics streams by device id (none when statistics are not pulled)."""
        if not self.config.statistics:
            return {}
        return {stream.device(self.config.device): stream for stream in (HOURS, DAYS)}

    async def discover(self) -> Discovery:
        """One meter per instance, plus a device per statistics stream; channels carry
        DSMR-reader's field names."""
        device = self.config.device
        channels = [Channel(device, f.channel, f.quantity, f.unit, f.kind, None)
                    for f in [*FIELDS.values(), GAS]]
        devices = [Device(device, self.config.name, timezone=self.config.timezone)]
        for stats_device, stream in self._streams().items():
            devices.append(Device(stats_device, self.config.name,
                                  name=f"{stream.label} of {device}",
                                  timezone=self.config.timezone))
            channels += [Channel(stats_device, f.channel, f.quantity, f.unit, f.kind,
                                 stream.interval_s) for f in stream.fields()]
        return Discovery(devices=devices, channels=channels)

    async def _get(self, path: str, params: dict[str, Any], parse: Callable[[Any], _Parsed],
                   since: dt.datetime | None) -> _Parsed:
        """One page; rows before ``since`` (the bound the filter was sent, lookback and
        flooring included) mean an earlier answer served again: malformed, so it is asked
        again rather than taken for the end."""
        what = path.removeprefix("/api/v2/")

        def checked(response: httpx.Response) -> _Parsed:
            table, stamps = parse(_decode(response, what))
            if since is not None and stamps and min(stamps) < since:
                raise MalformedResponseError(f"DSMR-reader: the {what} answer holds rows "
                                             "before the requested time (a stale answer?)")
            return table, stamps

        return await self.http.call("GET", path, checked, limits=[(GENTLE, "instance")],
                                    params=params)

    async def _page(self, since: dt.datetime | None) -> _Parsed:
        params: dict[str, Any] = {"ordering": "timestamp", "limit": PAGE_SIZE}
        if since is not None:
            params["timestamp__gte"] = local_filter(since, self.config.timezone)
        return await self._get(PATH, params, lambda payload: parse_page(
            payload, source=self.config.name, device=self.config.device), since)

    async def _stats_page(self, stream: Statistics, since: dt.datetime | None) -> _Parsed:
        params: dict[str, Any] = {"ordering": stream.key, "limit": PAGE_SIZE}
        tz = self.config.timezone
        bound = since
        if since is not None and stream.dated:
            from meterhub.timebase import to_utc, zone

            day = since.astimezone(zone(tz)).date()
            params[f"{stream.key}__gte"] = day.isoformat()
            bound = to_utc(day, tz)  # the day's local midnight, as its rows are stamped
        elif since is not None:
            bound = hour_start(since, tz)  # a start within an hour still gets that hour
            params[f"{stream.key}__gte"] = local_filter(bound, tz)
        return await self._get(stream.path, params, lambda payload: parse_statistics(
            payload, stream, source=self.config.name, device=stream.device(
                self.config.device), tz=tz), bound)

    async def fetch(self, device: str, cursor: str | None, until: float | None = None
                    ) -> AsyncIterator[Page]:
        """Pages of a stream from ``cursor`` (its newest stored row's time) less the
        lookback on, or from the configured start."""
        from meterhub.timebase import to_utc

        stream = self._streams().get(device)
        if stream is None and device != self.config.device:
            raise NotFoundError(f"DSMR-reader source {self.config.name} has no device "
                                f"{device!r}")
        page: Callable[[dt.datetime | None], Awaitable[_Parsed]] = (
            self._page if stream is None else lambda at: self._stats_page(stream, at))
        after = dt.datetime.fromisoformat(cursor) if cursor else None
        since = to_utc(self.config.start) if self.config.start else None
        if after is not None:
            # late rows: the window before the cursor once more (never before the start)
            window = after - dt.timedelta(seconds=self.config.lookback)
            since = window if since is None else max(since, window)
        first = True
        while True:
            table, stamps = await page(since)
            if not stamps:
                return
            newest = max(stamps)
            # after the first page, each asks from the newest row of the one before: one
            # with nothing newer than that ends the fetch (its rows were just written)
            if not first and since is not None and newest <= since:
                return
            # the first page may lie within the window: the cursor never moves back
            mark = newest if after is None else max(newest, after)
            yield Page(table, mark.astimezone(dt.UTC).isoformat(), len(stamps))
            if len(stamps) < PAGE_SIZE:
                return
            if until is not None and newest.timestamp() >= until:
                return
            since, first = newest, False
