"""The `dsmr_reader` source's lookback: readings that reach a remote instance late (older than
the stream's cursor) are pulled by the next sync while they lie within the window it reads
again, and a sync counts only rows it did not hold before. Against meterhub's own
DSMR-reader-compatible API on a real loopback server, fed through its v2 POST."""

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
from meterhub.sources import dsmr_reader
from meterhub.sources.dsmr_reader import DsmrReaderConfig, DsmrReaderConnector, hour_start
from meterhub.sync import SourceProgress, sync_source
from tests.api.conftest import Api
from tests.api.live import served

T0 = pd.Timestamp("2025-03-10T09:00:00Z")  #: the first reading; no DST change near it
STEP = pd.Timedelta(minutes=10)
VALUES = 6  #: values per posted reading: the six fields DSMR-reader requires (no gas)


def reading(at: pd.Timestamp, n: int) -> dict[str, str]:
    """A reading at ``at`` with the required fields only; register 1 at 1000 + n/1000."""
    return {"timestamp": at.isoformat().replace("+00:00", "Z"),
            "electricity_delivered_1": f"{1000 + n / 1000:.3f}",
            "electricity_delivered_2": "2000.000", "electricity_returned_1": "10.000",
            "electricity_returned_2": "20.000", "electricity_currently_delivered": "0.500",
            "electricity_currently_returned": "0.000"}


@dataclass
class Remote:
    api: Api
    base: str

    def post(self, *times: pd.Timestamp) -> None:
        with httpx.Client(base_url=self.base,
                          headers={"X-AUTHKEY": self.api.keys["write"]}) as client:
            for at in times:
                n = int((at - T0) / pd.Timedelta(minutes=1))
                answer = client.post("/api/v2/datalogger/dsmrreading", json=reading(at, n))
                assert answer.status_code == 201, answer.text


@pytest.fixture
def remote(api: Api) -> Iterator[Remote]:
    with served(create_app(api.hub, rate_limit="100000/minute")) as base:
        yield Remote(api, base)


def config(remote: Remote, **extra: Any) -> Any:
    return parse({"source": [{"name": "home", "type": "dsmr_reader", "base_url": remote.base,
                              "api_key": remote.api.keys["read"], "device": "meter",
                              **extra}]}, environ={}).sources[0]


def sync(local: meterhub.Hub, source: Any) -> SourceProgress:
    result = asyncio.run(sync_source(local, source, clock=RealClock()))
    assert (result.error, result.failed) == (None, 0), result
    return result


def times(local: meterhub.Hub) -> list[pd.Timestamp]:
    """The times of the pulled readings (register 1 has one row per reading)."""
    frame = local.readings(device="meter", channel="electricity_delivered_1")
    return sorted(pd.Timestamp(t).tz_convert("UTC") for t in frame["ts"])


FIRST = [T0 + i * STEP for i in range(19)]  #: 09:00 to 12:00, every 10 minutes
LATE = pd.Timestamp("2025-03-10T11:25:00Z")  #: 35 minutes before the cursor (12:00)
TOO_LATE = pd.Timestamp("2025-03-10T10:55:00Z")  #: 65 minutes before it


def test_a_late_reading_within_the_lookback_is_pulled_and_counted_once(
        remote: Remote, tmp_path: Path) -> None:
    remote.post(*FIRST)
    source = config(remote, statistics=False)
    with meterhub.open(f"duckdb:///{tmp_path / 'local.duckdb'}") as local:
        first = sync(local, source)
        assert first.readings == 19 * VALUES
        assert local.store.get_cursor("home", "meter") == "2025-03-10T12:00:00+00:00"
        # nothing new: one call (the last hour again), and nothing counted
        again = sync(local, source)
        assert (again.calls, again.readings) == (1, 0)

        remote.post(LATE, TOO_LATE)  # both older than the cursor
        late = sync(local, source)
        assert (late.calls, late.readings) == (1, VALUES)  # the one within the hour
        assert times(local) == sorted([*FIRST, LATE])  # 10:55 is beyond the lookback
        frame = local.readings(device="meter", channel="electricity_delivered_1")
        row = frame[pd.to_datetime(frame["ts"], utc=True) == LATE]
        assert row["value"].tolist() == [1000.145]  # 145 minutes after 09:00
        assert local.store.get_cursor("home", "meter") == "2025-03-10T12:00:00+00:00"
        assert sync(local, source).readings == 0  # pulled once

        # news after the cursor: the boundary reading (12:00) comes again, uncounted
        remote.post(T0 + 19 * STEP, T0 + 20 * STEP)
        news = sync(local, source)
        assert news.readings == 2 * VALUES
        assert local.store.get_cursor("home", "meter") == "2025-03-10T12:20:00+00:00"
        status = {row["device"]: row for row in local.store.sync_status().to_pylist()}
        assert status["meter"]["readings"] == 2 * VALUES
        assert local.count(device="meter") == 22 * VALUES


@pytest.mark.parametrize(("lookback", "pulled"), [
    (None, [LATE]),  # the default: an hour
    (0, []),  # from the cursor only: late readings are never pulled
    (7200, [TOO_LATE, LATE]),
])
def test_the_lookback_sets_how_late_a_reading_may_come(
        remote: Remote, tmp_path: Path, lookback: int | None,
        pulled: list[pd.Timestamp]) -> None:
    remote.post(*FIRST)
    source = config(remote, statistics=False,
                    **({} if lookback is None else {"lookback": lookback}))
    with meterhub.open(f"duckdb:///{tmp_path / 'local.duckdb'}") as local:
        sync(local, source)
        remote.post(LATE, TOO_LATE)
        result = sync(local, source)
        assert result.readings == len(pulled) * VALUES
        assert times(local) == sorted([*FIRST, *pulled])


def test_a_window_longer_than_a_page_is_read_once_and_the_sync_ends(
        remote: Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote.post(*FIRST)
    source = config(remote, statistics=False)
    with meterhub.open(f"duckdb:///{tmp_path / 'local.duckdb'}") as local:
        sync(local, source)
        monkeypatch.setattr(dsmr_reader, "PAGE_SIZE", 4)
        # the hour before 12:00 holds seven readings: 11:00-11:30, 11:30-12:00, then 12:00
        # alone, which has nothing newer and ends the sync
        again = sync(local, source)
        assert (again.calls, again.readings) == (3, 0)
        remote.post(LATE)
        late = sync(local, source)  # 11:00-11:25, 11:25-11:50, then 11:50 and 12:00
        assert (late.calls, late.readings) == (3, VALUES)
        assert times(local) == sorted([*FIRST, LATE])


def test_the_window_is_not_taken_for_a_stale_answer_but_rows_before_it_are() -> None:
    """The stale-page check compares with the bound actually sent: the cursor less the
    lookback."""
    sent: list[str] = []
    answer: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.params["timestamp__gte"])
        return httpx.Response(200, json={"count": len(answer), "next": None,
                                         "previous": None, "results": answer})

    def row(at: str) -> dict[str, Any]:
        return {"timestamp": at, "electricity_delivered_1": "1.000"}

    async def pages(cursor: str) -> list[int]:
        source = parse({"source": [{"name": "home", "type": "dsmr_reader", "api_key": "k",
                                    "base_url": "http://dsmr.test", "statistics": False,
                                    "timezone": "UTC"}]}, environ={}).sources[0]
        assert isinstance(source, DsmrReaderConfig)
        con = DsmrReaderConnector(source, clock=VirtualClock(),
                                  transport=httpx.MockTransport(handler))
        try:
            return [p.readings.num_rows async for p in con.fetch("p1", cursor)]
        finally:
            await con.aclose()

    cursor = "2025-03-10T12:00:00+00:00"
    answer[:] = [row("2025-03-10T11:00:00Z"), row("2025-03-10T11:30:00Z"),
                 row("2025-03-10T12:00:00Z")]
    assert asyncio.run(pages(cursor)) == [3]
    assert sent == ["2025-03-10 11:00:00"]
    answer.insert(0, row("2025-03-10T10:59:59Z"))  # before the bound: an old answer again
    with pytest.raises(MalformedResponseError, match="before the requested time"):
        asyncio.run(pages(cursor))
    assert set(sent) == {"2025-03-10 11:00:00"}


def hour_starts(items: list[dict[str, Any]]) -> list[dt.datetime]:
    return sorted(dt.datetime.fromisoformat(i["hour_start"]).astimezone(dt.UTC)
                  for i in items)


@pytest.mark.parametrize("start", ["2025-03-10T10:30", "2025-03-10T11:30:00+01:00"])
def test_a_start_within_an_hour_gets_that_hours_statistics(
        remote: Remote, tmp_path: Path, start: str) -> None:
    # and two readings of the next day: DSMR-reader makes the 10th's statistics once its
    # readings are all compacted (each minute's once a reading of a later minute is in)
    remote.post(*FIRST, pd.Timestamp("2025-03-11T08:00:00Z"),
                pd.Timestamp("2025-03-11T08:10:00Z"))
    with httpx.Client(headers={"X-AUTHKEY": remote.api.keys["read"]}) as client:
        theirs = client.get(f"{remote.base}/api/v2/statistics/hour",
                            params={"limit": 100}).raise_for_status().json()["results"]
    source = config(remote, start=start, devices=["meter-hourly"])
    with meterhub.open(f"duckdb:///{tmp_path / 'local.duckdb'}") as local:
        sync(local, source)
        frame = local.readings(device="meter-hourly")
        mine = sorted({pd.Timestamp(t).tz_convert("UTC").to_pydatetime()
                       for t in frame["ts"]})
        # both starts are 10:30 UTC: the hour from 10:00 on, as far as the remote has hours
        wanted = [at for at in hour_starts(theirs)
                  if at >= dt.datetime(2025, 3, 10, 10, tzinfo=dt.UTC)]
        assert mine == wanted
        assert mine[0] == dt.datetime(2025, 3, 10, 10, tzinfo=dt.UTC)
        # and each hour's values are the remote's
        for item in theirs:
            at = dt.datetime.fromisoformat(item["hour_start"]).astimezone(dt.UTC)
            if at in wanted:
                got = frame[(pd.to_datetime(frame["ts"], utc=True) == pd.Timestamp(at)) &
                            (frame["channel"] == "electricity1")]["value"].tolist()
                assert got == [float(item["electricity1"])]


def test_the_hour_bound_is_the_start_of_the_local_hour_even_when_it_repeats() -> None:
    def at(text: str) -> dt.datetime:
        return dt.datetime.fromisoformat(text)

    tz = "Europe/Amsterdam"
    assert hour_start(at("2025-03-10T10:30:00+00:00"), tz) == at("2025-03-10T10:00:00+00:00")
    # 26 October 2025: 02:00-03:00 local twice, CEST (00:00Z) then CET (01:00Z)
    assert hour_start(at("2025-10-26T00:59:59+00:00"), tz) == at("2025-10-26T00:00:00+00:00")
    assert hour_start(at("2025-10-26T01:30:00+00:00"), tz) == at("2025-10-26T01:00:00+00:00")
    # an hour of a zone half an hour off UTC starts at half past, UTC
    assert hour_start(at("2025-03-10T10:15:00+00:00"), "Asia/Kolkata") == \
        at("2025-03-10T09:30:00+00:00")
