"""The ZENTRA emulator against the seed document's own example and VENDORS.md 6.1."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pandas as pd
import pytest
from starlette.applications import Starlette

from meterhub.clock import VirtualClock
from meterhub.emulators.zentra import INTERVAL_S, ZentraWorld, create_app


class AsgiClient:
    """A synchronous in-process client over httpx's ASGI transport."""

    def __init__(self, app: Starlette, base_url: str = "https://zentracloud.com") -> None:
        self.app, self.base_url = app, base_url

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url=self.base_url) as c:
                return await c.get(url, **kwargs)

        return asyncio.run(send())


@pytest.fixture
def world() -> ZentraWorld:
    return ZentraWorld.create(VirtualClock(1_712_000_000.0), devices=2, days=5)


@pytest.fixture
def client(world: ZentraWorld) -> AsgiClient:
    return AsgiClient(create_app(world), base_url="https://tahmo.zentracloud.com")


def local_day(world: ZentraWorld, sn: str, days: int) -> str:
    device = world.devices[sn]
    stamp = pd.Timestamp(device.first + device.tz_offset + days * 86400, unit="s")
    return stamp.normalize().strftime("%Y-%m-%d %H:%M:%S")


def test_seed_snippet_request_and_dataframe_output(world: ZentraWorld,
                                                   client: AsgiClient) -> None:
    """The seed's get_readings_dataframe(): Token header, df format, desc, one per page."""
    sn = "z6-10001"
    tok = "Token emulator-token"
    response = client.get("/api/v4/get_readings/", headers={"Authorization": tok}, params={
        "output_format": "df", "per_page": 1, "page_num": 1, "sort_by": "desc",
        "start_date": local_day(world, sn, 1), "end_date": local_day(world, sn, 2),
        "device_sn": sn})
    assert response.status_code == 200
    data = response.json()
    df = pd.DataFrame(**json.loads(data["data"]))  # exactly as the seed snippet does
    device = world.devices[sn]
    end_utc = pd.Timestamp(local_day(world, sn, 2)).timestamp() - device.tz_offset
    newest = (int(end_utc) - device.first) // INTERVAL_S + 1
    assert set(df["mrid"]) == {newest}  # descending: the window's newest record comes first
    assert data["pagination"]["page_num_readings"] == 1
    assert "page_num=2" in data["pagination"]["next_url"]


def test_json_shape_grouped_by_measurement_with_metadata(world: ZentraWorld,
                                                         client: AsgiClient) -> None:
    response = client.get("/api/v4/get_readings/",
                          headers={"Authorization": "Token emulator-token"},
                          params={"device_sn": "z6-10002", "start_mrid": 1, "end_mrid": 3,
                                  "sort_by": "ascending"})
    body = response.json()
    page = body["pagination"]
    assert (page["page_start_mrid"], page["page_end_mrid"], page["next_url"]) == (1, 3, None)
    assert page["max_mrid"] >= 5 * 288 - 1
    assert "Solar Radiation" not in body["data"]  # this station has no pyranometer
    group = body["data"]["Air Temperature"][0]
    assert group["metadata"]["units"] == " °C"
    assert group["metadata"]["port_number"] == 1
    first = group["readings"][0]
    assert set(first) == {"datetime", "timestamp_utc", "tz_offset", "mrid", "value",
                          "precision", "error_flag", "error_description"}
    assert first["timestamp_utc"] + INTERVAL_S == group["readings"][1]["timestamp_utc"]
    assert first["tz_offset"] == 0
    assert first["datetime"].endswith("+00:00")


def test_csv_output(client: AsgiClient) -> None:
    response = client.get("/api/v4/get_readings/",
                          headers={"Authorization": "Token emulator-token"},
                          params={"device_sn": "z6-10001", "start_mrid": 1, "end_mrid": 2,
                                  "output_format": "csv"})
    lines = response.text.strip().splitlines()
    assert response.headers["content-type"].startswith("text/csv")
    assert lines[0] == "timestamp_utc,datetime,mrid,measurement,port,value,units,error_flag"
    assert len(lines) == 1 + 2 * 8  # two records of eight measurements


def test_errors_and_limits(world: ZentraWorld, client: AsgiClient) -> None:
    url = "/api/v4/get_readings/"
    ok = {"Authorization": "Token emulator-token"}
    assert client.get(url, params={"device_sn": "z6-10001"}).json() == {
        "detail": "Invalid token."}
    missing = client.get(url, headers=ok)
    assert missing.status_code == 400
    assert client.get(url, headers=ok, params={"device_sn": "z6-99999"}).status_code == 404
    assert client.get(url, headers=ok, params={"device_sn": "z6-10001"}).status_code == 200
    world.clock.advance(19)  # type: ignore[attr-defined]
    again = client.get(url, headers=ok, params={"device_sn": "z6-10001"})
    assert again.status_code == 429
    match = re.search(r"Lock out expires in (\d\d) seconds", again.json()["detail"])
    assert match
    assert match.group(1) == "41"
    assert again.headers["Retry-After"] == "41"
    # another device is a separate budget; the token allows 60 a minute
    assert client.get(url, headers=ok, params={"device_sn": "z6-10002"}).status_code == 200
    world.clock.advance(41)  # type: ignore[attr-defined]
    assert client.get(url, headers=ok, params={"device_sn": "z6-10001"}).status_code == 200


def test_token_limit_of_60_per_minute() -> None:
    world = ZentraWorld.create(VirtualClock(1_712_000_000.0), devices=61, days=1)
    client = AsgiClient(create_app(world))
    ok = {"Authorization": "Token emulator-token"}
    codes = [client.get("/api/v4/get_readings/", headers=ok,
                        params={"device_sn": sn, "per_page": 1}).status_code
             for sn in sorted(world.devices)]
    assert codes[:60] == [200] * 60
    assert codes[60] == 429


def test_recent_records_are_hidden_for_five_minutes(world: ZentraWorld,
                                                    client: AsgiClient) -> None:
    ok = {"Authorization": "Token emulator-token"}
    newest = client.get("/api/v4/get_readings/", headers=ok,
                        params={"device_sn": "z6-10001", "per_page": 1}).json()
    t = newest["data"]["Air Temperature"][0]["readings"][0]["timestamp_utc"]
    assert world.clock.now() - t >= 300
    assert world.clock.now() - t < 600


def test_dates_are_taken_only_in_the_seed_format_and_in_station_time() -> None:
    # 2025-12-20T00:00Z; z6-10001 is a Nairobi station (UTC+3)
    world = ZentraWorld.create(VirtualClock(1_766_188_800.0), devices=1, days=10)
    client = AsgiClient(create_app(world))
    ok = {"Authorization": "Token emulator-token"}
    url = "/api/v4/get_readings/"
    for bad in ("2025-12-15", "2025-12-15T00:00:00Z", "2025-12-15T03:00:00",
                "2025-12-15 03:00"):
        for name in ("start_date", "end_date"):
            world.clock.advance(60)  # type: ignore[attr-defined]
            answer = client.get(url, headers=ok, params={"device_sn": "z6-10001", name: bad})
            assert answer.status_code == 400, (name, bad)
            assert answer.json() == {"detail": (
                f"Invalid parameters: {name} {bad!r} is not a date and time of the form "
                "YYYY-MM-DD HH:MM:SS (station local time)")}
    world.clock.advance(60)  # type: ignore[attr-defined]
    answer = client.get(url, headers=ok, params={
        "device_sn": "z6-10001", "start_date": "2025-12-15 03:00:00",
        "end_date": "2025-12-15 03:10:00", "sort_by": "ascending"})
    assert answer.status_code == 200
    readings = answer.json()["data"]["Air Temperature"][0]["readings"]
    # 03:00 in Nairobi is 00:00 UTC: 1765756800 .. +10 minutes, every 5 minutes
    assert [r["timestamp_utc"] for r in readings] == [1765756800, 1765757100, 1765757400]
    assert readings[0]["datetime"] == "2025-12-15 03:00:00+03:00"
