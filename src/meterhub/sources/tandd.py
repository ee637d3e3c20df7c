"""T&D WebStorage Service API (TR7A, TR-7wb/nw/wf, TR4A, TR32B data loggers).

- Docs: the seed document (``/v1/devices/data``), VENDORS.md 2 and 7.2.
- Auth: ``api-key``, ``login-id`` and ``login-pass`` in the JSON body of every call; every
  call is a POST with ``X-HTTP-Method-Override: GET``. The default server follows the
  login id: ``tb``/``rb`` ids use api.webstorage.jp, others api.webstorage-service.com.
- Limits: ``data`` 20 calls a minute per account and 160,000 readings an hour per device;
  ``current`` 10 per 2 minutes. The readings budget is reserved before each call and
  settled with what the answer held, so a sync never trips it.
- Cursor: JSON ``{"unixtime": u, "data_id": d}`` of the newest stored reading. A call asks
  for ``unixtime-from = u + 1`` up to now with ``number = 65,535``; an answer that holds
  exactly ``number`` readings was capped (the vendor keeps the newest), so the connector
  pages backward (``unixtime-to`` = oldest received - 1) until a window is complete, and
  only then advances the cursor.
- Quirks: scalars arrive as strings or numbers; ``time_diff`` or ``time-diff``; channel
  ``num`` 0- or 1-based; a non-numeric value is an error token ("Sensor Error") stored as
  quality sensor_error with the token as error code; ``unixtime`` is true UTC, the device's
  time difference only labels local times; data-id is the seq (0 on TR41/42/45: none).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import numpy as np
import orjson
import pyarrow as pa
from pydantic import Field, HttpUrl, SecretStr, model_validator

from meterhub.clock import Clock, RealClock
from meterhub.errors import MalformedResponseError, VendorError
from meterhub.http import Limit, RateLimiter, VendorClient, make_client
from meterhub.model import Channel, ChannelKind, Device, Quality
from meterhub.sources.base import ConnectorInfo, Discovery, Page, SourceConfig, register
from meterhub.timebase import to_utc
from meterhub.units import Quantity, convert, normalize_unit

DATA_CALLS = Limit("endpoint", 20, 60.0, "data: 20 calls per minute")
CURRENT_CALLS = Limit("endpoint", 10, 120.0, "current: 10 calls per 2 minutes")
READINGS = Limit("readings", 160_000, 3600.0, "data: 160,000 readings per hour per device")
NUMBER = 65_535


class TanddConfig(SourceConfig):
    type: str = "tandd"
    base_url: HttpUrl = Field(default=HttpUrl("https://api.webstorage-service.com"))
    api_key: SecretStr
    login_id: str
    login_pass: SecretStr

    @model_validator(mode="before")
    @classmethod
    def _server_from_login(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("base_url"):
            login = str(data.get("login_id", ""))
            japan = login.startswith(("tb", "rb"))
            data = {**data, "base_url": "https://api.webstorage.jp" if japan
                    else "https://api.webstorage-service.com"}
        return data


def channel_for(name: str, unit: str) -> tuple[str, Quantity]:
    """Channel name and quantity from the logger's channel name and unit."""
    if unit in ("C", "F", "°C", "°F"):
        return "temperature", Quantity.TEMPERATURE
    if unit.strip() in ("%", "%RH"):
        return "relative_humidity", Quantity.RELATIVE_HUMIDITY
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "value", Quantity.OTHER


def _get(record: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in record:
            return record[name]
    raise KeyError(names[0])


@dataclass(frozen=True, slots=True)
class ParsedData:
    readings: pa.Table
    records: int
    oldest: int | None
    newest: tuple[int, int] | None  #: (unixtime, data-id) of the newest record


def parse_data(payload: Any, *, source: str) -> ParsedData:
    """A ``data``/``latest-data`` JSON body -> canonical readings."""
    try:
        serial = str(payload["serial"])
        channels = payload.get("channel") or []
        rows = payload.get("data") or []
        names = []
        seen: dict[str, int] = {}
        for ch in channels:
            channel, quantity = channel_for(str(ch["name"]), str(ch["unit"]))
            seen[channel] = seen.get(channel, 0) + 1
            names.append((channel, quantity, str(ch["unit"])))
        unixtime = np.array([int(r["unixtime"]) for r in rows], dtype=np.int64)
        data_id = np.array([int(r.get("data-id", r.get("data_id", 0))) for r in rows],
                           dtype=np.int64)
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedResponseError(f"T&D: unexpected data body ({exc})") from None
    parts = []
    for c, (channel, quantity, unit) in enumerate(names):
        if seen[channel] > 1:
            channel = f"{channel}_{c + 1}"
        raw = [r.get(f"ch{c + 1}") for r in rows]
        text = ["" if v is None else str(v) for v in raw]
        values = np.array([_number(v) for v in text], dtype=np.float64)
        bad = np.isnan(values)
        canonical = normalize_unit("degC" if unit in ("C", "F") and quantity ==
                                   Quantity.TEMPERATURE else unit or "1")
        if unit == "F":
            values = convert(values, "degF", "degC")
        n = len(rows)
        parts.append(pa.table({
            "source": pa.array([source] * n, pa.string()),
            "device": pa.array([serial] * n, pa.string()),
            "channel": pa.array([channel] * n, pa.string()),
            "ts": pa.array(unixtime * 1_000_000, pa.int64()).cast(
                pa.timestamp("us", tz="UTC")),
            "value": pa.array(values, mask=bad),
            "unit": pa.array([canonical] * n, pa.string()),
            "quality": pa.array(np.where(bad, Quality.SENSOR_ERROR.value, Quality.OK.value)
                                .tolist(), pa.string()),
            "seq": pa.array(data_id, mask=data_id == 0),
            "error_code": pa.array([t or "missing" if b else None
                                    for t, b in zip(text, bad.tolist(), strict=True)],
                                   pa.string()),
            "validated": pa.array(np.zeros(n, dtype=bool)),
            "quantity": pa.array([quantity.value] * n, pa.string()),
            "kind": pa.array([ChannelKind.INSTANT.value] * n, pa.string()),
        }))
    table = pa.concat_tables(parts) if parts else _EMPTY
    newest = None
    if len(unixtime):
        last = int(np.argmax(unixtime))
        newest = (int(unixtime[last]), int(data_id[last]))
    return ParsedData(table, len(rows), int(unixtime.min()) if len(unixtime) else None,
                      newest)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return float("nan")
    return value if np.isfinite(value) else float("nan")


_EMPTY = pa.table({"source": pa.array([], pa.string())})


def reset_seconds(response: httpx.Response) -> float | None:
    """T&D's wait hint on a 429.

    With calls left in the window the readings budget ran out, which frees over an hour:
    wait a tenth of it. Otherwise wait the call window, ``X-RateLimit-Reset`` seconds.
    """
    try:
        reset = float(response.headers.get("X-RateLimit-Reset", "60"))
        calls_left = int(response.headers.get("X-RateLimit-Remaining", "0"))
    except ValueError:
        return 60.0
    return READINGS.period / 10 if calls_left > 0 else reset


def vendor_error(response: httpx.Response) -> VendorError:
    try:
        error = orjson.loads(response.content)["error"]
        code, message = str(error.get("code")), str(error.get("message"))
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        code, message = str(response.status_code), "error"
    return VendorError(f"T&D WebStorage: {code} {message}", status=response.status_code,
                       code=code)


@register("tandd")
class TanddConnector:
    """Pulls T&D WebStorage graph data by unixtime cursor, paging capped windows back."""

    info: ClassVar[ConnectorInfo] = ConnectorInfo(
        name="tandd", config=TanddConfig,
        quantities=(Quantity.TEMPERATURE, Quantity.RELATIVE_HUMIDITY),
        cursor="time", limits=(DATA_CALLS, READINGS, CURRENT_CALLS), page_size=NUMBER,
        interval_s=600, notes="unixtime cursor; 65,535 readings per call, paged backward",
        discovery_calls=1, credentials=("api_key", "login_id", "login_pass"))

    def __init__(self, config: TanddConfig, *, clock: Clock | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 limiter: RateLimiter | None = None) -> None:
        self.config = config
        self.clock = clock or RealClock()
        client = make_client(str(config.base_url).rstrip("/"), transport=transport,
                             headers={"X-HTTP-Method-Override": "GET",
                                      "Content-Type": "application/json"})
        self.http = VendorClient("T&D WebStorage", client,
                                 limiter or RateLimiter(self.clock), self.clock,
                                 retry_after=reset_seconds, vendor_error=vendor_error)
        self.account = f"{config.login_id}"

    async def aclose(self) -> None:
        await self.http.client.aclose()

    def _body(self, **extra: Any) -> bytes:
        return orjson.dumps({"api-key": self.config.api_key.get_secret_value(),
                             "login-id": self.config.login_id,
                             "login-pass": self.config.login_pass.get_secret_value(),
                             **extra})

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise MalformedResponseError("T&D: body is not JSON (cut short?)") from None

    async def discover(self) -> Discovery:
        """Devices and channels from ``current``."""
        payload = await self.http.call("POST", "/v1/devices/current", self._json,
                                       limits=[(CURRENT_CALLS, self.account)],
                                       content=self._body())
        found = Discovery()
        wanted = set(self.config.devices or [])
        try:
            for dev in payload["devices"]:
                serial = str(dev["serial"])
                if wanted and serial not in wanted:
                    continue
                diff = int(_get(dev, "time_diff", "time-diff"))
                found.devices.append(Device(
                    serial, self.config.name, name=str(dev.get("name") or serial),
                    model=str(dev.get("model") or ""), serial=serial,
                    timezone=f"UTC{'+' if diff >= 0 else '-'}{abs(diff) // 60:02d}:"
                             f"{abs(diff) % 60:02d}"))
                for ch in dev.get("channel", []):
                    channel, quantity = channel_for(str(ch["name"]), str(ch["unit"]))
                    unit = "°C" if quantity == Quantity.TEMPERATURE else \
                        normalize_unit(str(ch["unit"]) or "1")
                    found.channels.append(Channel(serial, channel, quantity.value, unit,
                                                  ChannelKind.INSTANT))
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedResponseError(f"T&D: unexpected current body ({exc})") from None
        return found

    async def check(self) -> str:
        """One cheap authenticated call: the ``current`` listing discovery makes anyway."""
        found = await self.discover()
        return f"credentials accepted; {len(found.devices)} loggers listed"

    async def _data(self, serial: str, lo: int | None, hi: int) -> ParsedData:
        """One window [lo, hi] of a logger's data. An answer with readings outside it is
        an earlier answer served again: malformed, so the client asks again (with backoff)
        rather than taking it for the end of the data."""
        await self.http.limiter.acquire([(READINGS, serial)], cost=NUMBER)
        body: dict[str, Any] = {"remote-serial": serial, "unixtime-to": hi,
                                "number": NUMBER, "temperature-unit": "C"}
        if lo is not None:
            body["unixtime-from"] = lo
        try:
            def parse(response: httpx.Response) -> ParsedData:
                self._watch_headers(response)
                self._watch_data_count(response, serial)
                parsed = parse_data(self._json(response), source=self.config.name)
                if parsed.newest is not None and (parsed.newest[0] > hi or (
                        lo is not None and parsed.oldest is not None and parsed.oldest < lo)):
                    raise MalformedResponseError(
                        f"T&D: the data answer for {serial} holds readings outside the "
                        "requested window (a stale answer?)")
                return parsed

            parsed = await self.http.call(
                "POST", "/v1/devices/data", parse,
                limits=[(DATA_CALLS, self.account)], content=self._body(**body))
        except BaseException:
            self.http.limiter.settle(READINGS, serial, NUMBER, 0)
            raise
        self.http.limiter.settle(READINGS, serial, NUMBER, parsed.records)
        return parsed

    def _watch_headers(self, response: httpx.Response) -> None:
        """Another client of the account may spend its budget: obey the server's count."""
        try:
            remaining = int(response.headers.get("X-RateLimit-Remaining", "1"))
            reset = float(response.headers.get("X-RateLimit-Reset", "60"))
        except ValueError:
            return
        mine = [(DATA_CALLS, self.account)]
        if remaining <= 0 and self.http.limiter.delay(mine) <= 0:
            # our own count sees room, the server none: wait out a whole window
            self.http.limiter.penalise(mine, self.clock.now() + reset)

    def _watch_data_count(self, response: httpx.Response, serial: str) -> None:
        """The device's readings budget as the server counts it (others may share it)."""
        try:
            left = int(response.headers["X-RateLimit-Remaining-DataCount"])
        except (KeyError, ValueError):
            return
        budget = [(READINGS, serial)]
        if left < NUMBER and self.http.limiter.delay(budget, NUMBER) <= 0:
            # the server has less than a full call left: let a tenth of the hour pass
            self.http.limiter.penalise(budget, self.clock.now() + READINGS.period / 10)

    async def fetch(self, device: str, cursor: str | None, until: float | None = None
                    ) -> AsyncIterator[Page]:
        """Readings newer than ``cursor`` up to ``until`` (default now), oldest window last.

        A capped answer (exactly 65,535 readings) hides older ones: ask again below its
        oldest reading until a window holds fewer, then advance the cursor.
        """
        state = orjson.loads(cursor) if cursor else None
        lo: int | None = None
        if state:
            lo = int(state["unixtime"]) + 1
        elif self.config.start:
            start = to_utc(self.config.start)
            lo = int(start.timestamp()) if start else None
        hi = int(until if until is not None else self.clock.now())
        newest: tuple[int, int] | None = None
        while True:
            parsed = await self._data(device, lo, hi)
            if newest is None:
                newest = parsed.newest
            complete = parsed.records < NUMBER
            if complete:
                next_cursor = (orjson.dumps({"unixtime": newest[0], "data_id": newest[1]})
                               .decode() if newest else cursor)
                if parsed.records or next_cursor != cursor:
                    yield Page(parsed.readings, next_cursor, parsed.records)
                return
            yield Page(parsed.readings, None, parsed.records)
            assert parsed.oldest is not None
            hi = parsed.oldest - 1
