"""The T&D WebStorage connector against its emulator, in-process, on virtual time."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pyarrow as pa
import pytest

import meterhub
from meterhub.clock import VirtualClock
from meterhub.emulators.kit import Fault
from meterhub.emulators.tandd import API_KEY, LOGIN_ID, LOGIN_PASS, TanddWorld, create_app
from meterhub.errors import AuthError, MalformedResponseError
from meterhub.http import RetryPolicy
from meterhub.sources.base import Page
from meterhub.sources.tandd import NUMBER, TanddConfig, TanddConnector


def connector(world: TanddWorld, clock: VirtualClock, password: str = LOGIN_PASS
              ) -> TanddConnector:
    config = TanddConfig(name="lab", api_key=API_KEY, login_id=LOGIN_ID,
                         login_pass=password)
    return TanddConnector(config, clock=clock,
                          transport=httpx.ASGITransport(app=create_app(world)))


def pages_of(con: TanddConnector, serials: list[str]) -> dict[str, list[Page]]:
    async def one(serial: str) -> list[Page]:
        return [page async for page in con.fetch(serial, None)]

    async def main() -> list[list[Page]]:
        try:
            return await asyncio.gather(*(one(s) for s in serials))
        finally:
            await con.aclose()

    return dict(zip(serials, asyncio.run(main()), strict=True))


def test_a_year_of_10_minute_data_arrives_complete_in_one_call_per_logger() -> None:
    clock = VirtualClock()
    world = TanddWorld.create(clock, devices=3, days=365)
    con = connector(world, clock)
    pages = pages_of(con, sorted(world.loggers))
    for serial, got in pages.items():
        table = pa.concat_tables(p.readings for p in got)
        t, ids = world.records(serial)
        assert len(t) >= 365 * 144 - 6  # one logger lost six readings in transit
        temp = table.filter(pa.compute.equal(table.column("channel"), "temperature"))
        np.testing.assert_array_equal(
            temp.column("ts").cast(pa.int64()).to_numpy() // 1_000_000, t)
        np.testing.assert_array_equal(temp.column("seq").to_numpy(), ids)
        assert got[-1].cursor is not None
    assert con.http.calls == world.calls == 3  # 52,560 readings fit one call each
    assert world.rejected == 0


def test_capped_windows_are_paged_backward_and_the_budget_is_kept() -> None:
    clock = VirtualClock()
    world = TanddWorld.create(clock, devices=1, days=1300)  # 187,200 readings
    world.loggers["52120001"].capacity = 200_000
    started = clock.now()
    con = connector(world, clock)
    got = pages_of(con, ["52120001"])["52120001"]
    assert [p.records for p in got] == [NUMBER, NUMBER, 187_201 - 2 * NUMBER]
    assert [p.cursor is None for p in got] == [True, True, False]  # moves only at the end
    table = pa.concat_tables(p.readings for p in got)
    temp = table.filter(pa.compute.equal(table.column("channel"), "temperature"))
    t, _ = world.records("52120001")
    np.testing.assert_array_equal(  # everything logged up to the moment the sync began
        np.sort(temp.column("ts").cast(pa.int64()).to_numpy() // 1_000_000), t[t <= started])
    assert world.rejected == 0  # 3 x 65,535 > 160,000 an hour: the third call waited
    assert clock.now() - started == pytest.approx(3600, abs=1)


def test_data_id_gap_is_reported_and_error_tokens_are_flagged() -> None:
    clock = VirtualClock()
    world = TanddWorld.create(clock, devices=2, days=30)
    con = connector(world, clock)
    pages = pages_of(con, sorted(world.loggers))
    with meterhub.open("duckdb:///:memory:") as hub:
        for got in pages.values():
            for page in got:
                hub.write(page.readings)
        gaps = hub.gaps(device="52120002", channel="temperature")
        seq = gaps[gaps["kind"] == "seq"]
        assert seq["missing"].tolist() == [6]
        frame = hub.readings(device="52120001", channel="temperature")
        errors = frame[frame["quality"] == "sensor_error"]
        assert len(errors) > 0
        assert errors["value"].isna().all()
        assert set(errors["error_code"]) == {"Sensor Error"}


def test_storms_of_429_5xx_and_a_truncated_body_lose_nothing() -> None:
    clock = VirtualClock()
    world = TanddWorld.create(clock, devices=1, days=10)
    world.faults.rate_limited = 3
    world.faults.server_errors = 3
    world.faults.truncated = 1
    started = clock.now()
    con = connector(world, clock)
    got = pages_of(con, ["52120001"])["52120001"]
    table = pa.concat_tables(p.readings for p in got)
    t, _ = world.records("52120001")
    temp = table.filter(pa.compute.equal(table.column("channel"), "temperature"))
    np.testing.assert_array_equal(  # everything up to the start of the sync
        temp.column("ts").cast(pa.int64()).to_numpy() // 1_000_000, t[t <= started])
    assert con.http.retries >= 7


def test_wrong_password_is_one_clear_error_without_retry() -> None:
    clock = VirtualClock()
    world = TanddWorld.create(clock, devices=1, days=1)
    con = connector(world, clock, password="hunter22")
    with pytest.raises(AuthError, match="T&D WebStorage refused the credentials") as info:
        pages_of(con, ["52120001"])
    assert "hunter22" not in str(info.value)
    assert world.calls == 1


def test_discovery_and_incremental_cursor() -> None:
    clock = VirtualClock()
    world = TanddWorld.create(clock, devices=3, days=2)
    con = connector(world, clock)

    async def main() -> tuple[int, int, int]:
        found = await con.discover()
        first = [p async for p in con.fetch("52120003", None)]
        clock.advance(3600)
        more = [p async for p in con.fetch("52120003", first[-1].cursor)]
        await con.aclose()
        return len(found.devices), len(found.channels), sum(p.records for p in more)

    devices, channels, new = asyncio.run(main())
    assert (devices, channels) == (3, 5)  # two TR-72wf with two channels, one TR-71wf
    assert new == 6  # one hour of 10-minute readings, nothing twice


def test_duplicated_answers_are_not_taken_for_progress() -> None:
    clock = VirtualClock()
    world = TanddWorld.create(clock, devices=1, days=500)  # 72,000 readings: two calls
    con = connector(world, clock)

    async def main() -> list[Page]:
        pages = []
        async for page in con.fetch("52120001", None):
            pages.append(page)
            world.faults.duplicated = 1  # the next answer repeats this one
        await con.aclose()
        return pages

    started = clock.now()
    pages = asyncio.run(main())
    table = pa.concat_tables(p.readings for p in pages)
    temp = table.filter(pa.compute.equal(table.column("channel"), "temperature"))
    t, _ = world.records("52120001")
    got = np.unique(temp.column("ts").cast(pa.int64()).to_numpy() // 1_000_000)
    np.testing.assert_array_equal(got, t[t <= started])
    assert world.calls == 3  # one of them answered with the stale page and was asked again
    assert con.http.retries == 1  # by the client, with backoff, as any malformed body


def test_an_answer_stale_until_cleared_is_asked_as_often_as_any_malformed_body() -> None:
    clock = VirtualClock()
    world = TanddWorld.create(clock, devices=1, days=2)
    con = connector(world, clock)

    async def main() -> int:
        try:
            cursor = None
            async for page in con.fetch("52120001", None):
                cursor = page.cursor
            clock.advance(3600)  # an hour of new readings, but every answer is the last one
            world.faults.schedule(Fault(duplicate=True, times=None, path="/devices/data"))
            before = con.http.calls
            with pytest.raises(MalformedResponseError,
                               match=r"52120001 holds readings outside the requested window "
                                     r"\(a stale answer\?\)"):
                async for _ in con.fetch("52120001", cursor):
                    pass
            return con.http.calls - before
        finally:
            await con.aclose()

    assert asyncio.run(main()) == RetryPolicy().attempts  # not three quick tries of its own
    assert con.http.retries == RetryPolicy().attempts - 1


def test_another_client_spending_the_account_budget_is_obeyed() -> None:
    clock = VirtualClock()
    world = TanddWorld.create(clock, devices=2, days=1)
    key = "73pfobnche8d1p6laqnemsbnpkght3bjv047oid6p2sg3:tbzz9999"
    for _ in range(19):  # someone else used 19 of the 20 calls of this minute
        world.limits["data"].accept(key)
    con = connector(world, clock)
    pages_of(con, ["52120001", "52120002"])
    assert world.rejected == 0  # the second call waited for the window instead of a 429


def test_a_readings_budget_spent_by_another_client_is_waited_out() -> None:
    clock = VirtualClock()
    world = TanddWorld.create(clock, devices=1, days=200)  # 28,800 readings
    world.budget["52120001"] = [(clock.now(), 150_000)]  # someone else pulled 150,000
    started = clock.now()
    con = connector(world, clock)
    got = pages_of(con, ["52120001"])["52120001"]
    assert sum(p.records for p in got) >= 28_800
    assert clock.now() - started >= 3600  # the budget freed only after the hour
    assert con.http.calls <= 12
