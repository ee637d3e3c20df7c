"""DSMR-reader's v2 meter-statistics singleton on meterhub: what a fresh store answers, what
a pushed telegram sets (read off its text by hand), PATCH as a partial DRF update that
persists across a restart and keeps the rejection count consistent, and its 400s and 403s."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from meterhub.api import create_app, dsmr_reader
from meterhub.config import parse
from meterhub.hub import Hub
from meterhub.ingest import GroupWriter
from tests.api.conftest import Api, Client
from tests.dsmr.telegrams import v5, v22

URL = "/api/v2/datalogger/meter-statistics"
PUSH = "/api/v1/datalogger/dsmrreading"
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
FIELDS = ["id", "timestamp", "dsmr_version", "electricity_tariff", "power_failure_count",
          "long_power_failure_count", "voltage_sag_count_l1", "voltage_sag_count_l2",
          "voltage_sag_count_l3", "voltage_swell_count_l1", "voltage_swell_count_l2",
          "voltage_swell_count_l3", "rejected_telegrams", "latest_telegram"]


def headers(api: Api, scope: str) -> dict[str, str]:
    return {"X-AUTHKEY": api.keys[scope]}


def push(api: Api, telegram: str) -> int:
    return Client(api.app).post(PUSH, data={"telegram": telegram},
                                headers=headers(api, "write")).status_code


def patch(api: Api, body: dict[str, Any], *, scope: str = "write",
          form: bool = False) -> httpx.Response:
    sent = {"data": body} if form else {"json": body}
    return Client(api.app).request("PATCH", URL, headers=headers(api, scope), **sent)


def get(api: Api) -> dict[str, Any]:
    response = Client(api.app).get(URL, headers=headers(api, "read"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert list(body) == FIELDS
    return body


def test_a_fresh_store_answers_dsmr_readers_new_singleton(api: Api) -> None:
    before = dt.datetime.now(dt.UTC)
    body = get(api)
    after = dt.datetime.now(dt.UTC)
    # DSMR-reader makes the singleton on first use: its time is "now", in local time
    stamp = dt.datetime.fromisoformat(body["timestamp"])
    assert before <= stamp <= after
    assert stamp.utcoffset() == before.astimezone(AMSTERDAM).utcoffset()
    assert body["id"] == 1
    assert body["rejected_telegrams"] == 0  # the only field that is never null
    assert {k: body[k] for k in FIELDS[2:] if k != "rejected_telegrams"} == dict.fromkeys(
        ["dsmr_version", "electricity_tariff", "power_failure_count",
         "long_power_failure_count", "voltage_sag_count_l1", "voltage_sag_count_l2",
         "voltage_sag_count_l3", "voltage_swell_count_l1", "voltage_swell_count_l2",
         "voltage_swell_count_l3", "latest_telegram"])


def test_a_pushed_telegram_sets_the_meters_status(api: Api) -> None:
    telegram = v5()
    assert push(api, telegram) == 201
    assert push(api, "hello") == 500
    # from the telegram's lines: 1-3:0.2.8(50), 0-0:1.0.0(241027023000W), 96.14.0(0001),
    # 96.7.21(00012), 96.7.9(00003), 32/52/72.32.0 (1, 2, 3) and 32/52/72.36.0 (all 0)
    assert get(api) == {
        "id": 1, "timestamp": "2024-10-27T02:30:00+01:00", "dsmr_version": "50",
        "electricity_tariff": 1, "power_failure_count": 12, "long_power_failure_count": 3,
        "voltage_sag_count_l1": 1, "voltage_sag_count_l2": 2, "voltage_sag_count_l3": 3,
        "voltage_swell_count_l1": 0, "voltage_swell_count_l2": 0,
        "voltage_swell_count_l3": 0, "rejected_telegrams": 1,
        # kept as DSMR-reader keeps it: its form trims the line end after the CRC
        "latest_telegram": telegram.removesuffix("\r\n")}


def test_a_patch_updates_the_fields_sent_and_persists_across_a_restart(api: Api) -> None:
    assert push(api, v5()) == 201
    response = patch(api, {"timestamp": "2020-01-15T12:34:56+01:00", "dsmr_version": "42",
                           "electricity_tariff": 2, "power_failure_count": "77777",
                           "voltage_swell_count_l3": 6.0, "rejected_telegrams": 7,
                           "id": 99, "no_such_field": 1})
    assert response.status_code == 200, response.text
    expected = {
        "id": 1, "timestamp": "2020-01-15T12:34:56+01:00", "dsmr_version": "42",
        "electricity_tariff": 2, "power_failure_count": 77777,
        # not sent: still the telegram's
        "long_power_failure_count": 3, "voltage_sag_count_l1": 1, "voltage_sag_count_l2": 2,
        "voltage_sag_count_l3": 3, "voltage_swell_count_l1": 0, "voltage_swell_count_l2": 0,
        "voltage_swell_count_l3": 6, "rejected_telegrams": 7,
        "latest_telegram": v5().removesuffix("\r\n")}
    assert response.json() == expected
    assert get(api) == expected
    restarted = Api(api.hub, create_app(api.hub, rate_limit="10000/minute"), api.keys,
                    api.client)
    assert get(restarted) == expected
    # the restarted push endpoint counts on from the patched count
    assert push(restarted, "hello") == 500
    assert get(restarted)["rejected_telegrams"] == 8


def test_a_patched_rejection_count_is_where_the_running_endpoint_counts_on(
        api: Api) -> None:
    assert push(api, "hello") == 500
    assert patch(api, {"rejected_telegrams": 40}).json()["rejected_telegrams"] == 40
    assert api.app.state.dsmr_counters.rejected == 40
    assert push(api, "hello") == 500
    assert get(api)["rejected_telegrams"] == 41
    assert api.hub.get_state("dsmr.rejected.p1") == "41"


def test_the_next_telegram_sets_the_status_again(api: Api) -> None:
    assert patch(api, {"electricity_tariff": 2}).status_code == 200
    assert push(api, v5()) == 201
    assert get(api)["electricity_tariff"] == 1  # the meter's own word wins, as in DSMR-reader


def test_what_a_telegram_does_not_say_keeps_its_earlier_value(api: Api) -> None:
    """A DSMR 2.2 meter sends no failure or sag counts: the PATCHed ones stay, the tariff
    and time follow the telegram, and the status survives a restart of the server."""
    old = Api(api.hub, create_app(api.hub, settings=parse({"dsmr": {"version": "2.2"}}),
                                  rate_limit="10000/minute"), api.keys, api.client)
    assert patch(old, {"power_failure_count": 7, "voltage_sag_count_l1": 2,
                       "electricity_tariff": 2}).status_code == 200
    assert push(old, v22()) == 201
    status = get(old)
    assert (status["power_failure_count"], status["voltage_sag_count_l1"]) == (7, 2)
    assert status["electricity_tariff"] == 1  # the telegram's 0-0:96.14.0(0001)
    restarted = Api(api.hub, create_app(api.hub, settings=parse({"dsmr": {"version": "2.2"}}),
                                        rate_limit="10000/minute"), api.keys, api.client)
    assert push(restarted, v22()) == 201
    assert get(restarted)["power_failure_count"] == 7


def test_a_patch_never_undoes_a_telegram_still_being_committed(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    assert push(api, v5()) == 201  # tariff 1

    class SlowWriter(GroupWriter):
        """Gathers for a second before committing: the next telegram waits there."""

        def __init__(self, hub: Hub, **options: Any) -> None:
            super().__init__(hub, **{**options, "window": 1.0})

    monkeypatch.setattr(dsmr_reader, "GroupWriter", SlowWriter)
    slow = create_app(api.hub, rate_limit="10000/minute")
    sent = headers(api, "write")

    async def push_then_patch() -> tuple[int, int]:
        transport = httpx.ASGITransport(app=slow)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            pushing = asyncio.create_task(client.post(PUSH, headers=sent, data={
                "telegram": v5(stamp="241027033000W", tariff="0002")}))
            # until the telegram is with the writer (at most a while): not yet stored
            deadline = time.monotonic() + 0.3
            while (slow.state.dsmr_counters.status or {}).get("electricity_tariff") != 2 \
                    and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            assert '"electricity_tariff":1' in (api.hub.get_state("dsmr.status.p1") or "")
            patched = await client.patch(URL, headers=sent, json={"voltage_swell_count_l1": 9})
            return (await pushing).status_code, patched.status_code

    assert asyncio.run(push_then_patch()) == (201, 200)
    body = get(Api(api.hub, slow, api.keys, api.client))  # one server owns a store
    assert (body["timestamp"], body["electricity_tariff"], body["voltage_swell_count_l1"]) == (
        "2024-10-27T03:30:00+01:00", 2, 9)


def test_a_patch_of_a_fresh_singleton_fixes_its_time(api: Api) -> None:
    before = dt.datetime.now(dt.UTC)
    assert patch(api, {"dsmr_version": "50"}).status_code == 200
    first, second = get(api), get(api)
    assert first == second  # no longer "now" at each read
    assert before <= dt.datetime.fromisoformat(first["timestamp"]) <= dt.datetime.now(dt.UTC)
    assert first["dsmr_version"] == "50"
    assert first["electricity_tariff"] is None


def test_form_patches_and_what_drf_makes_of_them(api: Api) -> None:
    assert push(api, v5()) == 201
    response = patch(api, {"voltage_swell_count_l1": "4", "latest_telegram": "",
                           "timestamp": "", "dsmr_version": " 5 "}, form=True)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["voltage_swell_count_l1"] == 4
    assert body["latest_telegram"] is None  # an empty form field is null where allowed
    assert body["timestamp"] == "2024-10-27T02:30:00+01:00"  # ... and not sent elsewhere
    assert body["dsmr_version"] == "5"  # DRF trims text
    naive = patch(api, {"timestamp": "2024-07-01 12:00:00"})  # local time, as DRF reads it
    assert naive.json()["timestamp"] == "2024-07-01T12:00:00+02:00"


def test_bad_values_are_400_with_drf_field_errors_and_change_nothing(api: Api) -> None:
    assert push(api, v5()) == 201
    before = get(api)
    response = patch(api, {"latest_telegram": ["x"], "rejected_telegrams": None,
                           "voltage_sag_count_l1": True, "long_power_failure_count": 2**31,
                           "power_failure_count": 1.5, "electricity_tariff": "high",
                           "dsmr_version": "500", "timestamp": None})
    assert response.status_code == 400
    # in the serializer's field order, whatever the body's
    assert response.text == (
        '{"timestamp":["This field may not be null."],'
        '"dsmr_version":["Ensure this field has no more than 2 characters."],'
        '"electricity_tariff":["A valid integer is required."],'
        '"power_failure_count":["A valid integer is required."],'
        '"long_power_failure_count":["Ensure this value is less than or equal to '
        '2147483647."],'
        '"voltage_sag_count_l1":["A valid integer is required."],'
        '"rejected_telegrams":["This field may not be null."],'
        '"latest_telegram":["Not a valid string."]}')
    assert patch(api, {"timestamp": "yesterday", "dsmr_version": ""}).json() == {
        "timestamp": ["Datetime has wrong format. Use one of these formats instead: "
                      "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."],
        "dsmr_version": ["This field may not be blank."]}
    listed = Client(api.app).request("PATCH", URL, headers=headers(api, "write"),
                                     json=[1, 2])
    assert listed.status_code == 400
    assert listed.json() == {"non_field_errors": [
        "Invalid data. Expected a dictionary, but got list."]}
    assert patch(api, {"power_failure_count": -2**31 - 1}).json() == {
        "power_failure_count": ["Ensure this value is greater than or equal to -2147483648."]}
    assert get(api) == before


@pytest.mark.parametrize(("method", "scope"), [("GET", None), ("GET", "nope"),
                                               ("PATCH", "read"), ("PATCH", None)])
def test_keys_need_their_scope(api: Api, method: str, scope: str | None) -> None:
    sent = {} if scope is None else {"X-AUTHKEY": api.keys.get(scope, scope)}
    response = Client(api.app).request(method, URL, headers=sent,
                                       json={"electricity_tariff": 2})
    assert response.status_code == 403
    assert response.text == '{"detail":"Invalid auth key"}'
    assert get(api)["electricity_tariff"] is None


def test_a_token_header_and_a_read_key_can_read(api: Api) -> None:
    response = Client(api.app).get(URL, headers={"Authorization": f"Token {api.keys['read']}"})
    assert response.status_code == 200
    assert response.json()["id"] == 1
