"""The v1 push's lane past FastAPI (`PushLane`): every request answered exactly as the
app's usual route answers it (status, body, headers), the same readings stored, and only
urlencoded POSTs to the path taken by the lane."""

from __future__ import annotations

import asyncio
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import pyarrow.compute as pc

import meterhub
from meterhub.api import create_app
from meterhub.api.dsmr_reader.common import MAX_BODY
from meterhub.api.dsmr_reader.telegram_push import FORM, PATH, PushLane
from meterhub.keys import new_key
from tests.dsmr.telegrams import v5

TELEGRAMS = [v5(stamp=f"241027{10 + m:02d}3000W", t1=f"{1000 + m:010.3f}") for m in range(4)]


def form(**fields: str) -> bytes:
    return urllib.parse.urlencode(fields).encode("ascii")


#: (name, key scope or None, content type, body): every answer of the path, in order; the
#: write key's limit (15 a minute) is passed by the last two
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


def answers(tmp: Path, *, lane: bool) -> tuple[list[Any], list[Any], int]:
    """Each request's answer (headers that vary by the moment left out), the stored
    readings, and how many requests passed the lane to the usual route."""
    with meterhub.open(f"duckdb:///{tmp / ('lane' if lane else 'usual')}.duckdb") as hub:
        keys = {}
        for scope, limit in (("write", "15/minute"), ("read", None)):
            record, keys[scope] = new_key(f"{scope}-key", scope, limit)
            hub.store.add_key(record)
        app = create_app(hub)
        layer = app.middleware_stack = app.build_middleware_stack()
        while not isinstance(layer, PushLane):  # Starlette's and FastAPI's own layers
            layer = layer.app
        usual = layer.app = Counting(layer.app)
        if not lane:
            layer.lane = usual  # every request the usual way

        async def send_all() -> list[Any]:
            got = []
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://m.test") as client:
                for name, scope, media, body in REQUESTS:
                    headers = {"Content-Type": media}
                    if scope is not None:
                        headers["X-AUTHKEY"] = keys[scope]
                    response = await client.post(PATH, content=body, headers=headers)
                    timing = response.headers.get("server-timing", "")
                    assert timing.startswith("app;dur="), (name, response.headers)
                    got.append((name, response.status_code, response.content, sorted(
                        (k, seconds(k, v)) for k, v in response.headers.items()
                        if k != "server-timing")))
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
        "over the limit": 429, "over the limit again": 429}
    assert [value for _, value in stored] == [1000.0, 1001.0, 1002.0, 1003.0]
    # JSON, multipart and a form with a charset went the usual way; the rest the lane's
    assert passed == 3
