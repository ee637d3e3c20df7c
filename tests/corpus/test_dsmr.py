"""The DSMR-reader family: the v1 telegram push, v2 dsmrreading POST, energy-supplier-prices
POST and DELETE, meter-statistics PATCH and the v2 GET filters, fed the corpus on a real
uvicorn over a DuckDB file.

The answers are DSMR-reader's own: DRF field errors (``{field: [message]}``, messages from
DRF's set), 400 ``Invalid data`` and 500 ``Failed to parse telegram`` for the push, 413 for
a body over 64 kB. Nothing is written (a rejected telegram is counted, as DSMR-reader
counts it, and nothing else changes); the read paths still answer.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import meterhub
from meterhub.api.dsmr_reader.common import MAX_BODY, WRONG_TIME
from meterhub.dsmr.meter_log import rejected_key, status_key
from tests.api.conftest import Api, Client
from tests.corpus import values as v
from tests.corpus.kit import DSMR_QUICK, Served, changes, serve, snapshot, start_reads
from tests.dsmr.telegrams import seal, v5

PUSH = "/api/v1/datalogger/dsmrreading"
READINGS = "/api/v2/datalogger/dsmrreading"
PRICES = "/api/v2/consumption/energy-supplier-prices"
METER = "/api/v2/datalogger/meter-statistics"
#: a valid v2 reading, gas included
READING = {"timestamp": "2024-10-26T12:00:00+02:00", "electricity_delivered_1": "1234.567",
           "electricity_returned_1": "0", "electricity_delivered_2": "2345.678",
           "electricity_returned_2": "0", "electricity_currently_delivered": "0.5",
           "electricity_currently_returned": "0", "phase_voltage_l1": "230.1",
           "phase_power_current_l1": "2", "extra_device_timestamp": "2024-10-26T11:00:00+02:00",
           "extra_device_delivered": "456.789"}
CONTRACT = {"start": "2024-01-01", "end": "2024-12-31", "description": "corpus",
            "electricity_delivered_1_price": "0.25", "gas_price": "1.1"}
#: DRF's messages, which every field error must be one of
DRF_MESSAGES = [re.compile(pattern) for pattern in (
    re.escape(WRONG_TIME), r"Datetime value out of range\.",
    r"Date has wrong format\. Use one of these formats instead: YYYY-MM-DD\.",
    r"This field is required\.", r"This field may not be null\.",
    r"This field may not be blank\.", r"A valid number is required\.",
    r"A valid integer is required\.", r"String value too large\.", r"Not a valid string\.",
    r"Null characters are not allowed\.",
    r"Ensure that there are no more than \d+ digits in total\.",
    r"Ensure that there are no more than \d+ decimal places\.",
    r"Ensure that there are no more than \d+ digits before the decimal point\.",
    r"Ensure this value is (less|greater) than or equal to -?\d+\.",
    r"Ensure this field has no more than \d+ characters\.",
    r"Enter a valid date/time\.", r"Enter a valid date\.",
    r"Datetime is more than 24 hours ahead of the server's clock\.")]


@pytest.fixture(scope="module")
def dsmr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Readings of two days, a contract and the meter's status, all through the paths."""
    path = tmp_path_factory.mktemp("corpus-dsmr") / "dsmr.duckdb"
    meterhub.open(f"duckdb:///{path}").close()
    with serve(path) as served:
        for day, hour in (("26", "12"), ("26", "13"), ("27", "12")):
            seeded = served.call("POST", READINGS, json={
                **READING, "timestamp": f"2024-10-{day}T{hour}:00:00+01:00",
                "extra_device_timestamp": f"2024-10-{day}T{hour}:00:00+01:00"})
            assert seeded.status_code == 201, seeded.text
        assert served.call("POST", PRICES, json=CONTRACT).status_code == 201
        assert served.call("PATCH", METER, json={"dsmr_version": "50",
                                                 "electricity_tariff": 1}).status_code == 200
        start_reads(served)
        yield served


def field_errors(response: httpx.Response, field: str) -> list[str]:
    """DRF's 400 naming ``field``, every message one DRF gives."""
    assert response.status_code == 400, (response.status_code, response.text[:500])
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert field in body, body
    for messages in body.values():
        assert messages, body
        assert all(any(p.fullmatch(m) for p in DRF_MESSAGES) for m in messages), body
    return list(body[field])


def unchanged(dsmr: Served, before: dict[str, Any]) -> None:
    assert changes(before, snapshot(dsmr.hub)) == {}
    dsmr.sweep(DSMR_QUICK)


def post(dsmr: Served, path: str, body: dict[str, Any], mode: str,
         method: str = "POST") -> httpx.Response:
    """``body`` as JSON (`values.Raw` parts spliced in) or as a form."""
    if mode == "json":
        return dsmr.call(method, path, content=v.dumps(body),
                         headers={"Content-Type": "application/json"})
    return dsmr.call(method, path, data={k: "" if x is None else str(x) for k, x in body.items()})


def _form_safe(value: Any) -> bool:
    """Whether a form can carry ``value`` as the hostile value it is (an empty form field
    means "not sent" or null, and true is the text "True" there)."""
    return not isinstance(value, v.Raw | dict | list | bool) and value not in (None, "")


def _field_cases(fields: dict[str, dict[str, Any]]) -> list[Any]:
    return [pytest.param(field, value, mode, id=f"{mode}:{field}={name}")
            for field, chosen in fields.items() for name, value in chosen.items()
            for mode in ("json", "form") if mode == "json" or _form_safe(value)]


NUMBERS = {**v.NUMBERS, **v.NON_FINITE, **v.TYPES}
DROPPED = ("text 1_000",)  # DRF reads "1_000" as Python's Decimal does: 1000
#: a few of the numbers, for the fields that read them as another field does
SOME_NUMBERS = ("1e308", "10**30", "text 1e400", "text 0x10", "text NaN", "token NaN",
                "object", "true")
#: a few of the times, likewise
SOME_TIMES = ("year 1", "9999-12-31 -05:00", "1799 last second", "2200", "naive 1800",
              "2024-02-30", "now", "object")
READING_FIELDS = {
    # naive times are the meter's (Europe/Amsterdam): naive 1800 is before the range; a
    # time in the DST gap is kept, as DRF keeps one
    "timestamp": {n: t for n, t in v.TIMES.items() if n != "DST gap"},
    "extra_device_timestamp": {n: v.TIMES[n] for n in SOME_TIMES},
    "electricity_delivered_1": {n: x for n, x in NUMBERS.items() if n not in DROPPED},
    "phase_power_current_l1": {n: NUMBERS[n] for n in SOME_NUMBERS},
    "phase_voltage_l1": {n: NUMBERS[n] for n in ("1e308", "5e-324", "text NaN")},
}
#: a body orjson does not read is DRF's parse error, whatever the field
UNREADABLE = {"detail": "JSON parse error"}


@pytest.mark.parametrize(("field", "value", "mode"), _field_cases(READING_FIELDS))
def test_dsmrreading_post_answers_drf_field_errors(dsmr: Served, field: str, value: Any,
                                                   mode: str) -> None:
    before = snapshot(dsmr.hub)
    response = post(dsmr, READINGS, {**READING, field: value}, mode)
    if isinstance(value, v.Raw):
        assert (response.status_code, response.json()) == (400, UNREADABLE)
    else:
        field_errors(response, field)
    unchanged(dsmr, before)


def _raw_bodies(path: str) -> list[Any]:
    over = b'{"padding": "' + b"x" * MAX_BODY + b'"}'
    return [pytest.param(path, body, media, status, answer, id=f"{path.rsplit('/', 1)[1]}:{name}")
            for name, body, media, status, answer in (
                ("empty JSON", b"", "application/json", 400, UNREADABLE),
                ("invalid UTF-8", b"\xff\xfe", "application/json", 400, UNREADABLE),
                ("token NaN", b'{"timestamp": NaN}', "application/json", 400, UNREADABLE),
                ("lone surrogate", b'{"description": "\\ud800"}', "application/json", 400,
                 UNREADABLE),
                ("array", b"[]", "application/json", 400, {"non_field_errors": [
                    "Invalid data. Expected a dictionary, but got list."]}),
                ("null", b"null", "application/json", 400, {"non_field_errors": [
                    "Invalid data. Expected a dictionary, but got NoneType."]}),
                ("100,000 [", b"[" * 100_000, "application/json", 413, None),
                ("one byte over 64 kB", over[:MAX_BODY + 1], "application/json", 413, None),
                ("form one byte over", b"a=" + b"x" * (MAX_BODY - 1),
                 "application/x-www-form-urlencoded", 413, None))]


@pytest.mark.parametrize(("path", "body", "media", "status", "answer"),
                         _raw_bodies(READINGS) + _raw_bodies(PRICES) + _raw_bodies(METER))
def test_bodies_drf_cannot_read(dsmr: Served, path: str, body: bytes, media: str, status: int,
                                answer: Any) -> None:
    before = snapshot(dsmr.hub)
    method = "PATCH" if path == METER else "POST"
    response = dsmr.call(method, path, content=body, headers={"Content-Type": media})
    assert response.status_code == status, response.text[:300]
    if answer is not None:
        assert response.json() == answer
    else:
        assert response.json() == {"detail": f"Request body too large: at most {MAX_BODY} "
                                             "bytes."}
    unchanged(dsmr, before)


# -- the v1 telegram push ----------------------------------------------------------------------

def _damaged(text: str) -> str:
    """A telegram whose CRC no longer matches (one digit changed)."""
    return text.replace("001234.567", "001234.568")


TELEGRAMS: dict[str, tuple[Any, int, str]] = {
    # name: (the form's telegram, or raw form bytes; the status; DSMR-reader's answer)
    "empty": ("", 400, "Invalid data"),
    "NUL only": ("\x00\x00\x00", 400, "Invalid data"),
    "only LF": ("\n", 400, "Invalid data"),
    "no telegram field": (b"datagram=x", 400, "Invalid data"),
    "junk": ("hello", 500, "Failed to parse telegram"),
    "1M chars": ("x" * 1_000_000, 413, "Request body too large (at most 65536 bytes)"),
    "one byte over 64 kB": (b"telegram=" + b"x" * (MAX_BODY - 8), 413,
                            "Request body too large (at most 65536 bytes)"),
    "100,000 [": ("/" + "[" * 100_000 + "\r\n!0000\r\n", 413,
                  "Request body too large (at most 65536 bytes)"),
    "deep but small": ("/X\r\n\r\n" + "[" * 20_000 + "\r\n!0000\r\n", 500,
                       "Failed to parse telegram"),
    "invalid UTF-8": (b"telegram=%FF%FE", 500, "Failed to parse telegram"),
    "lone surrogate": (b"telegram=%ED%A0%80", 500, "Failed to parse telegram"),
    "damaged CRC": (_damaged(v5(stamp="241027033000W")), 500, "Failed to parse telegram"),
    "cut short": (v5(stamp="241027033000W")[:-8], 500, "Failed to parse telegram"),
    "LF line ends": (v5(stamp="241027033000W").replace("\r\n", "\n"), 500,
                     "Failed to parse telegram"),
    "register NaN": (v5(stamp="241027033000W", t1="NaN"), 500, "Failed to parse telegram"),
    "register inf": (v5(stamp="241027033000W", delivered="Infinity"), 500,
                     "Failed to parse telegram"),
    "register 1e999": (v5(stamp="241027033000W", gas="1e999"), 500,
                       "Failed to parse telegram"),
    "register 400 digits": (v5(stamp="241027033000W", t1="9" * 400), 500,
                            "Failed to parse telegram"),
    "register beyond the column": (v5(stamp="241027033000W", t1="1000000.000"), 500,
                                   "Failed to parse telegram"),
    "stamped 2049": (v5(stamp="491231235959W", gas_stamp="491231230000W"), 500,
                     "Failed to parse telegram"),
    "no reading": (seal(["/ISK5\\2M550T-1012", "", "1-3:0.2.8(50)",
                         "0-0:1.0.0(241027033000W)"]), 500, "Failed to parse telegram"),
}


@pytest.mark.parametrize(("telegram", "status", "answer"),
                         [pytest.param(*case, id=name) for name, case in TELEGRAMS.items()])
def test_a_bad_telegram_is_answered_as_dsmr_reader_does(dsmr: Served, telegram: Any,
                                                        status: int, answer: str) -> None:
    before = snapshot(dsmr.hub)
    meter = dsmr.call("GET", METER).json()
    kept = {key: dsmr.hub.get_state(key) for key in (status_key("p1"),)}
    if isinstance(telegram, bytes):
        response = dsmr.call("POST", PUSH, content=telegram,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    else:
        response = dsmr.call("POST", PUSH, data={"telegram": telegram})
    assert (response.status_code, response.text) == (status, answer)
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    after = snapshot(dsmr.hub)
    rejected = int(status == 500)  # a telegram read and rejected counts, as in DSMR-reader
    assert dsmr.call("GET", METER).json() == {
        **meter, "rejected_telegrams": meter["rejected_telegrams"] + rejected}
    assert {key: dsmr.hub.get_state(key) for key in kept} == kept
    moved = changes(before, after)
    if rejected:  # the count, committed in a batch of no readings
        assert set(moved) <= {"state", "batches"}, moved
        assert int(dsmr.hub.get_state(rejected_key("p1")) or 0) == \
            meter["rejected_telegrams"] + 1
    else:
        assert moved == {}
    dsmr.sweep(DSMR_QUICK)


@pytest.mark.parametrize("stamp", ["000000000000W", "241332250000W", "xx"])
def test_a_telegram_whose_gas_stamp_does_not_parse_keeps_its_electricity(api: Api,
                                                                         stamp: str) -> None:
    """A gas reading without a time is left out (it has no time to be stored at), as
    dsmr-parser leaves out a line it cannot read; before, the push crashed (a 500 problem
    instead of DSMR-reader's answer, the telegram not counted). On a store of its own: an
    accepted telegram's status may be saved a second later."""
    telegram = v5(stamp="241028033000W", gas_stamp=stamp)
    response = Client(api.app).post(PUSH, data={"telegram": telegram},
                                    headers={"X-AUTHKEY": api.keys["write"]})
    assert (response.status_code, response.text) == (201, "")
    stored = api.hub.readings(device="p1", as_="arrow")
    channels = set(stored.column("channel").to_pylist())
    assert "electricity_delivered_1" in channels
    assert "extra_device_delivered" not in channels
    assert set(stored.column("ts").to_pylist()) == {
        dt.datetime(2024, 10, 28, 2, 30, tzinfo=dt.UTC)}


# -- energy-supplier-prices: POST and DELETE -------------------------------------------------

DATES = {"2024-02-30": "2024-02-30", "with a time": "9999-12-31T23:59:59Z", "empty": "",
         "now": "now", "number": 20250101, "true": True, "null": None, "object": {},
         "array": [], "text NUL": "2024-01-01\x00", "60,000 chars": "x" * 60_000}
PRICE_FIELDS = {
    "start": DATES,
    "end": {n: DATES[n] for n in ("2024-02-30", "with a time", "null")},
    "description": {"NUL": "corpus\x00", "60,000 chars": "x" * 60_000, "object": {},
                    "array": [], "true": True, "null": None},
    "gas_price": {n: x for n, x in NUMBERS.items() if n not in DROPPED},
    "fixed_daily_cost": {n: NUMBERS[n] for n in ("10**30", "text NaN", "token Infinity")},
}


@pytest.mark.parametrize(("field", "value", "mode"), _field_cases(PRICE_FIELDS))
def test_price_post_answers_drf_field_errors(dsmr: Served, field: str, value: Any,
                                             mode: str) -> None:
    before = snapshot(dsmr.hub)
    response = post(dsmr, PRICES, {**CONTRACT, field: value}, mode)
    if isinstance(value, v.Raw):
        assert (response.status_code, response.json()) == (400, UNREADABLE)
    else:
        field_errors(response, field)
    unchanged(dsmr, before)


@pytest.mark.parametrize("price_id", [
    "9" * 5000, "\N{SUPERSCRIPT TWO}", "\N{ARABIC-INDIC DIGIT ONE}", "-1", "0x10", "1.0",
    "%00", "x" * 30_000, "+1", " 1", "0"])
def test_price_delete_of_no_such_contract_is_404(dsmr: Served, price_id: str) -> None:
    before = snapshot(dsmr.hub)
    response = dsmr.call("DELETE", f"{PRICES}/{price_id}")
    assert (response.status_code, response.json()) == (404, {"detail": "Not found."})
    unchanged(dsmr, before)


# -- meter-statistics PATCH --------------------------------------------------------------------

METER_FIELDS = {
    "timestamp": {n: v.TIMES[n] for n in (*SOME_TIMES, "null")},
    "dsmr_version": {"NUL": "5\x00", "three characters": "500", "60,000 chars": "x" * 60_000,
                     "only LF": "\n", "object": {}, "true": True},
    "electricity_tariff": {n: NUMBERS[n] for n in (*SOME_NUMBERS, "10**400", "5e-324")},
    "rejected_telegrams": {"null": None, "2**31": 2**31, "text NaN": "NaN"},
    "latest_telegram": {"NUL": "telegram\x00", "object": {}, "lone surrogate":
                        v.TEXTS["lone surrogate"]},
}


@pytest.mark.parametrize(("field", "value", "mode"), _field_cases(METER_FIELDS))
def test_meter_statistics_patch_answers_drf_field_errors(dsmr: Served, field: str,
                                                         value: Any, mode: str) -> None:
    before = snapshot(dsmr.hub)
    meter = dsmr.call("GET", METER).json()
    response = post(dsmr, METER, {field: value}, mode, method="PATCH")
    if isinstance(value, v.Raw):
        assert (response.status_code, response.json()) == (400, UNREADABLE)
    else:
        field_errors(response, field)
    assert dsmr.call("GET", METER).json() | {"timestamp": None} == meter | {"timestamp": None}
    unchanged(dsmr, before)


# -- the GET filters -------------------------------------------------------------------------

FILTERS = {
    READINGS: ("timestamp__gte", "timestamp__lte", "limit", "offset", "ordering"),
    "/api/v2/statistics/day": ("day__gte", "day__lte", "limit", "ordering"),
    "/api/v2/statistics/hour": ("hour_start__gte", "hour_start__lte", "offset"),
    PRICES: ("start__gte", "end__lte", "ordering", "limit"),
    METER: ("timestamp",),
    "/api/v2/consumption/today": ("day",),
}
#: the values of time and date filters; of the others (pages, order, unknown names)
FILTER_TIMES = ("year 1", "9999-12-31 -05:00", "1799 last second", "2200", "naive 1800",
                "2024-02-30", "now", "text NUL", "60,000 chars")
FILTER_OTHERS = ("-1", "text 10**400", "text NaN", "injection SQL")


@pytest.mark.parametrize(("path", "name", "value"), [
    pytest.param(path, name, v.QUERY_TEXTS[value], id=f"{path.rsplit('/', 1)[1]}?{name}={value}")
    for path, names in FILTERS.items() for name in names
    for value in (FILTER_TIMES if "__" in name else FILTER_OTHERS)])
def test_get_filters_answer_drf_errors_or_ignore(dsmr: Served, path: str, name: str,
                                                 value: str) -> None:
    before = snapshot(dsmr.hub)
    response = dsmr.call("GET", path, params={name: value})
    if response.status_code == 400:
        assert field_errors(response, name) in (["Enter a valid date/time."],
                                                ["Enter a valid date."])
    else:
        assert response.status_code == 200, response.text[:300]
    unchanged(dsmr, before)


@pytest.mark.parametrize("text", v.INJECTIONS.values(), ids=v.INJECTIONS.keys())
def test_injection_looking_descriptions_are_stored_and_read_back_exactly(
        dsmr: Served, text: str) -> None:
    added = dsmr.call("POST", PRICES, json={**CONTRACT, "start": "2030-01-01",
                                            "end": "2030-01-31", "description": text})
    assert added.status_code == 201, added.text
    assert added.json()["description"] == text
    listed = dsmr.call("GET", PRICES, params={"start__gte": "2030-01-01", "limit": 100})
    assert text in [c["description"] for c in listed.json()["results"]]
    assert dsmr.call("DELETE", f"{PRICES}/{added.json()['id']}").status_code == 204
    patched = dsmr.call("PATCH", METER, json={"latest_telegram": text})
    assert patched.json()["latest_telegram"] == text
    assert dsmr.call("GET", METER).json()["latest_telegram"] == text
    dsmr.sweep(DSMR_QUICK)
