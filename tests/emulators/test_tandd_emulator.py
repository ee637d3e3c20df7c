"""The T&D WebStorage emulator against the seed document's examples and VENDORS.md 6.3."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from meterhub.clock import VirtualClock
from meterhub.emulators.tandd import API_KEY, LOGIN_ID, LOGIN_PASS, TanddWorld, create_app

HEADERS = {"Content-Type": "application/json", "X-HTTP-Method-Override": "GET"}
EX1 = {"api-key": API_KEY, "login-id": LOGIN_ID, "login-pass": LOGIN_PASS,
       "remote-serial": "52120001"}


@pytest.fixture
def world() -> TanddWorld:
    return TanddWorld.create(VirtualClock(1_700_000_000.0), devices=3, days=500)


def post(world: TanddWorld, path: str, body: Any = None, headers: dict[str, str] | None = None,
         content: bytes | None = None) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(world))
        async with httpx.AsyncClient(transport=transport,
                                     base_url="https://api.webstorage-service.com") as c:
            return await c.post(path, json=body if content is None else None,
                                content=content, headers=headers or HEADERS)

    return asyncio.run(send())


def test_ex1_newest_16000_ascending_with_rate_headers(world: TanddWorld) -> None:
    response = post(world, "/v1/devices/data", EX1)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.headers["X-RateLimit-Limit"] == "20"
    assert response.headers["X-RateLimit-Reset"] == "60"
    assert response.headers["X-RateLimit-Remaining"] == "19"
    assert response.headers["X-RateLimit-Remaining-DataCount"] == str(160_000 - 16_000)
    body = response.json()
    assert {"serial", "model", "name", "time_diff", "std_bias", "dst_bias", "channel",
            "data"} <= set(body)
    rows = body["data"]
    assert len(rows) == 16_000
    times = [int(r["unixtime"]) for r in rows]
    assert times == sorted(times)
    newest, _ = world.records("52120001")
    assert times[-1] == int(newest[-1])
    assert isinstance(rows[0]["ch1"], str)  # values arrive as strings, as observed
    assert [c["unit"] for c in body["channel"]] == ["C", "%"]


def test_ex2_window_and_number_semantics(world: TanddWorld) -> None:
    t, _ = world.records("52120001")
    same = post(world, "/v1/devices/data", {**EX1, "unixtime-from": int(t[100]),
                                            "unixtime-to": int(t[100])}).json()
    assert [int(r["unixtime"]) for r in same["data"]] == [int(t[100])]  # both inclusive
    capped = post(world, "/v1/devices/data", {**EX1, "unixtime-from": int(t[0]),
                                              "unixtime-to": int(t[20_000 - 1]),
                                              "number": 16_000}).json()
    got = [int(r["unixtime"]) for r in capped["data"]]
    assert got == [int(x) for x in t[4_000:20_000]]  # the oldest 4,000 are dropped
    huge = post(world, "/v1/devices/data", {**EX1, "number": 100_000}).json()
    assert len(huge["data"]) == 65_535


def test_csv2_has_the_three_header_rows(world: TanddWorld) -> None:
    response = post(world, "/v1/devices/data", {**EX1, "remote-serial": "52120003",
                                                "type": "csv2", "number": 3})
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    lines = response.text.splitlines()
    assert lines[0] == '"Date/Time","Date/Time","No.1"'
    assert lines[1] == ('"time difference:GMT+9:00/daylight savings time:off",'
                        '"date as serial value(Excel)","Temp"')
    assert lines[2] == '"","","C"'
    assert len(lines) == 6
    stamp, serial, _ = lines[3].strip('"').split('","')
    assert len(stamp) == 19
    assert float(serial) > 45000  # Excel days since 1899-12-30


def test_error_bodies_and_codes(world: TanddWorld) -> None:
    bad = post(world, "/v1/devices/data", {**EX1, "login-pass": "nope"})
    assert bad.status_code == 401
    assert bad.json() == {"error": {"code": 401,
                                    "message": "Authentication information error."}}
    assert "X-RateLimit-Remaining" in bad.headers
    no_override = post(world, "/v1/devices/data", EX1, headers={
        "Content-Type": "application/json"})
    assert no_override.status_code == 400
    not_json = post(world, "/v1/devices/data", content=b"serial=1")
    assert not_json.status_code == 415
    assert post(world, "/v1/devices/data", {**EX1, "remote-serial": "nope"}
                ).status_code == 400


def test_twenty_calls_a_minute_then_429(world: TanddWorld) -> None:
    codes = [post(world, "/v1/devices/data", {**EX1, "number": 1}).status_code
             for _ in range(21)]
    assert codes == [200] * 20 + [429]


def test_temperature_unit_and_current(world: TanddWorld) -> None:
    c = post(world, "/v1/devices/data", {**EX1, "number": 1}).json()
    f = post(world, "/v1/devices/data", {**EX1, "number": 1, "temperature-unit": "F"}).json()
    assert f["channel"][0]["unit"] == "F"
    celsius, fahrenheit = float(c["data"][0]["ch1"]), float(f["data"][0]["ch1"])
    assert fahrenheit == pytest.approx(celsius * 9 / 5 + 32, abs=0.06)
    current = post(world, "/v1/devices/current",
                   {k: v for k, v in EX1.items() if k != "remote-serial"}).json()
    assert [d["serial"] for d in current["devices"]] == ["52120001", "52120002", "52120003"]


def test_plain_http_is_refused_when_https_is_required(world: TanddWorld) -> None:
    world.require_https = True

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(world))
        async with httpx.AsyncClient(transport=transport,
                                     base_url="http://api.webstorage-service.com") as c:
            return await c.post("/v1/devices/data", json=EX1, headers=HEADERS)

    response = asyncio.run(send())
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "Please communicate via HTTPS."
