"""Hostile and edge input on the DSMR-reader paths (issue 15): times outside the range
meterhub keeps, numbers beyond the limits of DSMR-reader's own models, oversized bodies,
exhausted keys, non-finite telegram registers and times ahead of the server's clock.

Expected answers are DSMR-reader's and DRF's (3.14, the version DSMR-reader 5.11 pins):
DsmrReading and EnergySupplierPrice field limits as its models declare them, DRF's own
error texts, its 429 body and Retry-After. Nothing refused may be written.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from meterhub.api import create_app
from meterhub.cli import app as cli
from meterhub.errors import NotFoundError
from meterhub.keys import new_key
from tests.api.conftest import Api, Client
from tests.api.live import served
from tests.dsmr.telegrams import p1_stamp, seal, v5
from tests.dsmr.test_v2_api import SEED_POST, push_day

READINGS = "/api/v2/datalogger/dsmrreading"
PRICES = "/api/v2/consumption/energy-supplier-prices"
METER = "/api/v2/datalogger/meter-statistics"
PUSH = "/api/v1/datalogger/dsmrreading"
OUT_OF_RANGE = "Datetime value out of range."  # DRF's DateTimeField 'overflow'
AHEAD = "Datetime is more than 24 hours ahead of the server's clock."
#: a valid v2 reading, with gas
READING = {**SEED_POST, "extra_device_timestamp": "2017-04-14T23:00:00+02:00",
           "extra_device_delivered": "1.000"}


def write(api: Api, method: str, url: str, **kwargs: Any) -> httpx.Response:
    return Client(api.app).request(method, url, headers={"X-AUTHKEY": api.keys["write"]},
                                   **kwargs)


def stored(api: Api) -> int:
    """Readings of the meter in the store."""
    try:
        return len(api.hub.readings(device="p1"))
    except NotFoundError:
        return 0


def meter(api: Api) -> dict[str, Any]:
    response = write(api, "GET", METER)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# -- times: the range meterhub keeps (1800-01-01 to 2200-01-01 UTC, exclusive) ----------

@pytest.mark.parametrize(("field", "value"), [
    ("timestamp", "0001-01-01T00:00:00"),  # naive: Amsterdam's local mean time, +00:19:32
    ("timestamp", "0001-01-01T00:00:00+01:00"),
    ("timestamp", "9999-12-31T00:00:00"),
    ("timestamp", "9999-12-31T23:59:59-05:00"),
    # naive 1800-01-01 00:00 in Amsterdam is 1799-12-31 23:40:28 UTC: before the range
    ("timestamp", "1800-01-01T00:00:00"),
    ("timestamp", "2200-01-01T00:00:00Z"),
    ("extra_device_timestamp", "0001-01-01T00:00:00"),
])
def test_a_time_out_of_range_is_a_field_error_and_nothing_is_written(
        api: Api, field: str, value: str) -> None:
    response = write(api, "POST", READINGS, json={**READING, field: value})
    assert response.status_code == 400, response.text
    assert response.json() == {field: [OUT_OF_RANGE]}
    assert stored(api) == 0
    assert write(api, "GET", READINGS).json()["count"] == 0


def test_the_range_is_the_models_to_the_second(api: Api) -> None:
    kept = write(api, "POST", READINGS, json={**SEED_POST, "timestamp": "1800-01-01T00:00:00Z"})
    assert kept.status_code == 201, kept.text
    assert kept.json()["id"] == -5364662400  # 1800-01-01 UTC as a Unix second
    before = write(api, "POST", READINGS, json={**SEED_POST,
                                                "timestamp": "1799-12-31T23:59:59Z"})
    assert (before.status_code, before.json()) == (400, {"timestamp": [OUT_OF_RANGE]})
    stamps = api.hub.readings(device="p1", channel="electricity_delivered_1")["ts"]
    assert [str(ts) for ts in stamps] == ["1800-01-01 00:00:00+00:00"]


@pytest.mark.parametrize(("path", "query", "error", "inside", "count"), [
    (READINGS, "timestamp__gte=0001-01-01", "Enter a valid date/time.",
     "timestamp__gte=1800-01-01T00:00:00Z", 5),
    (READINGS, "timestamp__lte=9999-12-31T23:59:59-05:00", "Enter a valid date/time.",
     "timestamp__lte=2199-12-31T23:59:59Z", 5),
    ("/api/v2/statistics/hour", "hour_start__gte=0001-01-01", "Enter a valid date/time.",
     "hour_start__gte=1800-01-01T00:00:00Z", 1),
    ("/api/v2/statistics/hour", "hour_start__lte=9999-12-31", "Enter a valid date/time.",
     "hour_start__lte=2199-12-31", 1),
    ("/api/v2/statistics/day", "day__gte=0001-01-01", "Enter a valid date.",
     "day__gte=1800-01-01", 1),
    ("/api/v2/statistics/day", "day__lte=9999-12-31", "Enter a valid date.",
     "day__lte=2199-12-31", 1),
])
def test_filters_out_of_range_are_field_errors(api: Api, path: str, query: str, error: str,
                                               inside: str, count: int) -> None:
    push_day(api)  # three readings in one hour of 26 Oct 2024: every path has data
    # and two of the next day, with its gas: DSMR-reader makes the 26th's statistics once
    # its readings are all compacted and a gas reading of a later day is in
    for stamp in ("241027100000W", "241027100500W"):
        telegram = v5(stamp=stamp, t1="001234.600", gas_stamp="241027100000W",
                      gas="00457.000")
        assert write(api, "POST", "/api/v1/datalogger/dsmrreading",
                     data={"telegram": telegram}).status_code == 201
    response = write(api, "GET", f"{path}?{query}")
    assert response.status_code == 400, response.text
    assert response.json() == {query.partition("=")[0]: [error]}
    answered = write(api, "GET", f"{path}?{inside}")
    assert answered.status_code == 200, answered.text
    assert answered.json()["count"] == count


# -- numbers: DsmrReading's fields (dsmr_datalogger/models/reading.py) -------------------

@pytest.mark.parametrize(("field", "value", "error"), [
    ("electricity_delivered_1", "1e30", "Ensure that there are no more than 9 digits in total."),
    # a JSON number: 31 digits, whichever way a parser holds it
    ("electricity_currently_delivered", 10**30,
     "Ensure that there are no more than 9 digits in total."),
    ("electricity_returned_2", "1234567.5",
     "Ensure that there are no more than 6 digits before the decimal point."),
    ("phase_voltage_l1", "1000",
     "Ensure that there are no more than 3 digits before the decimal point."),
    # DRF checks the digits in total first
    ("phase_voltage_l2", "230.25", "Ensure that there are no more than 4 digits in total."),
    ("extra_device_delivered", "1e10", "Ensure that there are no more than 9 digits in total."),
    ("electricity_delivered_2", "1" * 1001, "String value too large."),
    ("phase_power_current_l1", "1e20", "A valid integer is required."),
    ("phase_power_current_l1", "2.5", "A valid integer is required."),
    ("phase_power_current_l2", 1000, "Ensure this value is less than or equal to 999."),
    ("phase_power_current_l3", "-1", "Ensure this value is greater than or equal to 0."),
])
def test_numbers_beyond_the_model_are_refused_before_anything_is_written(
        api: Api, field: str, value: object, error: str) -> None:
    response = write(api, "POST", READINGS, json={**READING, field: value})
    assert response.status_code == 400, response.text
    assert response.json() == {field: [error]}
    assert stored(api) == 0
    listed = write(api, "GET", READINGS)
    assert (listed.status_code, listed.json()["count"]) == (200, 0)


def test_the_model_limits_hold_to_the_digit(api: Api) -> None:
    edge = {"electricity_delivered_1": "999999.999", "phase_voltage_l1": "999.9",
            "phase_power_current_l1": "999", "phase_power_current_l2": "7.0"}
    response = write(api, "POST", READINGS, data={**READING, **edge})
    assert response.status_code == 201, response.text
    shown = {"electricity_delivered_1": "999999.999", "phase_voltage_l1": "999.9",
             "phase_power_current_l1": 999, "phase_power_current_l2": 7}
    assert {k: response.json()[k] for k in shown} == shown
    (listed,) = write(api, "GET", READINGS).json()["results"]
    assert {k: listed[k] for k in shown} == shown
    beyond = {"electricity_delivered_1": "1000000.000", "phase_voltage_l1": "1000.0",
              "phase_power_current_l1": "1000", "phase_power_current_l2": "7.5",
              "timestamp": "2018-01-01T00:00:00+01:00"}
    refused = write(api, "POST", READINGS, data={**READING, **beyond})
    assert refused.status_code == 400
    assert refused.json() == {
        "electricity_delivered_1": ["Ensure that there are no more than 9 digits in total."],
        "phase_voltage_l1": ["Ensure that there are no more than 4 digits in total."],
        "phase_power_current_l1": ["Ensure this value is less than or equal to 999."],
        "phase_power_current_l2": ["A valid integer is required."]}
    assert write(api, "GET", READINGS).json()["count"] == 1


def test_values_already_stored_beyond_the_model_still_list(api: Api) -> None:
    """Readings stored before these checks (or by other means) never make the list fail."""
    api.hub.write([{"device": "p1", "channel": name, "ts": "2024-10-26T10:00:00Z",
                    "value": value, "unit": unit, "kind": kind}
                   for name, value, unit, kind in [
                       ("electricity_delivered_1", 1e30, "kWh", "counter"),
                       ("phase_power_current_l1", 1e20, "A", "instant")]], source="dsmr")
    response = write(api, "GET", READINGS)
    assert response.status_code == 200, response.text
    (reading,) = response.json()["results"]
    assert reading["electricity_delivered_1"] == "1" + "0" * 30 + ".000"
    assert reading["phase_power_current_l1"] is None  # no JSON integer holds it


# -- numbers and text: EnergySupplierPrice (dsmr_consumption/models/energysupplier.py) -----

CONTRACT = {"start": "2025-01-01", "end": "2025-12-31", "description": "2025"}


@pytest.mark.parametrize(("field", "value", "error"), [
    ("gas_price", "1e30", "Ensure that there are no more than 11 digits in total."),
    ("electricity_delivered_1_price", "123456.5",
     "Ensure that there are no more than 5 digits before the decimal point."),
    ("fixed_daily_cost", 10**12, "Ensure that there are no more than 11 digits in total."),
    ("description", "x" * 256, "Ensure this field has no more than 255 characters."),
])
def test_contracts_beyond_the_model_are_refused_before_anything_is_written(
        api: Api, field: str, value: object, error: str) -> None:
    response = write(api, "POST", PRICES, json={**CONTRACT, field: value})
    assert response.status_code == 400, response.text
    assert response.json() == {field: [error]}
    assert api.hub.get_state("dsmr.prices.p1") is None
    listed = write(api, "GET", PRICES)
    assert (listed.status_code, listed.json()["count"]) == (200, 0)


def test_contract_limits_hold_to_the_digit_and_character(api: Api) -> None:
    # DRF trims text before counting it
    body = {**CONTRACT, "description": f"  {'x' * 255}  ", "gas_price": "99999.999999"}
    response = write(api, "POST", PRICES, json=body)
    assert response.status_code == 201, response.text
    assert (response.json()["description"], response.json()["gas_price"]) == (
        "x" * 255, "99999.999999")
    refused = write(api, "POST", PRICES, json={**CONTRACT, "description": "x" * 256,
                                               "gas_price": "100000.000000"})
    assert refused.status_code == 400
    assert refused.json() == {
        "description": ["Ensure this field has no more than 255 characters."],
        "gas_price": ["Ensure that there are no more than 11 digits in total."]}
    (listed,) = write(api, "GET", PRICES).json()["results"]
    assert listed == response.json()


# -- rate limits: every path counts, DRF's 429 -------------------------------------------

def keyed(api: Api, scope: str, limit: str) -> str:
    record, text = new_key(f"{scope}-{limit}", scope, limit)
    api.app.state.keys.add(record)
    return text


def throttled_body(response: httpx.Response) -> dict[str, str]:
    wait = int(response.headers["Retry-After"])
    unit = "second" if wait == 1 else "seconds"
    return {"detail": f"Request was throttled. Expected available in {wait} {unit}."}


#: every DSMR path and method, with a body where it takes one
CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", READINGS, {}),
    ("POST", READINGS, {"data": SEED_POST}),
    ("GET", "/api/v2/application/version", {}),
    ("GET", METER, {}),
    ("PATCH", METER, {"json": {"rejected_telegrams": "many"}}),  # a 400 counts too
    ("GET", "/api/v2/consumption/electricity-live", {}),
    ("GET", "/api/v2/consumption/gas-live", {}),
    ("GET", "/api/v2/consumption/today", {}),
    ("GET", PRICES, {}),
    ("POST", PRICES, {"json": CONTRACT}),
    ("DELETE", f"{PRICES}/4242", {}),  # a 404 counts too
    ("GET", "/api/v2/statistics/day", {}),
    ("GET", "/api/v2/statistics/hour", {}),
    ("POST", PUSH, {"data": {"telegram": v5()}}),
]


def test_every_dsmr_path_counts_against_the_keys_limit_and_says_so(api: Api) -> None:
    key = keyed(api, "write", f"{len(CALLS)}/hour")
    c = Client(api.app)
    for n, (method, url, kwargs) in enumerate(CALLS, start=1):
        response = c.request(method, url, headers={"X-AUTHKEY": key}, **kwargs)
        assert response.status_code < 429, (method, url, response.text)
        assert response.headers["X-RateLimit-Limit"] == str(len(CALLS)), (method, url)
        assert response.headers["X-RateLimit-Remaining"] == str(len(CALLS) - n), (method, url)
        assert int(response.headers["X-RateLimit-Reset"]) > 0
    readings_before = stored(api)
    later = {**SEED_POST, "timestamp": "2018-01-01T00:00:00+01"}  # a reading not stored yet
    for method, url, kwargs in CALLS:
        if (method, url) == ("POST", READINGS):
            kwargs = {"data": later}
        response = c.request(method, url, headers={"X-AUTHKEY": key}, **kwargs)
        assert response.status_code == 429, (method, url, response.text)
        assert response.headers["X-RateLimit-Remaining"] == "0"
        assert int(response.headers["Retry-After"]) >= 1
        if url == PUSH:  # the v1 push answers in its own plain text, as before
            assert response.text == "Too many requests"
        else:
            assert response.headers["content-type"] == "application/json"
            assert response.json() == throttled_body(response)
    assert stored(api) == readings_before  # a throttled write writes nothing
    assert write(api, "GET", PRICES).json()["count"] == 1


def test_refused_answers_to_a_known_key_count_too(api: Api) -> None:
    key = keyed(api, "read", "3/hour")
    c = Client(api.app)
    refused = c.post(READINGS, data=SEED_POST, headers={"Authorization": f"Token {key}"})
    assert (refused.status_code, refused.json()) == (403, {"detail": "Invalid auth key"})
    assert refused.headers["X-RateLimit-Remaining"] == "2"
    bad = c.get(f"{READINGS}?timestamp__gte=yesterday", headers={"X-AUTHKEY": key})
    assert (bad.status_code, bad.headers["X-RateLimit-Remaining"]) == (400, "1")
    assert c.get(READINGS, headers={"X-AUTHKEY": key}).headers["X-RateLimit-Remaining"] == "0"
    over = c.get(READINGS, headers={"X-AUTHKEY": key})
    assert over.status_code == 429
    assert over.json() == throttled_body(over)
    # an unknown key has no limit to count against: 403 without limit headers
    unknown = c.get(READINGS, headers={"X-AUTHKEY": "nope"})
    assert unknown.status_code == 403
    assert "X-RateLimit-Remaining" not in unknown.headers


# -- bodies: at most 64 kB, refused unread ------------------------------------------------

def _claimed(base: str, method: str, path: str, key: str, media: str) -> bytes:
    """What a real server answers to headers claiming a 200 MB body that never comes."""
    where = urlsplit(base)
    with socket.create_connection((where.hostname, where.port), timeout=5) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: {where.netloc}\r\n"
                     f"X-AUTHKEY: {key}\r\nContent-Type: {media}\r\n"
                     f"Content-Length: {200 * 1024 * 1024}\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)  # a server waiting for the body times this out
            if not chunk:
                break
            answer += chunk
        sock.settimeout(0.5)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
    return answer


@pytest.mark.parametrize(("method", "path", "media", "body"), [
    ("POST", PUSH, "application/x-www-form-urlencoded",
     b"Request body too large (at most 65536 bytes)"),
    ("POST", READINGS, "application/json",
     b'{"detail":"Request body too large: at most 65536 bytes."}'),
    ("POST", PRICES, "application/json",
     b'{"detail":"Request body too large: at most 65536 bytes."}'),
    ("PATCH", METER, "application/x-www-form-urlencoded",
     b'{"detail":"Request body too large: at most 65536 bytes."}'),
])
def test_a_body_declared_too_large_is_refused_before_it_is_read(
        api: Api, method: str, path: str, media: str, body: bytes) -> None:
    with served(create_app(api.hub, rate_limit="10000/minute")) as base:
        started = time.monotonic()
        answer = _claimed(base, method, path, api.keys["write"], media)
        assert time.monotonic() - started < 4
    head, _, content = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"x-ratelimit-remaining:" in head.lower()
    assert content == body


def test_a_streamed_body_is_cut_off_at_the_limit(api: Api) -> None:
    """Sent without a length (chunked): reading stops once it passes 64 kB."""
    pulled = [0]

    async def endless() -> AsyncIterator[bytes]:
        yield orjson.dumps(READING)[:-1] + b', "padding": "'
        for _ in range(2048):  # 16 MB, if anyone read it all
            pulled[0] += 8192
            yield b"x" * 8192
        yield b'"}'

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=api.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.post(READINGS, content=endless(), headers={
                "X-AUTHKEY": api.keys["write"], "Content-Type": "application/json"})

    response = asyncio.run(call())
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large: at most 65536 bytes."}
    assert pulled[0] <= 64 * 1024 + 8192
    assert stored(api) == 0


def test_a_valid_reading_in_an_oversized_body_is_not_stored(api: Api) -> None:
    response = write(api, "POST", READINGS, json={**READING, "padding": "x" * 100_000})
    assert response.status_code == 413
    assert stored(api) == 0
    contract = write(api, "POST", PRICES, json={**CONTRACT, "description": "x" * 100_000})
    assert contract.status_code == 413
    assert api.hub.get_state("dsmr.prices.p1") is None


def test_an_oversized_telegram_push_is_refused_and_not_counted(api: Api) -> None:
    telegram = v5().replace("0-0:96.13.0()", "0-0:96.13.0(" + "41" * 40_000 + ")")
    response = write(api, "POST", PUSH, data={"telegram": telegram})
    assert response.status_code == 413
    assert response.text == "Request body too large (at most 65536 bytes)"
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert stored(api) == 0
    assert meter(api)["rejected_telegrams"] == 0


# -- telegrams: registers that are no finite number ----------------------------------------

@pytest.mark.parametrize("register", ["t1", "delivered", "gas"])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_telegram_with_a_register_that_is_no_number_is_rejected(
        api: Api, register: str, value: str) -> None:
    good = v5(stamp="241027023000W")
    assert write(api, "POST", PUSH, data={"telegram": good}).status_code == 201
    bad = v5(stamp="241027033000W", tariff="0002", **{register: value})
    response = write(api, "POST", PUSH, data={"telegram": bad})
    assert (response.status_code, response.text) == (500, "Failed to parse telegram")
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    status = meter(api)
    assert status["rejected_telegrams"] == 1
    # the meter's status is still the good telegram's
    assert (status["latest_telegram"], status["electricity_tariff"]) == (
        good.removesuffix("\r\n"), 1)
    assert stored(api) == 19  # the good telegram's readings only


def test_a_replayed_capture_counts_a_telegram_with_nan_as_rejected(tmp_path: Path) -> None:
    capture = tmp_path / "capture.txt"
    capture.write_bytes((v5(stamp="241027023000W")
                         + v5(stamp="241027033000W", t1="NaN")).encode("ascii"))
    store = f"duckdb:///{tmp_path / 'p1.duckdb'}"
    result = CliRunner().invoke(cli, ["p1", "--file", str(capture), "--store", store])
    assert result.exit_code == 0, result.output
    assert "2 telegram(s) read, 1 rejected; readings: 19 new" in result.stdout


def test_a_count_no_meter_statistics_column_holds_is_unknown(api: Api) -> None:
    """A power failure count of 20 digits: DSMR-reader's integer column cannot hold it, nor
    can JSON's integers; the count is unknown, as an unreadable one is."""
    lines = v5().split("\r\n")[:-2]  # without "!CRC" and the final line end
    telegram = seal([line.replace("0-0:96.7.21(00012)", f"0-0:96.7.21({'9' * 20})")
                     for line in lines])
    assert "9" * 20 in telegram
    response = write(api, "POST", PUSH, data={"telegram": telegram})
    assert response.status_code == 201, response.text
    status = meter(api)
    assert (status["power_failure_count"], status["long_power_failure_count"]) == (None, 3)
    assert status["latest_telegram"] == telegram.removesuffix("\r\n")


# -- the future: one rule, 24 hours ahead ----------------------------------------------------

def _utc(hours: float) -> str:
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def test_a_v2_reading_more_than_24_hours_ahead_is_refused(api: Api) -> None:
    ahead = write(api, "POST", READINGS, json={**SEED_POST, "timestamp": _utc(25)})
    assert ahead.status_code == 400
    assert ahead.json() == {"timestamp": [AHEAD]}
    gas = write(api, "POST", READINGS, json={**SEED_POST, "extra_device_delivered": "1.000",
                                             "extra_device_timestamp": _utc(25)})
    assert gas.status_code == 400
    assert gas.json() == {"extra_device_timestamp": [AHEAD]}
    assert stored(api) == 0
    within = write(api, "POST", READINGS, json={**SEED_POST, "timestamp": _utc(23)})
    assert within.status_code == 201, within.text


def test_the_push_and_the_v2_post_share_one_future_limit(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("meterhub.dsmr.telegram.FUTURE_LIMIT", dt.timedelta(hours=1))
    two_hours = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    pushed = write(api, "POST", PUSH, data={"telegram": v5(
        stamp=p1_stamp(two_hours), gas_stamp=p1_stamp(two_hours - dt.timedelta(hours=3)))})
    assert pushed.status_code == 500
    posted = write(api, "POST", READINGS, json={**SEED_POST, "timestamp": _utc(2)})
    assert posted.status_code == 400
    assert list(posted.json()) == ["timestamp"]
    assert write(api, "POST", READINGS, json={**SEED_POST, "timestamp": _utc(0.5)}
                 ).status_code == 201


# -- registers beyond what a meter reports, and absurd values already stored ---------------

@pytest.mark.parametrize(("register", "value"), [
    ("t1", "1000000.000"),  # DsmrReading: 9 digits with 3 places, so at most 999999.999
    ("delivered", "1234567.8"), ("gas", "1e7")])
def test_a_telegram_register_beyond_the_readings_columns_is_rejected(
        api: Api, register: str, value: str) -> None:
    response = write(api, "POST", PUSH, data={"telegram": v5(**{register: value})})
    assert (response.status_code, response.text) == (500, "Failed to parse telegram")
    assert meter(api)["rejected_telegrams"] == 1
    assert stored(api) == 0
    edge = {"t1": "999999.999", "delivered": "99999.999", "gas": "99999.999"}[register]
    assert write(api, "POST", PUSH, data={"telegram": v5(**{register: edge})}
                 ).status_code == 201


def test_absurd_values_in_the_store_never_break_a_statistic(api: Api) -> None:
    """Readings written by other means (the generic API) may be any finite float: every v2
    read of the meter still answers, costs included."""
    assert write(api, "POST", PRICES, json={**CONTRACT, "start": "2024-01-01",
                                            "end": "2099-12-31", "gas_price": "9.5",
                                            "electricity_delivered_1_price": "99999.5",
                                            }).status_code == 201
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    rows = []
    for at in ("2024-10-26T10:00:00Z", "2024-10-26T10:30:00Z",
               (now - dt.timedelta(minutes=2)).isoformat(), now.isoformat()):
        for name, value, unit, kind in [
                ("electricity_delivered_1", 1.5e300, "kWh", "counter"),
                ("electricity_currently_delivered", 1e300, "kW", "instant"),
                ("extra_device_delivered", 1.7e308, "m³", "counter")]:
            rows.append({"device": "p1", "channel": name, "ts": at, "kind": kind,
                         "value": -value if at.endswith("30:00Z") else value, "unit": unit})
    api.hub.write(rows, source="dsmr")
    for path in (READINGS, "/api/v2/statistics/day", "/api/v2/statistics/hour",
                 "/api/v2/consumption/today", "/api/v2/consumption/electricity-live",
                 "/api/v2/consumption/gas-live", METER):
        response = write(api, "GET", path)
        assert response.status_code == 200, (path, response.text)
