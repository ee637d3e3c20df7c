"""The DSMR-reader-compatible API and the dashboard's JSON answer the same over every store
backend. The same writes go into a DuckDB file and into a ClickHouse store (one server, and a
two-shard cluster): nine days of DSMR 5 telegrams every half hour, pushed through v1 (across
the end of summer time on 26 October 2025, Amsterdam's 25-hour day, and a month's end; both
tariffs, solar return, gas), a rejected telegram, a v2 reading, a contract added through v2;
the sample of tests/api (a weather station with seq numbers, an energy counter) and its
syncs, with readings rewritten, a sensor error, a delta channel pushed through /api/v1 and
two hours deleted. Then every GET path of the API (both versions, and both OpenAPI
documents) is asked of each store, with filters, units, zones, formats and pages, after a
restart (so that what is answered comes from the store), and each answer must equal
DuckDB's.

Excluded, and only these, are fields that tell when the write or the answer happened (each
store is written, and asked, at its own moment of the wall clock): see `VOLATILE`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import math
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import orjson
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI

import meterhub
from meterhub.api import create_app
from meterhub.clock import VirtualClock
from meterhub.config import Settings, parse
from meterhub.errors import AuthError
from meterhub.keys import ApiKey, new_key
from tests.api.conftest import sample_frame
from tests.clickhouse_fixtures import NewURL
from tests.dsmr.telegrams import p1_stamp, v5

TZ = "Europe/Amsterdam"
AMSTERDAM = ZoneInfo(TZ)
FIRST = dt.datetime(2025, 10, 24, 22, 0, tzinfo=dt.UTC)  # 25 Oct 00:00 CEST
LAST = dt.datetime(2025, 11, 2, 11, 0, tzinfo=dt.UTC)  # 2 Nov 12:00 CET
#: the time the DSMR statistics are told (their "today" is 2 November, so far)
NOW = dt.datetime(2025, 11, 2, 12, 0, tzinfo=dt.UTC)
PUSH = "/api/v1/datalogger/dsmrreading"
METER = "/api/v2/datalogger/meter-statistics"
PRICES = "/api/v2/consumption/energy-supplier-prices"
BASE = "http://meterhub.test"
LIMIT = "1000000/minute"
#: requests whose next pages are followed (and compared) too
PAGED = ("/api/v1/readings?limit=2000", "/api/v2/datalogger/dsmrreading?limit=100",
         "/api/v2/statistics/hour?limit=100")
#: concurrent pushes (the push path groups them into one write): the stored readings are the
#: same whatever the grouping; the meter's status is the last telegram's, pushed alone
CONCURRENT = 8

#: per path, the fields of its rows that tell a moment of the wall clock, not the data
VOLATILE: dict[str, tuple[str, ...]] = {
    # when the newest reading of each channel was written: each store at its own moment
    "/api/v1/channels": ("written_at",),
    # when each store's sync of a device was recorded, and how far the newest reading lies
    # behind the wall clock when each answer was made
    "/api/v1/sources": ("last_attempt", "last_success", "lag_seconds"),
}


def telegrams() -> list[str]:
    """A DSMR 5 meter every 30 minutes (a few seconds early or late) from FIRST to LAST:
    tariff 1 at night and at weekends, solar return from 10:00 to 16:00 local, gas at the
    last 5-minute mark. Registers count whole Wh, so every value is exact."""
    wh = {"t1": 1_000_000, "t2": 2_000_000, "r1": 50_000, "r2": 70_000}
    litres = 456_789
    out = []
    at, step = FIRST, 0
    while at <= LAST:
        local = at.astimezone(AMSTERDAM)
        tariff = "1" if local.hour >= 23 or local.hour < 7 or local.weekday() >= 5 else "2"
        sunny = 10 <= local.hour < 16
        delivered = 0 if sunny else 300 + (step * 37) % 900  # W
        returned = 200 + (step * 53) % 1500 if sunny else 0
        wh["t" + tariff] += delivered // 2  # half an hour
        wh["r" + tariff] += returned // 2
        litres += (step * 13) % 40
        gas_at = at.replace(minute=at.minute - at.minute % 5, second=0)
        out.append(v5(stamp=p1_stamp(at), t1=f"{wh['t1'] / 1000:010.3f}",
                      t2=f"{wh['t2'] / 1000:010.3f}", r1=f"{wh['r1'] / 1000:010.3f}",
                      r2=f"{wh['r2'] / 1000:010.3f}", delivered=f"{delivered / 1000:06.3f}",
                      returned=f"{returned / 1000:06.3f}", gas_stamp=p1_stamp(gas_at),
                      gas=f"{litres / 1000:09.3f}", tariff=f"000{tariff}"))
        step += 1
        at += dt.timedelta(minutes=30, seconds=(step * 7) % 11 - 5)
    return out


#: pushed through /api/v1/readings over the sample of tests/api
REWRITES = [
    {"device": "ws1", "channel": "temp", "ts": "2024-10-26T00:00:00Z", "value": 15.5,
     "unit": "degC", "seq": 1},
    {"device": "ws1", "channel": "temp", "ts": "2024-10-26T00:10:00Z", "value": None,
     "unit": "degC", "quality": "sensor_error", "error_code": "E7", "seq": 2},
    {"device": "ws1", "channel": "temp", "ts": "2024-10-26T00:20:00Z", "value": 68.0,
     "unit": "degF", "seq": 3, "validated": True, "quality": "estimated"},
    *({"device": "ws1", "channel": "rain", "ts": f"2024-10-{26 + hour // 24}T{hour % 24:02d}"
       ":30:00Z", "value": hour % 3 * 0.2, "unit": "mm", "kind": "delta"}
      for hour in range(30)),
]


def settings() -> Settings:
    """The meter in Amsterdam with a contract for each month of the data, and one around
    the wall clock's today for the live costs (which price by the wall clock)."""
    today = dt.datetime.now(dt.UTC).date()
    prices = [
        {"start": dt.date(2025, 10, 1), "end": dt.date(2025, 10, 31), "description": "oct",
         "electricity_delivered_1_price": "0.20", "electricity_delivered_2_price": "0.225",
         "electricity_returned_1_price": "0.10", "electricity_returned_2_price": "0.11",
         "gas_price": "1.15", "fixed_daily_cost": "0.555"},
        {"start": dt.date(2025, 11, 1), "end": dt.date(2025, 11, 30), "description": "nov",
         "electricity_delivered_1_price": "0.21", "electricity_delivered_2_price": "0.235",
         "electricity_returned_1_price": "0.05", "electricity_returned_2_price": "0.065",
         "gas_price": "1.25", "fixed_daily_cost": "0.6"},
        {"start": today - dt.timedelta(days=2), "end": today + dt.timedelta(days=2),
         "description": "now", "electricity_delivered_1_price": "0.30",
         "electricity_delivered_2_price": "0.35", "electricity_returned_1_price": "0.15",
         "electricity_returned_2_price": "0.17", "gas_price": "1.40"}]
    return parse({"dsmr": {"timezone": TZ, "prices": prices, "parse_helper": "off",
                           "tariff_1_name": "Dal", "tariff_2_name": "Normaal"}}, environ={})


def requests() -> list[tuple[str, str]]:
    """(key scope, path) of every GET to compare."""
    def q(text: str) -> str:
        return quote(text, safe="")

    v1 = [
        "/api/v1/health", "/api/v1/devices", "/api/v1/devices?source=dsmr",
        "/api/v1/channels", "/api/v1/channels?device=p1", "/api/v1/channels?quantity=energy",
        "/api/v1/sources", "/api/v1/mqtt",
        "/api/v1/readings?limit=2000",  # and its next pages (PAGED)
        "/api/v1/readings?device=p1&channel=electricity_delivered_1&tz=Europe/Amsterdam"
        "&start=2025-10-26T01:00&end=2025-10-26T04:00",
        "/api/v1/readings?device=p1&channel=extra_device_delivered&unit=L&limit=40",
        "/api/v1/readings?device=ws1&channel=temp&unit=degF&limit=50&format=csv",
        "/api/v1/readings?device=p1&channel=electricity_currently_returned&format=parquet",
        "/api/v1/readings?device=ws1&start=2024-10-26&end=2024-10-26T03:00Z",
        *(f"/api/v1/aggregates?device=p1&every={every}&tz={tz}"
          for every in ("15min", "1h", "1d", "1w", "1mo")
          for tz in ("Europe/Amsterdam", "UTC", "America/New_York")),
        "/api/v1/aggregates?device=p1&channel=electricity_currently_delivered&every=1h"
        "&tz=Europe/Amsterdam&fn=mean&fn=min&fn=max&fn=first&fn=last&fn=count",
        "/api/v1/aggregates?device=p1&channel=extra_device_delivered&every=1d&unit=L"
        "&tz=Europe/Amsterdam&start=2025-10-26&end=2025-11-01",
        "/api/v1/aggregates?device=p1&every=1h&tz=Europe/Amsterdam&unit=MJ"
        "&channel=electricity_delivered_1&channel=electricity_delivered_2"
        f"&start={q('2025-10-26T01:30:00+02:00')}&end={q('2025-10-26T03:30:00+01:00')}",
        "/api/v1/aggregates?every=1d&tz=Europe/Amsterdam&format=csv",
        "/api/v1/aggregates?device=ws1&every=1h&tz=Asia/Kolkata&fn=mean&fn=count"
        "&fn=errors",
        "/api/v1/aggregates?device=ws1&channel=rain&every=1d&tz=America/New_York",
        "/api/v1/aggregates?device=m1&every=1d&tz=Europe/Amsterdam",
        "/api/v1/gaps", "/api/v1/gaps?device=p1&tz=Europe/Amsterdam&start=2025-10-26",
        "/api/v1/gaps?device=ws1",
        "/api/v1/energy/day", "/api/v1/energy/day?day=2025-10-26",
        "/api/v1/energy/day?day=2025-10-25", "/api/v1/energy/day?day=2025-11-01",
        "/api/v1/energy/day?day=2025-10-24",
        "/api/v1/energy/days?start=2025-10-20&end=2025-11-05",
        "/api/v1/energy/months?start=2025-09&end=2025-12", "/openapi.json",
    ]
    v2 = [
        "/api/v2/datalogger/dsmrreading", "/api/v2/datalogger/dsmrreading?limit=100",
        "/api/v2/datalogger/dsmrreading?limit=10&offset=100",
        "/api/v2/datalogger/dsmrreading?ordering=-timestamp&limit=7",
        f"/api/v2/datalogger/dsmrreading?timestamp__gte={q('2025-10-26T01:00:00+02:00')}"
        f"&timestamp__lte={q('2025-10-26T03:30:00+01:00')}",
        f"/api/v2/datalogger/dsmrreading?timestamp={q('2025-11-02T12:00:30+01:00')}",
        "/api/v2/statistics/day", "/api/v2/statistics/day?day__gte=2025-10-26"
        "&day__lte=2025-10-31", "/api/v2/statistics/day?day=2025-10-26",
        "/api/v2/statistics/day?ordering=-day&limit=3&offset=2",
        "/api/v2/statistics/hour", "/api/v2/statistics/hour?limit=100",
        f"/api/v2/statistics/hour?hour_start__gte={q('2025-10-26T00:00:00+02:00')}"
        f"&hour_start__lte={q('2025-10-26T23:00:00+01:00')}&limit=100",
        "/api/v2/statistics/hour?ordering=-hour_start&limit=30",
        "/api/v2/consumption/today", "/api/v2/consumption/electricity-live",
        "/api/v2/consumption/gas-live", METER, PRICES, f"{PRICES}?ordering=-end",
        "/api/v2/application/version", "/api/v2/openapi.json",
    ]
    return ([("read", path) for path in v1] + [("admin", "/api/v1/keys")]
            + [("dsmr", path) for path in v2])


async def _write_through(app: FastAPI, texts: dict[str, str]) -> tuple[int, str, Any]:
    """Push the telegrams, `CONCURRENT` at a time, the last one alone; then a telegram with
    a broken CRC, a v2 reading and a contract added through v2; all within the app's
    lifespan, whose end stores the meter's status if it was held back. Returns the meter's
    status as the app held it."""
    sent = telegrams()
    headers = {"X-AUTHKEY": texts["write"]}
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        async def push(telegram: str, status: int = 201) -> None:
            answer = await client.post(PUSH, data={"telegram": telegram}, headers=headers)
            assert answer.status_code == status, answer.text

        for at in range(0, len(sent) - 1, CONCURRENT):
            await asyncio.gather(*(push(t) for t in sent[at:min(at + CONCURRENT,
                                                                 len(sent) - 1)]))
        await push(sent[-1])
        # another telegram's CRC: refused (500, as DSMR-reader answers) and counted
        await push(sent[-1][:-6] + "0000\r\n", 500)
        reading = await client.post("/api/v2/datalogger/dsmrreading", headers=headers, json={
            "timestamp": "2025-11-02T12:00:30+01:00", "electricity_delivered_1": "1190.123",
            "electricity_returned_1": "52.000", "electricity_delivered_2": "2200.500",
            "electricity_returned_2": "75.250", "electricity_currently_delivered": "0.875",
            "electricity_currently_returned": "0", "phase_voltage_l1": "231.5",
            "phase_power_current_l1": 4, "extra_device_timestamp": "2025-11-02T12:00:00+01:00",
            "extra_device_delivered": "470.000"})
        assert reading.status_code == 201, reading.text
        added = await client.post(PRICES, headers=headers, json={
            "start": "2025-12-01", "end": "2025-12-31", "description": "added",
            "gas_price": "1.30", "electricity_delivered_1_price": "0.19"})
        assert added.status_code == 201, added.text
        # the sample's weather station: readings rewritten (one as a sensor error), a new
        # delta channel, and the two hours of the fall-back night from 01:00 CEST deleted
        admin = {"X-API-Key": texts["admin"]}
        pushed = await client.post("/api/v1/readings", headers=admin, json=REWRITES)
        assert pushed.status_code == 200, pushed.text
        deleted = await client.delete("/api/v1/readings", headers=admin, params={
            "device": "ws1", "channel": "temp", "start": "2024-10-27T01:00:00+02:00",
            "end": "2024-10-27T02:00:00+01:00"})
        assert deleted.json() == {"deleted": 12}, deleted.text  # two hours (CEST to CET)
        return content(METER, await client.get(METER, headers={"X-AUTHKEY": texts["read"]}))


def ask(app: FastAPI, texts: dict[str, str]) -> dict[str, tuple[int, str, Any]]:
    """Each request's answer by URL, with the next pages of the `PAGED` ones."""
    answers: dict[str, tuple[int, str, Any]] = {}

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url=BASE) as client:
            for scope, path in requests():
                headers = ({"X-AUTHKEY": texts["read"]} if scope == "dsmr"
                           else {"X-API-Key": texts[scope]})
                url: str | None = path
                while url is not None:
                    answers[url] = content(path, await client.get(url, headers=headers))
                    body = answers[url][2]
                    url = body.get("next") if path in PAGED and isinstance(body, dict) \
                        else None

    asyncio.run(run())
    return answers


def content(path: str, response: httpx.Response) -> tuple[int, str, Any]:
    """A response as compared: status, content type and content (JSON decoded, without
    the `VOLATILE` fields of its path; Parquet as a table)."""
    kind = response.headers.get("content-type", "")
    if kind.startswith("application/vnd.apache.parquet"):
        return response.status_code, kind, pq.read_table(io.BytesIO(response.content))
    if "json" not in kind:
        return response.status_code, kind, response.text
    data = orjson.loads(response.content)
    for name in VOLATILE.get(path.split("?", 1)[0], ()):
        for row in data["data"]:
            row.pop(name)
    return response.status_code, kind, data


def answers_of(url: str, config: Settings, records: list[ApiKey], texts: dict[str, str]
               ) -> dict[str, tuple[int, str, Any]]:
    """Every answer of an app over the store at ``url`` once the writes are in, asked
    after a restart (a new app over the store, the meter's status read from it)."""
    with meterhub.open(url) as hub:
        for record in records:
            hub.store.add_key(record)
        hub.write(sample_frame(), source="lab")
        hub.store.record_sync("lab", "ws1", calls=3, readings=432)
        hub.store.record_sync("lab", "m1", error=AuthError("login refused"))
        clock = VirtualClock(NOW.timestamp())
        held = asyncio.run(_write_through(
            create_app(hub, settings=config, rate_limit=LIMIT, clock=clock), texts))
        answers = ask(create_app(hub, settings=config, rate_limit=LIMIT, clock=clock), texts)
    assert answers[METER] == held  # the store kept the meter's status
    return answers


@pytest.fixture(params=["clickhouse", "clickhouse-2shards"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_every_get_answers_as_over_duckdb(backend: str, new_store_url: NewURL,
                                          tmp_path: Path) -> None:
    records, texts = [], {}  # the same keys in both stores: their ids and times agree too
    for scope in ("read", "write", "admin"):
        record, texts[scope] = new_key(f"{scope}-key", scope)
        records.append(record)
    config = settings()  # once: its last contract is around the wall clock's today
    want = answers_of(f"duckdb:///{tmp_path / 'reference.duckdb'}", config, records, texts)
    got = answers_of(new_store_url(), config, records, texts)
    # every request was answered, with data: no agreement of empty answers or of errors
    assert {url: answer[:2] for url, answer in want.items() if answer[0] != 200} == {}
    assert len(want) > len(requests()) + 5  # next pages were followed
    assert want["/api/v2/statistics/day"][2]["count"] == 8  # 25 Oct to 1 Nov
    assert len(want["/api/v1/energy/day?day=2025-10-26"][2]["data"]["hours"]) == 25
    assert want[METER][2]["rejected_telegrams"] == 1
    assert set(got) == set(want)
    differing = [url for url in want if not same(got[url], want[url])]
    assert differing == [], "\n".join(
        f"{url}:\n  {backend}: {str(got[url])[:800]}\n  duckdb: {str(want[url])[:800]}"
        for url in differing)


def test_every_get_path_of_the_api_is_compared() -> None:
    """A path added later is added to `requests` too (the HTML pages, and the files they
    and the API's docs load, tell nothing of the store)."""
    with meterhub.open("duckdb:///:memory:") as hub:
        app = create_app(hub, settings=settings())
    served = {route.path for route in app.routes
              if "GET" in (getattr(route, "methods", None) or ())
              and (route.path.startswith("/api/") or route.path.endswith(".json"))}
    assert served == {path.split("?", 1)[0] for _, path in requests()}


def same(got: tuple[int, str, Any], want: tuple[int, str, Any]) -> bool:
    if hasattr(want[2], "equals"):  # an Arrow table
        return got[:2] == want[:2] and bool(want[2].equals(got[2]))
    return got[:2] == want[:2] and alike(got[2], want[2])


def alike(got: Any, want: Any) -> bool:
    """Equal, floats to the last bits or two: a mean sums in whatever order the backend's
    threads (or ClickHouse's shards) take the rows (0.5642244224422442 against
    ...2244), which differs from run to run."""
    if isinstance(want, float) and isinstance(got, float):
        return math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-15)
    if isinstance(want, dict) and isinstance(got, dict):
        return got.keys() == want.keys() and all(alike(got[k], want[k]) for k in want)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(map(alike, got, want))
    return bool(got == want)
