"""METER ZENTRA Cloud API v4 (TAHMO stations and other ZENTRA servers).

- Docs: the seed document (``<server>/api/v4/documentation/``) and VENDORS.md 1 and 7.1.
- Auth: ``Authorization: Token <token>``; the token belongs to one server, so ``base_url``
  names it (https://tahmo.zentracloud.com, https://zentracloud.com, https://zentracloud.eu).
- Limits: 60 calls per minute per token and 1 per minute per device; 429 bodies say
  "Lock out expires in NN seconds".
- Cursor: the last measurement record id (mrid) stored. Each call asks for
  ``start_mrid = cursor + 1`` ascending with the largest page (2,000 records), so a
  device-year of 5-minute records costs ceil(105,120 / 2,000) = 53 calls. A first backfill
  with a configured ``start`` (UTC, like every source's) asks by date once, then by mrid.
- Dates: ``start_date`` is sent as the documented ``YYYY-MM-DD HH:MM:SS`` in the station's
  local time. The API names no zone, only each reading's ``tz_offset`` (seconds), so the
  first backfill begins with the seed's cheapest call (newest record, ``per_page=1``) and
  uses that offset: one call more per device, once. In a zone with daylight saving time a
  start in the other season is therefore sent an hour off.
- Quirks: measurement sets differ between devices (the data dict is open); units follow the
  account's preference and are read from every page's metadata; error-flagged readings
  become quality ``sensor_error`` with a null value; a device whose max mrid falls below
  the cursor was reset and is read again from mrid 1 (writes are idempotent).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, SecretStr, field_validator

from meterhub.clock import Clock, RealClock
from meterhub.errors import MalformedResponseError, UnitError, VendorError
from meterhub.http import Limit, RateLimiter, VendorClient, make_client, retry_after_header
from meterhub.model import ChannelKind, Quality
from meterhub.sources.base import ConnectorInfo, Discovery, Page, SourceConfig, register
from meterhub.timebase import to_utc
from meterhub.units import CANONICAL_UNITS, Quantity, convert, normalize_unit

PATH = "/api/v4/get_readings/"
PAGE_SIZE = 2000
PER_TOKEN = Limit("account", 60, 60.0, "60 calls per minute per token")
PER_DEVICE = Limit("device", 1, 60.0, "1 call per minute per device")
_LOCKOUT = re.compile(r"Lock out expires in (\d+)")


class ZentraConfig(SourceConfig):
    type: str = "zentra"
    token: SecretStr = Field(description="API token from the ZENTRA web UI (API > Copy token)")
    devices: list[str] | None = Field(
        default=None, validate_default=True,
        description="Serial numbers of the stations (required: v4 lists no devices)")

    @field_validator("devices")
    @classmethod
    def _listed(cls, value: list[str] | None) -> list[str]:
        # without devices a sync would pull nothing and still report success
        if not value:
            raise ValueError("required for ZENTRA: the v4 API has no device listing, so "
                             "meterhub cannot discover the stations; list their serial "
                             'numbers, e.g. devices = ["z6-12345"]')
        return value


#: measurement name -> (channel, quantity, kind)
CHANNEL_MAP: dict[str, tuple[str, Quantity, ChannelKind]] = {
    "Air Temperature": ("air_temperature", Quantity.AIR_TEMPERATURE, ChannelKind.INSTANT),
    "Relative Humidity": ("relative_humidity", Quantity.RELATIVE_HUMIDITY,
                          ChannelKind.INSTANT),
    "Vapor Pressure": ("vapor_pressure", Quantity.VAPOR_PRESSURE, ChannelKind.INSTANT),
    "Atmospheric Pressure": ("atmospheric_pressure", Quantity.ATMOSPHERIC_PRESSURE,
                             ChannelKind.INSTANT),
    "Solar Radiation": ("solar_radiation", Quantity.SOLAR_RADIATION, ChannelKind.INSTANT),
    "Wind Speed": ("wind_speed", Quantity.WIND_SPEED, ChannelKind.INSTANT),
    "Gust Speed": ("gust_speed", Quantity.WIND_SPEED, ChannelKind.INSTANT),
    "Wind Direction": ("wind_direction", Quantity.WIND_DIRECTION, ChannelKind.INSTANT),
    "Precipitation": ("precipitation", Quantity.PRECIPITATION, ChannelKind.DELTA),
    "Battery Percent": ("battery", Quantity.BATTERY, ChannelKind.INSTANT),
}


def channel_for(measurement: str, port: int, ports: int) -> tuple[str, str, ChannelKind]:
    """Channel name, quantity and kind of a measurement group (port-suffixed if repeated)."""
    known = CHANNEL_MAP.get(measurement)
    if known is None:
        name = re.sub(r"[^a-z0-9]+", "_", measurement.lower()).strip("_")
        base, quantity, kind = name, Quantity.OTHER.value, ChannelKind.INSTANT
    else:
        base, quantity, kind = known[0], known[1].value, known[2]
    return (f"{base}_port{port}" if ports > 1 else base), quantity, kind


@dataclass(frozen=True, slots=True)
class ParsedPage:
    readings: pa.Table
    records: int
    end_mrid: int | None
    max_mrid: int | None


def parse_readings(payload: Any, *, source: str, device: str) -> ParsedPage:
    """A get_readings JSON body -> canonical readings (UTC, canonical units)."""
    try:
        pagination = payload["pagination"]
        data = payload["data"] or {}
        records = int(pagination["page_num_readings"])
        end_mrid = pagination.get("page_end_mrid")
        max_mrid = pagination.get("max_mrid")
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedResponseError(f"ZENTRA: unexpected get_readings body ({exc})") from None
    columns: dict[str, list[Any]] = {name: [] for name in
                                     ("channel", "ts", "value", "unit", "quality", "seq",
                                      "error_code", "quantity", "kind")}
    try:
        for measurement, groups in data.items():
            for group in groups:
                meta = group["metadata"]
                channel, quantity, kind = channel_for(measurement, int(meta["port_number"]),
                                                      len(groups))
                unit = normalize_unit(str(meta.get("units") or "1"))
                target = CANONICAL_UNITS.get(Quantity(quantity)) if quantity != "other" \
                    else None
                rows = group["readings"]
                n = len(rows)
                values = np.array([np.nan if r["value"] is None else r["value"] for r in rows],
                                  dtype=np.float64)
                flags = np.array([bool(r.get("error_flag")) for r in rows], dtype=bool)
                if target is not None and normalize_unit(target) != unit:
                    values = convert(values, unit, target)
                    unit = normalize_unit(target)
                bad = flags | np.isnan(values)
                columns["channel"] += [channel] * n
                columns["ts"] += [int(r["timestamp_utc"]) * 1_000_000 for r in rows]
                columns["value"] += [None if b else v for v, b in zip(values.tolist(),
                                                                      bad.tolist(),
                                                                      strict=True)]
                columns["unit"] += [unit] * n
                columns["quality"] += [Quality.SENSOR_ERROR.value if b else Quality.OK.value
                                       for b in bad.tolist()]
                columns["seq"] += [int(r["mrid"]) for r in rows]
                columns["error_code"] += [(r.get("error_description") or "error_flag")
                                          if b else None for r, b in zip(rows, bad.tolist(),
                                                                         strict=True)]
                columns["quantity"] += [quantity] * n
                columns["kind"] += [kind.value] * n
    except (KeyError, TypeError, ValueError, UnitError) as exc:
        raise MalformedResponseError(f"ZENTRA: unexpected reading in get_readings body "
                                     f"({type(exc).__name__}: {exc})") from None
    n = len(columns["ts"])
    table = pa.table({
        "source": pa.array([source] * n, pa.string()),
        "device": pa.array([device] * n, pa.string()),
        "channel": pa.array(columns["channel"], pa.string()),
        "ts": pa.array(columns["ts"], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "value": pa.array(columns["value"], pa.float64()),
        "unit": pa.array(columns["unit"], pa.string()),
        "quality": pa.array(columns["quality"], pa.string()),
        "seq": pa.array(columns["seq"], pa.int64()),
        "error_code": pa.array(columns["error_code"], pa.string()),
        "validated": pa.array(np.zeros(n, dtype=bool)),
        "quantity": pa.array(columns["quantity"], pa.string()),
        "kind": pa.array(columns["kind"], pa.string()),
    })
    return ParsedPage(table, records, None if end_mrid is None else int(end_mrid),
                      None if max_mrid is None else int(max_mrid))


@dataclass(frozen=True, slots=True)
class Newest:
    """A device's newest record: its time, its station's UTC offset and the max mrid."""

    timestamp_utc: int
    tz_offset: int
    max_mrid: int | None


def parse_newest(payload: Any) -> Newest | None:
    """The first reading of a one-record get_readings body (None: the device has none)."""
    try:
        max_mrid = payload["pagination"].get("max_mrid")
        for groups in (payload["data"] or {}).values():
            for group in groups:
                for reading in group["readings"]:
                    return Newest(int(reading["timestamp_utc"]), int(reading["tz_offset"]),
                                  None if max_mrid is None else int(max_mrid))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedResponseError(f"ZENTRA: unexpected get_readings body ({exc})") from None
    return None


def local_time(epoch: float, tz_offset: int) -> str:
    """A UTC instant as start_date/end_date want it: ``YYYY-MM-DD HH:MM:SS``, station time."""
    zone = dt.timezone(dt.timedelta(seconds=tz_offset))
    return dt.datetime.fromtimestamp(epoch, zone).strftime("%Y-%m-%d %H:%M:%S")


def lockout_seconds(response: httpx.Response) -> float | None:
    """ZENTRA's wait hint: "Lock out expires in NN seconds", else Retry-After."""
    match = _LOCKOUT.search(response.text)
    if match:
        return float(match.group(1))
    return retry_after_header(response)


def _json(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise MalformedResponseError("ZENTRA: get_readings body is not JSON "
                                     "(cut short?)") from None


def vendor_error(response: httpx.Response) -> VendorError:
    try:
        detail = str(orjson.loads(response.content).get("detail", ""))
    except (orjson.JSONDecodeError, AttributeError):
        detail = ""
    return VendorError(f"ZENTRA: {response.status_code} {detail or 'error'}",
                       status=response.status_code)


@register("zentra")
class ZentraConnector:
    """Pulls ZENTRA v4 readings by mrid cursor."""

    info: ClassVar[ConnectorInfo] = ConnectorInfo(
        name="zentra", config=ZentraConfig,
        quantities=tuple(q for _, q, _ in CHANNEL_MAP.values()),
        cursor="seq", limits=(PER_TOKEN, PER_DEVICE), page_size=PAGE_SIZE,
        interval_s=300, notes="mrid cursor; 2,000 records per call",
        credentials=("token",))

    def __init__(self, config: ZentraConfig, *, clock: Clock | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 limiter: RateLimiter | None = None) -> None:
        self.config = config
        self.clock = clock or RealClock()
        token = config.token.get_secret_value()
        if token.lower().startswith("token "):
            token = token[6:]
        client = make_client(str(config.base_url).rstrip("/"), transport=transport,
                             headers={"Authorization": f"Token {token}"})
        self.http = VendorClient("ZENTRA", client, limiter or RateLimiter(self.clock),
                                 self.clock, retry_after=lockout_seconds,
                                 vendor_error=vendor_error)

    async def aclose(self) -> None:
        await self.http.client.aclose()

    async def discover(self) -> Discovery:
        """ZENTRA v4 has no device listing: the configured devices are the devices."""
        from meterhub.model import Device

        return Discovery(devices=[Device(sn, self.config.name, serial=sn)
                                  for sn in self.config.devices or []])

    def _limits(self, device: str) -> list[tuple[Limit, str]]:
        return [(PER_TOKEN, "token"), (PER_DEVICE, device)]

    async def _get(self, device: str, params: dict[str, Any]) -> ParsedPage:
        """One page. Asked from ``start_mrid``, a page holding a record before it is an
        earlier answer served again: malformed, so the client asks again (with backoff)
        rather than taking it for the end of the data. A logger reset (max mrid below the
        one asked for) is no stale page: `fetch` reads it again from mrid 1."""
        first = params.get("start_mrid")

        def parse(response: httpx.Response) -> ParsedPage:
            page = parse_readings(_json(response), source=self.config.name, device=device)
            if first is not None and page.records and \
                    (page.max_mrid is None or page.max_mrid >= first - 1):
                seq = page.readings.column("seq")
                oldest = pc.min(seq).as_py() if len(seq) else None
                if (page.end_mrid is not None and page.end_mrid < first) or \
                        (oldest is not None and oldest < first):
                    raise MalformedResponseError(
                        f"ZENTRA: the get_readings answer for {device} holds records before "
                        "the requested mrid (a stale answer?)")
            return page

        return await self.http.call("GET", PATH, parse, limits=self._limits(device),
                                    params={"device_sn": device, "per_page": PAGE_SIZE,
                                            "page_num": 1, "sort_by": "ascending",
                                            "output_format": "json", **params})

    async def newest(self, device: str) -> Newest | None:
        """The device's newest record, with the seed's own call (one record, newest first)."""
        return await self.http.call(
            "GET", PATH, lambda response: parse_newest(_json(response)),
            limits=self._limits(device),
            params={"device_sn": device, "per_page": 1, "page_num": 1,
                    "sort_by": "descending", "output_format": "json"})

    async def check(self) -> str:
        """One cheap authenticated call (the first device's newest record), for
        ``config check --online``; raises what a sync would."""
        device = (self.config.devices or [""])[0]
        try:
            found = await self.newest(device)
        except VendorError as exc:
            if exc.status in (400, 404):  # the token passed; the serial number did not
                raise VendorError(f"{exc} (check source[{self.config.name}].devices)",
                                  status=exc.status) from None
            raise
        return (f"token accepted; {device} has records up to mrid {found.max_mrid}"
                if found else f"token accepted; {device} has no records yet")

    async def fetch(self, device: str, cursor: str | None, until: float | None = None
                    ) -> AsyncIterator[Page]:
        """Pages of readings after ``cursor`` (the last stored mrid), oldest first."""
        last = int(cursor) if cursor else 0
        begin = to_utc(self.config.start) if last == 0 and self.config.start else None
        if begin is not None:
            newest = await self.newest(device)
            if newest is None or newest.timestamp_utc < begin.timestamp():
                return  # nothing from start on yet; the cursor stays unset
            page = await self._get(device, {
                "start_date": local_time(begin.timestamp(), newest.tz_offset)})
            if not page.records:  # never from mrid 1: that would ignore start
                return
            last = int(page.end_mrid or 0)
            yield Page(page.readings, str(last), page.records)
            if page.max_mrid is None or last >= page.max_mrid:
                return
        while True:
            page = await self._get(device, {"start_mrid": last + 1})
            if page.max_mrid is not None and page.max_mrid < last:
                last = 0  # the logger was reset: its mrids start again at 1
                continue
            if not page.records or page.end_mrid is None:
                return
            last = page.end_mrid
            yield Page(page.readings, str(last), page.records)
            if page.max_mrid is None or last >= page.max_mrid:
                return
            if until is not None and page.readings.num_rows and \
                    page.readings.column("ts")[-1].as_py().timestamp() >= until:
                return
