"""Keys, scopes and per-key rate limits on every endpoint."""

from __future__ import annotations

import hashlib

import pytest

from meterhub.api import create_app
from meterhub.api.security import KeyLimits
from meterhub.keys import RateLimit, new_key
from tests.api.conftest import Api, Client

READ_PATHS = ["/api/v1/readings", "/api/v1/aggregates", "/api/v1/gaps", "/api/v1/devices",
              "/api/v1/channels", "/api/v1/sources"]


def test_health_needs_no_key(api: Api) -> None:
    response = Client(api.app).get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": "0.1.0", "store": "ok"}


@pytest.mark.parametrize("path", [*READ_PATHS, "/api/v1/keys"])
def test_no_key_is_401_with_a_problem(api: Api, path: str) -> None:
    response = Client(api.app).get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/problem+json"
    assert "meterhub keys create" in response.json()["detail"]


def test_a_wrong_or_malformed_key_is_401(api: Api) -> None:
    real = api.keys["admin"]
    for wrong in (real[:-1] + ("x" if real[-1] != "x" else "y"), "mh_nothere_secret",
                  "letmein", "Bearer"):
        response = Client(api.app, wrong).get("/api/v1/devices")
        assert response.status_code == 401, wrong
        assert real not in response.text


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
def test_both_headers_carry_a_key(api: Api, header: str) -> None:
    value = (f"Bearer {api.keys['read']}" if header == "Authorization" else api.keys["read"])
    response = Client(api.app).get("/api/v1/devices", headers={header: value})
    assert response.status_code == 200


@pytest.mark.parametrize("path", READ_PATHS)
def test_every_scope_reads(api: Api, path: str) -> None:
    for scope in ("read", "write", "admin"):
        assert api.client.get(path, key=api.keys[scope]).status_code == 200


def test_writing_needs_write_scope_and_keys_need_admin(api: Api) -> None:
    batch = [{"device": "d", "channel": "c", "ts": "2024-01-01T00:00:00Z", "value": 1,
              "unit": "W"}]
    refused = api.client.post("/api/v1/readings", json=batch, key=api.keys["read"])
    assert refused.status_code == 403
    assert "scope read" in refused.json()["detail"]
    assert "d" not in set(api.hub.devices()["device"])
    assert api.client.post("/api/v1/readings", json=batch, key=api.keys["admin"]
                           ).status_code == 200
    for scope in ("read", "write"):
        assert api.client.get("/api/v1/keys", key=api.keys[scope]).status_code == 403
        assert api.client.post("/api/v1/keys", json={"name": "x"},
                               key=api.keys[scope]).status_code == 403


def test_keys_made_and_revoked_through_the_api(api: Api) -> None:
    made = api.client.post("/api/v1/keys", json={"name": "logger", "scope": "write",
                                                 "rate_limit": "30/minute"},
                           key=api.keys["admin"])
    assert made.status_code == 201
    body = made.json()
    assert body["scope"] == "write"
    assert body["rate_limit"] == "30/minute"
    text = body["key"]
    assert api.client.get("/api/v1/devices", key=text).headers["x-ratelimit-limit"] == "30"
    listed = api.client.get("/api/v1/keys", key=api.keys["admin"]).json()["data"]
    assert "logger" in {k["name"] for k in listed}
    assert text not in str(listed)
    # only the hash is stored
    stored = {k.name: k for k in api.hub.store.api_keys()}["logger"]
    assert stored.hash == hashlib.sha256(text.encode()).hexdigest()
    assert api.client.delete(f"/api/v1/keys/{body['key_id']}",
                             key=api.keys["admin"]).status_code == 204
    assert api.client.get("/api/v1/devices", key=text).status_code == 401
    assert api.client.delete("/api/v1/keys/nothere", key=api.keys["admin"]).status_code == 404
    duplicate = api.client.post("/api/v1/keys", json={"name": "read-key"},
                                key=api.keys["admin"])
    assert duplicate.status_code == 409
    assert "already named" in duplicate.json()["detail"]


def test_rate_limit_headers_on_every_answer_and_429_beyond(api: Api) -> None:
    record, text = new_key("tight", "read", "3/minute")
    api.hub.store.add_key(record)
    app = create_app(api.hub, rate_limit="10000/minute")
    client = Client(app, text)
    answers = [client.get("/api/v1/devices"), client.get("/api/v1/readings?device=nope"),
               client.get("/api/v1/readings?limit=0")]
    assert [a.status_code for a in answers] == [200, 404, 400]
    assert [a.headers["x-ratelimit-limit"] for a in answers] == ["3", "3", "3"]
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["2", "1", "0"]
    for answer in answers:  # the whole allowance is back a minute (and a slot) from now
        assert 59 <= int(answer.headers["x-ratelimit-reset"]) <= 61
    over = client.get("/api/v1/devices")
    assert over.status_code == 429
    assert over.headers["content-type"] == "application/problem+json"
    assert over.headers["x-ratelimit-remaining"] == "0"
    assert 1 <= int(over.headers["retry-after"]) <= 61
    assert "3/minute" in over.json()["detail"]
    # the limit is per key: another key is unaffected
    assert client.get("/api/v1/devices", key=api.keys["read"]).status_code == 200


def test_key_limits_slide_instead_of_resetting_at_a_fixed_edge() -> None:
    now = [1_000_040.0]
    limits = KeyLimits(RateLimit.parse("2/minute"), clock=lambda: now[0])
    record, _ = new_key("k", "read")
    results = [limits.hit(record) for _ in range(3)]
    assert [ok for ok, _ in results] == [True, True, False]
    assert results[2][1]["Retry-After"] == "61"  # the two requests leave after 60 s + a slot
    now[0] = 1_000_080.5  # a fixed minute would have reset at 1_000_080
    assert limits.hit(record)[0] is False
    now[0] = 1_000_101.0
    ok, headers = limits.hit(record)
    assert ok
    assert headers["X-RateLimit-Remaining"] == "1"


@pytest.mark.parametrize(("text", "calls", "period"), [
    ("600/minute", 600, 60), ("10/s", 10, 1), ("5000 / hour", 5000, 3600),
    ("100/5min", 100, 300), ("1/day", 1, 86400)])
def test_rate_limits_are_read_like_people_write_them(text: str, calls: int,
                                                     period: int) -> None:
    assert RateLimit.parse(text) == RateLimit(calls, period)


@pytest.mark.parametrize("text", ["", "fast", "0/minute", "10/fortnight", "-1/s",
                                  "5/0minute"])
def test_unreadable_rate_limits_say_how_to_write_one(text: str) -> None:
    from meterhub.errors import InputError

    with pytest.raises(InputError, match="600/minute"):
        RateLimit.parse(text)
