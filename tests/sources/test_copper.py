"""The Copper connector against its emulator, in-process, on virtual time."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pyarrow as pa
import pytest

import meterhub
from meterhub.clock import VirtualClock
from meterhub.emulators.copper import (
    CLIENT_ID,
    CLIENT_SECRET,
    ENTERPRISE,
    CopperWorld,
    create_app,
)
from meterhub.errors import AuthError
from meterhub.sources.base import Page
from meterhub.sources.copper import CopperConfig, CopperConnector


def connector(world: CopperWorld, clock: VirtualClock, secret: str = CLIENT_SECRET,
              **options: object) -> CopperConnector:
    config = CopperConfig(name="cu", client_id=CLIENT_ID, client_secret=secret,
                          enterprise_id=ENTERPRISE, **options)  # type: ignore[arg-type]
    return CopperConnector(config, clock=clock,
                           transport=httpx.ASGITransport(app=create_app(world)))


def sync(con: CopperConnector, cursors: dict[str, str | None] | None = None
         ) -> dict[str, list[Page]]:
    async def main() -> dict[str, list[Page]]:
        try:
            found = await con.discover()
            devices = [d.device for d in found.devices]

            async def one(device: str) -> list[Page]:
                return [p async for p in con.fetch(device, (cursors or {}).get(device))]

            return dict(zip(devices, await asyncio.gather(*(one(d) for d in devices)),
                            strict=True))
        finally:
            await con.aclose()

    return asyncio.run(main())


def seconds(table: pa.Table) -> np.ndarray:  # type: ignore[type-arg]
    return table.column("ts").cast(pa.int64()).to_numpy() // 1_000_000


def test_a_year_of_hourly_usage_is_complete_in_one_call_per_meter() -> None:
    clock = VirtualClock(1_700_000_000.0)  # the year holds both DST changes of Denver
    world = CopperWorld.create(clock, meters=3, days=365)
    con = connector(world, clock)
    pages = sync(con)
    for meter_id, got in pages.items():
        table = pa.concat_tables(p.readings for p in got)
        usage = table.filter(pa.compute.equal(table.column("channel"), "usage"))
        starts, expected = world.truth(meter_id)
        assert len(starts) >= 365 * 24 - 1
        np.testing.assert_array_equal(seconds(usage), starts)  # UTC bucket starts
        np.testing.assert_allclose(usage.column("value").to_numpy(), expected, atol=1e-9)
        assert len(set(seconds(usage).tolist())) == usage.num_rows
        register = table.filter(pa.compute.equal(table.column("channel"), "register"))
        kinds = set(zip(table.column("channel").to_pylist(), table.column("kind").to_pylist(),
                        strict=True))
        assert kinds == {("usage", "delta"), ("register", "counter"), ("power", "instant")}
        assert register.num_rows == usage.num_rows
    assert world.calls == 2 + 3  # premise and meter listings, then one usage call each
    assert world.rejected == 0


def test_units_per_meter_type_reach_the_store_normalised() -> None:
    clock = VirtualClock(1_700_000_000.0)
    world = CopperWorld.create(clock, meters=3, days=3)
    pages = sync(connector(world, clock))
    with meterhub.open("duckdb:///:memory:") as hub:
        for got in pages.values():
            for page in got:
                hub.write(page.readings)
        channels = hub.channels()
        units = {(d[:3], c): u for d, c, u in zip(channels["device"], channels["channel"],
                                                  channels["unit"], strict=True)}
        assert units[("07:", "usage")] == "kWh"
        assert units[("12:", "usage")] == "m³"  # ccf converted
        assert units[("IQ:", "usage")] == "m³"  # US gallons converted
        assert units[("12:", "power")] == "m³/h"
        gas = next(m for m in world.meters if m.startswith("12:"))
        _, expected = world.truth(gas)
        stored = hub.readings(device=gas, channel="usage", unit="ccf")["value"].to_numpy()
        np.testing.assert_allclose(stored, expected, rtol=1e-9)


def test_hourly_budget_is_planned_not_tripped_and_the_wait_is_told(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="meterhub.http")
    clock = VirtualClock(1_700_000_000.0)
    world = CopperWorld.create(clock, meters=240, days=2)
    started = clock.now()
    con = connector(world, clock)
    pages = sync(con)
    assert all(pages.values())
    assert world.rejected == 0  # never a 429: the limiter waited instead
    assert world.calls == 2 + 240
    # 242 calls at 100 an hour: the last starts at the beginning of the third hour
    assert clock.now() - started == pytest.approx(2 * 3600, abs=5)
    assert "Copper: 100 requests per hour" in caplog.text


def test_daily_budget_is_planned_not_tripped() -> None:
    clock = VirtualClock(1_700_000_000.0)
    world = CopperWorld.create(clock, meters=1000, days=1)
    started = clock.now()
    con = connector(world, clock)
    sync(con)
    assert world.rejected == 0
    assert world.calls == 1 + 2 + 1000  # a full page of 1,000 meters asks for one more page
    # 1,000 calls fit the first ten hours; the last three wait for the day to roll over
    assert clock.now() - started == pytest.approx(86400, abs=5)


def test_a_bucket_repeated_at_a_window_boundary_is_kept_once() -> None:
    from meterhub.sources.copper import parse_usage

    row = {"time": "2023-11-14T10:00:00.000Z", "value": 10.0, "actual": 1000,
           "power": 0.5, "usage": 0.5}
    later = {**row, "time": "2023-11-14T11:00:00.000Z", "value": 10.5, "actual": 1050}
    table, newest = parse_usage({"results": [row, later, later]}, source="cu",
                                meter_id="07:1", meter_type="power_net", granularity_s=3600)
    assert table.num_rows == 2 * 3  # two buckets, three channels each
    assert newest == 1_699_963_200  # 11:00 + 1 h


def test_a_forced_429_is_recovered_from() -> None:
    clock = VirtualClock(1_700_000_000.0)
    world = CopperWorld.create(clock, meters=3, days=2)
    world.faults.rate_limited = 2
    pages = sync(connector(world, clock))
    assert all(pages.values())
    assert world.rejected == 2


def test_cache_control_saves_calls_on_a_repoll() -> None:
    clock = VirtualClock(1_700_000_000.0)
    world = CopperWorld.create(clock, meters=1, days=2)
    con = connector(world, clock)
    meter = next(iter(world.meters))

    async def main() -> tuple[int, int, int]:
        await con.discover()
        first = [p async for p in con.fetch(meter, None)]
        calls = world.calls
        clock.advance(600)  # inside max-age=900: the same request costs nothing
        again = [p async for p in con.fetch(meter, None)]
        cached = world.calls
        clock.advance(600)  # past max-age: asked again
        [p async for p in con.fetch(meter, None)]
        await con.aclose()
        assert first[-1].cursor == again[-1].cursor
        return calls, cached, world.calls

    calls, cached, later = asyncio.run(main())
    assert cached == calls
    assert later == calls + 1
    assert con.cache.hits == 1


def test_trailing_nulls_never_move_the_cursor() -> None:
    clock = VirtualClock(1_700_000_000.0)
    world = CopperWorld.create(clock, meters=1, days=2)
    meter = next(iter(world.meters))
    pages = sync(connector(world, clock))[meter]
    cursor = pages[-1].cursor
    assert cursor is not None
    starts, _ = world.truth(meter)
    assert int(cursor.split(":")[1].rstrip("}")) == int(starts[-1]) + 3600
    clock.advance(900)  # not yet a new complete hour
    more = sync(connector(world, clock), {meter: cursor})[meter]
    assert more == []


def test_token_expiry_mid_sync_costs_one_new_token() -> None:
    clock = VirtualClock(1_700_000_000.0)
    world = CopperWorld.create(clock, meters=150, days=1)
    world.token_ttl = 3600.0  # the sync waits out the hourly budget: the token expires
    sync(connector(world, clock))
    assert world.tokens_issued == 2
    assert world.rejected == 0


def test_wrong_secret_is_one_clear_error() -> None:
    clock = VirtualClock(1_700_000_000.0)
    world = CopperWorld.create(clock, meters=1, days=1)
    with pytest.raises(AuthError, match="Copper refused the client credentials") as info:
        sync(connector(world, clock, secret="nope-not-it"))
    assert "nope-not-it" not in str(info.value)
    assert world.calls == 0


def test_readings_are_sorted_client_side_and_bulk_follows_next_links() -> None:
    clock = VirtualClock(1_700_000_000.0)
    world = CopperWorld.create(clock, meters=5, days=1)
    con = connector(world, clock)
    meter = next(iter(world.meters))

    async def main() -> tuple[pa.Table, list[object]]:
        table = await con.readings(meter, clock.now() - 6 * 3600, clock.now())
        from meterhub.sources import copper

        copper.PAGE = 2  # small pages: bulk takes three next links
        try:
            bulk = await con.bulk()
        finally:
            copper.PAGE = 1000
        await con.aclose()
        return table, bulk

    table, bulk = asyncio.run(main())
    t = seconds(table)
    assert len(t) > 10
    assert (np.diff(t) > 0).all()
    assert sorted(r["meter_id"] for r in bulk) == sorted(world.meters)  # type: ignore[index]
