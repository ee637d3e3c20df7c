"""DSMR-reader hour and day statistics and costs, by hand for a normal day (26 Oct 2024)
and the 25-hour day that follows it in Europe/Amsterdam; late and replayed telegrams."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
import pytest

from meterhub.api import create_app
from meterhub.config import parse
from meterhub.dsmr.prices import Prices, prices_for
from meterhub.dsmr.statistics import day_statistics, hour_statistics
from tests.api.conftest import Api, Client
from tests.dsmr.telegrams import v5

PRICES = {"start": dt.date(2024, 1, 1), "end": dt.date(2024, 12, 31),
          "description": "test contract", "electricity_delivered_1_price": 0.20,
          "electricity_delivered_2_price": 0.225, "electricity_returned_1_price": 0.10,
          "electricity_returned_2_price": 0.10, "gas_price": 1.15, "fixed_daily_cost": 0.555}
START = pd.Timestamp("2024-10-25T22:00:00Z")  # local midnight starting 26 Oct (CEST)


def fill(api: Api) -> None:
    """Every 15 minutes for 50 hours: register 1 +0.010, register 2 +0.020, returned 1
    +0.001; gas every hour +0.100 m³ from an hour before the first day. The last hour is
    the 28th's: DSMR-reader makes the 27th's statistics once its readings are all
    compacted and a gas reading of a later day is in."""
    n = 200
    ts = pd.date_range(START, periods=n, freq="15min")
    frames = [pd.DataFrame({"device": "p1", "channel": channel, "ts": ts,
                            "value": [round(base + step * i, 3) for i in range(n)],
                            "unit": "kWh", "kind": "counter", "quantity": "energy"})
              for channel, base, step in (("electricity_delivered_1", 1000.0, 0.010),
                                          ("electricity_delivered_2", 2000.0, 0.020),
                                          ("electricity_returned_1", 100.0, 0.001),
                                          ("electricity_returned_2", 0.0, 0.0))]
    gas_ts = pd.date_range(START - pd.Timedelta(hours=1), periods=51, freq="1h")
    frames.append(pd.DataFrame({"device": "p1", "channel": "extra_device_delivered",
                                "ts": gas_ts, "value": [round(50 + 0.1 * k, 3)
                                                        for k in range(51)],
                                "unit": "m³", "kind": "counter", "quantity": "volume"}))
    api.hub.write(pd.concat(frames), source="dsmr")


def contracts() -> list[Prices]:
    settings = parse({"dsmr": {"prices": [PRICES]}})
    p = settings.dsmr.prices[0]
    return [Prices(p.start, p.end, p.description,
                   {name: getattr(p, name) for name in (
                       "electricity_delivered_1_price", "electricity_delivered_2_price",
                       "gas_price", "electricity_returned_1_price",
                       "electricity_returned_2_price", "fixed_daily_cost")})]


TZ = "Europe/Amsterdam"


def test_a_normal_day_by_hand(api: Api) -> None:
    fill(api)
    day = day_statistics(api.hub, "p1", TZ, dt.date(2024, 10, 26), contracts())
    assert day is not None
    # 96 readings: last - first = 95 steps
    assert (day["electricity1"], day["electricity2"]) == (Decimal("0.950"), Decimal("1.900"))
    assert day["electricity1_returned"] == Decimal("0.095")
    assert day["gas"] == Decimal("2.400")  # 24 hours of 0.100, each over the previous
    # costs, rounded half up: 0.19 - 0.0095 = 0.1805; 1.9 * 0.225 = 0.4275;
    # gas cost from the day's first and last gas (23 steps): 2.3 * 1.15 = 2.645
    assert day["electricity1_cost"] == Decimal("0.18")
    assert day["electricity2_cost"] == Decimal("0.43")
    assert day["gas_cost"] == Decimal("2.65")  # half-even would give 2.64
    assert day["fixed_cost"] == Decimal("0.56")
    assert day["total_cost"] == Decimal("3.82")  # 0.18 + 0.43 + 2.65 + 0.555 = 3.815
    hours = hour_statistics(api.hub, "p1", TZ, dt.date(2024, 10, 26), dt.date(2024, 10, 26))
    assert len(hours) == 24
    assert {h["electricity1"] for h in hours} == {Decimal("0.030")}  # 4 readings, 3 steps
    assert {h["gas"] for h in hours} == {Decimal("0.100")}


def test_the_25_hour_day_by_hand(api: Api) -> None:
    fill(api)
    day = day_statistics(api.hub, "p1", TZ, dt.date(2024, 10, 27), contracts())
    assert day is not None
    # 100 readings, 00:00 to 23:45, each the row of its minute (stamped a minute later):
    # 99 steps
    assert (day["electricity1"], day["electricity2"]) == (Decimal("0.990"), Decimal("1.980"))
    assert day["gas"] == Decimal("2.500")  # 25 hours
    assert day["electricity1_cost"] == Decimal("0.19")  # 0.198 - 0.0099 = 0.1881
    assert day["electricity2_cost"] == Decimal("0.45")  # 1.98 * 0.225 = 0.4455
    assert day["gas_cost"] == Decimal("2.76")  # 2.4 * 1.15
    assert day["total_cost"] == Decimal("3.96")  # 0.19 + 0.45 + 2.76 + 0.555 = 3.955
    hours = hour_statistics(api.hub, "p1", TZ, dt.date(2024, 10, 27), dt.date(2024, 10, 27))
    assert len(hours) == 25
    assert day["electricity1_reading"] == Decimal("1000.960")


def test_contracts_take_the_single_nonzero_price() -> None:
    a = Prices(dt.date(2024, 1, 1), dt.date(2024, 12, 31), values={"gas_price": Decimal("1")})
    b = Prices(dt.date(2024, 6, 1), dt.date(2024, 6, 30),
               values={"gas_price": Decimal("2"), "fixed_daily_cost": Decimal("0.5")})
    assert prices_for(dt.date(2024, 3, 1), [a, b])["gas_price"] == Decimal("1")
    june = prices_for(dt.date(2024, 6, 15), [a, b])
    assert june["gas_price"] == Decimal("0")  # two contracts disagree: DSMR-reader gives 0
    assert june["fixed_daily_cost"] == Decimal("0.5")
    assert prices_for(dt.date(2025, 1, 1), [a, b])["gas_price"] == Decimal("0")


def stats_client(api: Api) -> Client:
    settings = parse({"dsmr": {"prices": [PRICES]}})
    return Client(create_app(api.hub, settings=settings))


def test_statistics_endpoints_answer_as_dsmr_reader(api: Api) -> None:
    fill(api)
    c, headers = stats_client(api), {"X-AUTHKEY": api.keys["read"]}
    days = c.get("/api/v2/statistics/day", headers=headers).json()
    assert days["count"] == 2
    first = days["results"][0]
    assert list(first)[:6] == ["id", "day", "electricity1", "electricity2",
                               "electricity1_returned", "electricity2_returned"]
    assert first["day"] == "2024-10-26"
    assert (first["electricity1"], first["gas"], first["total_cost"]) == ("0.950", "2.400",
                                                                          "3.82")
    assert first["electricity_reading_timestamp"] == "2024-10-26T00:00:00+02:00"
    assert first["average_temperature"] == "0.0"
    later = c.get("/api/v2/statistics/day?day__gte=2024-10-27", headers=headers).json()
    assert [d["day"] for d in later["results"]] == ["2024-10-27"]
    hours = c.get("/api/v2/statistics/hour?limit=2", headers=headers).json()
    assert hours["count"] == 49
    assert hours["next"] == "http://meterhub.test/api/v2/statistics/hour?limit=2&offset=2"
    # id: the hour's Unix hour number (1729893600 s / 3600)
    assert hours["results"][0] == {"id": 480526, "hour_start": "2024-10-26T00:00:00+02:00",
                                   "electricity1": "0.030", "electricity2": "0.060",
                                   "electricity1_returned": "0.003",
                                   "electricity2_returned": "0.000", "gas": "0.100"}
    fall_back = c.get("/api/v2/statistics/hour?hour_start__gte=2024-10-27T02:00:00%2B02:00"
                      "&hour_start__lte=2024-10-27T02:00:00%2B01:00", headers=headers).json()
    assert [h["hour_start"] for h in fall_back["results"]] == [
        "2024-10-27T02:00:00+02:00", "2024-10-27T02:00:00+01:00"]
    prices = c.get("/api/v2/consumption/energy-supplier-prices", headers=headers).json()
    assert prices["results"][0]["gas_price"] == "1.150000"
    assert prices["results"][0]["description"] == "test contract"


def test_a_late_telegram_updates_its_hour_and_day_and_a_replay_changes_nothing(
        api: Api) -> None:
    fill(api)
    c = stats_client(api)
    read, write = {"X-AUTHKEY": api.keys["read"]}, {"X-AUTHKEY": api.keys["write"]}

    def hour_2300() -> dict[str, str]:
        rows = c.get("/api/v2/statistics/hour?hour_start__gte=2024-10-26T23:00:00"
                     "&hour_start__lte=2024-10-26T23:00:00", headers=read).json()["results"]
        return dict(rows[0])

    def day_26() -> dict[str, str]:
        return dict(c.get("/api/v2/statistics/day?day__lte=2024-10-26",
                          headers=read).json()["results"][0])

    before_hour, before_day = hour_2300(), day_26()
    assert before_hour["electricity1"] == "0.030"
    # a telegram from 23:50 that arrives late, between the 23:45 and 00:00 readings
    late = v5(stamp="241026235000S", t1="001000.952", t2="002001.904", r1="000100.095",
              r2="000000.000", gas_stamp="241026230000S", gas="00052.400")
    assert c.post("/api/v1/datalogger/dsmrreading", data={"telegram": late},
                  headers=write).status_code == 201
    after_hour, after_day = hour_2300(), day_26()
    assert (after_hour["electricity1"], after_hour["electricity2"]) == ("0.032", "0.064")
    assert (after_day["electricity1"], after_day["electricity2"]) == ("0.952", "1.904")
    assert after_day["gas"] == before_day["gas"]
    # the same telegram again: nothing moves
    assert c.post("/api/v1/datalogger/dsmrreading", data={"telegram": late},
                  headers=write).status_code == 201
    assert (hour_2300(), day_26()) == (after_hour, after_day)


@pytest.mark.parametrize("path", ["/api/v2/statistics/day", "/api/v2/statistics/hour",
                                  "/api/v2/consumption/today",
                                  "/api/v2/consumption/energy-supplier-prices"])
def test_statistics_need_a_key(api: Api, path: str) -> None:
    response = Client(api.app).get(path, headers={"X-AUTHKEY": "nope"})
    assert response.status_code == 403
    assert response.json() == {"detail": "Invalid auth key"}


def test_today_without_readings_is_dsmr_readers_string(api: Api) -> None:
    response = Client(api.app).get("/api/v2/consumption/today",
                                   headers={"X-AUTHKEY": api.keys["read"]})
    assert response.status_code == 200
    today = dt.datetime.now(dt.UTC).astimezone(
        __import__("zoneinfo").ZoneInfo(TZ)).date().isoformat()
    assert response.json() == f"No electricity readings found for: {today}"
