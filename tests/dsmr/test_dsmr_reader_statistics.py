"""The `dsmr_reader` source's hour and day statistics, against meterhub's own
DSMR-reader-compatible API on a real loopback server: two local days around the end of DST
in Europe/Amsterdam (25 October 2025, and the 25-hour 26 October) with prices configured.

The remote's answers are read independently through its HTTP API and compared with what the
source stored; one day and one hour are also worked out by hand from the pushed readings.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

import meterhub
from meterhub.api import create_app
from meterhub.clock import RealClock, VirtualClock
from meterhub.config import parse
from meterhub.errors import MalformedResponseError
from meterhub.hub import Hub
from meterhub.sources import dsmr_reader
from meterhub.sources.dsmr_reader import DAYS, HOURS, local_filter, parse_statistics
from meterhub.sync import sync_source
from tests.api.conftest import Api
from tests.api.live import served

TZ = "Europe/Amsterdam"
T0 = pd.Timestamp("2025-10-24T22:00:00Z")  # local midnight that starts 25 October (CEST)
STEP = pd.Timedelta(minutes=20)
PRICES = {"start": "2025-01-01", "end": "2025-12-31", "description": "test contract",
          "electricity_delivered_1_price": "0.20", "electricity_delivered_2_price": "0.25",
          "electricity_returned_1_price": "0.08", "electricity_returned_2_price": "0.09",
          "gas_price": "1.10", "fixed_daily_cost": "0.30"}
ENERGY = ["electricity1", "electricity2", "electricity1_returned", "electricity2_returned"]
COSTS = ["electricity1_cost", "electricity2_cost", "gas_cost", "fixed_cost", "total_cost"]


def thousandths(value: int) -> str:
    return f"{value // 1000}.{value % 1000:03d}"


def reading(n: int) -> dict[str, str]:
    """The n-th reading after T0, 20 minutes apart: register 1 +0.010 kWh, register 2
    +0.020, returned 1 +0.001, returned 2 +0.005; gas +0.100 m³ every hour, stamped on the
    hour."""
    at = T0 + n * STEP
    hours = n // 3
    return {"timestamp": at.isoformat().replace("+00:00", "Z"),
            "electricity_currently_delivered": "0.600",
            "electricity_currently_returned": "0.000",
            "electricity_delivered_1": thousandths(1_000_000 + 10 * n),
            "electricity_delivered_2": thousandths(2_000_000 + 20 * n),
            "electricity_returned_1": thousandths(100_000 + n),
            "electricity_returned_2": thousandths(50_000 + 5 * n),
            "extra_device_timestamp": (T0 + pd.Timedelta(hours=hours)).isoformat(),
            "extra_device_delivered": thousandths(500_000 + 100 * hours)}


@dataclass
class Remote:
    """meterhub's DSMR-reader-compatible API, served on loopback with prices configured."""

    api: Api
    base: str

    def push(self, numbers: range) -> None:
        """POST the readings, 25 at a time (the server commits concurrent pushes together)."""

        async def post_all() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=self.base, headers={
                    "X-AUTHKEY": self.api.keys["write"]}) as client:
                answers: list[httpx.Response] = []
                for first in range(numbers.start, numbers.stop, 25):
                    answers += await asyncio.gather(*(
                        client.post("/api/v2/datalogger/dsmrreading", json=reading(n))
                        for n in range(first, min(first + 25, numbers.stop))))
                return answers

        answers = asyncio.run(post_all())
        assert [a.status_code for a in answers] == [201] * len(numbers)

    def get(self, path: str) -> list[dict[str, Any]]:
        """Every result of a paginated v2 path, following ``next``."""
        out: list[dict[str, Any]] = []
        url: str | None = f"{self.base}{path}"
        with httpx.Client(headers={"X-AUTHKEY": self.api.keys["read"]}) as client:
            while url is not None:
                body = client.get(url).raise_for_status().json()
                out += body["results"]
                url = body["next"]
        return out


@pytest.fixture
def remote(api: Api) -> Iterator[Remote]:
    settings = parse({"dsmr": {"prices": [PRICES]}})
    with served(create_app(api.hub, settings=settings, rate_limit="100000/minute")) as base:
        yield Remote(api, base)


# 25 Oct 00:00 to 27 Oct 00:20 local: 27 Oct 00:00 brings that day's first gas and is
# compacted once 00:20 is in, so DSMR-reader makes the 26th's statistics
FIRST_DAYS = range(0, 49 * 3 + 2)
NEXT_DAY = range(49 * 3 + 2, 73 * 3 + 2)  # the rest of 27 Oct, and 28 Oct to 00:20


def config(remote: Remote, **extra: Any) -> Any:
    return parse({"source": [{"name": "home", "type": "dsmr_reader", "base_url": remote.base,
                              "api_key": remote.api.keys["read"], "device": "meter",
                              **extra}]}, environ={}).sources[0]


def expected_hours(remote: Remote) -> pd.DataFrame:
    rows = [{"channel": name, "ts": pd.Timestamp(item["hour_start"]).tz_convert("UTC"),
             "value": float(item[name])}
            for item in remote.get("/api/v2/statistics/hour?limit=7")
            for name in [*ENERGY, "gas"]]
    return tidy(pd.DataFrame(rows))


def expected_days(remote: Remote) -> pd.DataFrame:
    rows = []
    for item in remote.get("/api/v2/statistics/day?limit=7"):
        midnight = pd.Timestamp(item["day"]).tz_localize(TZ).tz_convert("UTC")
        rows += [{"channel": name, "ts": midnight, "value": float(item[name])}
                 for name in [*ENERGY, "gas", *COSTS]]
        positions = pd.Timestamp(item["electricity_reading_timestamp"]).tz_convert("UTC")
        rows += [{"channel": f"{name}_reading", "ts": positions,
                  "value": float(item[f"{name}_reading"])} for name in ENERGY]
        rows.append({"channel": "gas_reading",
                     "ts": pd.Timestamp(item["gas_reading_timestamp"]).tz_convert("UTC"),
                     "value": float(item["gas_reading"])})
        # meterhub keeps no weather: DSMR-reader's "no data" answer, which is not stored
        assert {item[t] for t in ("lowest_temperature", "highest_temperature",
                                  "average_temperature")} == {"0.0"}
    return tidy(pd.DataFrame(rows))


def stored(hub: Hub, device: str) -> pd.DataFrame:
    return tidy(hub.readings(device=device)[["channel", "ts", "value"]])


def tidy(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.assign(ts=pd.to_datetime(frame["ts"], utc=True).dt.as_unit("us"))
    return frame.sort_values(["channel", "ts"]).reset_index(drop=True)


def value(frame: pd.DataFrame, channel: str, ts: str) -> float:
    hit = frame[(frame["channel"] == channel) & (frame["ts"] == pd.Timestamp(ts))]
    assert len(hit) == 1, (channel, ts)
    return float(hit["value"].iloc[0])


def test_hour_and_day_statistics_are_pulled_once_then_only_news(remote: Remote,
                                                               tmp_path: Path) -> None:
    remote.push(FIRST_DAYS)
    source = config(remote)
    with meterhub.open(f"duckdb:///{tmp_path / 'local.duckdb'}") as local:
        first = asyncio.run(sync_source(local, source, clock=RealClock()))
        assert (first.error, first.failed, first.done) == (None, 0, 3), first
        hours, days = stored(local, "meter-hourly"), stored(local, "meter-daily")
        pd.testing.assert_frame_equal(hours, expected_hours(remote))
        pd.testing.assert_frame_equal(days, expected_days(remote))
        # 27 Oct is not made yet: its reading of 00:20 has no later one, so it is not
        # compacted
        assert len(hours) == 5 * (24 + 25)

        # 26 October by hand: 25 hours of readings, 75 of them, 74 steps
        day = "2025-10-25T22:00:00Z"  # its local midnight (CEST)
        assert [value(days, name, day) for name in [*ENERGY, "gas"]] == [
            0.74, 1.48, 0.074, 0.37, 2.5]  # gas: 25 hours of 0.100 m³
        # 0.74 x 0.20 - 0.074 x 0.08 = 0.14208; 1.48 x 0.25 - 0.37 x 0.09 = 0.3367;
        # gas cost from the day's first and last gas: 2.4 x 1.10; total with the fixed 0.30
        assert [value(days, name, day) for name in COSTS] == [0.14, 0.34, 2.64, 0.3, 3.42]
        assert value(days, "electricity1_reading", day) == 1000.72  # reading 72
        assert value(days, "gas_reading", day) == 502.4
        # the second 02:00 of the night (CET): three readings, two steps, one gas rise
        assert value(hours, "electricity2", "2025-10-26T01:00:00Z") == 0.04
        assert value(hours, "gas", "2025-10-26T01:00:00Z") == 0.1

        channels = local.channels(device=["meter-hourly", "meter-daily"]).set_index(
            ["device", "channel"])
        assert channels.loc[("meter-hourly", "gas"), ["unit", "kind"]].tolist() == [
            "m³", "delta"]
        assert channels.loc[("meter-daily", "electricity1"), ["unit", "kind"]].tolist() == [
            "kWh", "delta"]
        assert channels.loc[("meter-daily", "total_cost"), ["quantity", "unit", "kind"]
                            ].tolist() == ["cost", "currency", "delta"]
        assert channels.loc[("meter-daily", "gas_reading"), "kind"] == "counter"
        assert "average_temperature" not in set(days["channel"])
        # each stream has its own cursor: its newest period's start
        assert local.store.get_cursor("home", "meter-hourly") == "2025-10-26T22:00:00+00:00"
        assert local.store.get_cursor("home", "meter-daily") == "2025-10-25T22:00:00+00:00"
        assert local.store.get_cursor("home", "meter") == "2025-10-26T23:20:00+00:00"

        again = asyncio.run(sync_source(local, source, clock=RealClock()))
        assert (again.error, again.readings) == (None, 0)
        pd.testing.assert_frame_equal(stored(local, "meter-hourly"), hours)
        pd.testing.assert_frame_equal(stored(local, "meter-daily"), days)

        remote.push(NEXT_DAY)
        news = asyncio.run(sync_source(local, source, clock=RealClock()))
        assert news.error is None, news
        later_hours, later_days = expected_hours(remote), expected_days(remote)
        pd.testing.assert_frame_equal(stored(local, "meter-hourly"), later_hours)
        pd.testing.assert_frame_equal(stored(local, "meter-daily"), later_days)
        # the boundary day was read again and now has all its readings: 72, 71 steps
        assert value(later_days, "electricity1", "2025-10-26T23:00:00Z") == 0.71
        assert len(later_hours) == 5 * (24 + 25 + 24)  # 28 Oct waits as 27 Oct did
        # the newest day is 27 Oct (28 Oct has no row yet): its local midnight
        assert local.store.get_cursor("home", "meter-daily") == "2025-10-26T23:00:00+00:00"


class Stop(Exception):
    """Stands for a kill right after a page was committed."""


def test_an_interrupted_pull_resumes_without_loss_or_duplicates(
        remote: Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote.push(FIRST_DAYS)
    monkeypatch.setattr(dsmr_reader, "PAGE_SIZE", 10)
    source = config(remote, devices=["meter-hourly"])

    def stop(line: str) -> None:
        raise Stop(line)

    with meterhub.open(f"duckdb:///{tmp_path / 'local.duckdb'}") as local:
        with pytest.raises(ExceptionGroup) as info:
            asyncio.run(sync_source(local, source, clock=RealClock(), trace=stop))
        assert info.group_contains(Stop)
        # the first page is stored with the cursor that covers it, and nothing else
        assert local.store.get_cursor("home", "meter-hourly") == "2025-10-25T07:00:00+00:00"
        assert local.count(device="meter-hourly") == 5 * 10

        resumed = asyncio.run(sync_source(local, source, clock=RealClock()))
        assert (resumed.error, resumed.failed) == (None, 0), resumed
        pd.testing.assert_frame_equal(stored(local, "meter-hourly"), expected_hours(remote))
        # it went on from an hour before the cursor (the lookback), in pages of 10 hours,
        # each from the previous page's last hour (also in the repeated 02:00 of 26
        # October); the hours stored before (the window, each boundary) do not count
        assert resumed.readings == local.count(device="meter-hourly") - 5 * 10 > 0
        assert local.store.get_cursor("home", "meter-hourly") == "2025-10-26T22:00:00+00:00"


class Recording(httpx.AsyncBaseTransport):
    """Notes the virtual time and path of every request on its way to the app."""

    def __init__(self, inner: httpx.AsyncBaseTransport, clock: VirtualClock) -> None:
        self.inner, self.clock = inner, clock
        self.calls: list[tuple[float, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((self.clock.now(), request.url.path))
        return await self.inner.handle_async_request(request)


def test_the_three_streams_share_one_limit_of_two_calls_a_second(
        remote: Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote.push(FIRST_DAYS)
    monkeypatch.setattr(dsmr_reader, "PAGE_SIZE", 10)  # many calls per stream
    clock = VirtualClock()
    transport = Recording(httpx.ASGITransport(app=create_app(
        remote.api.hub, settings=parse({"dsmr": {"prices": [PRICES]}}),
        rate_limit="100000/minute")), clock)
    with meterhub.open(f"duckdb:///{tmp_path / 'local.duckdb'}") as local:
        result = asyncio.run(sync_source(local, config(remote), clock=clock,
                                         transport=transport))
        assert result.error is None, result
        pd.testing.assert_frame_equal(stored(local, "meter-hourly"), expected_hours(remote))
    times = [at for at, _ in transport.calls]
    paths = {path for _, path in transport.calls}
    assert paths == {"/api/v2/datalogger/dsmrreading", HOURS.path, DAYS.path}
    assert len(times) > 20
    # any three calls, of whichever streams, span a second or more
    assert min(b - a for a, b in zip(times, times[2:], strict=False)) >= 1.0


def test_readings_are_pulled_through_the_repeated_hour_in_pages_smaller_than_it(
        remote: Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three readings in each 02:00 hour of 26 October, pages of two: a cursor in the
    second 02:00 hour must not send the next page back to the first one."""
    remote.push(range(72, 90))  # 26 October 00:00 to 05:40 local, 20 minutes apart
    monkeypatch.setattr(dsmr_reader, "PAGE_SIZE", 2)
    source = config(remote, devices=["meter"], statistics=False)
    with meterhub.open(f"duckdb:///{tmp_path / 'local.duckdb'}") as local:
        result = asyncio.run(sync_source(local, source, clock=RealClock()))
        assert (result.error, result.failed) == (None, 0), result
        columns, key = ["channel", "ts", "value"], ["channel", "ts"]
        mine = local.readings(device="meter")[columns].sort_values(key)
        theirs = remote.api.hub.readings(device="p1")[columns].sort_values(key)
        assert len(mine) == len(theirs) > 0
        pd.testing.assert_frame_equal(mine.reset_index(drop=True),
                                      theirs.reset_index(drop=True))


def test_a_time_filter_never_names_an_ambiguous_local_time() -> None:
    def at(text: str) -> dt.datetime:
        return dt.datetime.fromisoformat(text)

    assert local_filter(at("2025-10-25T22:00:00+00:00"), TZ) == "2025-10-26 00:00:00"
    # 02:00 CEST and 02:00 CET both read "02:00": then the offset says which
    assert local_filter(at("2025-10-26T00:00:00+00:00"), TZ) == "2025-10-26 02:00:00+02:00"
    assert local_filter(at("2025-10-26T01:30:00+00:00"), TZ) == "2025-10-26 02:30:00+01:00"
    assert local_filter(at("2025-10-26T02:00:00+00:00"), TZ) == "2025-10-26 03:00:00"
    assert local_filter(at("2025-03-30T01:00:00+00:00"), TZ) == "2025-03-30 03:00:00"


DAY = {"id": 1, "day": "2026-11-20", "electricity1": "5.734", "electricity2": "2.293",
       "electricity1_returned": "0.000", "electricity2_returned": "0.000",
       "electricity1_cost": "0.00", "electricity2_cost": "0.00", "gas": "0.800",
       "gas_cost": "0.00", "lowest_temperature": "-1.5", "highest_temperature": "4.0",
       "average_temperature": "1.2", "fixed_cost": "0.00", "total_cost": "0.00",
       "electricity_reading_timestamp": "2026-11-20T00:00:00+01:00",
       "electricity1_reading": "4.426", "electricity2_reading": "2.399",
       "electricity1_returned_reading": "2.444", "electricity2_returned_reading": "0.000",
       "gas_reading_timestamp": None, "gas_reading": None}  # DSMR-READER.md's, with weather


def parse_day(item: dict[str, Any]) -> pd.DataFrame:
    table, starts = parse_statistics({"results": [item]}, DAYS, source="home",
                                     device="meter-daily", tz=TZ)
    assert starts == [dt.datetime(2026, 11, 19, 23, tzinfo=dt.UTC)]
    return table.to_pandas().set_index("channel")


def test_a_day_with_weather_keeps_its_temperatures_and_skips_what_is_null() -> None:
    frame = parse_day(DAY)
    assert frame.loc["lowest_temperature", ["value", "unit", "kind"]].tolist() == [
        -1.5, "°C", "instant"]
    assert frame.loc["electricity1", "value"] == 5.734
    assert "gas_reading" not in frame.index  # null: absent, not zero
    without_weather = parse_day({**DAY, "lowest_temperature": "0.0",
                                 "highest_temperature": "0.0", "average_temperature": "0.0"})
    assert not {"lowest_temperature", "average_temperature"} & set(without_weather.index)
    older = {k: v for k, v in DAY.items() if k not in ("fixed_cost", "gas_reading_timestamp",
                                                         "gas_reading")}
    assert "fixed_cost" not in parse_day(older).index  # fields DSMR-reader added later


@pytest.mark.parametrize(("payload", "message"), [
    ([], "statistics/day answer has no results list"),
    ({"results": [{**DAY, "day": "20-11-2026"}]}, "row 1: day '20-11-2026' is not a date"),
    ({"results": [{k: v for k, v in DAY.items() if k != "gas"}]}, "row 1 has no gas"),
    ({"results": [DAY, {**DAY, "total_cost": "n/a"}]}, "row 2: total_cost 'n/a' is not a"),
    ({"results": [{**DAY, "electricity1": "NaN"}]}, "electricity1 'NaN' is not a number"),
    ({"results": [{**DAY, "electricity_reading_timestamp": "2026-11-20T00:00:00"}]},
     "electricity_reading_timestamp '2026-11-20T00:00:00' has no UTC offset"),
])
def test_malformed_day_statistics_name_what_is_wrong(payload: Any, message: str) -> None:
    with pytest.raises(MalformedResponseError, match=message):
        parse_statistics(payload, DAYS, source="home", device="meter-daily", tz=TZ)


def test_malformed_hour_statistics_name_what_is_wrong() -> None:
    hour = {"id": 1, "hour_start": "2026-11-20T00:00:00+01:00", "electricity1": "0.354",
            "electricity2": "0.141", "electricity1_returned": "0.000",
            "electricity2_returned": "0.000", "gas": "0.050"}
    table, starts = parse_statistics({"results": [hour]}, HOURS, source="home",
                                     device="meter-hourly", tz=TZ)
    assert starts == [dt.datetime(2026, 11, 19, 23, tzinfo=dt.UTC)]
    assert table.num_rows == 5
    for broken, message in (({**hour, "hour_start": None}, "row 1 has no hour_start"),
                            ({**hour, "hour_start": "soon"}, "'soon' is not an ISO 8601"),
                            ({**hour, "gas": [1]}, r"gas \[1\] is not a number"),
                            ("nope", "row 1 is not an object")):
        with pytest.raises(MalformedResponseError, match=message):
            parse_statistics({"results": [broken]}, HOURS, source="home",
                             device="meter-hourly", tz=TZ)


def test_statistics_can_be_left_out(remote: Remote, tmp_path: Path) -> None:
    remote.push(range(0, 4))
    with meterhub.open(f"duckdb:///{tmp_path / 'local.duckdb'}") as local:
        result = asyncio.run(sync_source(local, config(remote, statistics=False),
                                         clock=RealClock()))
        assert (result.error, result.devices, result.done) == (None, 1, 1)
        assert set(local.channels()["device"]) == {"meter"}
