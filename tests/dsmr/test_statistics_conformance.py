"""Conformance corpus: DSMR-reader 5.11's statistics/hour, statistics/day and
consumption/today for telegram streams built here (each sealed with a CRC computed here),
across a normal day, the 23-hour and the 25-hour day in Europe/Amsterdam, with both tariffs,
solar return and gas. Every expected number is worked out by hand from DSMR-reader's rules
(its dsmr_consumption and dsmr_stats services), named beside it by these letters:

M  minute rows: the readings of one minute make one consumption row with the minute's
   highest register values, stamped at the minute's END, once the minute is over and a
   reading of a later minute exists (ELECTRICITY_GROUPING_BY_MINUTE, its default). So a
   reading at 00:59:50 makes the row of 01:00, which belongs to the hour 01:00.
H  an hour's electricity per register: last minus first row stamped within the hour; an
   hour without rows has no statistics at all.
G  gas rows: one per distinct gas time, made when the first reading carrying it is
   compacted (so not before that reading's minute is over). An hour's gas: one gas row ->
   its rise over the gas row before; several -> last minus first; none -> 0.
S  a day's (and its hours') statistics are made once the day has passed, all its readings
   are compacted, and a gas row of a later day exists ("waiting for the first gas reading
   on the next day").
D  a day: last minus first row stamped within [local midnight, next local midnight);
   its gas the SUM of its hours' gas (only hours that have electricity rows count).
T  today so far: as a day, but its gas is the day's last minus first gas row.
C  costs: delivered x price - returned x price per tariff, gas cost from the day's last
   minus first gas row, each rounded half up to cents; total = round(e1 + e2 + gas costs
   + the unrounded fixed daily cost).
P  a day's meter positions: its first reading's registers, and its first gas reading.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import meterhub
from meterhub.api import create_app
from meterhub.clock import VirtualClock
from meterhub.config import parse
from meterhub.keys import new_key
from tests.api.conftest import Client
from tests.dsmr.telegrams import p1_stamp, v5

TZ = "Europe/Amsterdam"
#: one contract for 2025: prices chosen so that half up and half even round apart
PRICES = {"start": dt.date(2025, 1, 1), "end": dt.date(2025, 12, 31),
          "description": "2025", "electricity_delivered_1_price": "0.20",
          "electricity_delivered_2_price": "0.225", "electricity_returned_1_price": "0.10",
          "electricity_returned_2_price": "0.11", "gas_price": "1.15",
          "fixed_daily_cost": "0.555"}
PRICE_FIELDS = {"energy_supplier_price_electricity_delivered_1": 0.2,
                "energy_supplier_price_electricity_delivered_2": 0.225,
                "energy_supplier_price_electricity_returned_1": 0.1,
                "energy_supplier_price_electricity_returned_2": 0.11,
                "energy_supplier_price_gas": 1.15,
                "energy_supplier_price_fixed_daily_cost": 0.555}


@dataclass(frozen=True)
class Reading:
    """One telegram: its time (UTC), the four registers (kWh), the tariff, and the gas
    meter's time (UTC) and reading (m³)."""

    at: str
    t1: float
    t2: float
    r1: float
    r2: float
    tariff: int
    gas_at: str
    gas: float

    def telegram(self) -> str:
        def utc(text: str) -> dt.datetime:
            return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))

        return v5(stamp=p1_stamp(utc(self.at)), t1=f"{self.t1:010.3f}",
                  t2=f"{self.t2:010.3f}", r1=f"{self.r1:010.3f}", r2=f"{self.r2:010.3f}",
                  tariff=f"{self.tariff:04d}", gas_stamp=p1_stamp(utc(self.gas_at)),
                  gas=f"{self.gas:09.3f}")


#: Wednesday 15 January 2025, CET (UTC+1): 24 hours. Local times in the comments.
NORMAL = [
    Reading("2025-01-14T22:59:40Z", 100.000, 200.000, 50.000, 10.000, 1,  # 14th 23:59:40
            "2025-01-14T22:55:00Z", 500.000),                             # g0 14th 23:55
    Reading("2025-01-14T23:00:20Z", 100.004, 200.000, 50.000, 10.000, 1,  # 00:00:20
            "2025-01-14T23:00:00Z", 500.010),                             # g1 00:00
    Reading("2025-01-14T23:30:00Z", 100.150, 200.000, 50.000, 10.000, 1,  # 00:30:00
            "2025-01-14T23:30:00Z", 500.100),                             # g2 00:30
    Reading("2025-01-14T23:59:10Z", 100.290, 200.000, 50.000, 10.000, 1,  # 00:59:10
            "2025-01-14T23:55:00Z", 500.200),                             # g3 00:55
    Reading("2025-01-14T23:59:50Z", 100.300, 200.000, 50.000, 10.000, 1,  # 00:59:50
            "2025-01-14T23:55:00Z", 500.200),
    Reading("2025-01-15T00:20:00Z", 100.400, 200.000, 50.000, 10.000, 1,  # 01:20:00
            "2025-01-15T00:20:00Z", 500.250),                             # g4 01:20
    Reading("2025-01-15T05:59:30Z", 101.000, 200.000, 50.020, 10.000, 1,  # 06:59:30
            "2025-01-15T05:55:00Z", 500.800),                             # g5 06:55
    Reading("2025-01-15T06:00:10Z", 101.000, 200.050, 50.020, 10.000, 2,  # 07:00:10
            "2025-01-15T06:00:00Z", 500.800),                             # g6 07:00
    Reading("2025-01-15T11:00:00Z", 101.000, 201.000, 50.020, 10.500, 2,  # 12:00:00
            "2025-01-15T11:00:00Z", 501.000),                             # g7 12:00
    Reading("2025-01-15T11:00:40Z", 101.000, 201.000, 50.020, 10.510, 2,  # 12:00:40
            "2025-01-15T11:00:00Z", 501.000),
    Reading("2025-01-15T21:59:30Z", 101.000, 203.000, 50.020, 11.000, 2,  # 22:59:30
            "2025-01-15T21:55:00Z", 502.000),                             # g8 22:55
    Reading("2025-01-15T22:00:30Z", 101.010, 203.000, 50.020, 11.000, 1,  # 23:00:30
            "2025-01-15T22:00:00Z", 502.050),                             # g9 23:00
    Reading("2025-01-15T22:59:45Z", 101.100, 203.000, 50.020, 11.000, 1,  # 23:59:45
            "2025-01-15T22:55:00Z", 502.300),                             # g10 23:55
    Reading("2025-01-15T23:00:15Z", 101.102, 203.000, 50.020, 11.000, 1,  # 16th 00:00:15
            "2025-01-15T23:00:00Z", 502.310),                             # g11 16th 00:00
    Reading("2025-01-15T23:01:10Z", 101.104, 203.000, 50.020, 11.000, 1,  # 16th 00:01:10
            "2025-01-15T23:00:00Z", 502.310),
]
# The rows (M), stamped at minute ends, local:
#   15th 00:00 <- 14th 23:59:40 (t1 100.000)   00:01 <- 00:00:20 (100.004)
#   00:31 <- 00:30:00 (100.150)   01:00 <- max(00:59:10, 00:59:50) (100.300)
#   01:21 <- 01:20 (100.400)   07:00 <- 06:59:30 (101.000, r1 50.020)
#   07:01 <- 07:00:10 (t2 200.050)   12:01 <- max(12:00:00, 12:00:40) (t2 201.000, r2 10.510)
#   23:00 <- 22:59:30 (t2 203.000, r2 11.000)   23:01 <- 23:00:30 (t1 101.010)
#   16th 00:00 <- 23:59:45 (the next day's)   16th 00:01 <- 00:00:15, which brings g11, the
#   first gas row of the next day (DSMR-reader makes the 15th's statistics once it has one)
#   16th 00:02 <- 00:01:10: none yet, no later reading

#: Sunday 30 March 2025: 02:00 CET jumps to 03:00 CEST, a 23-hour day
SHORT = [
    Reading("2025-03-29T22:59:30Z", 300.000, 400.000, 0.000, 0.000, 1,  # 29th 23:59:30 CET
            "2025-03-29T22:55:00Z", 700.000),
    Reading("2025-03-30T00:59:30Z", 300.200, 400.000, 0.000, 0.000, 1,  # 01:59:30 CET
            "2025-03-30T00:55:00Z", 700.300),                           # 01:55 CET
    Reading("2025-03-30T01:00:30Z", 300.250, 400.000, 0.000, 0.000, 1,  # 03:00:30 CEST
            "2025-03-30T01:00:00Z", 700.400),                           # 03:00 CEST
    Reading("2025-03-30T01:30:00Z", 300.300, 400.000, 0.000, 0.000, 1,  # 03:30 CEST
            "2025-03-30T01:30:00Z", 700.500),
    Reading("2025-03-30T10:30:00Z", 300.300, 400.500, 0.000, 0.200, 2,  # 12:30:00 CEST
            "2025-03-30T10:30:00Z", 700.600),
    Reading("2025-03-30T10:30:59Z", 300.300, 400.510, 0.000, 0.210, 2,  # 12:30:59 CEST
            "2025-03-30T10:30:00Z", 700.600),
    Reading("2025-03-30T21:59:10Z", 301.000, 400.510, 0.000, 0.210, 1,  # 23:59:10 CEST
            "2025-03-30T21:55:00Z", 701.000),                           # 23:55 CEST
    Reading("2025-03-30T22:10:00Z", 301.010, 400.510, 0.000, 0.210, 1,  # 31st 00:10 CEST
            "2025-03-30T22:10:00Z", 701.010),
    Reading("2025-03-30T22:20:00Z", 301.020, 400.510, 0.000, 0.210, 1,  # 31st 00:20 CEST
            "2025-03-30T22:20:00Z", 701.020),
]
# Rows (M): 30th 00:00 CET <- 29th 23:59:30 (300.000); 03:00 CEST <- 01:59:30 CET (300.200:
# the minute ends at 02:00 CET, which is 03:00 CEST); 03:01 <- 03:00:30 (300.250); 03:31 <-
# 03:30 (300.300); 12:31 <- max(12:30:00, 12:30:59) (t2 400.510, r2 0.210); 31st 00:00 <-
# 23:59:10 (the next day's); 00:11 <- 00:10 (and the next day's first gas row); none for
# 00:20, no later reading.

#: Sunday 26 October 2025: 03:00 CEST falls back to 02:00 CET, a 25-hour day
LONG = [
    Reading("2025-10-25T21:59:50Z", 500.000, 600.000, 1.000, 2.000, 1,  # 25th 23:59:50 CEST
            "2025-10-25T21:55:00Z", 900.000),
    Reading("2025-10-26T00:10:00Z", 500.100, 600.000, 1.000, 2.000, 1,  # 02:10 CEST
            "2025-10-26T00:10:00Z", 900.100),
    Reading("2025-10-26T00:59:30Z", 500.200, 600.000, 1.000, 2.000, 1,  # 02:59:30 CEST
            "2025-10-26T00:55:00Z", 900.200),
    Reading("2025-10-26T01:10:00Z", 500.300, 600.000, 1.000, 2.000, 1,  # 02:10 CET
            "2025-10-26T01:10:00Z", 900.300),
    Reading("2025-10-26T01:59:30Z", 500.400, 600.000, 1.000, 2.000, 1,  # 02:59:30 CET
            "2025-10-26T01:55:00Z", 900.400),
    Reading("2025-10-26T02:00:30Z", 500.410, 600.000, 1.000, 2.000, 1,  # 03:00:30 CET
            "2025-10-26T02:00:00Z", 900.410),
    Reading("2025-10-26T12:00:00Z", 500.410, 600.300, 1.000, 2.400, 2,  # 13:00 CET
            "2025-10-26T12:00:00Z", 900.500),
    Reading("2025-10-26T22:59:59Z", 500.500, 600.300, 1.000, 2.400, 1,  # 23:59:59 CET
            "2025-10-26T22:55:00Z", 901.000),
    Reading("2025-10-26T23:05:00Z", 500.510, 600.300, 1.000, 2.400, 1,  # 27th 00:05 CET
            "2025-10-26T23:05:00Z", 901.010),
    Reading("2025-10-26T23:15:00Z", 500.520, 600.300, 1.000, 2.400, 1,  # 27th 00:15 CET
            "2025-10-26T23:15:00Z", 901.020),
]
# Rows (M): 26th 00:00 CEST <- 25th 23:59:50 (500.000); 02:11 CEST <- 02:10 CEST (500.100);
# 02:00 CET (the second 02:00) <- 02:59:30 CEST (500.200); 02:11 CET <- 02:10 CET (500.300);
# 03:00 CET <- 02:59:30 CET (500.400); 03:01 <- 03:00:30 (500.410); 13:01 <- 13:00 (t2
# 600.300, r2 2.400); 27th 00:00 <- 23:59:59 (the next day's); 00:06 <- 00:05 (with the next
# day's first gas row); none for 00:15.


def hour_id(local: str) -> int:
    """DSMR-reader-compatible hour id: the hour's Unix hour number."""
    return int(dt.datetime.fromisoformat(local).timestamp()) // 3600


def hour(local: str, e1: str, e2: str, r1: str, r2: str, gas: str) -> dict[str, Any]:
    return {"id": hour_id(local), "hour_start": local, "electricity1": e1, "electricity2": e2,
            "electricity1_returned": r1, "electricity2_returned": r2, "gas": gas}


def page(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"count": len(results), "next": None, "previous": None, "results": results}


@dataclass
class Meter:
    client: Client
    read: dict[str, str]


@pytest.fixture
def meter(store_url: str) -> Iterator[Any]:
    """``meter(readings, now, **dsmr)``: a meterhub whose DSMR-reader paths tell the time by
    a clock standing at ``now``, with the readings pushed as telegrams through v1. Its store
    is the ``store_url`` fixture's: a DuckDB file here, every backend in tests/api."""
    with meterhub.open(store_url) as hub:
        keys = {}
        for scope in ("read", "write"):
            record, text = new_key(f"{scope}-key", scope)
            hub.store.add_key(record)
            keys[scope] = text

        def build(readings: list[Reading], now: str, **dsmr: Any) -> Meter:
            clock = VirtualClock(dt.datetime.fromisoformat(now).timestamp())
            settings = parse({"dsmr": {"timezone": TZ, "prices": [PRICES], **dsmr}})
            client = Client(create_app(hub, settings=settings, rate_limit="100000/minute",
                                       clock=clock))
            for item in readings:
                response = client.post("/api/v1/datalogger/dsmrreading",
                                       data={"telegram": item.telegram()},
                                       headers={"X-AUTHKEY": keys["write"]})
                assert response.status_code == 201, (item, response.text)
            return Meter(client, {"X-AUTHKEY": keys["read"]})

        yield build


def get(meter: Meter, path: str) -> Any:
    response = meter.client.get(path, headers=meter.read)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_normal_day_hour_by_hour(meter: Any) -> None:
    m = meter(NORMAL, "2025-01-16T12:00:00+01:00")
    assert get(m, "/api/v2/statistics/hour") == page([
        # H rows 00:00, 00:01, 00:31: 100.150 - 100.000 (the readings of 00:59 make the row
        # of 01:00, the next hour's); G g1, g2, g3: 500.200 - 500.010
        hour("2025-01-15T00:00:00+01:00", "0.150", "0.000", "0.000", "0.000", "0.190"),
        # H rows 01:00, 01:21: 100.400 - 100.300; G g4 alone: 500.250 - g3 500.200
        hour("2025-01-15T01:00:00+01:00", "0.100", "0.000", "0.000", "0.000", "0.050"),
        # (no hour 06:00: 06:59:30 makes the row of 07:00, so gas g5 counts in no hour)
        # H rows 07:00, 07:01: t2 200.050 - 200.000, r1 50.020 - 50.020; G g6 alone: 500.800 - g5
        hour("2025-01-15T07:00:00+01:00", "0.000", "0.050", "0.000", "0.000", "0.000"),
        # H one row, 12:01 (the higher of the two readings in minute 12:00): no rise;
        # G g7 alone: 501.000 - g6 500.800
        hour("2025-01-15T12:00:00+01:00", "0.000", "0.000", "0.000", "0.000", "0.200"),
        # (no hour 22:00) H rows 23:00, 23:01: t1 101.010 - 101.000; G g9, g10: 502.300 - 502.050
        hour("2025-01-15T23:00:00+01:00", "0.010", "0.000", "0.000", "0.000", "0.250"),
    ])


def test_a_normal_day_as_a_whole(meter: Any) -> None:
    m = meter(NORMAL, "2025-01-16T12:00:00+01:00")
    # the 14th has no row (its last reading's row is stamped at the 15th's midnight) and the
    # 16th is today: one day
    assert get(m, "/api/v2/statistics/day") == page([{
        "id": 20250115, "day": "2025-01-15",
        # D rows 00:00 to 23:01: t1 101.010 - 100.000, t2 203.000 - 200.000,
        # r1 50.020 - 50.000, r2 11.000 - 10.000
        "electricity1": "1.010", "electricity2": "3.000",
        "electricity1_returned": "0.020", "electricity2_returned": "1.000",
        # C 1.010 x 0.20 - 0.020 x 0.10 = 0.200; 3.000 x 0.225 - 1.000 x 0.11 = 0.565 -> 0.57
        "electricity1_cost": "0.20", "electricity2_cost": "0.57",
        # D the sum of the hours' gas: 0.190 + 0.050 + 0.000 + 0.200 + 0.250
        "gas": "0.690",
        # C gas rows of the day g1 to g10: (502.300 - 500.010) x 1.15 = 2.6335 -> 2.63
        "gas_cost": "2.63",
        "lowest_temperature": "0.0", "highest_temperature": "0.0", "average_temperature": "0.0",
        # C 0.555 -> 0.56; total 0.20 + 0.57 + 2.63 + 0.555 = 3.955 -> 3.96
        "fixed_cost": "0.56", "total_cost": "3.96",
        # P the day's first reading, 00:00:20, and its first gas reading, g1
        "electricity_reading_timestamp": "2025-01-15T00:00:20+01:00",
        "electricity1_reading": "100.004", "electricity2_reading": "200.000",
        "electricity1_returned_reading": "50.000", "electricity2_returned_reading": "10.000",
        "gas_reading_timestamp": "2025-01-15T00:00:00+01:00", "gas_reading": "500.010",
    }])


def test_today_so_far(meter: Any) -> None:
    # the 15th at 23:00:45, the readings up to 23:00:30 in
    m = meter(NORMAL[:12], "2025-01-15T23:00:45+01:00")
    assert get(m, "/api/v2/consumption/today") == {
        "day": "2025-01-15",
        # T, M the minute of 23:00:30 is not over: rows 00:00 to 23:00, t1 101.000 - 100.000,
        # t2 203.000 - 200.000, r1 50.020 - 50.000, r2 11.000 - 10.000
        "electricity1": 1.0, "electricity2": 3.0,
        "electricity1_returned": 0.02, "electricity2_returned": 1.0,
        "electricity_merged": 4.0, "electricity_returned_merged": 1.02,
        # C 1.000 x 0.20 - 0.020 x 0.10 = 0.198 -> 0.20; 0.565 -> 0.57
        "electricity1_cost": 0.2, "electricity2_cost": 0.57,
        # C 0.20 + 0.57 + 2.29 + 0.555 = 3.615 -> 3.62
        "total_cost": 3.62,
        # T, G gas rows so far: g1 to g8 (g9 came with the 23:00:30 reading, not compacted
        # yet): 502.000 - 500.010 (the hours' sum would be 0.440)
        "gas": 1.99,
        "gas_cost": 2.29,  # C 1.990 x 1.15 = 2.2885
        "fixed_cost": 0.56,
        **PRICE_FIELDS,
    }


def test_the_23_hour_day(meter: Any) -> None:
    m = meter(SHORT, "2025-03-31T12:00:00+02:00")
    assert get(m, "/api/v2/statistics/hour") == page([
        # H one row (00:00): no rise; G no gas row in the hour
        hour("2025-03-30T00:00:00+01:00", "0.000", "0.000", "0.000", "0.000", "0.000"),
        # (no hour 01:00 CET: 01:59:30 makes the row of 02:00 CET = 03:00 CEST)
        # H rows 03:00, 03:01, 03:31: 300.300 - 300.200; G 03:00 and 03:30: 700.500 - 700.400
        hour("2025-03-30T03:00:00+02:00", "0.100", "0.000", "0.000", "0.000", "0.100"),
        # H one row (12:31); G 12:30 alone: 700.600 - 700.500
        hour("2025-03-30T12:00:00+02:00", "0.000", "0.000", "0.000", "0.000", "0.100"),
    ])
    assert get(m, "/api/v2/statistics/day") == page([{
        "id": 20250330, "day": "2025-03-30",
        # D rows 00:00 CET to 12:31 CEST: t1 300.300 - 300.000, t2 400.510 - 400.000,
        # r2 0.210 - 0.000
        "electricity1": "0.300", "electricity2": "0.510",
        "electricity1_returned": "0.000", "electricity2_returned": "0.210",
        # C 0.300 x 0.20 = 0.06; 0.510 x 0.225 - 0.210 x 0.11 = 0.09165 -> 0.09
        "electricity1_cost": "0.06", "electricity2_cost": "0.09",
        "gas": "0.200",  # D 0.000 + 0.100 + 0.100
        # C gas rows 01:55 CET to 23:55 CEST: (701.000 - 700.300) x 1.15 = 0.805 -> 0.81
        "gas_cost": "0.81",
        "lowest_temperature": "0.0", "highest_temperature": "0.0", "average_temperature": "0.0",
        # C 0.06 + 0.09 + 0.81 + 0.555 = 1.515 -> 1.52
        "fixed_cost": "0.56", "total_cost": "1.52",
        # P
        "electricity_reading_timestamp": "2025-03-30T01:59:30+01:00",
        "electricity1_reading": "300.200", "electricity2_reading": "400.000",
        "electricity1_returned_reading": "0.000", "electricity2_returned_reading": "0.000",
        "gas_reading_timestamp": "2025-03-30T01:55:00+01:00", "gas_reading": "700.300",
    }])


def test_the_25_hour_day(meter: Any) -> None:
    m = meter(LONG, "2025-10-27T12:00:00+01:00")
    assert get(m, "/api/v2/statistics/hour") == page([
        # H one row (00:00 CEST); G none in the hour
        hour("2025-10-26T00:00:00+02:00", "0.000", "0.000", "0.000", "0.000", "0.000"),
        # H one row (02:11 CEST; 02:59:30 CEST makes the row of 02:00 CET);
        # G 02:10 and 02:55 CEST: 900.200 - 900.100
        hour("2025-10-26T02:00:00+02:00", "0.000", "0.000", "0.000", "0.000", "0.100"),
        # the second 02:00: H rows 02:00, 02:11 CET: 500.300 - 500.200;
        # G 02:10 and 02:55 CET: 900.400 - 900.300
        hour("2025-10-26T02:00:00+01:00", "0.100", "0.000", "0.000", "0.000", "0.100"),
        # H rows 03:00, 03:01: 500.410 - 500.400; G 03:00 alone: 900.410 - 900.400
        hour("2025-10-26T03:00:00+01:00", "0.010", "0.000", "0.000", "0.000", "0.010"),
        # H one row (13:01); G 13:00 alone: 900.500 - 900.410
        hour("2025-10-26T13:00:00+01:00", "0.000", "0.000", "0.000", "0.000", "0.090"),
    ])
    assert get(m, "/api/v2/statistics/day") == page([{
        "id": 20251026, "day": "2025-10-26",
        # D rows 00:00 CEST to 13:01 CET (25 hours): t1 500.410 - 500.000,
        # t2 600.300 - 600.000, r2 2.400 - 2.000
        "electricity1": "0.410", "electricity2": "0.300",
        "electricity1_returned": "0.000", "electricity2_returned": "0.400",
        # C 0.410 x 0.20 = 0.082 -> 0.08; 0.300 x 0.225 - 0.400 x 0.11 = 0.0235 -> 0.02
        "electricity1_cost": "0.08", "electricity2_cost": "0.02",
        "gas": "0.300",  # D 0.000 + 0.100 + 0.100 + 0.010 + 0.090
        # C gas rows 02:10 CEST to 23:55 CET: (901.000 - 900.100) x 1.15 = 1.035 -> 1.04
        "gas_cost": "1.04",
        "lowest_temperature": "0.0", "highest_temperature": "0.0", "average_temperature": "0.0",
        # C 0.08 + 0.02 + 1.04 + 0.555 = 1.695 -> 1.70
        "fixed_cost": "0.56", "total_cost": "1.70",
        # P
        "electricity_reading_timestamp": "2025-10-26T02:10:00+02:00",
        "electricity1_reading": "500.100", "electricity2_reading": "600.000",
        "electricity1_returned_reading": "1.000", "electricity2_returned_reading": "2.000",
        "gas_reading_timestamp": "2025-10-26T02:10:00+02:00", "gas_reading": "900.100",
    }])


def test_grouping_by_reading_when_set_so(meter: Any) -> None:
    """ELECTRICITY_GROUPING_BY_READING: each reading is a row at its own time, at once."""
    m = meter(LONG, "2025-10-27T12:00:00+01:00", electricity_grouping="reading")
    assert get(m, "/api/v2/statistics/hour") == page([
        # the 25th's last hour: 23:59:50 alone; G its gas is the first gas row: no rise
        hour("2025-10-25T23:00:00+02:00", "0.000", "0.000", "0.000", "0.000", "0.000"),
        # 02:10 and 02:59:30 CEST: 500.200 - 500.100
        hour("2025-10-26T02:00:00+02:00", "0.100", "0.000", "0.000", "0.000", "0.100"),
        # 02:10 and 02:59:30 CET: 500.400 - 500.300
        hour("2025-10-26T02:00:00+01:00", "0.100", "0.000", "0.000", "0.000", "0.100"),
        hour("2025-10-26T03:00:00+01:00", "0.000", "0.000", "0.000", "0.000", "0.010"),
        hour("2025-10-26T13:00:00+01:00", "0.000", "0.000", "0.000", "0.000", "0.090"),
        # 23:59:59 alone; G 23:55 alone: 901.000 - 900.500
        hour("2025-10-26T23:00:00+01:00", "0.000", "0.000", "0.000", "0.000", "0.500"),
    ])
    days = get(m, "/api/v2/statistics/day")["results"]
    assert [d["day"] for d in days] == ["2025-10-25", "2025-10-26"]  # 23:59:50 is the 25th's
    day = days[1]
    # readings 02:10 CEST to 23:59:59 CET: 500.500 - 500.100; gas 0.1 + 0.1 + 0.01 + 0.09 + 0.5
    assert (day["electricity1"], day["gas"]) == ("0.400", "0.800")


#: a DSMR 4 meter reports its gas once an hour, stamped at the end of the hour it counts
DSMR4 = [
    Reading("2025-01-14T22:59:30Z", 100.000, 200.000, 0.0, 0.0, 1,  # 14th 23:59:30
            "2025-01-14T22:00:00Z", 500.000),                       # 23:00 -> row 22:00
    Reading("2025-01-14T23:30:00Z", 100.100, 200.000, 0.0, 0.0, 1,  # 00:30
            "2025-01-14T23:00:00Z", 500.100),                       # 00:00 -> 14th 23:00
    Reading("2025-01-15T00:30:00Z", 100.200, 200.000, 0.0, 0.0, 1,  # 01:30
            "2025-01-15T00:00:00Z", 500.300),                       # 01:00 -> 00:00
    Reading("2025-01-15T01:30:00Z", 100.300, 200.000, 0.0, 0.0, 1,  # 02:30
            "2025-01-15T01:00:00Z", 500.600),                       # 02:00 -> 01:00
    Reading("2025-01-15T23:30:00Z", 101.000, 200.000, 0.0, 0.0, 1,  # 16th 00:30
            "2025-01-15T23:00:00Z", 501.000),                       # 16th 00:00 -> 15th 23:00
    Reading("2025-01-15T23:40:00Z", 101.010, 200.000, 0.0, 0.0, 1,  # 16th 00:40
            "2025-01-15T23:00:00Z", 501.000),
    Reading("2025-01-16T00:30:00Z", 101.020, 200.000, 0.0, 0.0, 1,  # 16th 01:30
            "2025-01-16T00:00:00Z", 501.200),                       # 01:00 -> 16th 00:00
    Reading("2025-01-16T00:40:00Z", 101.030, 200.000, 0.0, 0.0, 1,  # 16th 01:40
            "2025-01-16T00:00:00Z", 501.200),
]


def test_a_dsmr_4_meters_gas_moves_back_an_hour(meter: Any) -> None:
    m = meter(DSMR4, "2025-01-16T12:00:00+01:00", version="4")
    assert get(m, "/api/v2/statistics/hour") == page([
        # H rows 00:00, 00:31; G the gas of 01:00 is the row of 00:00, alone:
        # 500.300 - 500.100 (the row before, the 14th's 23:00)
        hour("2025-01-15T00:00:00+01:00", "0.100", "0.000", "0.000", "0.000", "0.200"),
        # H one row (01:31); G the gas of 02:00, alone: 500.600 - 500.300
        hour("2025-01-15T01:00:00+01:00", "0.000", "0.000", "0.000", "0.000", "0.300"),
        # H one row (02:31); G none (the next gas row is the 16th's 00:00, moved to 23:00)
        hour("2025-01-15T02:00:00+01:00", "0.000", "0.000", "0.000", "0.000", "0.000"),
    ])
    day = get(m, "/api/v2/statistics/day")["results"]
    assert [d["day"] for d in day] == ["2025-01-15"]
    assert {k: day[0][k] for k in ("electricity1", "gas", "gas_cost", "total_cost",
                                   "gas_reading_timestamp", "gas_reading")} == {
        "electricity1": "0.300",  # D rows 00:00 to 02:31: 100.300 - 100.000
        "gas": "0.500",  # D 0.200 + 0.300 + 0.000
        # C gas rows of the day, moved back: 00:00 (500.300) to 23:00 (501.000, the gas
        # of the 16th's midnight): 0.700 x 1.15 = 0.805 -> 0.81
        "gas_cost": "0.81",
        "total_cost": "1.43",  # C 0.06 + 0.00 + 0.81 + 0.555 = 1.425
        # P the first gas reading stamped within the day, as stamped
        "gas_reading_timestamp": "2025-01-15T00:00:00+01:00", "gas_reading": "500.100",
    }


def test_a_day_waits_for_its_readings_and_the_next_days_gas(meter: Any) -> None:
    # S up to 23:59:45 on the 15th: that reading has no later one, so it is not compacted;
    # the 15th waits, its hours with it
    m = meter(NORMAL[:13], "2025-01-16T12:00:00+01:00")
    assert get(m, "/api/v2/statistics/day") == page([])
    assert get(m, "/api/v2/statistics/hour") == page([])
    # S with 00:00:15 on the 16th, the 15th's readings are all compacted, but 00:00:15 is
    # not, and g11, the next day's first gas, comes with it: the 15th still waits
    m = meter(NORMAL[13:14], "2025-01-16T12:00:00+01:00")
    assert get(m, "/api/v2/statistics/day") == page([])
    # once 00:01:10 comes, 00:00:15 is compacted with g11: the 15th is made
    m = meter(NORMAL[14:], "2025-01-16T12:00:00+01:00")
    assert [d["day"] for d in get(m, "/api/v2/statistics/day")["results"]] == ["2025-01-15"]
    assert get(m, "/api/v2/statistics/hour")["count"] == 5


def test_a_lone_gas_row_rises_over_the_row_before_however_old(meter: Any) -> None:
    # G gas g4 of the 15th 01:20 is the first after a two-day outage of the gas meter: its
    # hour counts the whole rise over the last row before, on the 13th
    before = Reading("2025-01-12T23:30:00Z", 99.000, 200.000, 50.000, 10.000, 1,
                     "2025-01-12T23:30:00Z", 490.000)  # 13th 00:30, gas 490.000
    outage = [Reading(r.at, r.t1, r.t2, r.r1, r.r2, r.tariff, before.gas_at, before.gas)
              if r.at < "2025-01-15T00:20:00Z" else r for r in NORMAL]
    m = meter([before, *outage], "2025-01-16T12:00:00+01:00")
    hours = {h["hour_start"]: h["gas"] for h in get(m, "/api/v2/statistics/hour")["results"]}
    assert hours["2025-01-15T00:00:00+01:00"] == "0.000"  # no gas row in the hour
    assert hours["2025-01-15T01:00:00+01:00"] == "10.250"  # 500.250 - 490.000
