"""Copper Labs Cloud API v2, partner (enterprise) access: gas, water and electric meters.

- Docs: the seed document (copperlabs/api README and issues), VENDORS.md 5 and 7.5.
- Auth: OAuth2 client credentials at ``auth_url``/oauth/token (Auth0) for the audience
  https://api.copperlabs.com; the token is cached and renewed before it expires or on a 401.
- Limits: 100 requests per hour and 1,000 per day per client. The limiter plans within
  both (waiting, and logging that it waits, instead of drawing a 429); a 429 anyway backs
  off to the next whole hour. Answers with ``Cache-Control: max-age`` are cached on the
  sync's clock, so re-polling usage inside 15 minutes costs no call.
- Cursor: JSON ``{"t": epoch seconds}``, the end of the newest complete usage bucket. One
  ``meter/{id}/usage`` call covers up to ``window_days`` (default a year), so a meter-year
  of hourly data is one call. Trailing null buckets (past the newest data) are dropped and
  never move the cursor; a bucket repeated at a window boundary is kept once.
- Fields (the docs were wrong, VENDORS.md 5.5): ``usage`` is the consumption of the bucket
  (delta), ``value`` the normalised register at the bucket start (counter), ``power`` the
  average rate in the bucket (instant, stamped at the bucket start). Units follow the meter
  type: electricity kWh, gas ccf, water US gallons; the store converts to canonical units.
- Quirks: meter ids contain ':' and are URL-encoded; ``meter.last_reading.value`` is a raw
  register (not normalised) and is not used; ``readings`` come unsorted and are sorted here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
from pydantic import Field, HttpUrl, SecretStr

from meterhub.clock import Clock, RealClock
from meterhub.errors import AuthError, MalformedResponseError
from meterhub.http import (
    Limit,
    RateLimiter,
    ResponseCache,
    TokenAuth,
    VendorClient,
    make_client,
)
from meterhub.model import Channel, ChannelKind, Device, Quality, Site
from meterhub.sources.base import ConnectorInfo, Discovery, Page, SourceConfig, register
from meterhub.timebase import to_utc
from meterhub.units import Quantity

PER_HOUR = Limit("account", 100, 3600.0, "Copper: 100 requests per hour")
PER_DAY = Limit("account", 1000, 86400.0, "Copper: 1,000 requests per day")
AUDIENCE = "https://api.copperlabs.com"
GRANULARITY_S = {"fifteenminute": 900, "hour": 3600, "day": 86400}
PAGE = 1000
#: meter type family -> (usage unit, power unit, quantity of usage, quantity of power)
UNITS = {"power": ("kWh", "kW", Quantity.ENERGY, Quantity.POWER),
         "gas": ("ccf", "ccf/h", Quantity.VOLUME, Quantity.FLOW),
         "water": ("gal", "gal/h", Quantity.VOLUME, Quantity.FLOW)}


class CopperConfig(SourceConfig):
    type: str = "copper"
    base_url: HttpUrl = Field(default=HttpUrl("https://api.copperlabs.com"))
    auth_url: HttpUrl = Field(default=HttpUrl("https://auth.copperlabs.com"))
    client_id: str
    client_secret: SecretStr
    enterprise_id: str
    granularity: str = Field(default="hour", pattern="^(fifteenminute|hour|day)$")
    window_days: int = Field(default=366, ge=1, description="Days of usage per call")


def family(meter_type: str) -> str:
    return meter_type.split("_", 1)[0] if meter_type.startswith(("power", "water")) \
        else meter_type


class CopperAuth(TokenAuth):
    """Client-credentials token from Copper's Auth0 tenant."""

    def __init__(self, token_url: str, client_id: str, secret: SecretStr, clock: Clock) -> None:
        super().__init__(clock, margin=300.0)
        self.token_url, self.client_id, self.secret = token_url, client_id, secret

    def login_request(self) -> httpx.Request:
        return httpx.Request("POST", self.token_url, headers={
            "Content-Type": "application/json"}, content=orjson.dumps({
                "grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self.secret.get_secret_value(), "audience": AUDIENCE}))

    def accept(self, response: httpx.Response) -> tuple[str, float]:
        if response.status_code in (400, 401, 403):
            raise AuthError("Copper refused the client credentials: check client_id and "
                            "client_secret of this source")
        try:
            body = orjson.loads(response.content)
            return str(body["access_token"]), self.clock.now() + float(body["expires_in"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise MalformedResponseError("Copper: unexpected token answer") from None


def _seconds(times: list[str]) -> np.ndarray[Any, np.dtype[np.int64]]:
    if not times:
        return np.zeros(0, dtype=np.int64)
    parsed = pd.to_datetime(pd.Series(times), utc=True, format="ISO8601")
    return np.asarray(parsed.dt.as_unit("s").astype("int64").to_numpy(), dtype=np.int64)


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_usage(payload: Any, *, source: str, meter_id: str, meter_type: str,
                granularity_s: int) -> tuple[pa.Table, int | None]:
    """A usage answer -> readings of the complete buckets, and the end of the newest one."""
    try:
        rows = payload["results"]
        times = _seconds([str(r["time"]) for r in rows])
        complete = [r.get("usage") is not None and r.get("value") is not None for r in rows]
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedResponseError(f"Copper: unexpected usage answer ({exc})") from None
    keep = np.array(complete, dtype=bool)
    # one row per bucket start, whatever a window boundary repeated
    _, first = np.unique(times, return_index=True)
    unique = np.zeros(len(rows), dtype=bool)
    unique[first] = True
    keep &= unique
    rows = [r for r, k in zip(rows, keep.tolist(), strict=True) if k]
    t = times[keep]
    usage_unit, power_unit, usage_q, power_q = UNITS.get(family(meter_type),
                                                         UNITS["power"])
    n = len(rows)
    columns = [("usage", usage_unit, usage_q, ChannelKind.DELTA, "usage"),
               ("register", usage_unit, usage_q, ChannelKind.COUNTER, "value"),
               ("power", power_unit, power_q, ChannelKind.INSTANT, "power")]
    tables = []
    for channel, unit, quantity, kind, field in columns:
        values = np.array([np.nan if r.get(field) is None else float(r[field]) for r in rows],
                          dtype=np.float64)
        tables.append(pa.table({
            "source": pa.array([source] * n, pa.string()),
            "device": pa.array([meter_id] * n, pa.string()),
            "channel": pa.array([channel] * n, pa.string()),
            "ts": pa.array(t * 1_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "value": pa.array(values, mask=np.isnan(values)),
            "unit": pa.array([unit] * n, pa.string()),
            "quality": pa.array([Quality.OK.value] * n, pa.string()),
            "seq": pa.nulls(n, pa.int64()),
            "error_code": pa.nulls(n, pa.string()),
            "validated": pa.array(np.zeros(n, dtype=bool)),
            "quantity": pa.array([quantity.value] * n, pa.string()),
            "kind": pa.array([kind.value] * n, pa.string()),
        }))
    newest = int(t.max()) + granularity_s if n else None
    return pa.concat_tables(tables), newest


@register("copper")
class CopperConnector:
    """Pulls Copper meter usage (delta), registers (counter) and power (instant)."""

    info: ClassVar[ConnectorInfo] = ConnectorInfo(
        name="copper", config=CopperConfig,
        quantities=(Quantity.ENERGY, Quantity.POWER, Quantity.VOLUME, Quantity.FLOW),
        cursor="time", limits=(PER_HOUR, PER_DAY), page_size=366 * 24, interval_s=3600,
        notes="one usage call per meter and window; 100/h and 1,000/day planned",
        discovery_calls=2, credentials=("client_id", "client_secret", "enterprise_id"))

    def __init__(self, config: CopperConfig, *, clock: Clock | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 limiter: RateLimiter | None = None) -> None:
        self.config = config
        self.clock = clock or RealClock()
        client = make_client(str(config.base_url).rstrip("/"), transport=transport)
        self.auth = CopperAuth(f"{str(config.auth_url).rstrip('/')}/oauth/token",
                               config.client_id, config.client_secret, self.clock)
        client.auth = self.auth
        self.cache = ResponseCache(self.clock)
        self.http = VendorClient("Copper", client, limiter or RateLimiter(self.clock),
                                 self.clock, retry_after=self._next_hour, cache=self.cache)
        self.meters: dict[str, dict[str, Any]] = {}
        self.prefix = f"/api/v2/partner/{quote(config.enterprise_id, safe='')}"

    def _next_hour(self, response: httpx.Response) -> float:
        del response
        return 3600 - self.clock.now() % 3600

    async def aclose(self) -> None:
        await self.http.client.aclose()

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise MalformedResponseError("Copper: body is not JSON (cut short?)") from None

    async def _get(self, path: str, parse: Callable[[httpx.Response], Any] | None = None,
                   **params: Any) -> Any:
        return await self.http.call("GET", f"{self.prefix}{path}", parse or self._json,
                                    limits=[(PER_HOUR, self.config.client_id),
                                            (PER_DAY, self.config.client_id)],
                                    params=params or None)

    async def _pages(self, path: str, **params: Any) -> list[Any]:
        """An offset-paged list: a full page means there is more."""
        items: list[Any] = []
        while True:
            chunk = await self._get(path, limit=PAGE, offset=len(items), **params)
            if not isinstance(chunk, list):
                raise MalformedResponseError(f"Copper: {path} is not a list")
            items += chunk
            if len(chunk) < PAGE:
                return items

    async def bulk(self) -> list[Any]:
        """Latest normalised reading of every recently heard meter (next-link paging)."""
        results: list[Any] = []
        page = await self._get("/bulk", limit=PAGE)
        while True:
            results += page.get("results", [])
            link = page.get("next")
            if not link:
                return results
            page = await self.http.call("GET", link, self._json,
                                        limits=[(PER_HOUR, self.config.client_id),
                                                (PER_DAY, self.config.client_id)])

    async def check(self) -> str:
        """One cheap authenticated call: the token and one premise of the enterprise."""
        try:
            await self._get("/premise", limit=1, offset=0)
        except AuthError:
            if self.auth.token is None:
                raise  # the token service refused client_id and client_secret
            raise AuthError(f"Copper issued a token but refused enterprise "
                            f"{self.config.enterprise_id!r}: check enterprise_id") from None
        return "credentials accepted; enterprise answered"

    async def discover(self) -> Discovery:
        found = Discovery()
        wanted = set(self.config.devices or [])
        premises = {p["id"]: p for p in await self._pages("/premise")}
        for p in premises.values():
            found.sites.append(Site(p["id"], p.get("name"), p.get("timezone")))
        for meter in await self._pages("/meter", with_history="false"):
            meter_id, meter_type = str(meter["id"]), str(meter["type"])
            if wanted and meter_id not in wanted:
                continue
            self.meters[meter_id] = meter
            premise = premises.get(meter.get("premise_id"), {})
            found.devices.append(Device(meter_id, self.config.name,
                                        site=meter.get("premise_id"), model=meter_type,
                                        serial=meter_id, timezone=premise.get("timezone")))
            usage_unit, power_unit, usage_q, power_q = UNITS.get(family(meter_type),
                                                                 UNITS["power"])
            g = GRANULARITY_S[self.config.granularity]
            found.channels += [
                Channel(meter_id, "usage", usage_q.value, usage_unit, ChannelKind.DELTA, g),
                Channel(meter_id, "register", usage_q.value, usage_unit, ChannelKind.COUNTER,
                        g),
                Channel(meter_id, "power", power_q.value, power_unit, ChannelKind.INSTANT, g)]
        return found

    async def fetch(self, device: str, cursor: str | None, until: float | None = None
                    ) -> AsyncIterator[Page]:
        """Usage buckets after the cursor, one call per ``window_days``."""
        if device not in self.meters:
            await self.discover()
        meter = self.meters.get(device)
        if meter is None:
            raise MalformedResponseError(f"Copper: no meter {device} in this enterprise")
        g = GRANULARITY_S[self.config.granularity]
        created = int(_seconds([str(meter.get("created_at") or _iso(0))])[0])
        if cursor:
            start = int(orjson.loads(cursor)["t"])
        elif self.config.start and (moment := to_utc(self.config.start)) is not None:
            start = max(int(moment.timestamp()), created)
        else:
            start = created
        start -= start % g
        end = int(until if until is not None else self.clock.now())
        end -= end % g  # whole buckets only: a re-poll within the hour is the same request
        step = self.config.window_days * 86400
        while start + g <= end:  # a bucket can only be complete once it has ended
            stop = min(start + step, end)
            payload = await self._get(f"/meter/{quote(device, safe='')}/usage",
                                      self._within(device, start, stop),
                                      granularity=self.config.granularity,
                                      start=_iso(start), end=_iso(stop))
            table, newest = parse_usage(payload, source=self.config.name, meter_id=device,
                                        meter_type=str(meter["type"]), granularity_s=g)
            if newest is None:
                return  # nothing complete yet: the cursor stays
            yield Page(table, orjson.dumps({"t": newest}).decode(), table.num_rows // 3)
            if newest < stop:
                return  # trailing null buckets: the cloud has nothing newer yet
            start = newest

    def _within(self, device: str, lo: int, hi: int) -> Callable[[httpx.Response], Any]:
        """A parser that takes a usage answer with a bucket starting outside [lo, hi) for a
        stale one (an earlier answer served again): malformed, so it is asked again (and
        never cached) rather than taken for "nothing new"."""

        def parse(response: httpx.Response) -> Any:
            payload = self._json(response)
            try:
                times = _seconds([str(r["time"]) for r in payload["results"]])
            except (KeyError, TypeError, ValueError):
                return payload  # parse_usage says what is wrong
            if len(times) and (times.min() < lo or times.max() >= hi):
                raise MalformedResponseError(f"Copper: the usage answer for {device} holds "
                                             "buckets outside the requested window (a stale "
                                             "answer?)")
            return payload

        return parse

    async def readings(self, device: str, start: float, end: float) -> pa.Table:
        """Raw register readings, sorted by time (the cloud sends them unsorted)."""
        payload = await self._get(f"/meter/{quote(device, safe='')}/readings",
                                  start=_iso(start), end=_iso(end))
        try:
            rows = payload["results"]
            t = _seconds([str(r["time"]) for r in rows])
            values = np.array([float(r["value"]) for r in rows])
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedResponseError(f"Copper: unexpected readings ({exc})") from None
        order = np.argsort(t, kind="stable")
        return pa.table({"ts": pa.array(t[order] * 1_000_000, pa.int64()).cast(
            pa.timestamp("us", tz="UTC")), "value": pa.array(values[order])})
