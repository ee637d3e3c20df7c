"""The ZENTRA connector against the ZENTRA emulator, in-process, on virtual time."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import numpy as np
import pyarrow as pa
import pytest

import meterhub
from meterhub.clock import VirtualClock
from meterhub.emulators.kit import Fault
from meterhub.emulators.zentra import ZentraWorld, create_app
from meterhub.errors import AuthError, MalformedResponseError
from meterhub.http import RetryPolicy
from meterhub.sources.base import Page, connector_class
from meterhub.sources.zentra import PAGE_SIZE, ZentraConfig, ZentraConnector

T = TypeVar("T")


def run(make: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(make())  # type: ignore[arg-type]


def connector(world: ZentraWorld, clock: VirtualClock, token: str = "emulator-token",
              start: str | None = None) -> ZentraConnector:
    config = ZentraConfig(name="tahmo", base_url="https://tahmo.zentracloud.com",
                          token=token, devices=sorted(world.devices), start=start)
    return ZentraConnector(config, clock=clock,
                           transport=httpx.ASGITransport(app=create_app(world)))


async def fetch_all(con: ZentraConnector, devices: list[str]) -> dict[str, pa.Table]:
    async def one(sn: str) -> pa.Table:
        pages = [page.readings async for page in con.fetch(sn, None)]
        return pa.concat_tables(pages)

    tables = await asyncio.gather(*(one(sn) for sn in devices))
    await con.aclose()
    return dict(zip(devices, tables, strict=True))


def test_a_year_of_5_minute_data_arrives_complete_in_the_fewest_calls() -> None:
    clock = VirtualClock()
    world = ZentraWorld.create(clock, devices=2, days=365)
    started = clock.now()
    con = connector(world, clock)
    tables = run(lambda: fetch_all(con, sorted(world.devices)))
    for sn, table in tables.items():
        t, mrid = world.records(sn)
        got_mrid = np.unique(table.column("seq").to_numpy())
        last = int(got_mrid[-1])
        assert last >= 365 * 288  # a full year of 5-minute records
        expected = mrid[mrid <= last]
        np.testing.assert_array_equal(got_mrid, expected)  # complete, in order
        ts = table.column("ts").cast(pa.int64()).to_numpy() // 1_000_000
        air = table.filter(pa.compute.equal(table.column("channel"), "air_temperature"))
        np.testing.assert_array_equal(
            air.column("ts").cast(pa.int64()).to_numpy() // 1_000_000, t[:last])
        keys = set(zip(table.column("channel").to_pylist(), ts.tolist(), strict=True))
        assert len(keys) == table.num_rows  # no duplicates
        calls_needed = math.ceil(last / PAGE_SIZE)
        assert calls_needed == 53
    assert con.http.calls == world.calls == 2 * 53
    assert world.rejected == 0
    # 53 calls per device at 1 per minute: the last one at minute 52, both devices at once
    assert clock.now() - started == pytest.approx(52 * 60, abs=1)


def test_sensor_errors_are_flagged_never_values_and_units_normalised() -> None:
    clock = VirtualClock()
    world = ZentraWorld.create(clock, devices=1, days=30, imperial=True)
    con = connector(world, clock)
    table = run(lambda: fetch_all(con, sorted(world.devices)))["z6-10001"]
    frame = table.to_pandas()
    errors = frame[frame["quality"] == "sensor_error"]
    assert len(errors) > 0
    assert errors["value"].isna().all()
    assert set(errors["error_code"]) == {"Sensor Error"}
    assert set(errors["channel"]) == {"air_temperature"}
    units = dict(zip(frame["channel"], frame["unit"], strict=False))
    assert units["air_temperature"] == "°C"  # the account prefers °F; stored in °C
    assert units["wind_speed"] == "m/s"
    assert units["atmospheric_pressure"] == "kPa"
    t, _ = world.records("z6-10001")
    metric = ZentraWorld.create(VirtualClock(clock.now()), devices=1, days=30)
    expected = metric.values(metric.devices["z6-10001"], t[:10])["Air Temperature"][0]
    got = frame[frame["channel"] == "air_temperature"]["value"].to_numpy()[:10]
    np.testing.assert_allclose(got, expected, atol=0.01)
    # measurement sets differ between devices: the first has no battery channel
    assert "solar_radiation" in set(frame["channel"])
    assert "battery" not in set(frame["channel"])


def test_storms_of_429_5xx_and_a_truncated_body_lose_nothing() -> None:
    clock = VirtualClock()
    world = ZentraWorld.create(clock, devices=1, days=20)
    world.faults.rate_limited = 4
    world.faults.server_errors = 3
    world.faults.truncated = 1
    con = connector(world, clock)
    table = run(lambda: fetch_all(con, sorted(world.devices)))["z6-10001"]
    _, mrid = world.records("z6-10001")
    got = np.unique(table.column("seq").to_numpy())
    np.testing.assert_array_equal(got, mrid[: len(got)])
    assert len(got) >= 20 * 288
    assert con.http.retries >= 8
    assert world.faults.rate_limited == world.faults.server_errors == world.faults.truncated == 0


def test_a_wrong_token_is_one_clear_error_and_no_retry() -> None:
    clock = VirtualClock()
    world = ZentraWorld.create(clock, devices=1, days=1)
    con = connector(world, clock, token="wrong")

    async def go() -> None:
        async for _ in con.fetch("z6-10001", None):
            pass

    with pytest.raises(AuthError, match="ZENTRA refused the credentials") as info:
        run(go)
    assert "wrong" not in str(info.value)
    assert world.calls == 1


def test_cursor_resumes_and_start_date_is_station_local() -> None:
    clock = VirtualClock()
    world = ZentraWorld.create(clock, devices=1, days=10)
    device = world.devices["z6-10001"]
    # the configured start is UTC, like every source's
    start = str(np.datetime64(device.first, "s") + np.timedelta64(2, "D"))
    con = connector(world, clock, start=start)

    async def go() -> tuple[int, int, list[int]]:
        pages = [p async for p in con.fetch("z6-10001", None)]
        cursor = int(pages[-1].cursor)
        clock.advance(3600)  # an hour later: 12 new records
        more = [p async for p in con.fetch("z6-10001", str(cursor))]
        seqs = sorted({s for p in more for s in p.readings.column("seq").to_pylist()})
        return int(pages[0].readings.column("seq")[0].as_py()), cursor, seqs

    first_mrid, cursor, resumed = run(go)
    assert first_mrid == 2 * 288 + 1  # two days after the first record
    _, mrid = world.records("z6-10001")
    assert resumed == list(range(cursor + 1, int(mrid[-1]) + 1))
    assert len(resumed) >= 12


def test_pages_write_idempotently_into_the_store(tmp_path: object) -> None:
    clock = VirtualClock()
    world = ZentraWorld.create(clock, devices=1, days=3)
    con = connector(world, clock)
    table = run(lambda: fetch_all(con, sorted(world.devices)))["z6-10001"]
    with meterhub.open("duckdb:///:memory:") as hub:
        hub.write(table)
        hub.write(table)
        assert hub.count() == table.num_rows
        kinds = dict(zip(hub.channels()["channel"], hub.channels()["kind"], strict=True))
        assert kinds["precipitation"] == "delta"
        assert kinds["air_temperature"] == "instant"


def test_registry_knows_zentra() -> None:
    assert connector_class("zentra") is ZentraConnector
    with pytest.raises(KeyError, match="unknown source type 'nope'"):
        connector_class("nope")


def test_a_duplicated_page_is_asked_again_not_taken_for_progress() -> None:
    clock = VirtualClock()
    world = ZentraWorld.create(clock, devices=1, days=21)  # 6,048 records: 4 pages

    con = connector(world, clock)

    async def main() -> list[int]:
        seqs: list[int] = []
        async for page in con.fetch("z6-10001", None):
            seqs += page.readings.column("seq").to_pylist()
            world.faults.duplicated = 1
        await con.aclose()
        return seqs

    seqs = sorted(set(run(main)))
    _, mrid = world.records("z6-10001")
    assert seqs == mrid[: len(seqs)].tolist()
    assert len(seqs) >= 21 * 288
    assert con.http.retries == 3  # each stale page asked again by the client, with backoff


def test_a_page_stale_until_cleared_is_asked_as_often_as_any_malformed_body() -> None:
    clock = VirtualClock()
    world = ZentraWorld.create(clock, devices=1, days=2)
    con = connector(world, clock)

    async def main() -> int:
        try:
            cursor = None
            async for page in con.fetch("z6-10001", None):
                cursor = page.cursor
            clock.advance(3600)  # an hour of new records, but every answer is the last one
            world.faults.schedule(Fault(duplicate=True, times=None, path="/get_readings/"))
            before = con.http.calls
            with pytest.raises(MalformedResponseError,
                               match=r"z6-10001 holds records before the requested mrid "
                                     r"\(a stale answer\?\)"):
                async for _ in con.fetch("z6-10001", cursor):
                    pass
            return con.http.calls - before
        finally:
            await con.aclose()

    retries = con.http.retries
    assert run(main) == RetryPolicy().attempts  # not three quick tries of its own
    assert con.http.retries - retries == RetryPolicy().attempts - 1


class Recorder(httpx.AsyncBaseTransport):
    """The emulator's transport, keeping the query of every request sent through it."""

    def __init__(self, world: ZentraWorld) -> None:
        self.inner = httpx.ASGITransport(app=create_app(world))
        self.queries: list[dict[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.queries.append(dict(request.url.params))
        return await self.inner.handle_async_request(request)


def test_a_configured_utc_start_is_sent_as_station_local_date_and_time() -> None:
    # stations in Nairobi (+3 h), Accra (0) and Lagos (+1 h), no daylight saving time
    clock = VirtualClock(dt.datetime(2025, 12, 20, tzinfo=dt.UTC).timestamp())
    world = ZentraWorld.create(clock, devices=3, days=10)
    assert [d.tz_offset for d in world.devices.values()] == [10800, 0, 3600]
    expected = {"z6-10001": "2025-12-15 03:00:00", "z6-10002": "2025-12-15 00:00:00",
                "z6-10003": "2025-12-15 01:00:00"}
    begin = dt.datetime(2025, 12, 15, tzinfo=dt.UTC).timestamp()
    for sn, local in expected.items():
        recorder = Recorder(world)
        config = ZentraConfig(name="tahmo", base_url="https://tahmo.zentracloud.com",
                              token=world.token, devices=[sn], start="2025-12-15")
        con = ZentraConnector(config, clock=clock, transport=recorder)

        async def first(con: ZentraConnector = con, sn: str = sn) -> Page:
            async for page in con.fetch(sn, None):
                return page
            raise AssertionError("no page")

        page = run(first)
        dated = [q for q in recorder.queries if "start_date" in q]
        assert dated[0]["start_date"] == local
        assert "start_mrid" not in dated[0]
        # the emulator reads it in station time: the first record is the UTC start's
        assert page.readings.column("ts")[0].as_py().timestamp() == begin


def test_a_start_after_the_newest_record_fetches_nothing() -> None:
    clock = VirtualClock(dt.datetime(2025, 12, 20, tzinfo=dt.UTC).timestamp())
    world = ZentraWorld.create(clock, devices=1, days=3)
    con = connector(world, clock, start="2025-12-21")

    async def go() -> list[Page]:
        return [p async for p in con.fetch("z6-10001", None)]

    assert run(go) == []  # not the whole history from mrid 1
    assert world.calls == 1  # the newest record only
