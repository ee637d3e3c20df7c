"""DSMR-reader's v1 datalogger endpoint on meterhub: DSMR-reader's status codes and bodies,
group commit, and a datalogger client written as DSMR-reader documents it, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time

import httpx
import pytest

from meterhub.api import create_app
from meterhub.config import Settings
from meterhub.dsmr.meter_log import STATUS_EVERY
from meterhub.dsmr.parse_helper import TelegramReader
from meterhub.dsmr.settings import DsmrSettings
from meterhub.keys import new_key
from tests.api.conftest import Api, Client
from tests.api.live import served
from tests.dsmr.datalogger_client import send_telegram
from tests.dsmr.telegrams import v5
from tests.dsmr.test_parse_helper import parsed_here_fails

URL = "/api/v1/datalogger/dsmrreading"


def post(api: Api, telegram: str | None, *, key: str | None = None,
         header: str = "X-AUTHKEY") -> httpx.Response:
    value = key if key is not None else api.keys["write"]
    headers = {header: value if header == "X-AUTHKEY" else f"Token {value}"}
    data = {} if telegram is None else {"telegram": telegram}
    return Client(api.app).post(URL, data=data, headers=headers)


@pytest.mark.parametrize("header", ["X-AUTHKEY", "Authorization"])
def test_a_valid_telegram_is_201_with_an_empty_body_and_stored(api: Api, header: str) -> None:
    response = post(api, v5(stamp="241027023000W"), header=header)
    assert response.status_code == 201
    assert response.content == b""
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    stored = api.hub.readings(device="p1", channel="electricity_delivered_1")
    assert list(stored["value"]) == [1234.567]
    assert str(stored["ts"][0]) == "2024-10-27 01:30:00+00:00"
    assert set(api.hub.readings(device="p1")["source"]) == {"dsmr"}
    meter = api.hub.devices().set_index("device").loc["p1"]
    assert (meter["serial"], meter["timezone"]) == ("E0044007131650618", "Europe/Amsterdam")


def test_a_replayed_telegram_changes_nothing(api: Api) -> None:
    for _ in range(3):
        assert post(api, v5()).status_code == 201
    assert api.hub.count(device="p1") == 19


@pytest.mark.parametrize(("telegram", "key", "status", "body"), [
    (v5().replace("001234.567", "001234.568"), None, 500, b"Failed to parse telegram"),
    (v5()[:300], None, 500, b"Failed to parse telegram"),
    ("hello", None, 500, b"Failed to parse telegram"),
    (None, None, 400, b"Invalid data"),
    ("", None, 400, b"Invalid data"),
    (v5(), "wrong", 403, b"Invalid auth key"),
    (v5(), "", 403, b"Invalid auth key"),
])
def test_failures_answer_as_dsmr_reader_does(api: Api, telegram: str | None, key: str | None,
                                             status: int, body: bytes) -> None:
    response = post(api, telegram, key=key)
    assert response.status_code == status
    assert response.content == body
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "p1" not in set(api.hub.devices()["device"])


def test_rejections_are_counted_and_kept_across_restarts(api: Api) -> None:
    post(api, "hello")
    post(api, v5().replace("001234.567", "001234.568"))
    post(api, v5())
    counters = api.app.state.dsmr_counters
    assert (counters.rejected, counters.accepted) == (2, 1)
    assert api.hub.get_state("dsmr.rejected.p1") == "2"
    restarted = create_app(api.hub, rate_limit="10000/minute")
    assert restarted.state.dsmr_counters.rejected == 2
    assert post(Api(api.hub, restarted, api.keys, api.client), "hello").status_code == 500
    assert api.hub.get_state("dsmr.rejected.p1") == "3"


def test_the_meters_latest_status_is_kept(api: Api) -> None:
    """Shown at once, in the store within STATUS_EVERY, and at once when the server stops."""
    first, second, third = v5(stamp="241027013000W"), v5(), v5(stamp="241027033000W")
    kept = second.removesuffix("\r\n")  # as DSMR-reader keeps it: no line end after the CRC
    with served(create_app(api.hub, rate_limit="10000/minute")) as base, \
            httpx.Client(base_url=base, headers={"X-AUTHKEY": api.keys["write"]}) as client:
        for text in (first, second):
            assert client.post(URL, data={"telegram": text}).status_code == 201
        shown = client.get("/api/v2/datalogger/meter-statistics").json()
        assert shown["latest_telegram"] == kept
        deadline = time.monotonic() + 5 * STATUS_EVERY
        while stored_status(api).get("latest_telegram") != kept:
            assert time.monotonic() < deadline, "the status never reached the store"
            time.sleep(0.05)
        # from the telegram's lines 96.14.0, 96.7.21, 96.7.9, 32/52/72.32.0 and .36.0
        assert stored_status(api) == {
            "timestamp": "2024-10-27T01:30:00+00:00", "dsmr_version": "50",
            "electricity_tariff": 1, "power_failure_count": 12,
            "long_power_failure_count": 3, "voltage_sag_count_l1": 1,
            "voltage_sag_count_l2": 2, "voltage_sag_count_l3": 3,
            "voltage_swell_count_l1": 0, "voltage_swell_count_l2": 0,
            "voltage_swell_count_l3": 0, "latest_telegram": kept}
        assert client.post(URL, data={"telegram": third}).status_code == 201
    # the server stopped right after the third push: its status was stored on the way out
    assert stored_status(api)["latest_telegram"] == third.removesuffix("\r\n")
    assert stored_status(api)["timestamp"] == "2024-10-27T02:30:00+00:00"


def stored_status(api: Api) -> dict[str, object]:
    status: dict[str, object] = json.loads(api.hub.get_state("dsmr.status.p1") or "{}")
    return status


def test_a_read_key_cannot_push_and_get_is_405(api: Api) -> None:
    assert post(api, v5(), key=api.keys["read"]).status_code == 403
    response = Client(api.app).get(URL, headers={"X-AUTHKEY": api.keys["write"]})
    assert response.status_code == 405
    assert response.content == b""


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE"])
def test_every_other_method_is_405_allowing_post_alone(api: Api, method: str) -> None:
    # OPTIONS and HEAD once answered a problem whose Allow named every method routed on the
    # path (DELETE, GET, PATCH, POST, PUT), though all but POST are refused
    response = Client(api.app).request(method, URL, headers={"X-AUTHKEY": api.keys["write"]})
    assert (response.status_code, response.headers["allow"], response.content) == (
        405, "POST", b"")


def test_a_json_body_is_invalid_data_as_in_dsmr_reader(api: Api) -> None:
    response = Client(api.app).post(URL, json={"telegram": v5()},
                                    headers={"X-AUTHKEY": api.keys["write"]})
    assert response.status_code == 400
    assert response.content == b"Invalid data"


def test_concurrent_pushes_share_commits(api: Api) -> None:
    app = api.app
    telegrams = [v5(stamp=f"241026{12 + m // 60:02d}{m % 60:02d}00S") for m in range(40)]

    async def push_all() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answers = await asyncio.gather(*(client.post(
                URL, data={"telegram": t}, headers={"X-AUTHKEY": api.keys["write"]})
                for t in telegrams))
        return [a.status_code for a in answers]

    statuses = asyncio.run(push_all())
    assert statuses == [201] * 40
    assert api.hub.count(device="p1", channel="electricity_delivered_1") == 40
    batches = api.hub.store._con.execute(
        "SELECT count(*) FROM batches WHERE origin = 'dsmr'").fetchall()[0][0]
    assert batches < 40  # grouped: fewer commits than telegrams


def test_pushes_parsed_in_the_helper_are_answered_and_stored_the_same(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(api.hub, settings=Settings(dsmr=DsmrSettings(parse_helper="on")),
                     rate_limit="10000/minute")
    reader: TelegramReader = app.state.dsmr_telegrams
    reader.share = False  # every telegram to the helper (a share parsed here: test_parse_helper)
    good = [v5(stamp=f"241026{12 + m // 60:02d}{m % 60:02d}00S") for m in range(30)]
    bad = [v5().replace("001234.567", "001234.568"), "hello"]

    async def push_all() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            async def push(text: str) -> int:
                answer = await client.post(URL, data={"telegram": text},
                                           headers={"X-AUTHKEY": api.keys["write"]})
                return answer.status_code

            deadline = time.monotonic() + 60
            while not reader.helpers:  # the first push starts it; parsed here meanwhile
                assert await push(good[0]) == 201
                assert time.monotonic() < deadline, "no helper came up"
                await asyncio.sleep(0.02)
            monkeypatch.setattr(reader, "_inline", parsed_here_fails)
            return list(await asyncio.gather(*(push(text) for text in good + bad)))

    try:
        assert asyncio.run(push_all()) == [201] * len(good) + [500, 500]
    finally:
        reader.close()
    assert api.hub.count(device="p1", channel="electricity_delivered_1") == len(good)
    assert app.state.dsmr_counters.rejected == 2
    status = json.loads(api.hub.get_state("dsmr.status.p1") or "{}")
    assert status["latest_telegram"] in [text.removesuffix("\r\n") for text in good]


def test_a_datalogger_client_as_dsmr_reader_documents_it_pushes_to_a_real_server(
        api: Api) -> None:
    record, key = new_key("datalogger", "write")
    api.hub.store.add_key(record)
    with served(create_app(api.hub)) as base:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            send_telegram(v5(), f"{base}/api/v1/datalogger/dsmrreading", key)
            send_telegram("garbage", f"{base}/api/v1/datalogger/dsmrreading", key)
    # the first push printed nothing (201); the second printed the script's error line
    assert printed.getvalue().splitlines() == ["API error: Failed to parse telegram"]
    assert api.hub.count(device="p1") == 19
