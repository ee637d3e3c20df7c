"""/api/v1/energy: the DSMR meter's hours, days and months by DSMR-reader's rules for any
day, today so far included. Over the conformance corpus of
tests/dsmr/test_statistics_conformance.py (hand-worked numbers there), each answer is
held to the v2 statistics of the same day and hour, and to a few numbers worked out here:

K  an hour's costs: per tariff delivered x price - returned x price, gas x price, each
   rounded half up to cents (the 2025 contract: 0.20, 0.225, returned 0.10, 0.11, gas 1.15);
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.dsmr.test_statistics_conformance import LONG, NORMAL, SHORT, Meter, get, meter

__all__ = ["meter"]  # the fixture, used by name

COSTS = ("electricity1_cost", "electricity2_cost", "gas_cost", "total_cost")
#: what /api/v1/energy/day adds to /api/v2/statistics/day's row
ADDED = ("electricity_merged", "electricity_returned_merged", "gas_span", "priced",
         "complete")


def without(row: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in names}


def v1(m: Meter) -> dict[str, str]:
    """The meter's read key, as the v1 paths take it."""
    return {"X-API-Key": m.read["X-AUTHKEY"]}


def energy(m: Meter, path: str) -> Any:
    response = m.client.get(path, headers=v1(m))
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_a_past_day_is_the_v2_statistics_of_its_hours_and_day(meter: Any) -> None:
    m = meter(LONG, "2025-10-27T12:00:00+01:00")
    day = energy(m, "/api/v1/energy/day?day=2025-10-26")
    assert (day["device"], day["timezone"], day["day"]) == ("p1", "Europe/Amsterdam",
                                                             "2025-10-26")
    assert (day["today"], day["complete"], day["priced"], day["local_hours"]) == (
        False, True, True, 25)
    # the same hours, and numbers, as DSMR-reader's statistics of that day
    v2_hours = get(m, "/api/v2/statistics/hour")["results"]
    assert [without(h, COSTS) for h in day["hours"]] == v2_hours
    assert [h["hour_start"] for h in day["hours"]] == [
        "2025-10-26T00:00:00+02:00", "2025-10-26T02:00:00+02:00",
        "2025-10-26T02:00:00+01:00", "2025-10-26T03:00:00+01:00", "2025-10-26T13:00:00+01:00"]
    # K the second 02:00: 0.100 kWh x 0.20 = 0.02; gas 0.100 x 1.15 = 0.115 -> 0.12
    assert {k: day["hours"][2][k] for k in COSTS} == {
        "electricity1_cost": "0.02", "electricity2_cost": "0.00", "gas_cost": "0.12",
        "total_cost": "0.14"}
    (v2_day,) = get(m, "/api/v2/statistics/day")["results"]
    assert without(day["totals"], ADDED) == v2_day
    # merged: 0.410 + 0.300, returned 0.000 + 0.400; gas rows 900.100 to 901.000
    assert {k: day["totals"][k] for k in ADDED} == {
        "electricity_merged": "0.710", "electricity_returned_merged": "0.400",
        "gas_span": "0.900", "priced": True, "complete": True}
    assert day["totals"]["total_cost"] == "1.70"


def test_the_23_hour_day(meter: Any) -> None:
    m = meter(SHORT, "2025-03-31T12:00:00+02:00")
    day = energy(m, "/api/v1/energy/day?day=2025-03-30")
    assert day["local_hours"] == 23
    assert [without(h, COSTS) for h in day["hours"]] == get(
        m, "/api/v2/statistics/hour")["results"]
    assert without(day["totals"], ADDED) == get(m, "/api/v2/statistics/day")["results"][0]


def test_today_so_far_is_consumption_today_with_its_hours(meter: Any) -> None:
    m = meter(NORMAL[:12], "2025-01-15T23:00:45+01:00")
    day = energy(m, "/api/v1/energy/day")  # today, by the meter's clock
    assert (day["day"], day["today"], day["complete"]) == ("2025-01-15", True, False)
    today = get(m, "/api/v2/consumption/today")
    totals = day["totals"]
    for name in ("electricity1", "electricity2", "electricity1_returned",
                 "electricity2_returned", "electricity_merged", "electricity_returned_merged",
                 "electricity1_cost", "electricity2_cost", "gas_cost", "fixed_cost",
                 "total_cost"):
        assert float(totals[name]) == today[name], name
    assert float(totals["gas_span"]) == today["gas"] == 1.99  # not the hours' sum, 0.440
    assert totals["gas"] == "0.440"
    # DSMR-reader has no hours of today yet; these are the hours it will make, so far
    assert get(m, "/api/v2/statistics/hour")["count"] == 0
    assert [h["hour_start"][11:13] for h in day["hours"]] == ["00", "01", "07", "12", "23"]
    assert day["hours"][0]["electricity1"] == "0.150"  # H 100.150 - 100.000


def test_days_and_months_sum_the_day_statistics(meter: Any) -> None:
    m = meter(NORMAL, "2025-01-16T12:00:00+01:00")
    days = energy(m, "/api/v1/energy/days?start=2025-01-01&end=2025-02-01")["days"]
    # the 15th as DSMR-reader has it; the 16th so far (DSMR-reader has not made it)
    assert [(d["day"], d["complete"]) for d in days] == [("2025-01-15", True),
                                                          ("2025-01-16", False)]
    assert [without(days[0], ADDED)] == get(m, "/api/v2/statistics/day")["results"]
    # the 16th: rows 00:00 (101.100) and 00:01 (101.102)
    assert days[1]["electricity1"] == "0.002"
    (month,) = energy(m, "/api/v1/energy/months?start=2025-01&end=2025-02")["months"]
    assert (month["month"], month["days"], month["priced_days"], month["complete"]) == (
        "2025-01", 2, 2, False)
    assert month["electricity1"] == "1.012"  # 1.010 + 0.002
    assert Decimal(month["total_cost"]) == sum(Decimal(d["total_cost"]) for d in days)
    assert month["fixed_cost"] == "1.12"  # 0.56 a day
    # months without statistics are left out
    assert energy(m, "/api/v1/energy/months?start=2024-11&end=2025-01")["months"] == []


def test_without_a_contract_there_are_no_costs(meter: Any) -> None:
    m = meter(LONG, "2025-10-27T12:00:00+01:00", prices=[])
    day = energy(m, "/api/v1/energy/day?day=2025-10-26")
    assert day["priced"] is False
    assert day["totals"]["priced"] is False
    assert {h["total_cost"] for h in day["hours"]} == {None}
    assert day["totals"]["total_cost"] == "0.00"


def test_a_day_without_readings(meter: Any) -> None:
    m = meter(LONG, "2025-10-27T12:00:00+01:00")
    day = energy(m, "/api/v1/energy/day?day=2024-10-27")
    assert (day["totals"], day["hours"], day["local_hours"]) == (None, [], 25)


@pytest.mark.parametrize(("query", "words"), [
    ("day?day=yesterday", "day must be a date like 2024-10-27"),
    ("day?day=2024-02-30", "not '2024-02-30'"),
    ("day?day=9999-12-31", "from 1800-01-02 to 2199-12-30"),
    ("days?start=2024-10-01&end=2024-09-01", "end must be after start"),
    ("days?start=2024-01-01&end=2025-06-01", "at most 366 days"),
    ("days?start=2024-01-01", "end"),
    ("months?start=2024-13&end=2025-01", "start must be a month like 2024-10"),
    ("months?start=2020-01&end=2025-01", "at most 24 months"),
])
def test_a_bad_question_is_a_problem_in_words(meter: Any, query: str, words: str) -> None:
    m = meter([], "2025-10-27T12:00:00+01:00")
    response = m.client.get(f"/api/v1/energy/{query}", headers=v1(m))
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert words in response.json()["detail"]


def test_a_key_is_needed(meter: Any) -> None:
    m = meter([], "2025-10-27T12:00:00+01:00")
    assert m.client.get("/api/v1/energy/day").status_code == 401


def test_the_paths_are_in_the_openapi_document(meter: Any) -> None:
    m = meter([], "2025-10-27T12:00:00+01:00")
    spec = m.client.get("/openapi.json").json()
    for name in ("day", "days", "months"):
        operation = spec["paths"][f"/api/v1/energy/{name}"]["get"]
        assert {"200", "400"} <= set(operation["responses"])
