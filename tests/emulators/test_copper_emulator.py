"""The Copper emulator against the seed document (README, issues) and VENDORS.md 5 and 6.6."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from meterhub.clock import VirtualClock
from meterhub.emulators.copper import (
    AUDIENCE,
    CLIENT_ID,
    CLIENT_SECRET,
    ENTERPRISE,
    CopperWorld,
    create_app,
)

BASE = f"/api/v2/partner/{ENTERPRISE}"


@pytest.fixture
def world() -> CopperWorld:
    return CopperWorld.create(VirtualClock(1_700_000_000.0), meters=5, days=3)


def get(world: CopperWorld, *paths: tuple[str, dict[str, Any]]) -> list[httpx.Response]:
    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(world))
        async with httpx.AsyncClient(transport=transport,
                                     base_url="https://api.copperlabs.com") as client:
            token = (await client.post("/oauth/token", json={
                "grant_type": "client_credentials", "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET, "audience": AUDIENCE})).json()
            headers = {"Authorization": f"{token['token_type']} {token['access_token']}"}
            return [await client.get(path, params=params, headers=headers)
                    for path, params in paths]

    return asyncio.run(main())


def test_token_grants(world: CopperWorld) -> None:
    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(world))
        async with httpx.AsyncClient(transport=transport,
                                     base_url="https://auth.copperlabs.com") as client:
            good = await client.post("/oauth/token", json={
                "grant_type": "client_credentials", "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET, "audience": AUDIENCE})
            refreshed = await client.post("/oauth/token", json={
                "grant_type": "refresh_token", "client_id": CLIENT_ID,
                "refresh_token": good.json()["refresh_token"]})
            wrong = await client.post("/oauth/token", json={
                "grant_type": "client_credentials", "client_id": CLIENT_ID,
                "client_secret": "x", "audience": AUDIENCE})
            return [good, refreshed, wrong]

    good, refreshed, wrong = asyncio.run(main())
    assert good.json()["token_type"] == "Bearer"
    assert good.json()["expires_in"] == 86400
    assert refreshed.status_code == 200
    assert wrong.status_code == 401


def test_usage_fields_follow_vendors_5_5(world: CopperWorld) -> None:
    meter = next(m for m in world.meters if m.startswith("07:"))
    now = world.clock.now()
    start = "2023-11-14T18:00:00Z"
    (response,) = get(world, (f"{BASE}/meter/{quote(meter, safe='')}/usage", {
        "granularity": "hour", "start": start, "end": "2023-11-14T23:00:00Z"}))
    assert response.headers["Cache-Control"] == "max-age=900"
    body = response.json()
    assert body["meter_id"] == meter
    rows = body["results"]
    assert [r["time"] for r in rows][:2] == ["2023-11-14T18:00:00.000Z",
                                            "2023-11-14T19:00:00.000Z"]
    done = [r for r in rows if r["usage"] is not None]
    for r in done:
        assert r["value"] == pytest.approx(r["actual"] / 100)  # kWh register, scale 100
        assert r["power"] == pytest.approx(r["usage"])  # one-hour buckets
    for a, b in itertools.pairwise(done):
        assert b["value"] - a["value"] == pytest.approx(a["usage"])
    # the newest data is half an hour old: later buckets are null
    assert rows[-1] == {"time": "2023-11-14T22:00:00.000Z", "value": None, "actual": None,
                        "power": None, "usage": None}
    assert now - 1800 < 1_700_000_000


def test_offset_paging_bulk_next_links_and_the_last_reading_defect(
        world: CopperWorld) -> None:
    first, second, bulk = get(world, (f"{BASE}/meter", {"limit": 3, "offset": 0}),
                              (f"{BASE}/meter", {"limit": 3, "offset": 3}),
                              (f"{BASE}/bulk", {"limit": 2}))
    meters = first.json() + second.json()
    assert len(first.json()) == 3
    assert len(second.json()) == 2  # a short page ends the listing
    assert {m["id"][:3] for m in meters} == {"07:", "12:", "IQ:"}
    assert bulk.json()["next"] == f"{BASE}/bulk?limit=2&offset=2"
    by_id = {r["meter_id"]: r["value"] for r in bulk.json()["results"]}
    raw = {m["id"]: m["last_reading"]["value"] for m in meters}
    gas = next(m for m in by_id if m.startswith("12:"))
    assert raw[gas] == pytest.approx(by_id[gas] * 100)  # not normalised (the known defect)


def test_readings_unsorted_errors_and_rate_limits(world: CopperWorld) -> None:
    meter = next(iter(world.meters))
    readings, unknown, other = get(
        world, (f"{BASE}/meter/{quote(meter, safe='')}/readings", {
            "start": "2023-11-14T12:00:00Z", "end": "2023-11-14T20:00:00Z"}),
        (f"{BASE}/meter/{quote('07:999', safe='')}/usage", {}),
        ("/api/v2/partner/someone-else/meter", {}))
    times = [r["time"] for r in readings.json()["results"]]
    assert len(times) == 32
    assert times != sorted(times)
    assert unknown.status_code == 404
    assert other.status_code == 403
    codes = [r.status_code for r in get(world, *[(f"{BASE}/premise", {})] * 101)]
    # two of the calls above counted (a 403 for another enterprise does not): 98 more
    assert codes[:98] == [200] * 98
    assert codes[98:] == [429] * 3


def test_grid_latest_pages_by_next_link_and_grid_readings_cover_the_window() -> None:
    world = CopperWorld.create(VirtualClock(1_700_000_000.0), meters=9, days=1)  # 3 homes
    first, readings = get(world, (f"{BASE}/grid/latest", {"limit": 2}),
                          (f"{BASE}/grid/readings", {"start": "2023-11-14T10:00:00Z",
                                                     "end": "2023-11-14T13:00:00Z"}))
    assert len(first.json()["results"]) == 2
    assert first.json()["next"] == f"{BASE}/grid/latest?limit=2&offset=2"
    assert len(readings.json()) == 3 * 3  # three gateways, three hours
