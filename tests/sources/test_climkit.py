"""The Climkit connector against its emulator, in-process, on virtual time."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import meterhub
from meterhub.clock import VirtualClock
from meterhub.emulators.climkit import PASSWORD, USERNAME, ClimkitWorld, create_app
from meterhub.errors import AuthError
from meterhub.sources.base import Discovery, Page
from meterhub.sources.climkit import ClimkitConfig, ClimkitConnector


def connector(world: ClimkitWorld, clock: VirtualClock, password: str = PASSWORD
              ) -> ClimkitConnector:
    config = ClimkitConfig(name="ck", username=USERNAME, password=password)
    return ClimkitConnector(config, clock=clock,
                            transport=httpx.ASGITransport(app=create_app(world)))


def sync(con: ClimkitConnector, cursors: dict[str, str | None] | None = None
         ) -> tuple[Discovery, dict[str, list[Page]]]:
    async def main() -> tuple[Discovery, dict[str, list[Page]]]:
        try:
            found = await con.discover()
            devices = [d.device for d in found.devices]

            async def one(device: str) -> list[Page]:
                start = (cursors or {}).get(device)
                return [p async for p in con.fetch(device, start)]

            pages = await asyncio.gather(*(one(d) for d in devices))
            return found, dict(zip(devices, pages, strict=True))
        finally:
            await con.aclose()

    return asyncio.run(main())


def test_a_year_of_15_minute_data_over_several_meters_is_complete() -> None:
    clock = VirtualClock(1_700_000_000.0)  # the year holds both DST changes of Zurich
    world = ClimkitWorld.create(clock, sites=1, meters=4, days=365)
    found, pages = sync(connector(world, clock))
    site = next(iter(world.sites.values()))
    assert len(found.devices) == 5  # four meters and a sensor
    assert world.rejected == 0
    for meter in site.meters:
        table = pa.concat_tables(p.readings for p in pages[meter.id])
        frame = table.to_pandas()
        channel = {"electricity": "energy_production" if meter.mode == "production"
                   else "energy", "heating": "heat_energy",
                   "cold_water": "water_volume"}[meter.type]
        validated = frame[frame["channel"] == channel]
        starts, values = world.truth(meter.id)
        assert len(starts) == 365 * 96
        # stamped at the period start in UTC, whatever the site's offset that day
        got = ((validated["ts"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
               ).to_numpy()
        np.testing.assert_array_equal(got, starts)
        np.testing.assert_allclose(validated["value"].to_numpy(), values)
        assert not validated.duplicated(["channel", "ts"]).any()
        kinds = dict(zip(frame["channel"], frame["kind"], strict=False))
        assert kinds[channel] == "delta"
        assert [k for c, k in kinds.items() if c.endswith("_index")] == ["counter"] * (
            2 if meter.type == "electricity" else 1)
    # two calls per meter, one per sensor, plus discovery: serialised at 1 per second
    assert con_calls(world) == 1 + 3 + 4 * 2 + 1


def con_calls(world: ClimkitWorld) -> int:
    return world.calls - world.auths


def test_indexes_as_counters_agree_with_the_validated_deltas() -> None:
    clock = VirtualClock(1_700_000_000.0)
    world = ClimkitWorld.create(clock, sites=1, meters=1, days=40)
    _, pages = sync(connector(world, clock))
    meter = next(iter(world.sites.values())).meters[0]
    with meterhub.open("duckdb:///:memory:") as hub:
        for page in pages[meter.id]:
            hub.write(page.readings)
        days = hub.aggregate(device=meter.id, every="1d", tz="Europe/Zurich",
                             start="2023-10-20", end="2023-11-10")
        by_channel = {name: group.set_index("bucket")
                      for name, group in days.groupby("channel")}
        delta = by_channel["energy"]["sum"]
        counter = by_channel["import_index"]["consumption"]
        # the register's rise over each local day equals the sum of that day's periods
        pd.testing.assert_series_equal(counter, delta, check_names=False, rtol=1e-9)
        assert (by_channel["energy"].loc[pd.Timestamp("2023-10-29", tz="Europe/Zurich"),
                                         "count"]) == 100  # the 25-hour day


def test_token_expiry_mid_sync_costs_one_login() -> None:
    clock = VirtualClock(1_700_000_000.0)
    world = ClimkitWorld.create(clock, sites=1, meters=4, days=3)
    world.faults.slow_seconds = 200.0  # every answer takes 200 s: the token runs out
    con = connector(world, clock)
    _, pages = sync(con)
    assert world.auths == 2
    assert con.auth.logins == 2
    assert all(pages[m.id] for m in next(iter(world.sites.values())).meters)


def test_a_401_on_a_revoked_token_is_retried_once_after_a_new_login() -> None:
    clock = VirtualClock(1_700_000_000.0)
    world = ClimkitWorld.create(clock, sites=1, meters=1, days=2)
    con = connector(world, clock)

    async def main() -> int:
        found = await con.discover()
        world.secret = "rotated-" + "0" * 32  # the server no longer accepts the held token
        rows = sum([p.readings.num_rows async for p in con.fetch(found.devices[0].device,
                                                                 None)])
        await con.aclose()
        return rows

    assert asyncio.run(main()) > 0
    assert world.auths == 2


def test_wrong_password_is_one_clear_error() -> None:
    clock = VirtualClock(1_700_000_000.0)
    world = ClimkitWorld.create(clock, sites=1, meters=1, days=1)
    with pytest.raises(AuthError, match="Climkit refused the credentials") as info:
        sync(connector(world, clock, password="s3cret-wrong"))
    assert "s3cret-wrong" not in str(info.value)
    assert world.calls == 1


def test_cursor_rereads_the_last_hour_and_moves_on() -> None:
    clock = VirtualClock(1_700_000_000.0)
    world = ClimkitWorld.create(clock, sites=1, meters=1, days=2)
    con = connector(world, clock)
    _, first = sync(con)
    meter = next(iter(world.sites.values())).meters[0]
    cursor = first[meter.id][-1].cursor
    clock.advance(2 * 3600)
    _, second = sync(connector(world, clock), {meter.id: cursor})
    table = pa.concat_tables(p.readings for p in second[meter.id])
    energy = table.filter(pa.compute.equal(table.column("channel"), "energy"))
    assert energy.num_rows == 4 + 8  # the hour read again, and the two new hours
    assert second[meter.id][-1].cursor != cursor


def test_a_failing_login_service_is_retried() -> None:
    clock = VirtualClock(1_700_000_000.0)
    world = ClimkitWorld.create(clock, sites=1, meters=1, days=1)
    app = create_app(world)
    failures = [2]

    async def flaky(scope: dict[str, object], receive: object, send: object) -> None:
        if scope.get("path") == "/api/v1/auth" and failures[0] > 0:
            failures[0] -= 1
            from starlette.responses import Response

            await Response("busy", status_code=503)(scope, receive, send)  # type: ignore[arg-type]
            return
        await app(scope, receive, send)  # type: ignore[arg-type]

    config = ClimkitConfig(name="ck", username=USERNAME, password=PASSWORD)
    con = ClimkitConnector(config, clock=clock, transport=httpx.ASGITransport(app=flaky))
    found, pages = sync(con)
    assert all(pages[d.device] for d in found.devices)
    assert failures == [0]
    assert world.auths == 1
