"""The Climkit emulator against the seed document and VENDORS.md 6.5."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from meterhub.clock import VirtualClock
from meterhub.emulators.climkit import PASSWORD, USERNAME, ClimkitWorld, create_app

BASE = "https://api.climkit.io/api/v1"


@pytest.fixture
def world() -> ClimkitWorld:
    # 1 April 2024 00:00 UTC: the 40 days before hold Zurich's spring-forward day (31 March)
    return ClimkitWorld.create(VirtualClock(1_711_929_600.0), sites=1, meters=4, days=40)


def call(world: ClimkitWorld, *requests: tuple[str, str, Any]) -> list[httpx.Response]:
    """Log in, then send each (method, path, json) with the token, one a second."""

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(world))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            login = await client.post("/auth", json={"username": USERNAME,
                                                     "password": PASSWORD})
            token = login.json()["access_token"]
            out = [login]
            for method, path, body in requests:
                world.clock.advance(1.0)  # type: ignore[attr-defined]
                kwargs: dict[str, Any] = {"json": body} if method == "POST" else \
                    {"params": body or {}}
                out.append(await client.request(method, path, headers={
                    "Authorization": f"Bearer {token}"}, **kwargs))
            return out

    return asyncio.run(main())


def ids(world: ClimkitWorld) -> tuple[str, list[Any]]:
    site = next(iter(world.sites.values()))
    return site.id, site.meters


def test_auth_returns_a_jwt_valid_15_minutes(world: ClimkitWorld) -> None:
    login = call(world)[0].json()
    assert set(login) == {"access_token", "valid_until"}
    assert login["access_token"].count(".") == 2  # header.payload.signature
    assert login["valid_until"]["$date"] == int((world.clock.now() + 900) * 1000)


def test_site_meter_and_sensor_listings(world: ClimkitWorld) -> None:
    site, meters = ids(world)
    sites, info, meter_info, sensors = (r.json() for r in call(
        world, ("GET", "/all_installations", None), ("GET", f"/installation_infos/{site}",
                                                     None),
        ("GET", f"/meter_info/{site}", None), ("GET", f"/{site}/sensors_list", None))[1:])
    assert sites == [site]
    assert info["timezone"] == "Europe/Zurich"
    assert set(info["address"]) == {"street_name", "street_number", "city", "postal_code"}
    assert [m["id"] for m in meter_info] == [m.id for m in meters]
    assert {m["mode"] for m in meter_info} == {"consumption", "production"}
    assert set(sensors[0]) == {"id", "name", "type", "unit", "model"}


def test_15T_is_stamped_at_the_end_and_hours_at_the_start(world: ClimkitWorld) -> None:
    site, meters = ids(world)
    window = {"t_s": "2024-03-20T10:00:00", "t_e": "2024-03-20T11:00:00"}
    quarter, hourly = (r.json() for r in call(
        world, ("POST", f"/meter_data/{site}/{meters[0].id}",
                {**window, "sampling_frequency": "15T"}),
        ("POST", f"/meter_data/{site}/{meters[0].id}",
         {**window, "sampling_frequency": "H"}))[1:])
    assert [q["timestamp"] for q in quarter] == [  # 10:00 UTC is 11:00 in Zurich (CET)
        "2024-03-20 11:15:00+01:00", "2024-03-20 11:30:00+01:00",
        "2024-03-20 11:45:00+01:00", "2024-03-20 12:00:00+01:00"]
    assert [h["timestamp"] for h in hourly] == ["2024-03-20 11:00:00+01:00"]
    assert hourly[0]["total"] == pytest.approx(sum(q["total"] for q in quarter))
    assert set(quarter[0]) == {"total", "self", "ext", "timestamp"}
    assert quarter[0]["total"] == pytest.approx(quarter[0]["self"] + quarter[0]["ext"])


def test_daily_data_follows_the_site_time_zone_on_a_dst_day(world: ClimkitWorld) -> None:
    site, meters = ids(world)
    window = {"t_s": "2024-03-29T23:00:00", "t_e": "2024-04-01T22:00:00"}
    days, quarters = (r.json() for r in call(
        world, ("POST", f"/meter_data/{site}/{meters[2].id}",
                {**window, "sampling_frequency": "D"}),
        ("POST", f"/meter_data/{site}/{meters[2].id}",
         {**window, "sampling_frequency": "15T"}))[1:])
    assert [d["timestamp"] for d in days] == [
        "2024-03-30 00:00:00+01:00", "2024-03-31 00:00:00+01:00",
        "2024-04-01 00:00:00+02:00"]
    on_the_day = [q for q in quarters if q["timestamp"][:16] >= "2024-03-31 00:15"
                  and q["timestamp"][:16] <= "2024-04-01 00:00"]
    assert len(on_the_day) == 92  # 23 hours
    assert days[1]["total"] == pytest.approx(sum(q["total"] for q in on_the_day))


def test_production_meters_return_only_total_and_raw_indexes_by_type(
        world: ClimkitWorld) -> None:
    site, meters = ids(world)
    window = {"t_s": "2024-03-20T10:00:00", "t_e": "2024-03-20T10:30:00"}
    production, raw_pv, raw_heat, raw_water, empty = (r.json() for r in call(
        world, ("POST", f"/meter_data/{site}/{meters[1].id}", window),
        ("POST", f"/meter_data_raw/{site}/{meters[1].id}", window),
        ("POST", f"/meter_data_raw/{site}/{meters[2].id}", window),
        ("POST", f"/meter_data_raw/{site}/{meters[3].id}", window),
        ("POST", f"/meter_data/{site}/{meters[0].id}",
         {"t_s": "2030-01-01T00:00:00", "t_e": "2030-01-02T00:00:00"}))[1:])
    assert set(production[0]) == {"total", "timestamp"}
    assert set(raw_pv[0]) == {"en_im", "en_ex", "timestamp"}
    assert set(raw_heat[0]) == {"heat_energy_kwh", "timestamp"}
    assert set(raw_water[0]) == {"vol_m3", "timestamp"}
    assert raw_heat[1]["heat_energy_kwh"] >= raw_heat[0]["heat_energy_kwh"]
    assert empty == []


def test_limits_and_auth_errors(world: ClimkitWorld) -> None:
    async def main() -> list[int]:
        transport = httpx.ASGITransport(app=create_app(world))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            codes = [(await client.get("/all_installations")).status_code]
            bad = await client.post("/auth", json={"username": USERNAME, "password": "x"})
            codes.append(bad.status_code)
            token = (await client.post("/auth", json={"username": USERNAME,
                                                      "password": PASSWORD})).json()
            headers = {"Authorization": f"Bearer {token['access_token']}"}
            codes.append((await client.get("/all_installations", headers=headers)
                          ).status_code)
            codes.append((await client.get("/all_installations", headers=headers)
                          ).status_code)  # the same second
            world.clock.advance(901)  # type: ignore[attr-defined]
            codes.append((await client.get("/all_installations", headers=headers)
                          ).status_code)
            return codes

    assert asyncio.run(main()) == [401, 401, 200, 429, 401]


def test_every_meter_type_and_mode_of_the_document() -> None:
    world = ClimkitWorld.create(VirtualClock(1_711_929_600.0), sites=1, meters=7, days=2)
    site = next(iter(world.sites))
    meter_info = call(world, ("GET", f"/meter_info/{site}", None))[1].json()
    assert {m["type"] for m in meter_info} == {"electricity", "heating", "cold_water",
                                               "hot_water"}
    assert {m["mode"] for m in meter_info} == {"consumption", "production", "introduction",
                                               "battery"}
