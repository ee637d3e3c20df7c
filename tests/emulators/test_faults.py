"""The emulators' shared fault schedule (`meterhub.emulators.kit.Faults`): what each fault
does to a request, in each vendor's own words, through `EmulatorTransport` in-process and
over a real server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import orjson
import pytest

from meterhub.clock import RealClock, VirtualClock
from meterhub.emulators import climkit, copper, tandd, zentra
from meterhub.emulators.kit import EmulatorTransport, Fault, FaultInjector, Faults
from tests.api.live import served

T = TypeVar("T")
READINGS = "/api/v4/get_readings/"
QUERY: dict[str, str | int] = {"device_sn": "z6-10001", "per_page": 5, "sort_by": "ascending",
         "output_format": "json"}


def run(make: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(make())  # type: ignore[arg-type]


CLOCK_START = 1_700_000_000.0


def zentra_world() -> zentra.ZentraWorld:
    world = zentra.ZentraWorld.create(VirtualClock(CLOCK_START), devices=1, days=1)
    world.relax_limits()
    return world


async def get(app: Any, url: str, *, timeout: float = 30.0, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=EmulatorTransport(app), timeout=timeout,
                                 base_url="https://emulator.test") as client:
        return await client.get(url, **kwargs)


def zentra_get(world: zentra.ZentraWorld, *, timeout: float = 30.0) -> httpx.Response:
    return run(lambda: get(zentra.create_app(world), READINGS, timeout=timeout, params=QUERY,
                           headers={"Authorization": f"Token {world.token}"}))


def test_the_schedule_matches_paths_lets_requests_pass_and_runs_out() -> None:
    faults = Faults()
    later = Fault(status=503, path="/data", after=1, times=2)
    window = Fault(status=429, path="/auth", times=None, until=100.0)
    faults.schedule(later, window)
    met = [faults.next(path, now) for path, now in (
        ("/v1/data", 0), ("/v1/data", 0), ("/v1/current", 0), ("/v1/data", 0),
        ("/v1/data", 0), ("/auth", 99), ("/auth", 100))]
    assert [f.status for f in met] == [None, 503, None, 503, None, 429, None]
    assert (later.hits, window.hits) == (2, 1)
    assert faults.scheduled == []  # both ran out: one by count, one by time
    faults.rate_limited, faults.server_errors = 1, 1  # the shorthands, in their order
    assert [faults.next("/x", 0).status for _ in range(3)] == [503, 429, None]
    assert window.wait(40.0) is None  # no hint asked for
    assert Fault(retry_after=0, until=100.0).wait(40.2) == 60  # the lock-out's time left


def test_a_stall_past_the_read_timeout_is_the_clients_timeout_on_the_emulators_clock() -> None:
    world = zentra_world()
    world.faults.schedule(Fault(stall=45.0))
    started = world.clock.now()
    with pytest.raises(httpx.ReadTimeout):
        zentra_get(world, timeout=30.0)
    assert world.clock.now() - started == 30.0  # exactly the client's patience
    world.faults.schedule(Fault(stall=20.0))  # within it: a slow answer, no more
    assert zentra_get(world, timeout=30.0).status_code == 200
    assert world.clock.now() - started == 50.0


def test_a_cut_body_and_a_connection_dropped_mid_body() -> None:
    world = zentra_world()
    whole = zentra_get(world).content
    world.faults.schedule(Fault(cut=0.5))  # a JSON text cut short, consistently framed
    cut = zentra_get(world)
    assert cut.status_code == 200
    assert cut.content == whole[: len(whole) // 2]
    assert int(cut.headers["content-length"]) == len(cut.content)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(cut.content)
    world.faults.schedule(Fault(cut=0.3, close=True))  # the whole length announced
    with pytest.raises(httpx.RemoteProtocolError, match="peer closed connection"):
        zentra_get(world)


def test_a_connection_dropped_mid_body_over_a_real_server() -> None:
    world = zentra.ZentraWorld.create(RealClock(), devices=1, days=1)
    world.relax_limits()
    world.faults.schedule(Fault(cut=0.3, close=True))
    with served(zentra.create_app(world)) as base:  # type: ignore[arg-type]
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(f"{base}{READINGS}", params=QUERY,
                      headers={"Authorization": f"Token {world.token}"})
        again = httpx.get(f"{base}{READINGS}", params=QUERY,
                          headers={"Authorization": f"Token {world.token}"})
    assert again.status_code == 200


def test_duplicated_and_reordered_answers() -> None:
    world = zentra_world()
    first = zentra_get(world).json()
    assert isinstance(world.clock, VirtualClock)
    world.clock.advance(3600)  # twelve records more since
    world.faults.schedule(Fault(duplicate=True))
    assert zentra_get(world).json() == first  # the previous answer, stale
    fresh = zentra_get(world).json()
    assert fresh["pagination"]["max_mrid"] > first["pagination"]["max_mrid"]
    world.faults.schedule(Fault(reorder=True))
    turned = zentra_get(world).json()
    mrids = [r["mrid"] for r in turned["data"]["Air Temperature"][0]["readings"]]
    assert mrids == sorted(mrids, reverse=True)
    assert turned["pagination"] == fresh["pagination"]


@pytest.mark.parametrize("hint", [True, False])
def test_429s_in_each_vendors_words_with_a_hint_only_when_asked(hint: bool) -> None:
    clock = VirtualClock(1_700_000_000.0)
    worlds: dict[str, Any] = {"zentra": zentra.ZentraWorld.create(clock, devices=1, days=1),
              "tandd": tandd.TanddWorld.create(clock, devices=1, days=1),
              "climkit": climkit.ClimkitWorld.create(clock, meters=1, days=1),
              "copper": copper.CopperWorld.create(clock, meters=1, days=1)}
    for world in worlds.values():
        world.faults.schedule(Fault(status=429, retry_after=12 if hint else None, times=None))

    async def ask() -> dict[str, httpx.Response]:
        z = await get(zentra.create_app(worlds["zentra"]), READINGS, params=QUERY,
                      headers={"Authorization": "Token emulator-token"})
        async with httpx.AsyncClient(transport=EmulatorTransport(tandd.create_app(
                worlds["tandd"])), base_url="https://api.webstorage-service.com") as client:
            t = await client.post("/v1/devices/data", headers={
                "X-HTTP-Method-Override": "GET"}, content=orjson.dumps({
                    "api-key": tandd.API_KEY, "login-id": tandd.LOGIN_ID,
                    "login-pass": tandd.LOGIN_PASS, "remote-serial": "52120001"}))
        ck = climkit.create_app(worlds["climkit"])
        async with httpx.AsyncClient(transport=EmulatorTransport(ck),
                                     base_url="https://api.climkit.io") as client:
            token = (await client.post("/api/v1/auth", json={
                "username": climkit.USERNAME, "password": climkit.PASSWORD})).json()
            c = await client.get("/api/v1/all_installations", headers={
                "Authorization": f"Bearer {token['access_token']}"})
        cu = copper.create_app(worlds["copper"])
        async with httpx.AsyncClient(transport=EmulatorTransport(cu),
                                     base_url="https://api.copperlabs.com") as client:
            issued = (await client.post("/oauth/token", json={
                "grant_type": "client_credentials", "client_id": copper.CLIENT_ID,
                "client_secret": copper.CLIENT_SECRET, "audience": copper.AUDIENCE})).json()
            p = await client.get(f"/api/v2/partner/{copper.ENTERPRISE}/premise", headers={
                "Authorization": f"Bearer {issued['access_token']}"})
        return {"zentra": z, "tandd": t, "climkit": c, "copper": p}

    worlds["climkit"].faults.scheduled[0].path = "/all_installations"  # not the login
    worlds["copper"].faults.scheduled[0].path = "/premise"
    answers = run(ask)
    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(worlds, 429)
    for response in answers.values():
        assert response.headers.get("Retry-After") == ("12" if hint else None)
    detail = answers["zentra"].json()["detail"]
    assert ("Lock out expires in 12 seconds" in detail) is hint
    assert answers["tandd"].json() == {"error": {"code": 429, "message": tandd.ERRORS[429]}}
    assert answers["tandd"].headers["X-RateLimit-Limit"] == "20"
    assert answers["climkit"].json() == {"message": "Too many requests"}
    assert answers["copper"].json() == {"error": "Too many requests"}
    assert all(w.rejected == 1 for w in worlds.values())


def test_a_5xx_the_vendor_does_not_document_is_a_gateways_page() -> None:
    world = zentra_world()
    world.faults.schedule(Fault(status=503), Fault(status=502))
    documented = zentra_get(world)
    assert (documented.status_code, documented.text) == (503, "Service Unavailable")
    gateway = zentra_get(world)
    assert gateway.status_code == 502
    assert gateway.headers["content-type"].startswith("text/html")
    assert "502 Bad Gateway" in gateway.text


def test_a_401_ends_the_session_of_token_vendors() -> None:
    world = climkit.ClimkitWorld.create(VirtualClock(1_700_000_000.0), meters=1, days=1)
    world.relax_limits()
    world.faults.schedule(Fault(status=401, path="/all_installations"))

    async def go() -> list[int]:
        async with httpx.AsyncClient(transport=EmulatorTransport(climkit.create_app(world)),
                                     base_url="https://api.climkit.io") as client:
            async def listing(token: str) -> int:
                return (await client.get("/api/v1/all_installations", headers={
                    "Authorization": f"Bearer {token}"})).status_code

            async def login() -> str:
                return str((await client.post("/api/v1/auth", json={
                    "username": climkit.USERNAME, "password": climkit.PASSWORD})
                    ).json()["access_token"])

            old = await login()
            return [await listing(old), await listing(old), await listing(await login())]

    assert run(go) == [401, 401, 200]  # expired early, for good; a new login works


def test_the_injector_puts_faults_in_front_of_any_app() -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    clock = VirtualClock(0.0)
    served_rows = [[1, 2, 3]]

    async def listing(request: Any) -> JSONResponse:
        return JSONResponse({"count": 3, "results": served_rows[0]})

    faults = Faults()
    app = FaultInjector(Starlette(routes=[Route("/items", listing)]), faults, clock)
    faults.schedule(Fault(status=429, retry_after=7), Fault(reorder=True),
                    Fault(duplicate=True, after=1))

    async def go() -> list[httpx.Response]:
        answers = []
        for rows in ([1, 2, 3], [1, 2, 3], [4, 5], [6]):
            served_rows[0] = rows
            answers.append(await get(app, "/items"))
        return answers

    throttled, reordered, fresh, stale = run(go)
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "7")
    assert throttled.json() == {"detail": "Request was throttled. Expected available in 7 "
                                          "seconds."}
    assert reordered.json()["results"] == [3, 2, 1]
    assert fresh.json()["results"] == [4, 5]
    assert stale.json()["results"] == [4, 5]  # the previous answer on the path, again
