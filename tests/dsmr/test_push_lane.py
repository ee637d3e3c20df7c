"""The v1 push's lane past FastAPI (`PushLane`): every request answered exactly as the
app's usual route answers it (status, body, headers; a client gone before its body ended
and a store failure too), the same readings stored, and only urlencoded POSTs to the path
taken by the lane."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.compute as pc
import pytest
from fastapi import FastAPI

import meterhub
from meterhub.api import create_app
from meterhub.api.dsmr_reader.common import MAX_BODY
from meterhub.api.dsmr_reader.telegram_push import FORM, PATH, PushLane
from meterhub.errors import StoreError
from meterhub.hub import Hub
from meterhub.keys import new_key
from tests.dsmr.telegrams import v5

TELEGRAMS = [v5(stamp=f"241027{10 + m:02d}3000W", t1=f"{1000 + m:010.3f}") for m in range(4)]


def form(**fields: str) -> bytes:
    return urllib.parse.urlencode(fields).encode("ascii")


#: (name, key scope or None, content type, body): every answer of the path, in order; the
#: write key's limit (16 a minute) is passed by the last two
REQUESTS: list[tuple[str, str | None, str, bytes]] = [
    ("valid", "write", FORM, form(telegram=TELEGRAMS[0])),
    ("replayed", "write", FORM, form(telegram=TELEGRAMS[0])),
    ("padded with NULs and spaces", "write", FORM, form(telegram=f" \x00{TELEGRAMS[1]}\x00\n")),
    ("damaged", "write", FORM, form(telegram=TELEGRAMS[2].replace("1-0:1.8.1", "1-0:1.8.7"))),
    ("garbage", "write", FORM, form(telegram="garbage")),
    ("only NULs and whitespace", "write", FORM, form(telegram="\x00 \r\n\x00")),
    ("empty", "write", FORM, b"telegram="),
    ("no telegram field", "write", FORM, form(other="1")),
    ("two fields", "write", FORM, form(telegram=TELEGRAMS[2], extra="x")),
    ("too many fields", "write", FORM, b"a=1&" * 1001 + form(telegram=TELEGRAMS[3])),
    ("semicolons", "write", FORM, form(telegram=TELEGRAMS[3]) + b";x=1"),  # one field here
    ("too large", "write", FORM, b"telegram=" + b"x" * MAX_BODY),
    ("no key", None, FORM, form(telegram=TELEGRAMS[3])),
    ("a read key", "read", FORM, form(telegram=TELEGRAMS[3])),
    ("JSON", "write", "application/json", b'{"telegram": "x"}'),
    ("multipart without a boundary", "write", "multipart/form-data",
     form(telegram=TELEGRAMS[3])),
    ("form with a charset", "write", f"{FORM}; charset=utf-8", form(telegram=TELEGRAMS[3])),
    ("two content types", "write", FORM, form(telegram=TELEGRAMS[3])),
    ("over the limit", "write", FORM, form(telegram=TELEGRAMS[3])),
    ("over the limit again", "write", FORM, form(telegram=TELEGRAMS[3])),
]


class Counting:
    """An ASGI app that counts the requests passing it."""

    def __init__(self, app: Any) -> None:
        self.app, self.calls = app, 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.calls += 1
        await self.app(scope, receive, send)


def seconds(name: str, value: str) -> str:
    """A header's value, those that count seconds as whole seconds (within a minute: they
    may differ by one between the two runs)."""
    if name in ("retry-after", "x-ratelimit-reset"):
        assert 0 < int(value) <= 61, (name, value)
        return "seconds"
    return value


@contextlib.contextmanager
def pushing(tmp: Path, *, lane: bool) -> Iterator[tuple[Hub, FastAPI, dict[str, str], Counting]]:
    """An app over a new store with a write key (16 a minute) and a read key; its requests
    go by the lane (``lane``) or all the usual way; the counter of those that pass the
    lane to the usual route."""
    with meterhub.open(f"duckdb:///{tmp / ('lane' if lane else 'usual')}.duckdb") as hub:
        keys = {}
        for scope, limit in (("write", "16/minute"), ("read", None)):
            record, keys[scope] = new_key(f"{scope}-key", scope, limit)
            hub.store.add_key(record)
        app = create_app(hub)
        layer = app.middleware_stack = app.build_middleware_stack()
        while not isinstance(layer, PushLane):  # Starlette's and FastAPI's own layers
            layer = layer.app
        usual = layer.app = Counting(layer.app)
        if not lane:
            layer.lane = usual  # every request the usual way
        yield hub, app, keys, usual


def answer(response: httpx.Response, name: str = "") -> tuple[Any, ...]:
    """A response as compared: its Server-Timing there, but not its figure."""
    timing = response.headers.get("server-timing", "")
    assert timing.startswith("app;dur="), (name, response.headers)
    return (name, response.status_code, response.content, sorted(
        (k, seconds(k, v)) for k, v in response.headers.items() if k != "server-timing"))


def answers(tmp: Path, *, lane: bool) -> tuple[list[Any], list[Any], int]:
    """Each request's answer (headers that vary by the moment left out), the stored
    readings, and how many requests passed the lane to the usual route."""
    with pushing(tmp, lane=lane) as (hub, app, keys, usual):

        async def send_all() -> list[Any]:
            got = []
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://m.test") as client:
                for name, scope, media, body in REQUESTS:
                    headers = [("Content-Type", media)]
                    if name == "two content types":
                        headers.append(("Content-Type", FORM))
                    if scope is not None:
                        headers.append(("X-AUTHKEY", keys[scope]))
                    response = await client.post(PATH, content=body, headers=headers)
                    got.append(answer(response, name))
            return got

        got = asyncio.run(send_all())
        hub.fold_journal()
        table = hub.readings(device="p1", channel="electricity_delivered_1", as_="arrow")
        stored = sorted(zip(pc.cast(table["ts"], "int64").to_pylist(),
                            table["value"].to_pylist(), strict=True))
        return got, stored, usual.calls


def test_the_lane_answers_every_push_as_the_usual_route(tmp_path: Path) -> None:
    lane, stored, passed = answers(tmp_path, lane=True)
    usual, usual_stored, _ = answers(tmp_path, lane=False)
    assert lane == usual
    assert stored == usual_stored
    statuses = {name: status for name, status, _, _ in lane}
    assert statuses == {
        "valid": 201, "replayed": 201, "padded with NULs and spaces": 201, "damaged": 500,
        "garbage": 500, "only NULs and whitespace": 400, "empty": 400,
        "no telegram field": 400, "two fields": 201, "too many fields": 400,
        "semicolons": 500, "too large": 413, "no key": 403, "a read key": 403, "JSON": 400,
        "multipart without a boundary": 400, "form with a charset": 201,
        "two content types": 201, "over the limit": 429, "over the limit again": 429}
    assert [value for _, value in stored] == [1000.0, 1001.0, 1002.0, 1003.0]
    # JSON, multipart, a form with a charset or two content types went the usual way; the
    # rest the lane's
    assert passed == 4


async def gone_midway(app: FastAPI, key: str) -> list[dict[str, Any]]:
    """What the app sends to a client that closes its connection before its body ended."""
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b"telegram=%2FISK5", "more_body": True}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": PATH, "raw_path": PATH.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5000),
             "server": ("m.test", 80), "state": {},
             "headers": [(b"host", b"m.test"), (b"content-type", FORM.encode()),
                         (b"content-length", b"900"), (b"x-authkey", key.encode())]}
    await app(scope, receive, send)
    start, body = sent
    headers = sorted((k, v) for k, v in start["headers"] if k != b"server-timing")
    return [{**start, "headers": headers}, body]


def test_a_client_gone_midway_is_answered_as_the_usual_route_does(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """400, logged as an information (not as an unexpected error with its traceback)."""
    got = []
    for lane in (True, False):
        with pushing(tmp_path, lane=lane) as (_, app, keys, usual):
            with caplog.at_level(logging.INFO, logger="meterhub"):
                got.append(asyncio.run(gone_midway(app, keys["write"])))
            assert usual.calls == (0 if lane else 1)
    assert got[0] == got[1]
    assert got[0][0]["status"] == 400
    assert b"ended early" in got[0][1]["body"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len([r for r in caplog.records if "went away" in r.message]) == 2


async def push_one(app: FastAPI, key: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://m.test") as client:
        return await client.post(PATH, content=form(telegram=TELEGRAMS[0]),
                                 headers={"Content-Type": FORM, "X-AUTHKEY": key})


def test_a_store_failure_is_answered_as_the_usual_route_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    got = []
    for lane in (True, False):
        with pushing(tmp_path, lane=lane) as (hub, app, keys, _):
            def failing(devices: Any) -> None:
                raise StoreError("disk full")

            monkeypatch.setattr(hub, "add_devices", failing)  # at the meter's first push
            got.append(answer(asyncio.run(push_one(app, keys["write"]))))
    assert got[0] == got[1]
    assert got[0][1] == 500
    assert b"the store failed to answer" in got[0][2]
