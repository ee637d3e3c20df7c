"""Climkit API v1 (energy sites: electricity, heat and water meters, and sensors).

- Docs: the seed document (https://api.climkit.io/api/v1), VENDORS.md 4 and 7.4.
- Auth: ``POST /auth`` with the API username and password returns a JWT valid 15 minutes
  (``valid_until`` in epoch ms, on Climkit's clock: a token that is over by ours on arrival
  counts 15 minutes from now). `ClimkitAuth` is an httpx auth flow: it logs in when no
  token is held or the held one expires within a minute, and once more on a 401.
- Limits: 1 request per second on every endpoint; calls are serialised through the limiter.
- Cursor: JSON ``{"t": epoch seconds}``, the end of the newest validated period stored.
  Each sync asks from an hour before it (validated data can be revised; writes are
  idempotent) up to now, in one ``meter_data`` call at 15T and one ``meter_data_raw`` call.
- Time: request times are tz-naive UTC. 15-minute values are stamped by the vendor at the
  *end* of their period: here they are shifted to the start (meterhub's convention). Raw
  register indexes are instants and keep their stamp. Response stamps carry the site's
  offset and are converted to UTC.
- Kinds: validated energy or volume per period is ``delta``; raw indexes (en_im, en_ex,
  heat_energy_kwh, vol_m3) are ``counter``; sensors are ``instant``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
from pydantic import Field, HttpUrl, SecretStr

from meterhub.clock import Clock, RealClock
from meterhub.errors import AuthError, MalformedResponseError
from meterhub.http import Limit, RateLimiter, TokenAuth, VendorClient, make_client
from meterhub.model import Channel, ChannelKind, Device, Quality, Site
from meterhub.sources.base import ConnectorInfo, Discovery, Page, SourceConfig, register
from meterhub.timebase import to_utc
from meterhub.units import Quantity, normalize_unit

ONE_PER_SECOND = Limit("account", 1, 1.0, "1 request per second")
PERIOD_S = 900
REVISION_S = 3600  #: validated data may change: read this much again on every sync
TOKEN_MARGIN_S = 60.0
TOKEN_S = 900.0  #: a token's documented life


class ClimkitConfig(SourceConfig):
    type: str = "climkit"
    base_url: HttpUrl = Field(default=HttpUrl("https://api.climkit.io/api/v1"))
    username: str = Field(description="API username (not the portal login)")
    password: SecretStr


@dataclass(frozen=True, slots=True)
class Series:
    channel: str
    quantity: Quantity
    kind: ChannelKind
    unit: str


#: (meter type, field) -> series; validated fields are deltas, raw indexes counters
CHANNEL_MAP: dict[tuple[str, str], Series] = {
    ("electricity", "total"): Series("energy", Quantity.ENERGY, ChannelKind.DELTA, "kWh"),
    ("electricity", "self"): Series("energy_self", Quantity.ENERGY, ChannelKind.DELTA, "kWh"),
    ("electricity", "ext"): Series("energy_grid", Quantity.ENERGY, ChannelKind.DELTA, "kWh"),
    ("electricity", "en_im"): Series("import_index", Quantity.ENERGY, ChannelKind.COUNTER,
                                     "kWh"),
    ("electricity", "en_ex"): Series("export_index", Quantity.ENERGY, ChannelKind.COUNTER,
                                     "kWh"),
    ("heating", "total"): Series("heat_energy", Quantity.ENERGY, ChannelKind.DELTA, "kWh"),
    ("heating", "self"): Series("heat_energy_self", Quantity.ENERGY, ChannelKind.DELTA, "kWh"),
    ("heating", "ext"): Series("heat_energy_ext", Quantity.ENERGY, ChannelKind.DELTA, "kWh"),
    ("heating", "heat_energy_kwh"): Series("heat_index", Quantity.ENERGY, ChannelKind.COUNTER,
                                           "kWh"),
    ("water", "total"): Series("water_volume", Quantity.VOLUME, ChannelKind.DELTA, "m³"),
    ("water", "self"): Series("water_volume_self", Quantity.VOLUME, ChannelKind.DELTA, "m³"),
    ("water", "ext"): Series("water_volume_ext", Quantity.VOLUME, ChannelKind.DELTA, "m³"),
    ("water", "vol_m3"): Series("volume_index", Quantity.VOLUME, ChannelKind.COUNTER, "m³"),
}
SENSOR_QUANTITIES = {"temperature": Quantity.TEMPERATURE,
                     "humidity": Quantity.RELATIVE_HUMIDITY, "power": Quantity.POWER}


def family(meter_type: str) -> str:
    """cold_water and hot_water share their fields; cooling is read like heating."""
    if meter_type.endswith("water"):
        return "water"
    return "heating" if meter_type == "cooling" else meter_type


def series_for(meter_type: str, mode: str, field: str) -> Series | None:
    """The series of a data field; production, introduction and battery meters' totals are
    named after their mode so that they never mix with consumption."""
    series = CHANNEL_MAP.get((family(meter_type), field))
    if series and mode not in ("consumption", "") and field == "total":
        return Series(f"{series.channel}_{mode}", series.quantity, series.kind, series.unit)
    return series


class ClimkitAuth(TokenAuth):
    """Climkit's JWT login: ``POST /auth`` with the API username and password."""

    def __init__(self, login_url: str, username: str, password: SecretStr,
                 clock: Clock) -> None:
        super().__init__(clock, margin=TOKEN_MARGIN_S)
        self.login_url, self.username, self.password = login_url, username, password

    def login_request(self) -> httpx.Request:
        return httpx.Request(
            "POST", self.login_url, headers={"Content-Type": "application/json"},
            content=orjson.dumps({"username": self.username,
                                  "password": self.password.get_secret_value()}))

    def accept(self, response: httpx.Response) -> tuple[str, float]:
        if response.status_code in (400, 401, 403):
            raise AuthError("Climkit refused the credentials: check the API username and "
                            "password of this source (they differ from the portal login)")
        try:
            body = orjson.loads(response.content)
            token, until = str(body["access_token"]), float(body["valid_until"]["$date"]) / 1000
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise MalformedResponseError("Climkit: unexpected /auth answer") from None
        now = self.clock.now()
        if until <= now + self.margin:
            # valid_until is on Climkit's clock: a fresh token already over by ours means our
            # clock is ahead; count its documented life from now, or every call logs in
            until = now + TOKEN_S
        return token, until


def _utc_seconds(stamps: list[str]) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Epoch seconds of Climkit's local stamps with offset ('2026-03-22 05:30:00+01:00')."""
    if not stamps:
        return np.zeros(0, dtype=np.int64)
    parsed = pd.to_datetime(pd.Series(stamps), utc=True, format="ISO8601")
    # pandas picks the resolution from the text: ask for seconds explicitly
    return np.asarray(parsed.dt.as_unit("s").astype("int64").to_numpy(), dtype=np.int64)


def _table(source: str, device: str, series: Series, seconds: np.ndarray[Any, Any],
           values: list[Any]) -> pa.Table:
    numbers = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    keep = ~np.isnan(numbers)
    n = int(keep.sum())
    return pa.table({
        "source": pa.array([source] * n, pa.string()),
        "device": pa.array([device] * n, pa.string()),
        "channel": pa.array([series.channel] * n, pa.string()),
        "ts": pa.array(seconds[keep] * 1_000_000, pa.int64()).cast(pa.timestamp("us",
                                                                               tz="UTC")),
        "value": pa.array(numbers[keep]),
        "unit": pa.array([normalize_unit(series.unit)] * n, pa.string()),
        "quality": pa.array([Quality.OK.value] * n, pa.string()),
        "seq": pa.nulls(n, pa.int64()),
        "error_code": pa.nulls(n, pa.string()),
        "validated": pa.array([series.kind == ChannelKind.DELTA] * n, pa.bool_()),
        "quantity": pa.array([series.quantity.value] * n, pa.string()),
        "kind": pa.array([series.kind.value] * n, pa.string()),
    })


def parse_meter_data(rows: Any, *, source: str, device: str, meter_type: str,
                     mode: str, raw: bool) -> tuple[pa.Table, int | None]:
    """meter_data (15T) or meter_data_raw rows -> readings, and the newest period end."""
    if not isinstance(rows, list):
        raise MalformedResponseError("Climkit: expected a list of readings")
    try:
        ends = _utc_seconds([str(r["timestamp"]) for r in rows])
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedResponseError(f"Climkit: unexpected timestamp ({exc})") from None
    # 15-minute values are stamped at the period end: meterhub stamps the start
    seconds = ends if raw else ends - PERIOD_S
    fields = sorted({k for r in rows for k in r if k != "timestamp"})
    tables = []
    for name in fields:
        series = series_for(meter_type, mode, name)
        if series is None or (series.kind == ChannelKind.COUNTER) != raw:
            continue
        tables.append(_table(source, device, series, seconds, [r.get(name) for r in rows]))
    newest = int(ends.max()) if len(ends) else None
    return (pa.concat_tables(tables) if tables else _empty(source)), newest


def _empty(source: str) -> pa.Table:
    return _table(source, "", Series("", Quantity.OTHER, ChannelKind.DELTA, "kWh"),
                  np.zeros(0, dtype=np.int64), [])


def _naive(seconds: float) -> str:
    return pd.Timestamp(int(seconds), unit="s").strftime("%Y-%m-%dT%H:%M:%S")


@dataclass(frozen=True, slots=True)
class Target:
    site: str
    kind: str  #: meter or sensor
    type: str
    mode: str
    unit: str = ""


@register("climkit")
class ClimkitConnector:
    """Pulls Climkit validated 15-minute data, raw indexes and sensor series."""

    info: ClassVar[ConnectorInfo] = ConnectorInfo(
        name="climkit", config=ClimkitConfig,
        quantities=(Quantity.ENERGY, Quantity.VOLUME, Quantity.TEMPERATURE),
        cursor="time", limits=(ONE_PER_SECOND,), page_size=0, interval_s=PERIOD_S,
        notes="one meter_data and one meter_data_raw call per meter and sync",
        calls_per_page=2, discovery_calls=3, credentials=("username", "password"))

    def __init__(self, config: ClimkitConfig, *, clock: Clock | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 limiter: RateLimiter | None = None) -> None:
        self.config = config
        self.clock = clock or RealClock()
        base = str(config.base_url).rstrip("/")
        client = make_client(base, transport=transport,
                             headers={"Content-Type": "application/json"})
        self.auth = ClimkitAuth(f"{base}/auth", config.username, config.password, self.clock)
        client.auth = self.auth
        # Climkit sends no wait hint with a 429; its limit is a second (VENDORS.md 4.4)
        self.http = VendorClient("Climkit", client, limiter or RateLimiter(self.clock),
                                 self.clock, retry_after=lambda response: 1.0)
        self.targets: dict[str, Target] = {}

    async def aclose(self) -> None:
        await self.http.client.aclose()

    async def _get(self, path: str, *, limited: bool = True, **kwargs: Any) -> Any:
        limits = [(ONE_PER_SECOND, "token")] if limited else []
        return await self.http.call("GET", path, self._json, limits=limits, **kwargs)

    async def _post(self, path: str, body: dict[str, Any],
                    parse: Callable[[httpx.Response], Any] | None = None) -> Any:
        return await self.http.call("POST", path, parse or self._json,
                                    limits=[(ONE_PER_SECOND, "token")],
                                    content=orjson.dumps(body))

    def _within(self, device: str, lo: int | None, hi: int, *, sensor: bool = False
                ) -> Callable[[httpx.Response], Any]:
        """A parser that takes an answer with a period starting outside [lo, hi) for a
        stale one (an earlier answer served again): malformed, so it is asked again rather
        than taken for "nothing new". Meter data is stamped at its period's end with the
        site's offset, sensor data at its instant in epoch seconds or milliseconds."""

        def parse(response: httpx.Response) -> Any:
            rows = self._json(response)
            if not isinstance(rows, list) or not rows:
                return rows
            try:
                if sensor:
                    starts = np.array([int(r["timestamp"]) for r in rows], dtype=np.int64)
                    starts = np.where(starts > 10**11, starts // 1000, starts)
                else:
                    starts = _utc_seconds([str(r["timestamp"]) for r in rows]) - PERIOD_S
            except (KeyError, TypeError, ValueError):
                return rows  # the parser proper says what is wrong
            if (lo is not None and starts.min() < lo) or starts.max() >= hi:
                raise MalformedResponseError(f"Climkit: the answer for {device} holds periods "
                                             "outside the requested window (a stale answer?)")
            return rows

        return parse

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise MalformedResponseError("Climkit: body is not JSON (cut short?)") from None

    async def check(self) -> str:
        """One cheap authenticated call: the login and the site listing."""
        sites = await self._get("/all_installations")
        return f"credentials accepted; {len(sites)} sites listed"

    async def discover(self) -> Discovery:
        """Sites, their meters (one device each) and sensors (one device each)."""
        found = Discovery()
        wanted = set(self.config.devices or [])
        sites = await self._get("/all_installations")
        try:
            ids = [s if isinstance(s, str) else str(s.get("_id") or s["id"]) for s in sites]
        except (KeyError, TypeError, AttributeError) as exc:
            raise MalformedResponseError(f"Climkit: unexpected site list ({exc})") from None
        for site_id in ids:
            info = await self._get(f"/installation_infos/{site_id}")
            tz = str(info.get("timezone") or "UTC")
            found.sites.append(Site(site_id, info.get("name"), tz, info.get("latitude"),
                                    info.get("longitude")))
            for meter in await self._get(f"/meter_info/{site_id}"):
                meter_id, meter_type = str(meter["id"]), str(meter["type"])
                mode = str(meter.get("mode") or "consumption")
                if wanted and meter_id not in wanted:
                    continue
                self.targets[meter_id] = Target(site_id, "meter", meter_type, mode)
                found.devices.append(Device(meter_id, self.config.name, site=site_id,
                                            name=meter.get("name"),
                                            model=f"{meter_type} {mode}", timezone=tz))
                for field in ("total", "self", "ext", "en_im", "en_ex", "heat_energy_kwh",
                              "vol_m3"):
                    series = series_for(meter_type, mode, field)
                    if series and not (mode != "consumption" and field in ("self", "ext")):
                        found.channels.append(Channel(meter_id, series.channel,
                                                      series.quantity.value,
                                                      normalize_unit(series.unit),
                                                      series.kind, PERIOD_S))
            # the one endpoint the document gives no request limit
            for sensor in await self._get(f"/{site_id}/sensors_list", limited=False):
                sensor_id = str(sensor["id"])
                if wanted and sensor_id not in wanted:
                    continue
                quantity = SENSOR_QUANTITIES.get(str(sensor.get("type")), Quantity.OTHER)
                unit = str(sensor.get("unit") or "1")
                self.targets[sensor_id] = Target(site_id, "sensor", str(sensor.get("type")),
                                                 "", unit)
                found.devices.append(Device(sensor_id, self.config.name, site=site_id,
                                            name=sensor.get("name"), model=sensor.get("model"),
                                            timezone=tz))
                found.channels.append(Channel(sensor_id, _slug(str(sensor.get("type"))),
                                              quantity.value, normalize_unit(unit),
                                              ChannelKind.INSTANT))
        return found

    async def fetch(self, device: str, cursor: str | None, until: float | None = None
                    ) -> AsyncIterator[Page]:
        if device not in self.targets:
            await self.discover()
        target = self.targets.get(device)
        if target is None:
            raise MalformedResponseError(f"Climkit: no meter or sensor {device} on this "
                                         "account")
        last = float(orjson.loads(cursor)["t"]) if cursor else None
        start: float | None = None
        if last is not None:
            start = last - REVISION_S if target.kind == "meter" else last + 1
        elif self.config.start:
            moment = to_utc(self.config.start)
            start = moment.timestamp() if moment else None
        end = until if until is not None else self.clock.now()
        if target.kind == "sensor":
            yield await self._sensor_page(device, target, start, end, cursor)
            return
        window: dict[str, Any] = {"t_e": _naive(end)}
        if start is not None:
            window["t_s"] = _naive(start)
        inside = self._within(device, None if start is None else int(start), int(end))
        validated = await self._post(f"/meter_data/{target.site}/{device}",
                                     {**window, "sampling_frequency": "15T"}, inside)
        table, newest = parse_meter_data(validated, source=self.config.name, device=device,
                                         meter_type=target.type, mode=target.mode, raw=False)
        raw = await self._post(f"/meter_data_raw/{target.site}/{device}", window, inside)
        indexes, _ = parse_meter_data(raw, source=self.config.name, device=device,
                                      meter_type=target.type, mode=target.mode, raw=True)
        both = pa.concat_tables([table, indexes])
        next_cursor = orjson.dumps({"t": newest}).decode() if newest else cursor
        if both.num_rows or next_cursor != cursor:
            yield Page(both, next_cursor, len(validated))

    async def _sensor_page(self, device: str, target: Target, start: float | None,
                           end: float, cursor: str | None) -> Page:
        params = {"t_e": _naive(end)}
        if start is not None:
            params["t_s"] = _naive(start)
        rows = await self.http.call(
            "GET", f"/{target.site}/sensor_data/{device}",
            self._within(device, None if start is None else int(start), int(end),
                         sensor=True),
            limits=[(ONE_PER_SECOND, "token")], params=params)
        try:
            stamps = np.array([int(r["timestamp"]) for r in rows], dtype=np.int64)
            values = [r.get("value") for r in rows]
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedResponseError(f"Climkit: unexpected sensor data ({exc})") from None
        seconds = np.where(stamps > 10**11, stamps // 1000, stamps)  # ms or s: both seen
        quantity = SENSOR_QUANTITIES.get(target.type, Quantity.OTHER)
        series = Series(_slug(target.type), quantity, ChannelKind.INSTANT, target.unit or "1")
        table = _table(self.config.name, device, series, seconds, values)
        newest = int(seconds.max()) if len(seconds) else None
        return Page(table, orjson.dumps({"t": newest}).decode() if newest else cursor,
                    len(rows))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "value"
