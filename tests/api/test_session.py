"""Dashboard login: a key given once on /login becomes a signed, expiring, HttpOnly,
SameSite=Strict session cookie that reads (and only reads) the API; the key never shows in
a URL, a page or a log."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie

import httpx
import pytest

from meterhub.api import create_app
from meterhub.api.login import safe_next
from meterhub.api.session import COOKIE, SECRET_STATE, Sessions
from meterhub.config import parse
from meterhub.keys import new_key
from tests.api.conftest import Api, Client


def log_in(api: Api, key: str, target: str = "/") -> httpx.Response:
    return Client(api.app).post("/login", data={"key": key, "next": target},
                                follow_redirects=False)


def session_of(response: httpx.Response) -> str:
    jar = SimpleCookie()
    jar.load(response.headers["set-cookie"])
    return jar[COOKIE].value


def with_cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={value}"}


def test_the_login_page_is_a_form_with_one_password_field(api: Api) -> None:
    page = Client(api.app).get("/login?next=/explore")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    text = page.text
    assert text.count("<input") == 2  # the key, and where to go after
    assert 'type="password"' in text
    assert 'name="key"' in text
    assert '<label for="key">' in text
    assert 'value="/explore"' in text


def test_a_key_logs_in_once_and_the_cookie_reads_the_api(
        api: Api, caplog: pytest.LogCaptureFixture) -> None:
    key = api.keys["read"]
    with caplog.at_level(logging.DEBUG):
        response = log_in(api, key, "/explore?d=ws1")
    assert response.status_code == 303
    assert response.headers["location"] == "/explore?d=ws1"
    cookie = response.headers["set-cookie"]
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/"):
        assert attribute in cookie
    assert "Max-Age=43200" in cookie  # 12 hours, the default
    value = session_of(response)
    secret_part = key.split("_", 2)[2]
    assert secret_part not in value
    assert key not in response.text
    assert secret_part not in caplog.text
    client = Client(api.app)
    devices = client.get("/api/v1/devices", headers=with_cookie(value))
    assert devices.status_code == 200, devices.text
    assert {d["device"] for d in devices.json()["data"]} == {"ws1", "m1"}
    assert "x-ratelimit-limit" in devices.headers  # the key's limit counts the session
    # the same answer as with the key itself
    assert devices.json() == client.get("/api/v1/devices", key=key).json()


def test_a_session_never_writes_nor_administers(api: Api) -> None:
    value = session_of(log_in(api, api.keys["admin"]))
    client = Client(api.app)
    assert client.get("/api/v1/channels", headers=with_cookie(value)).status_code == 200
    push = client.post("/api/v1/readings", headers=with_cookie(value), json=[
        {"device": "ws1", "channel": "temp", "ts": "2024-10-26T00:00:00Z", "value": 1,
         "unit": "degC"}])
    assert push.status_code == 401, push.text
    assert client.get("/api/v1/keys", headers=with_cookie(value)).status_code == 401
    # the keys themselves still can
    assert client.get("/api/v1/keys", key=api.keys["admin"]).status_code == 200


def test_a_bad_key_is_refused_on_the_page(api: Api) -> None:
    for wrong in ("mh_nope_nope", "", "x" * 200):
        response = log_in(api, wrong)
        assert response.status_code == 401
        assert "set-cookie" not in response.headers
    response = log_in(api, "mh_nope_nope")
    assert response.status_code == 401
    assert "That key is unknown or revoked." in response.text
    assert "mh_nope_nope" not in response.text


def test_forged_expired_and_revoked_sessions_read_nothing(api: Api) -> None:
    client = Client(api.app)
    value = session_of(log_in(api, api.keys["read"]))
    body, _, signature = value.rpartition(".")
    forged = f"{body}.{'A' * len(signature)}"
    key_id, expires, _ = value.split(".")
    longer = f"{key_id}.{int(expires) + 3600}.{signature}"  # a longer life, same signature
    for bad in (forged, longer, "garbage", ""):
        assert client.get("/api/v1/devices", headers=with_cookie(bad)).status_code == 401
    sessions: Sessions = api.app.state.sessions
    record = api.app.state.keys.by_id(key_id)
    old = sessions.issue(record, now=time.time() - 13 * 3600)  # issued 13 hours ago
    assert client.get("/api/v1/devices", headers=with_cookie(old)).status_code == 401
    assert client.get("/api/v1/devices", headers=with_cookie(value)).status_code == 200
    api.app.state.keys.revoke(key_id)  # revoking the key ends its sessions at once
    assert client.get("/api/v1/devices", headers=with_cookie(value)).status_code == 401


def test_logout_clears_the_cookie(api: Api) -> None:
    response = Client(api.app).post("/logout", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "Max-Age=0" in cookie


def test_the_secret_is_the_stores_so_sessions_outlive_a_restart(api: Api) -> None:
    assert api.hub.get_state(SECRET_STATE) is None  # nothing written before a login
    value = session_of(log_in(api, api.keys["read"]))
    assert api.hub.get_state(SECRET_STATE)
    restarted = create_app(api.hub)
    assert Client(restarted).get("/api/v1/devices",
                                 headers=with_cookie(value)).status_code == 200


def test_without_the_dashboard_there_is_no_login_and_no_session(api: Api) -> None:
    value = session_of(log_in(api, api.keys["read"]))
    bare = create_app(api.hub, settings=parse({"api": {"dashboard": False}}))
    client = Client(bare)
    assert client.get("/login").status_code == 404
    assert client.get("/api/v1/devices", headers=with_cookie(value)).status_code == 401


def test_a_login_lasts_as_long_as_configured(api: Api) -> None:
    record, text = new_key("short", "read")
    api.hub.store.add_key(record)
    app = create_app(api.hub, settings=parse({"api": {"session_hours": 0.5}}))
    response = Client(app).post("/login", data={"key": text}, follow_redirects=False)
    assert "Max-Age=1800" in response.headers["set-cookie"]


@pytest.mark.parametrize(("target", "went"), [
    ("/explore?d=1", "/explore?d=1"), ("//evil.example/", "/"),
    ("https://evil.example/", "/"), ("/\\evil.example", "/"), (None, "/"), ("", "/"),
])
def test_after_login_the_browser_stays_on_this_site(target: str | None, went: str) -> None:
    assert safe_next(target) == went


@pytest.mark.parametrize("value", ["k.1.\u00e9", "\u00e9.1.sig", "k.\u00b2.sig",
                                   "k.99999999999999.s", "k..s", ".1.s", "k.1.", "a.b.c.d"])
def test_a_planted_cookie_is_no_session_and_no_error(api: Api, value: str) -> None:
    log_in(api, api.keys["read"])  # the store has a secret: cookies are checked against it
    client = Client(api.app)
    headers = {"Cookie": f"{COOKIE}={value}".encode()}  # raw bytes, as a browser may send
    assert client.get("/api/v1/devices", headers=headers).status_code == 401
    page = client.get("/", headers=headers, follow_redirects=False)
    assert page.status_code == 303  # to the login, not a 500


def test_the_login_reads_a_small_form_only(api: Api) -> None:
    client = Client(api.app)
    big = client.post("/login", content=b"key=" + b"x" * 5000,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert big.status_code == 400
    assert "set-cookie" not in big.headers

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 1000  # a streamed body without a length: refused at 4 kB

    streamed = client.post("/login", content=chunks(),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert streamed.status_code == 400
    upload = client.post("/login", files={"key": ("k.txt", api.keys["read"].encode())})
    assert upload.status_code == 400  # only the page's own URL-encoded form


def test_another_site_can_neither_log_in_nor_log_out(api: Api) -> None:
    client = Client(api.app)
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
        login = client.post("/login", data={"key": api.keys["read"]}, headers=headers,
                            follow_redirects=False)
        assert login.status_code == 403
        assert "set-cookie" not in login.headers
        assert client.post("/logout", headers=headers).status_code == 403
    # the site's own page: same host (a proxy may end TLS: the scheme may differ)
    own = client.post("/login", data={"key": api.keys["read"]}, follow_redirects=False,
                      headers={"Origin": "https://meterhub.test",
                               "Sec-Fetch-Site": "same-origin"})
    assert own.status_code == 303


def test_pages_answer_head(api: Api) -> None:
    client = Client(api.app)
    assert client.request("HEAD", "/login").status_code == 200
    assert client.request("HEAD", "/", follow_redirects=False).status_code == 303


def test_a_login_too_short_to_use_is_a_config_error() -> None:
    from meterhub.config import ConfigError

    with pytest.raises(ConfigError, match="session_hours"):
        parse({"api": {"session_hours": 0.0001}})


def test_the_session_reads_dsmr_readers_paths_but_never_writes_them(api: Api) -> None:
    value = session_of(log_in(api, api.keys["admin"]))
    client = Client(api.app)
    for path in ("/api/v2/statistics/day", "/api/v2/consumption/today",
                 "/api/v2/datalogger/dsmrreading", "/api/v2/datalogger/meter-statistics",
                 "/api/v2/consumption/energy-supplier-prices"):
        answer = client.get(path, headers=with_cookie(value))
        assert answer.status_code == 200, (path, answer.text)
        assert "x-ratelimit-limit" in answer.headers  # the key's limit counts the session
    reading = {"timestamp": "2024-10-26T10:00:00Z", "electricity_delivered_1": "1",
               "electricity_returned_1": "0", "electricity_delivered_2": "1",
               "electricity_returned_2": "0", "electricity_currently_delivered": "0",
               "electricity_currently_returned": "0"}
    for method, path, body in (
            ("POST", "/api/v2/datalogger/dsmrreading", reading),
            ("PATCH", "/api/v2/datalogger/meter-statistics", {"dsmr_version": "50"}),
            ("POST", "/api/v2/consumption/energy-supplier-prices",
             {"start": "2025-01-01", "end": "2025-12-31"})):
        refused = client.request(method, path, headers=with_cookie(value), json=body)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json() == {"detail": "Invalid auth key"}
    telegram = client.post("/api/v1/datalogger/dsmrreading", headers=with_cookie(value),
                           data={"telegram": "x"})
    assert telegram.status_code == 403
    # and nothing was written: no meter, no contract
    assert "p1" not in set(api.hub.devices()["device"])
    prices = client.get("/api/v2/consumption/energy-supplier-prices",
                        headers=with_cookie(value)).json()
    assert prices["count"] == 0
