"""DSMR-reader's v2 dsmrreading and version endpoints on meterhub: the seed's examples and
the answers DSMR-reader 5.11 gave on the wire (DSMR-READER.md)."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api, Client
from tests.dsmr.telegrams import v5

URL = "/api/v2/datalogger/dsmrreading"
SEED_POST = {"electricity_currently_delivered": 1.500, "electricity_currently_returned": 0.025,
             "electricity_delivered_1": 2000, "electricity_delivered_2": 3000,
             "electricity_returned_1": 0, "electricity_returned_2": 0,
             "timestamp": "2017-04-15T00:00:00+02"}
FIELD_ORDER = [
    "id", "timestamp", "electricity_delivered_1", "electricity_returned_1",
    "electricity_delivered_2", "electricity_returned_2", "electricity_currently_delivered",
    "electricity_currently_returned", "phase_currently_delivered_l1",
    "phase_currently_delivered_l2", "phase_currently_delivered_l3", "extra_device_timestamp",
    "extra_device_delivered", "phase_currently_returned_l1", "phase_currently_returned_l2",
    "phase_currently_returned_l3", "phase_voltage_l1", "phase_voltage_l2", "phase_voltage_l3",
    "phase_power_current_l1", "phase_power_current_l2", "phase_power_current_l3"]


def client(api: Api) -> tuple[Client, dict[str, str]]:
    return Client(api.app), {"X-AUTHKEY": api.keys["write"]}


def push_day(api: Api) -> None:
    """Three telegrams five minutes apart on 26 Oct 2024 (summer time), gas at 11:00."""
    c, headers = client(api)
    for n in range(3):
        telegram = v5(stamp=f"2410261{2 + 0:01d}{n * 5:02d}00S", t1=f"001234.{567 + n}",
                      gas_stamp="241026110000S")
        assert c.post("/api/v1/datalogger/dsmrreading", data={"telegram": telegram},
                      headers=headers).status_code == 201


def test_the_seed_post_example_gets_the_documented_answer(api: Api) -> None:
    c, headers = client(api)
    response = c.post(URL, data=SEED_POST, headers=headers)
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == FIELD_ORDER
    assert {k: v for k, v in body.items() if k != "id"} == {
        "timestamp": "2017-04-15T00:00:00+02:00", "electricity_delivered_1": "2000.000",
        "electricity_returned_1": "0.000", "electricity_delivered_2": "3000.000",
        "electricity_returned_2": "0.000", "electricity_currently_delivered": "1.500",
        "electricity_currently_returned": "0.025",
        **{name: None for name in FIELD_ORDER[8:]}}
    stored = api.hub.readings(device="p1", channel="electricity_delivered_2")
    assert list(stored["value"]) == [3000.0]
    assert str(stored["ts"][0]) == "2017-04-14 22:00:00+00:00"


def test_json_bodies_and_utc_times_come_back_in_local_time(api: Api) -> None:
    c, headers = client(api)
    body = {**SEED_POST, "timestamp": "2016-04-15T10:00:00Z"}
    response = c.post(URL, json=body, headers=headers)
    assert response.status_code == 201
    assert response.json()["timestamp"] == "2016-04-15T12:00:00+02:00"


def test_validation_errors_as_recorded(api: Api) -> None:
    c, headers = client(api)
    response = c.post(URL, data={"electricity_currently_delivered": "abc",
                                 "timestamp": "notadate"}, headers=headers)
    assert response.status_code == 400
    assert response.text == (
        '{"timestamp":["Datetime has wrong format. Use one of these formats instead: '
        'YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."],'
        '"electricity_delivered_1":["This field is required."],'
        '"electricity_returned_1":["This field is required."],'
        '"electricity_delivered_2":["This field is required."],'
        '"electricity_returned_2":["This field is required."],'
        '"electricity_currently_delivered":["A valid number is required."],'
        '"electricity_currently_returned":["This field is required."]}')
    too_fine = c.post(URL, data={**SEED_POST, "electricity_delivered_1": "2000.1234"},
                      headers=headers)
    assert too_fine.json() == {"electricity_delivered_1": [
        "Ensure that there are no more than 3 decimal places."]}
    assert "p1" not in set(api.hub.devices()["device"])


def test_get_pages_like_dsmr_reader(api: Api) -> None:
    push_day(api)
    c, headers = client(api)
    first = c.get(f"{URL}?limit=2", headers=headers).json()
    assert first["count"] == 3
    assert first["next"] == f"http://meterhub.test{URL}?limit=2&offset=2"
    assert first["previous"] is None
    reading = first["results"][0]
    assert list(reading) == FIELD_ORDER
    assert reading["timestamp"] == "2024-10-26T12:00:00+02:00"
    assert reading["id"] == 1729936800  # the reading's Unix second
    assert reading["electricity_delivered_1"] == "1234.567"
    assert reading["electricity_returned_1"] == "10.100"
    assert reading["phase_voltage_l1"] == "230.1"
    assert reading["phase_power_current_l3"] == 3
    # the gas meter's last reading at or before the telegram, with its own time
    assert reading["extra_device_timestamp"] == "2024-10-26T11:00:00+02:00"
    assert reading["extra_device_delivered"] == "456.789"
    assert first["results"][1]["electricity_delivered_1"] == "1234.568"
    latest = c.get(f"{URL}?ordering=-timestamp&limit=1", headers=headers).json()
    assert latest["next"] == f"http://meterhub.test{URL}?limit=1&offset=1&ordering=-timestamp"
    assert latest["results"][0]["timestamp"] == "2024-10-26T12:10:00+02:00"
    middle = c.get(f"{URL}?limit=1&offset=2", headers=headers).json()
    assert middle["previous"] == f"http://meterhub.test{URL}?limit=1&offset=1"
    assert middle["next"] is None
    assert c.get(f"{URL}?limit=1&offset=1", headers=headers).json()["previous"] == \
        f"http://meterhub.test{URL}?limit=1"
    assert len(c.get(f"{URL}?limit=abc", headers=headers).json()["results"]) == 3


@pytest.mark.parametrize(("query", "count"), [
    ("timestamp__gte=2024-10-26 12:05:00", 2),
    ("timestamp__gte=2024-10-26T12:05:00&timestamp__lte=2024-10-26 12:05:00", 1),
    ("timestamp__lte=2024-10-26T10:05:00Z", 2),
    ("timestamp__gte=2024-10-27", 0),
])
def test_time_filters_are_local_and_inclusive(api: Api, query: str, count: int) -> None:
    push_day(api)
    c, headers = client(api)
    response = c.get(f"{URL}?{query}", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["count"] == count


def test_a_time_in_local_mean_time_reads_back_through_the_filters(api: Api) -> None:
    # Amsterdam kept local mean time (+00:19:32) before 1937: Python and DSMR-reader write
    # that offset with its seconds, and the filters once refused the time they were shown
    c, headers = client(api)
    created = c.post(URL, json={**SEED_POST, "timestamp": "1850-06-01T12:00:00Z"},
                     headers=headers).json()
    assert created["timestamp"] == "1850-06-01T12:19:32+00:19:32"
    for query in ({"timestamp__gte": created["timestamp"],
                   "timestamp__lte": created["timestamp"]},
                  {"timestamp__lte": "1850-06-01 12:19:32+00:19:32"}):
        response = c.get(URL, params=query, headers=headers)
        assert response.status_code == 200, response.text
        assert [r["id"] for r in response.json()["results"]] == [created["id"]]
    again = c.post(URL, json={**SEED_POST, "timestamp": created["timestamp"]}, headers=headers)
    assert again.status_code == 201, again.text
    assert again.json()["id"] == created["id"]


def test_bad_filters_keys_and_the_version(api: Api) -> None:
    c, headers = client(api)
    bad = c.get(f"{URL}?timestamp__gte=yesterday", headers=headers)
    assert bad.status_code == 400
    assert bad.json() == {"timestamp__gte": ["Enter a valid date/time."]}
    for wrong in ({"X-AUTHKEY": "nope"}, {}):
        denied = c.get(URL, headers=wrong)
        assert denied.status_code == 403
        assert denied.text == '{"detail":"Invalid auth key"}'
    assert c.post(URL, data=SEED_POST, headers={"X-AUTHKEY": api.keys["read"]}
                  ).status_code == 403
    assert c.get(URL, headers={"Authorization": f"Token {api.keys['read']}"}
                 ).json()["count"] == 0
    assert c.get("/api/v2/application/version", headers=headers).json() == {
        "version": "5.11.0"}
