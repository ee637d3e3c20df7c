"""DSMR-reader's polled reads answered from memory (DuckDB: one process sees every write),
and never an answer that a write, a contract, the meter's tariff or the clock has changed.
tests/dsmr/test_statistics.py checks the same answers computed on every backend."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from meterhub.api import create_app
from meterhub.clock import VirtualClock
from meterhub.config import parse
from meterhub.dsmr import statistics
from tests.api.conftest import Api, Client
from tests.dsmr.telegrams import p1_stamp, v5
from tests.dsmr.test_statistics import PRICES, fill

DAYS = "/api/v2/statistics/day"
TODAY = "/api/v2/consumption/today"
LIVE = "/api/v2/consumption/electricity-live"
NEWEST = "/api/v2/datalogger/dsmrreading?ordering=-timestamp&limit=1"
PUSH = "/api/v1/datalogger/dsmrreading"


@pytest.fixture
def backend() -> str:
    return "duckdb"


def get(api: Api, path: str) -> httpx.Response:
    response = Client(api.app).get(path, headers={"X-AUTHKEY": api.keys["read"]})
    assert response.status_code == 200, response.text
    return response


def send(api: Api, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return Client(api.app).request(method, path, headers={"X-AUTHKEY": api.keys["write"]},
                                   **kwargs)


def push(api: Api, telegram: str) -> None:
    assert send(api, "POST", PUSH, data={"telegram": telegram}).status_code == 201


def with_settings(api: Api, clock: VirtualClock | None = None, **dsmr: Any) -> Api:
    app = create_app(api.hub, settings=parse({"dsmr": dsmr}), rate_limit="10000/minute",
                     clock=clock)
    return Api(api.hub, app, api.keys, Client(app, api.keys["read"]))


def from_memory(api: Api, path: str) -> tuple[bool, httpx.Response]:
    """Whether ``path`` was answered from memory (a kept answer found, none looked for in
    vain: a computed answer misses, whatever parts of it were kept), and its answer."""
    answers = api.hub.answers
    assert answers is not None
    hits, misses = answers.hits, answers.misses
    response = get(api, path)
    return answers.hits > hits and answers.misses == misses, response


def test_past_days_are_answered_from_memory_until_a_late_telegram(api: Api) -> None:
    fill(api)
    app = with_settings(api, prices=[PRICES])
    first = get(app, DAYS)
    kept, again = from_memory(app, DAYS)
    assert kept
    assert again.content == first.content
    # a write to another device keeps the meter's answers
    written = Client(app.app).post("/api/v1/readings", headers={
        "X-API-Key": api.keys["write"]}, json=[{
            "device": "ws1", "channel": "temperature", "ts": "2024-10-26T23:00:00Z",
            "value": 20.5, "unit": "°C"}])
    assert written.status_code == 200, written.text
    assert from_memory(app, DAYS)[0]
    # a telegram from 23:50 on the 26th that arrives late (tests/dsmr/test_statistics.py
    # has the day by hand: 0.950 -> 0.952 and 1.900 -> 1.904)
    push(app, v5(stamp="241026235000S", t1="001000.952", t2="002001.904",
                 r1="000100.095", r2="000000.000", gas_stamp="241026230000S",
                 gas="00052.400"))
    kept, after = from_memory(app, DAYS)
    assert not kept
    day = after.json()["results"][0]
    assert (day["day"], day["electricity1"], day["electricity2"]) == (
        "2024-10-26", "0.952", "1.904")
    kept, again = from_memory(app, DAYS)
    assert kept
    assert again.content == after.content


def test_a_contract_added_or_removed_changes_the_costs_at_once(api: Api) -> None:
    fill(api)
    app = with_settings(api)  # no configured contract: every cost 0
    assert get(app, DAYS).json()["results"][0]["total_cost"] == "0.00"
    assert from_memory(app, DAYS)[0]
    body = {k: str(v) for k, v in PRICES.items()}
    added = send(app, "POST", "/api/v2/consumption/energy-supplier-prices", json=body)
    assert added.status_code == 201, added.text
    # by hand in tests/dsmr/test_statistics.py: 0.18 + 0.43 + 2.65 + 0.555 = 3.815
    assert get(app, DAYS).json()["results"][0]["total_cost"] == "3.82"
    assert send(app, "DELETE", "/api/v2/consumption/energy-supplier-prices/"
                f"{added.json()['id']}").status_code == 204
    assert get(app, DAYS).json()["results"][0]["total_cost"] == "0.00"


def test_the_meters_tariff_changes_the_live_answer_at_once(api: Api) -> None:
    push(api, v5(stamp="241026120000S", delivered="01.050", tariff="0001"))
    assert get(api, LIVE).json()["tariff_name"] == "Daltarief"
    assert from_memory(api, LIVE)[0]
    patched = send(api, "PATCH", "/api/v2/datalogger/meter-statistics",
                   json={"electricity_tariff": 2})
    assert patched.status_code == 200, patched.text
    assert get(api, LIVE).json()["tariff_name"] == "Normaaltarief"


def test_the_newest_reading_is_kept_until_the_next_telegram(api: Api) -> None:
    push(api, v5(stamp="241026120000S", t1="001234.567"))
    assert get(api, NEWEST).json()["results"][0]["electricity_delivered_1"] == "1234.567"
    assert from_memory(api, NEWEST)[0]
    push(api, v5(stamp="241026120010S", t1="001234.570"))
    kept, newest = from_memory(api, NEWEST)
    assert not kept
    assert newest.json()["count"] == 2
    assert newest.json()["results"][0]["electricity_delivered_1"] == "1234.570"


def test_an_answer_that_depends_on_the_clock_is_not_kept(api: Api) -> None:
    """Readings later than the clock: today's minutes are grouped up to the clock, so the
    same question asked later gets another answer with no write between."""
    noon = dt.datetime(2024, 10, 26, 10, 0, tzinfo=dt.UTC)  # 12:00 in Amsterdam
    for n, t1 in enumerate(("001000.000", "001000.100", "001000.250")):
        push(api, v5(stamp=p1_stamp(noon + dt.timedelta(minutes=n, seconds=10)), t1=t1,
                     gas_stamp=p1_stamp(noon)))
    clock = VirtualClock((noon + dt.timedelta(minutes=1, seconds=30)).timestamp())
    app = with_settings(api, clock)
    # the clock at 12:01:30: only the minute of 12:00 is over (its row holds 1000.000)
    assert get(app, TODAY).json()["electricity1"] == 0.0
    assert not from_memory(app, TODAY)[0]
    clock.advance(90)  # 12:03:00: the minute of 12:01 is over too (1000.100)
    assert get(app, TODAY).json()["electricity1"] == pytest.approx(0.1)
    # now every reading is older than the clock: kept until a write
    assert from_memory(app, TODAY)[0]
    clock.advance(-90)  # the clock set back to 12:01:30: computed again, as at first
    assert get(app, TODAY).json()["electricity1"] == 0.0


def test_past_days_are_computed_once_while_the_meter_sends_telegrams(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    fill(api)  # the 26th and 27th are made; the 28th waits for its day to end
    app = with_settings(api, prices=[PRICES])
    # telegrams of the 28th, after fill's last (the first makes the meter's device)
    push(app, v5(stamp="241028020000W", t1="001002.000", t2="002004.000", r1="000100.200",
                 r2="000000.000", gas_stamp="241028010000W", gas="00055.100"))
    first = get(app, DAYS).json()
    assert [day["day"] for day in first["results"]] == ["2024-10-26", "2024-10-27"]
    reads: list[Any] = []
    read = statistics._Span.read

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(args[2:4])
        return read(*args, **kwargs)

    monkeypatch.setattr(statistics._Span, "read", staticmethod(counted))
    push(app, v5(stamp="241028021500W", t1="001002.010", t2="002004.020", r1="000100.201",
                 r2="000000.000", gas_stamp="241028010000W", gas="00055.100"))
    kept, again = from_memory(app, DAYS)
    assert not kept  # the answer was computed again ...
    assert again.json() == first
    assert reads == []  # ... from the days' statistics kept, not from their readings
    # a telegram late into the 27th drops that day's (its registers now end higher)
    push(app, v5(stamp="241027235000W", t1="001001.990", t2="002003.985", r1="000100.199",
                 r2="000000.000", gas_stamp="241027230000W", gas="00054.900"))
    later = get(app, DAYS).json()["results"]
    assert later[0] == first["results"][0]
    assert len(reads) == 1
    assert later[1]["electricity1"] != first["results"][1]["electricity1"]
