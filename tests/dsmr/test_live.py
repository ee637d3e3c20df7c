"""DSMR-reader's v2 electricity-live and gas-live on meterhub: the recorded 5.11 answer,
values worked out by hand from the telegrams' lines and the configured prices (half-up
cents of kW x the active tariff's price), and what an empty store answers."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

from meterhub.api import create_app
from meterhub.config import parse
from tests.api.conftest import Api, Client
from tests.dsmr.telegrams import p1_stamp, v4, v5

ELECTRICITY = "/api/v2/consumption/electricity-live"
GAS = "/api/v2/consumption/gas-live"
PUSH = "/api/v1/datalogger/dsmrreading"
#: DSMR-READER.md, "Extras": TELEGRAM_V5 (tariff 0002, 1-0:1.7.0(00.244*kW)) pushed at
#: 2026-11-21 17:55 local, no prices configured
RECORDED = ('{"timestamp":"2026-11-21T17:55:00+01:00","currently_delivered":244,'
            '"currently_returned":0,"cost_per_hour":null,"tariff_name":"Normaaltarief"}')


def around_today() -> dict[str, dt.date]:
    """A contract span holding the server's today whatever the zone (and a midnight)."""
    now = dt.datetime.now(dt.UTC).date()
    return {"start": now - dt.timedelta(days=2), "end": now + dt.timedelta(days=2)}


PRICES = {"electricity_delivered_1_price": "0.10", "electricity_delivered_2_price": "0.25",
          "electricity_returned_1_price": "0.05", "electricity_returned_2_price": "0.07",
          "gas_price": "0.50"}


def app_with(api: Api, **dsmr: Any) -> Api:
    settings = parse({"dsmr": dsmr})
    return Api(api.hub, create_app(api.hub, settings=settings, rate_limit="10000/minute"),
               api.keys, api.client)


def push(api: Api, telegram: str) -> None:
    response = Client(api.app).post(PUSH, data={"telegram": telegram},
                                    headers={"X-AUTHKEY": api.keys["write"]})
    assert response.status_code == 201, response.text


def live(api: Api, path: str = ELECTRICITY) -> httpx.Response:
    response = Client(api.app).get(path, headers={"X-AUTHKEY": api.keys["read"]})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    return response


def test_no_readings_answer_an_empty_object(api: Api) -> None:
    assert live(api).text == "{}"
    assert live(api, GAS).text == "{}"


def test_the_recorded_answer_byte_for_byte(api: Api) -> None:
    push(api, v5(stamp="261121175500W", delivered="00.244", tariff="0002"))
    assert live(api).text == RECORDED


def test_power_in_watts_and_the_cost_per_hour_of_tariff_1(api: Api) -> None:
    priced = app_with(api, prices=[{**around_today(), **PRICES}])
    push(priced, v5(stamp="241026120000S", delivered="01.050", returned="00.000"))
    # 1.050 kW x 0.10 (delivered, tariff 1) = 0.105 -> 0.11 half up (half even: 0.10)
    assert live(priced).json() == {
        "timestamp": "2024-10-26T12:00:00+02:00", "currently_delivered": 1050,
        "currently_returned": 0, "cost_per_hour": "0.11", "tariff_name": "Daltarief"}


def test_returning_power_costs_negative_at_tariff_2(api: Api) -> None:
    priced = app_with(api, prices=[{**around_today(), **PRICES}])
    push(priced, v5(stamp="241026120000S", delivered="00.000", returned="02.500",
                    tariff="0002"))
    body = live(priced).json()
    # 0 x 0.25 - 2.500 kW x 0.07 (returned, tariff 2) = -0.175 -> -0.18 (half up: away
    # from zero)
    assert (body["currently_delivered"], body["currently_returned"]) == (0, 2500)
    assert (body["cost_per_hour"], body["tariff_name"]) == ("-0.18", "Normaaltarief")


def test_power_both_ways_at_once_counts_both(api: Api) -> None:
    priced = app_with(api, prices=[{**around_today(), **PRICES}])
    push(priced, v5(stamp="241026120000S", delivered="01.234", returned="00.500"))
    # 1.234 x 0.10 - 0.500 x 0.05 = 0.1234 - 0.025 = 0.0984 -> 0.10
    assert live(priced).json()["cost_per_hour"] == "0.10"


def test_no_contract_for_today_means_no_cost(api: Api) -> None:
    old = app_with(api, prices=[{"start": dt.date(2020, 1, 1), "end": dt.date(2020, 12, 31),
                                 **PRICES}])
    push(old, v5(stamp="241026120000S"))
    assert live(old).json()["cost_per_hour"] is None
    assert "cost_per_interval" not in live(old, GAS).json()
    # a contract holding today with no price for the tariff costs 0.00: it exists
    zero = app_with(api, prices=[{**around_today(), "gas_price": "1"}])
    assert live(zero).json()["cost_per_hour"] == "0.00"


def test_the_newest_reading_counts_not_the_last_to_arrive(api: Api) -> None:
    push(api, v5(stamp="241026120500S", delivered="00.777"))
    push(api, v5(stamp="241026120000S", delivered="00.111"))  # late
    body = live(api).json()
    assert (body["timestamp"], body["currently_delivered"]) == (
        "2024-10-26T12:05:00+02:00", 777)


def test_the_tariff_follows_the_meter_statistics(api: Api) -> None:
    named = app_with(api, prices=[{**around_today(), **PRICES}], tariff_1_name="Dag",
                     tariff_2_name="Nacht")
    push(named, v5(stamp="241026120000S", delivered="02.000"))
    assert (live(named).json()["tariff_name"], live(named).json()["cost_per_hour"]) == (
        "Dag", "0.20")  # 2 kW x 0.10
    patched = Client(named.app).request("PATCH", "/api/v2/datalogger/meter-statistics",
                                        headers={"X-AUTHKEY": api.keys["write"]},
                                        json={"electricity_tariff": 2})
    assert patched.status_code == 200
    assert (live(named).json()["tariff_name"], live(named).json()["cost_per_hour"]) == (
        "Nacht", "0.50")  # 2 kW x 0.25
    Client(named.app).request("PATCH", "/api/v2/datalogger/meter-statistics",
                              headers={"X-AUTHKEY": api.keys["write"]},
                              json={"electricity_tariff": None})
    assert (live(named).json()["tariff_name"], live(named).json()["cost_per_hour"]) == (
        None, None)  # no tariff known: neither a name nor a price


def test_a_meter_clock_ahead_is_shown_at_the_servers_time(api: Api) -> None:
    ahead = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=3)
    push(api, v5(stamp=p1_stamp(ahead), delivered="00.500"))
    before = dt.datetime.now(dt.UTC)
    body = live(api).json()
    assert before <= dt.datetime.fromisoformat(body["timestamp"]) <= dt.datetime.now(dt.UTC)
    assert body["currently_delivered"] == 500


def test_gas_live_is_the_rise_over_the_gas_reading_before(api: Api) -> None:
    priced = app_with(api, prices=[{**around_today(), **PRICES}])
    push(priced, v5(stamp="241026110500S", gas_stamp="241026110000S", gas="00456.789"))
    # the first gas reading has nothing to rise from
    assert live(priced, GAS).text == (
        '{"timestamp":"2024-10-26T11:00:00+02:00","currently_delivered":0.0,'
        '"cost_per_interval":"0.00"}')
    push(priced, v5(stamp="241026120500S", gas_stamp="241026120000S", gas="00457.039"))
    # 457.039 - 456.789 = 0.250 m³; x 0.50 = 0.125 -> 0.13 half up (half even: 0.12)
    assert live(priced, GAS).json() == {"timestamp": "2024-10-26T12:00:00+02:00",
                                        "currently_delivered": 0.25,
                                        "cost_per_interval": "0.13"}
    # without a contract DSMR-reader leaves the cost out
    assert live(api, GAS).json() == {"timestamp": "2024-10-26T12:00:00+02:00",
                                     "currently_delivered": 0.25}


def test_the_gas_reading_before_is_found_beyond_the_last_hour(api: Api) -> None:
    """The newest gas reading is 10 minutes old, the one before 3 hours: the live answer
    looks past its first window (the last hour) for the second."""
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    earlier, newer = now - dt.timedelta(hours=3), now - dt.timedelta(minutes=10)
    push(api, v5(stamp=p1_stamp(earlier), gas_stamp=p1_stamp(earlier), gas="00100.000"))
    push(api, v5(stamp=p1_stamp(newer), gas_stamp=p1_stamp(newer), gas="00100.375"))
    body = live(api, GAS).json()
    assert body["currently_delivered"] == 0.375  # 100.375 - 100.000 m³
    assert dt.datetime.fromisoformat(body["timestamp"]) == newer


def test_dsmr_4_gas_belongs_to_the_hour_before_its_stamp(api: Api) -> None:
    four = app_with(api, version="4")
    push(four, v4())  # 0-1:24.2.1(240615140000S)(00100.500*m3)
    assert live(four, GAS).json() == {"timestamp": "2024-06-15T13:00:00+02:00",
                                      "currently_delivered": 0.0}
    body = live(four).json()  # 1-0:1.7.0(00.250*kW), tariff 0002
    assert (body["currently_delivered"], body["tariff_name"]) == (250, "Normaaltarief")


def test_live_paths_need_a_read_key(api: Api) -> None:
    for path in (ELECTRICITY, GAS):
        for sent in ({"X-AUTHKEY": "nope"}, {}):
            response = Client(api.app).get(path, headers=sent)
            assert response.status_code == 403
            assert response.text == '{"detail":"Invalid auth key"}'
        token = Client(api.app).get(path, headers={"Authorization": f"Token {api.keys['read']}"})
        assert token.status_code == 200
