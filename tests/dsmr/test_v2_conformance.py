"""DSMR-reader 5.11's v2 API where meterhub once answered otherwise (issue 16, points 3-5),
on a real uvicorn over a DuckDB file.

- The exact filters of DSMR-reader's filter sets (``Meta.fields``): ``timestamp=`` of
  readings and ``hour_start=`` of hour statistics (django-filter's IsoDateTimeFilter:
  date-times only, one instant), ``day=`` of day statistics (a DateFilter), ANDed with the
  ``__gte``/``__lte`` ones.
- Django 3.2's refusal of a naive filter time that the meter's zone repeats (the fall-back
  night) or skips (spring-forward), in exact and range filters alike.
- HEAD on every v2 GET path: DRF runs the GET; the server sends its status and headers
  (Content-Length too) and no body, as read here off the socket.
- The meter's latest telegram as DSMR-reader keeps it: the push's form trims whitespace,
  then NULs at either end.

The store holds readings every 30 minutes through 26 October 2025, Amsterdam's 25-hour
day (02:00-03:00 comes twice: CEST, then CET), from its local midnight to the next.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pandas as pd
import pytest

import meterhub
from meterhub.api import create_app
from meterhub.hub import Hub
from meterhub.keys import new_key
from tests.api.live import served
from tests.dsmr.telegrams import v5

READINGS = "/api/v2/datalogger/dsmrreading"
DAYS = "/api/v2/statistics/day"
HOURS = "/api/v2/statistics/hour"
METER = "/api/v2/datalogger/meter-statistics"
PUSH = "/api/v1/datalogger/dsmrreading"
START = pd.Timestamp("2025-10-25T22:00:00Z")  # local midnight starting 26 Oct (CEST)
STEPS = 51  # every 30 minutes up to the local midnight starting 27 Oct (CET), inclusive
#: Django's message for a naive filter time the zone repeats or skips (note the U+2019)
AMBIGUOUS = ("{} couldn\N{RIGHT SINGLE QUOTATION MARK}t be interpreted in time zone "
             "Europe/Amsterdam; it may be ambiguous or it may not exist.")
INVALID = ["Enter a valid date/time."]


@dataclass
class Server:
    base: str
    hub: Hub
    read: dict[str, str]  # the read key's header
    write: dict[str, str]

    def get(self, path: str, params: dict[str, str] | None = None,
            headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.get(f"{self.base}{path}", params=params,
                         headers=self.read if headers is None else headers, timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    path: Path = tmp_path_factory.mktemp("dsmr-conformance") / "api.duckdb"
    with meterhub.open(f"duckdb:///{path}") as hub:
        ts = pd.date_range(START, periods=STEPS, freq="30min")
        hub.write(pd.concat([
            pd.DataFrame({"device": "p1", "channel": channel, "ts": ts,
                          "value": [round(base + step * i, 3) for i in range(STEPS)],
                          "unit": "kWh", "kind": "counter", "quantity": "energy"})
            for channel, base, step in (("electricity_delivered_1", 1000.0, 0.010),
                                        ("electricity_delivered_2", 2000.0, 0.020),
                                        ("electricity_returned_1", 0.0, 0.0),
                                        ("electricity_returned_2", 0.0, 0.0))]),
            source="dsmr")
        keys = {}
        for scope in ("read", "write"):
            record, text = new_key(f"conformance-{scope}", scope, "1000000/minute")
            hub.store.add_key(record)
            keys[scope] = {"X-AUTHKEY": text}
        with served(create_app(hub)) as base:
            # the meter's time, else "now" (whose length varies: no fraction at .000000)
            assert httpx.patch(f"{base}{METER}", json={"timestamp": "2025-10-27T00:00:00Z"},
                               headers=keys["write"], timeout=30).status_code == 200
            yield Server(base, hub, keys["read"], keys["write"])


def _reading(stamp: str, unix: int, step: int) -> dict[str, Any]:
    """A reading of the store as DSMR-reader lists it: the four registers written, the
    other fields null (no gas)."""
    return {"id": unix, "timestamp": stamp,
            "electricity_delivered_1": f"{1000 + step * 0.010:.3f}",
            "electricity_returned_1": "0.000",
            "electricity_delivered_2": f"{2000 + step * 0.020:.3f}",
            "electricity_returned_2": "0.000",
            **dict.fromkeys((
                "electricity_currently_delivered", "electricity_currently_returned",
                "phase_currently_delivered_l1", "phase_currently_delivered_l2",
                "phase_currently_delivered_l3", "extra_device_timestamp",
                "extra_device_delivered", "phase_currently_returned_l1",
                "phase_currently_returned_l2", "phase_currently_returned_l3",
                "phase_voltage_l1", "phase_voltage_l2", "phase_voltage_l3",
                "phase_power_current_l1", "phase_power_current_l2",
                "phase_power_current_l3"))}


#: the second 02:30 of 26 October (CET, 01:30 UTC): the 8th reading
SECOND_0230 = {"count": 1, "next": None, "previous": None, "results": [
    _reading("2025-10-26T02:30:00+01:00", 1761442200, 7)]}


# -- point 3: exact filters ----------------------------------------------------------------

@pytest.mark.parametrize("value", [
    "2025-10-26T02:30:00+01:00", "2025-10-26 02:30+01:00", "2025-10-26T01:30:00Z",
    "2025-10-26T01:30:00.000000+00:00", "2025-10-26T03:30:00+02"])
def test_an_exact_timestamp_finds_the_one_reading_at_that_instant(server: Server,
                                                                  value: str) -> None:
    response = server.get(READINGS, {"timestamp": value})
    assert response.status_code == 200, response.text
    assert response.json() == SECOND_0230


def test_a_naive_exact_timestamp_is_in_the_meters_zone(server: Server) -> None:
    # 03:30 on 26 October is CET only: 02:30 UTC, the 10th reading
    answer = server.get(READINGS, {"timestamp": "2025-10-26 03:30:00"}).json()
    assert answer == {"count": 1, "next": None, "previous": None, "results": [
        _reading("2025-10-26T03:30:00+01:00", 1761445800, 9)]}
    # and one in summer time: 00:30 CEST, 22:30 UTC the day before
    assert server.get(READINGS, {"timestamp": "2025-10-26T00:30"}).json()["results"] == [
        _reading("2025-10-26T00:30:00+02:00", 1761431400, 1)]


@pytest.mark.parametrize(("query", "count"), [
    ({"timestamp": "2025-10-26T01:31:00Z"}, 0),  # no reading then
    ({"timestamp": "2025-10-26T01:30:00Z", "timestamp__gte": "2025-10-26T01:30:00Z"}, 1),
    ({"timestamp": "2025-10-26T01:30:00Z", "timestamp__lte": "2025-10-26T02:30:00+01:00"}, 1),
    ({"timestamp": "2025-10-26T01:30:00Z", "timestamp__gte": "2025-10-26T01:30:01Z"}, 0),
    ({"timestamp": "2025-10-26T01:30:00Z", "timestamp__lte": "2025-10-26T01:29:59Z"}, 0),
    ({"timestamp": "", "timestamp__gte": "2025-10-26T23:00:00Z"}, 1),  # empty: not given
])
def test_the_exact_timestamp_and_its_range_filters_combine(server: Server,
                                                          query: dict[str, str],
                                                          count: int) -> None:
    response = server.get(READINGS, query)
    assert response.status_code == 200, response.text
    assert response.json()["count"] == count
    assert len(response.json()["results"]) == count


def test_paging_and_ordering_apply_to_the_exactly_filtered_set(server: Server) -> None:
    query = {"timestamp": "2025-10-26T02:30:00+01:00"}
    assert server.get(READINGS, {**query, "ordering": "-timestamp"}).json() == SECOND_0230
    past = server.get(READINGS, {**query, "offset": "1"}).json()
    assert past == {"count": 1, "next": None, "results": [], "previous":
                    f"{server.base}{READINGS}?limit=25&timestamp=2025-10-26T02%3A30%3A00%2B01"
                    "%3A00"}


@pytest.mark.parametrize(("path", "name", "value"), [
    (READINGS, "timestamp", "2025-10-26"),  # a date is no date-time for an exact filter
    (READINGS, "timestamp", "yesterday"),
    (READINGS, "timestamp", "2025-10-26T25:00:00"),
    (READINGS, "timestamp", "1799-12-31T23:59:59Z"),  # before the range meterhub keeps
    (READINGS, "timestamp", "2200-01-01T00:00:00Z"),
    (HOURS, "hour_start", "2025-10-26"),
    (HOURS, "hour_start", "9999-12-31T23:00:00-05:00"),
])
def test_an_exact_time_filter_takes_date_times_only(server: Server, path: str, name: str,
                                                    value: str) -> None:
    response = server.get(path, {name: value})
    assert (response.status_code, response.json()) == (400, {name: INVALID})


def test_errors_of_the_exact_and_range_filters_come_together_exact_first(
        server: Server) -> None:
    response = server.get(READINGS, {"timestamp__gte": "x", "timestamp": "2025-10-26"})
    assert response.status_code == 400
    assert response.text == ('{"timestamp":["Enter a valid date/time."],'
                             '"timestamp__gte":["Enter a valid date/time."]}')


def _listed(server: Server, path: str) -> list[dict[str, Any]]:
    answer = server.get(path, {"limit": "100"}).json()
    assert answer["count"] == len(answer["results"])
    return list(answer["results"])


def test_an_exact_day_finds_that_days_statistics(server: Server) -> None:
    (day,) = [d for d in _listed(server, DAYS) if d["day"] == "2025-10-26"]
    assert (day["id"], day["day"]) == (20251026, "2025-10-26")
    assert server.get(DAYS, {"day": "2025-10-26"}).json() == {
        "count": 1, "next": None, "previous": None, "results": [day]}
    for query in ({"day": "2025-10-25"},  # no readings that day
                  {"day": "2025-10-26", "day__gte": "2025-10-27"},
                  {"day": "2025-10-26", "day__lte": "2025-10-25"}):
        assert server.get(DAYS, query).json() == {
            "count": 0, "next": None, "previous": None, "results": []}
    both = server.get(DAYS, {"day": "2025-10-26", "day__gte": "2025-10-26",
                             "day__lte": "2025-10-26"}).json()
    assert both["results"] == [day]


@pytest.mark.parametrize("value", ["2025-10-26T00:00:00", "2025-10-26 00:00", "26-10-2025",
                                   "0001-01-01"])
def test_an_exact_day_takes_a_date_only(server: Server, value: str) -> None:
    response = server.get(DAYS, {"day": value})
    assert (response.status_code, response.json()) == (400, {"day": ["Enter a valid date."]})


def test_an_exact_hour_start_finds_that_hour(server: Server) -> None:
    hours = _listed(server, HOURS)
    # the second 02:00 hour of 26 October, in CET: 01:00 UTC, Unix hour 489289
    (second,) = [h for h in hours if h["hour_start"] == "2025-10-26T02:00:00+01:00"]
    assert second["id"] == 489289
    for value in ("2025-10-26T02:00:00+01:00", "2025-10-26T01:00Z", "2025-10-26 01:00:00+00"):
        assert server.get(HOURS, {"hour_start": value}).json() == {
            "count": 1, "next": None, "previous": None, "results": [second]}
    (first,) = [h for h in hours if h["hour_start"] == "2025-10-26T02:00:00+02:00"]
    assert first["id"] == 489288
    assert server.get(HOURS, {"hour_start": "2025-10-26T00:00:00Z"}).json()["results"] == [
        first]
    for query in ({"hour_start": "2025-10-26T02:30:00+01:00"},  # not an hour's start
                  {"hour_start": "2025-10-26T01:00Z", "hour_start__gte": "2025-10-26T02:00Z"}):
        assert server.get(HOURS, query).json() == {
            "count": 0, "next": None, "previous": None, "results": []}


# -- point 3: naive times the meter's zone repeats or skips -----------------------------------

@pytest.mark.parametrize(("path", "name", "value", "shown"), [
    # 26 October 2025, 02:00-03:00 comes twice (CEST, then CET)
    (READINGS, "timestamp", "2025-10-26 02:30:00", "2025-10-26 02:30:00"),
    (READINGS, "timestamp", "2025-10-26T02:30", "2025-10-26 02:30:00"),
    (READINGS, "timestamp", "2025-10-26T02:30:00.5", "2025-10-26 02:30:00.500000"),
    (READINGS, "timestamp__gte", "2025-10-26T02:00:00", "2025-10-26 02:00:00"),
    (READINGS, "timestamp__lte", "2025-10-26 02:59:59.999999", "2025-10-26 02:59:59.999999"),
    (HOURS, "hour_start", "2025-10-26T02:00:00", "2025-10-26 02:00:00"),
    (HOURS, "hour_start__lte", "2025-10-26T02:00", "2025-10-26 02:00:00"),
    # 30 March 2025, 02:00-03:00 never came
    (READINGS, "timestamp", "2025-03-30T02:30:00", "2025-03-30 02:30:00"),
    (READINGS, "timestamp__gte", "2025-03-30 02:00", "2025-03-30 02:00:00"),
    (HOURS, "hour_start__gte", "2025-03-30T02:00:00", "2025-03-30 02:00:00"),
])
def test_a_naive_time_the_zone_repeats_or_skips_is_refused(server: Server, path: str,
                                                           name: str, value: str,
                                                           shown: str) -> None:
    response = server.get(path, {name: value})
    assert response.status_code == 400
    assert response.json() == {name: [AMBIGUOUS.format(shown)]}


@pytest.mark.parametrize(("query", "count"), [
    # with an offset (or Z) the time is one instant: never ambiguous
    ({"timestamp__gte": "2025-10-26T02:00:00+02:00",
      "timestamp__lte": "2025-10-26T02:30:00+01:00"}, 4),
    ({"timestamp__gte": "2025-10-26T02:00:00+01:00", "timestamp__lte": "2025-10-26T02:59Z"},
     4),
    # the hours either side of the repeated one are unambiguous
    ({"timestamp__gte": "2025-10-26 01:59:59", "timestamp__lte": "2025-10-26T03:00"}, 5),
    ({"timestamp__gte": "2025-03-30T01:59:59", "timestamp__lte": "2025-03-30T03:00:00"}, 0),
])
def test_a_time_with_an_offset_or_outside_the_change_is_read(server: Server,
                                                             query: dict[str, str],
                                                             count: int) -> None:
    response = server.get(READINGS, query)
    assert response.status_code == 200, response.text
    assert response.json()["count"] == count


# -- point 4: HEAD, on the wire ----------------------------------------------------------------

GETS = [READINGS, f"{READINGS}?timestamp=2025-10-26T01:30:00Z", f"{READINGS}?timestamp=x",
        METER, "/api/v2/consumption/electricity-live", "/api/v2/consumption/gas-live",
        "/api/v2/consumption/today", "/api/v2/consumption/energy-supplier-prices",
        DAYS, f"{DAYS}?day=2025-10-26", HOURS, "/api/v2/application/version",
        "/api/v2/openapi.json"]
#: headers that may differ between two answers: the time, the time the server spent, and the
#: key's allowance left
CHANGING = {"date", "x-ratelimit-remaining", "x-ratelimit-reset", "server-timing"}


def _raw(server: Server, method: str, target: str, headers: dict[str, str]
         ) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and every byte after them, as the server sent them on the socket
    (``Connection: close``: it closes when done)."""
    url = urlsplit(server.base)
    lines = [f"{method} {target} HTTP/1.1", f"Host: {url.netloc}", "Connection: close",
             *(f"{name}: {value}" for name, value in headers.items())]
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *fields = head.decode("latin-1").split("\r\n")
    found = {}
    for field in fields:
        name, _, value = field.partition(":")
        found[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), found, body


@pytest.mark.parametrize("target", GETS)
def test_head_answers_as_get_without_a_body(server: Server, target: str) -> None:
    status, headers, body = _raw(server, "GET", target, server.read)
    assert int(headers["content-length"]) == len(body) > 0
    head_status, head_headers, head_body = _raw(server, "HEAD", target, server.read)
    assert head_body == b""  # not a byte after the headers
    assert head_status == status
    assert head_headers["content-length"] == headers["content-length"]
    assert {k: v for k, v in head_headers.items() if k not in CHANGING} == {
        k: v for k, v in headers.items() if k not in CHANGING}
    if target != "/api/v2/openapi.json":  # no key needed there, none counted
        # the HEAD counted against the key's limit, as the GET did
        assert head_headers["x-ratelimit-limit"] == headers["x-ratelimit-limit"] == "1000000"
        assert int(head_headers["x-ratelimit-remaining"]) < int(
            headers["x-ratelimit-remaining"])


def test_head_checks_the_key_as_get_does(server: Server) -> None:
    refused = '{"detail":"Invalid auth key"}'
    for key in ({}, {"X-AUTHKEY": "nope"}):
        status, headers, body = _raw(server, "HEAD", READINGS, key)
        assert (status, headers["content-length"], body) == (403, str(len(refused)), b"")
        assert _raw(server, "GET", READINGS, key)[::2] == (403, refused.encode())
    # a write key reads too, HEAD included
    assert _raw(server, "HEAD", READINGS, server.write)[0] == 200


def test_the_v1_push_still_refuses_head(server: Server) -> None:
    status, headers, body = _raw(server, "HEAD", PUSH, server.write)
    assert (status, headers["allow"], body) == (405, "POST", b"")


# -- point 5: the latest telegram, as DSMR-reader keeps it ----------------------------------

@pytest.mark.parametrize(("sent", "kept"), [
    # DSMR-reader's form field trims whitespace, then clean_telegram the NULs at the ends
    (v5(stamp="241027033000W"), v5(stamp="241027033000W").removesuffix("\r\n")),
    ("\r\n" + v5(stamp="241027033001W") + "\r\n \t",
     v5(stamp="241027033001W").removesuffix("\r\n")),
    ("\x00\x00" + v5(stamp="241027033002W"), v5(stamp="241027033002W").removesuffix("\r\n")),
    # a NUL after the line end: whitespace is trimmed first, so the line end stays
    (v5(stamp="241027033003W") + "\x00", v5(stamp="241027033003W")),
])
def test_the_latest_telegram_is_kept_trimmed_as_dsmr_reader_keeps_it(
        server: Server, sent: str, kept: str) -> None:
    pushed = httpx.post(f"{server.base}{PUSH}", data={"telegram": sent}, headers=server.write,
                        timeout=30)
    assert (pushed.status_code, pushed.text) == (201, "")
    assert server.get(METER).json()["latest_telegram"] == kept
