"""Remote DSMR-reader instances: readings pulled from their v2 API.

``GET /api/v2/datalogger/dsmrreading?ordering=timestamp&timestamp__gte=<cursor>`` with
``X-AUTHKEY``, a thousand readings a call. The cursor is the newest reading's time; the
filter is inclusive and read in the instance's zone, so each call asks from the cursor
again (the boundary reading is written once more, which changes nothing), and a page with
nothing newer than the cursor ends the fetch. DSMR-reader documents no rate
limit; two calls a second keep a small home server responsive.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx
import orjson
import pyarrow as pa
from pydantic import Field, SecretStr

from meterhub.clock import Clock, RealClock
from meterhub.dsmr import FIELDS, GAS
from meterhub.errors import MalformedResponseError
from meterhub.http import Limit, RateLimiter, VendorClient, make_client
from meterhub.model import Channel, Device
from meterhub.sources.base import ConnectorInfo, Discovery, Page, SourceConfig, register

PATH = "/api/v2/datalogger/dsmrreading"
PAGE_SIZE = 1000
GENTLE = Limit("account", 2, 1.0, "2 calls per second (DSMR-reader documents no limit)")
_BY_CHANNEL = {field.channel: field for field in FIELDS.values()}


class DsmrReaderConfig(SourceConfig):
    api_key: SecretStr = Field(description="The instance's API key (X-AUTHKEY)")
    device: str = Field(default="p1", min_length=1,
                        description="Device id the instance's meter gets in meterhub")
    timezone: str = Field(default="Europe/Amsterdam",
                          description="The instance's TIME_ZONE (its filters are local)")


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


@register("dsmr_reader")
class DsmrReaderConnector:
    """Pulls a DSMR-reader instance's readings by time cursor."""

    info: ClassVar[ConnectorInfo] = ConnectorInfo(
        name="dsmr_reader", config=DsmrReaderConfig, quantities=(), cursor="time",
        limits=(GENTLE,), page_size=PAGE_SIZE, interval_s=10,
        notes="timestamp cursor, 1,000 readings per call")

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

    async def discover(self) -> Discovery:
        """One meter per instance; its channels are DSMR-reader's reading fields."""
        device = self.config.device
        channels = [Channel(device, f.channel, f.quantity, f.unit, f.kind, None)
                    for f in [*FIELDS.values(), GAS]]
        return Discovery(devices=[Device(device, self.config.name,
                                         timezone=self.config.timezone)],
                         channels=channels)

    async def _page(self, since: dt.datetime | None) -> tuple[pa.Table, list[dt.datetime]]:
        params: dict[str, Any] = {"ordering": "timestamp", "limit": PAGE_SIZE}
        if since is not None:
            from meterhub.timebase import zone

            local = since.astimezone(zone(self.config.timezone)).replace(tzinfo=None)
            params["timestamp__gte"] = local.isoformat(sep=" ")

        def parse(response: httpx.Response) -> tuple[pa.Table, list[dt.datetime]]:
            try:
                payload = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                raise MalformedResponseError("DSMR-reader: dsmrreading body is not JSON "
                                             "(cut short?)") from None
            return parse_page(payload, source=self.config.name, device=self.config.device)

        return await self.http.call("GET", PATH, parse, limits=[(GENTLE, "instance")],
                                    params=params)

    async def fetch(self, device: str, cursor: str | None, until: float | None = None
                    ) -> AsyncIterator[Page]:
        """Pages of readings from ``cursor`` (the newest stored reading time) on."""
        since = dt.datetime.fromisoformat(cursor) if cursor else (
            dt.datetime.fromisoformat(self.config.start).replace(tzinfo=dt.UTC)
            if self.config.start else None)
        while True:
            table, stamps = await self._page(since)
            fresh = [s for s in stamps if since is None or s > since]
            if not fresh:
                return
            newest = max(stamps)
            yield Page(table, newest.astimezone(dt.UTC).isoformat(), len(fresh))
            since = newest
            if len(stamps) < PAGE_SIZE:
                return
            if until is not None and newest.timestamp() >= until:
                return
