"""Energy contracts through the API (a meterhub extension of DSMR-reader's read-only
energy-supplier-prices): added and removed with a write key, kept in the store, listed with
meterhub.toml's, and counted in every cost: statistics/day, consumption/today, live."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from meterhub.api import create_app
from meterhub.config import ConfigError, parse
from tests.api.conftest import Api, Client
from tests.dsmr.telegrams import p1_stamp, v5
from tests.dsmr.test_statistics import PRICES, fill

URL = "/api/v2/consumption/energy-supplier-prices"
CONFIGURED = {"start": dt.date(2023, 1, 1), "end": dt.date(2023, 12, 31),
              "description": "from the file", "gas_price": 0.9}
ZERO = "0.000000"


def app_with(api: Api, prices: list[dict[str, Any]]) -> Api:
    settings = parse({"dsmr": {"prices": prices}})
    return Api(api.hub, create_app(api.hub, settings=settings, rate_limit="10000/minute"),
               api.keys, api.client)


def send(api: Api, method: str, url: str = URL, *, scope: str = "write",
         **kwargs: Any) -> httpx.Response:
    return Client(api.app).request(method, url, headers={"X-AUTHKEY": api.keys[scope]},
                                   **kwargs)


def listed(api: Api) -> list[dict[str, Any]]:
    response = send(api, "GET", scope="read")
    assert response.status_code == 200
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def as_json(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in body.items()}


def test_a_contract_is_added_listed_with_the_configured_ones_and_kept(api: Api) -> None:
    app = app_with(api, [CONFIGURED])
    response = send(app, "POST", json=as_json(PRICES))
    assert response.status_code == 201, response.text
    added = {"id": 1001, "start": "2024-01-01", "end": "2024-12-31",
             "description": "test contract", "electricity_delivered_1_price": "0.200000",
             "electricity_delivered_2_price": "0.225000", "gas_price": "1.150000",
             "electricity_returned_1_price": "0.100000",
             "electricity_returned_2_price": "0.100000", "fixed_daily_cost": "0.555000"}
    assert response.json() == added
    assert list(response.json()) == list(added)
    configured = {"id": 1, "start": "2023-01-01", "end": "2023-12-31",
                  "description": "from the file", "electricity_delivered_1_price": ZERO,
                  "electricity_delivered_2_price": ZERO, "gas_price": "0.900000",
                  "electricity_returned_1_price": ZERO, "electricity_returned_2_price": ZERO,
                  "fixed_daily_cost": ZERO}
    assert listed(app) == [configured, added]
    newest_first = send(app, "GET", f"{URL}?ordering=-start&limit=1", scope="read").json()
    assert (newest_first["count"], newest_first["results"]) == (2, [added])
    # a new server on the same store still has it
    assert listed(app_with(api, [CONFIGURED])) == [configured, added]


def test_a_form_post_and_defaults(api: Api) -> None:
    response = send(api, "POST", data={"start": "2024-2-1", "end": "2024-02-29",
                                       "gas_price": "1.234567", "fixed_daily_cost": ""})
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["start"], body["description"], body["gas_price"]) == (
        "2024-02-01", "", "1.234567")
    assert body["fixed_daily_cost"] == ZERO


def test_removing_a_contract_and_ids_that_are_not_reused(api: Api) -> None:
    app = app_with(api, [CONFIGURED])
    first = send(app, "POST", json={"start": "2024-01-01", "end": "2024-06-30"}).json()
    second = send(app, "POST", json={"start": "2024-07-01", "end": "2024-12-31"}).json()
    assert (first["id"], second["id"]) == (1001, 1002)
    removed = send(app, "DELETE", f"{URL}/1001")
    assert (removed.status_code, removed.content) == (204, b"")
    assert [p["id"] for p in listed(app)] == [1, 1002]
    again = send(app, "DELETE", f"{URL}/1001")
    assert (again.status_code, again.json()) == (404, {"detail": "Not found."})
    assert send(app, "DELETE", f"{URL}/abc").status_code == 404
    configured = send(app, "DELETE", f"{URL}/1")
    assert configured.status_code == 409
    assert "meterhub.toml" in configured.json()["detail"]
    third = send(app_with(api, [CONFIGURED]), "POST",
                 json={"start": "2025-01-01", "end": "2025-12-31"}).json()
    assert third["id"] == 1003  # after a restart too
    assert [p["id"] for p in listed(app)] == [1, 1002, 1003]


def test_bad_contracts_are_400_with_field_errors_and_not_kept(api: Api) -> None:
    missing = send(api, "POST", json={"description": "no dates"})
    assert missing.status_code == 400
    assert missing.text == ('{"start":["This field is required."],'
                            '"end":["This field is required."]}')
    bad = send(api, "POST", json={"start": "2024-13-01", "end": "01-01-2024",
                                  "description": ["x"], "gas_price": "abc",
                                  "fixed_daily_cost": "0.1234567",
                                  "electricity_delivered_1_price": None})
    assert bad.json() == {
        "start": ["Date has wrong format. Use one of these formats instead: YYYY-MM-DD."],
        "end": ["Date has wrong format. Use one of these formats instead: YYYY-MM-DD."],
        "description": ["Not a valid string."],
        "electricity_delivered_1_price": ["This field may not be null."],
        "gas_price": ["A valid number is required."],
        "fixed_daily_cost": ["Ensure that there are no more than 6 decimal places."]}
    backwards = send(api, "POST", json={"start": "2024-12-31", "end": "2024-01-01"})
    assert backwards.json() == {"non_field_errors": ["end must not be before start."]}
    assert send(api, "POST", json=[]).json() == {
        "non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}
    assert listed(api) == []
    assert api.hub.get_state("dsmr.prices.p1") is None


def test_writing_needs_a_write_key(api: Api) -> None:
    body = {"start": "2024-01-01", "end": "2024-12-31"}
    for sent in ({"X-AUTHKEY": api.keys["read"]}, {"X-AUTHKEY": "nope"}, {}):
        response = Client(api.app).post(URL, json=body, headers=sent)
        assert response.status_code == 403
        assert response.text == '{"detail":"Invalid auth key"}'
    assert send(api, "POST", json=body).status_code == 201
    for sent in ({"X-AUTHKEY": api.keys["read"]}, {}):
        response = Client(api.app).delete(f"{URL}/1001", headers=sent)
        assert response.status_code == 403
        assert response.text == '{"detail":"Invalid auth key"}'
    assert [p["id"] for p in listed(api)] == [1001]


def test_an_added_contract_prices_statistics_days(api: Api) -> None:
    fill(api)  # 26 and 27 Oct 2024, worked out by hand in test_statistics

    def day_26() -> dict[str, Any]:
        days = send(api, "GET", "/api/v2/statistics/day?day__lte=2024-10-26", scope="read")
        result: dict[str, Any] = days.json()["results"][0]
        return result

    unpriced = day_26()
    assert (unpriced["electricity1_cost"], unpriced["total_cost"]) == ("0.00", "0.00")
    assert send(api, "POST", json=as_json(PRICES)).status_code == 201
    priced = day_26()
    # 0.950 x 0.20 - 0.095 x 0.10 = 0.1805 -> 0.18; 1.900 x 0.225 = 0.4275 -> 0.43;
    # gas 2.3 x 1.15 = 2.645 -> 2.65; fixed 0.555 -> 0.56; total 3.815 -> 3.82
    assert {k: priced[k] for k in ("electricity1_cost", "electricity2_cost", "gas_cost",
                                   "fixed_cost", "total_cost")} == {
        "electricity1_cost": "0.18", "electricity2_cost": "0.43", "gas_cost": "2.65",
        "fixed_cost": "0.56", "total_cost": "3.82"}
    # the same contract in meterhub.toml as well: two non-zero values of each price
    # collide, and DSMR-reader then prices at 0
    both = app_with(api, [PRICES])
    days = send(both, "GET", "/api/v2/statistics/day?day__lte=2024-10-26", scope="read")
    assert days.json()["results"][0]["total_cost"] == "0.00"
    assert send(api, "DELETE", f"{URL}/1001").status_code == 204
    assert day_26()["total_cost"] == "0.00"


def test_an_added_contract_prices_today_and_the_live_costs(api: Api) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    # two readings a minute apart: DSMR-reader counts today's electricity from minute rows,
    # and a minute's row exists once a later reading does; the one whole minute in
    # (now - 60 s, now] stamps that row, and it is today's (local midnight is a whole minute)
    earlier = now - dt.timedelta(seconds=60)
    for moment in (earlier, now):
        push = Client(api.app).post("/api/v1/datalogger/dsmrreading", headers={
            "X-AUTHKEY": api.keys["write"]}, data={"telegram": v5(
                stamp=p1_stamp(moment), delivered="02.000", gas_stamp=p1_stamp(earlier),
                gas="00100.000")})
        assert push.status_code == 201
    today = send(api, "GET", "/api/v2/consumption/today", scope="read").json()
    assert today["energy_supplier_price_electricity_delivered_1"] == 0
    assert send(api, "GET", "/api/v2/consumption/electricity-live",
                scope="read").json()["cost_per_hour"] is None
    span = {"start": (now.date() - dt.timedelta(days=2)).isoformat(),
            "end": (now.date() + dt.timedelta(days=2)).isoformat()}
    assert send(api, "POST", json={**span, "electricity_delivered_1_price": "0.3",
                                   "gas_price": "1.1"}).status_code == 201
    today = send(api, "GET", "/api/v2/consumption/today", scope="read").json()
    assert today["energy_supplier_price_electricity_delivered_1"] == 0.3
    assert today["energy_supplier_price_gas"] == 1.1
    live = send(api, "GET", "/api/v2/consumption/electricity-live", scope="read").json()
    assert live["cost_per_hour"] == "0.60"  # 2 kW x 0.30, tariff 1
    gas = send(api, "GET", "/api/v2/consumption/gas-live", scope="read").json()
    assert gas["cost_per_interval"] == "0.00"  # the first gas reading: no rise yet


def test_configured_ids_stay_below_those_of_added_contracts() -> None:
    with pytest.raises(ConfigError, match=r"dsmr\.prices: .*at most 1000 contracts"):
        parse({"dsmr": {"prices": [CONFIGURED] * 1001}})
    assert len(parse({"dsmr": {"prices": [CONFIGURED] * 1000}}).dsmr.prices) == 1000


def test_contracts_are_filtered_by_start_and_end_and_ordered_by_either(api: Api) -> None:
    """DSMR-reader's filters: start__gte/lte and end__gte/lte (inclusive dates); ordering
    by start (the default) or end."""
    spans = [("2023-01-01", "2023-12-31"), ("2024-01-01", "2024-03-31"),
             ("2023-07-01", "2025-06-30")]
    app = app_with(api, [])
    for start, end in spans:
        assert send(app, "POST", json={"start": start, "end": end}).status_code == 201

    def spans_of(query: str) -> list[tuple[str, str]]:
        response = send(app, "GET", f"{URL}?{query}", scope="read")
        assert response.status_code == 200, response.text
        return [(c["start"], c["end"]) for c in response.json()["results"]]

    assert spans_of("") == sorted(spans)
    assert spans_of("start__gte=2023-07-01") == [spans[2], spans[1]]
    assert spans_of("start__lte=2023-07-01&end__gte=2024-01-01") == [spans[2]]
    assert spans_of("end__lte=2024-03-31") == [spans[0], spans[1]]
    assert spans_of("ordering=end") == [spans[0], spans[1], spans[2]]
    assert spans_of("ordering=-end") == [spans[2], spans[1], spans[0]]
    bad = send(app, "GET", f"{URL}?end__gte=soon", scope="read")
    assert bad.status_code == 400
    assert bad.json() == {"end__gte": ["Enter a valid date."]}
