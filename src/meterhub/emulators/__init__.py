"""Vendor API emulators: one ASGI app per vendor over a shared kit (clock, data, faults)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from meterhub.clock import RealClock
from meterhub.emulators.kit import DataHorizon

W = TypeVar("W", bound=DataHorizon)


def _prepare(world: W, frozen: bool, limits: bool) -> W:
    if frozen:
        world.horizon = world.clock.now()
    if not limits:
        world.relax_limits()
    return world


def _zentra(*, seed: int, devices: int, days: float, frozen: bool = False,
            limits: bool = True) -> tuple[Any, list[str]]:
    from meterhub.emulators.zentra import ZentraWorld, create_app

    world = _prepare(ZentraWorld.create(RealClock(), devices=devices, days=days, seed=seed),
                     frozen, limits)
    return create_app(world), [
        f"token: {world.token}  (send 'Authorization: Token {world.token}')",
        f"devices: {', '.join(sorted(world.devices))}",
        "try: GET /api/v4/get_readings/?device_sn="
        f"{min(world.devices)}&per_page=1&sort_by=desc&output_format=json",
    ]


def _tandd(*, seed: int, devices: int, days: float, frozen: bool = False,
           limits: bool = True) -> tuple[Any, list[str]]:
    from meterhub.emulators.tandd import API_KEY, LOGIN_ID, LOGIN_PASS, TanddWorld, create_app

    world = _prepare(TanddWorld.create(RealClock(), devices=devices, days=days, seed=seed),
                     frozen, limits)
    return create_app(world), [
        f"api-key: {API_KEY}  login-id: {LOGIN_ID}  login-pass: {LOGIN_PASS}",
        f"devices: {', '.join(sorted(world.loggers))}",
        "try: POST /v1/devices/data with header 'X-HTTP-Method-Override: GET' and a JSON "
        "body holding api-key, login-id, login-pass and remote-serial",
    ]


def _climkit(*, seed: int, devices: int, days: float, frozen: bool = False,
             limits: bool = True) -> tuple[Any, list[str]]:
    from meterhub.emulators.climkit import PASSWORD, USERNAME, ClimkitWorld, create_app

    world = _prepare(ClimkitWorld.create(RealClock(), sites=1, meters=devices, days=days,
                                         seed=seed), frozen, limits)
    meters = [m.id for site in world.sites.values() for m in site.meters]
    return create_app(world), [
        f"username: {USERNAME}  password: {PASSWORD}  (POST /api/v1/auth for a token)",
        f"sites: {', '.join(world.sites)}  meters: {', '.join(meters)}",
        "try: GET /api/v1/all_installations with 'Authorization: Bearer <token>'",
    ]


def _copper(*, seed: int, devices: int, days: float, frozen: bool = False,
            limits: bool = True) -> tuple[Any, list[str]]:
    from meterhub.emulators.copper import (
        CLIENT_ID,
        CLIENT_SECRET,
        ENTERPRISE,
        CopperWorld,
        create_app,
    )

    world = _prepare(CopperWorld.create(RealClock(), meters=devices, days=days, seed=seed),
                     frozen, limits)
    return create_app(world), [
        f"client_id: {CLIENT_ID}  client_secret: {CLIENT_SECRET}  enterprise: {ENTERPRISE}",
        f"meters: {', '.join(world.meters)}",
        "try: POST /oauth/token (client_credentials), then GET "
        f"/api/v2/partner/{ENTERPRISE}/meter with 'Authorization: Bearer <token>'",
    ]


#: vendor name -> factory returning (ASGI app, lines telling how to use it)
EMULATORS: dict[str, Callable[..., tuple[Any, list[str]]]] = {
    "zentra": _zentra, "tandd": _tandd, "climkit": _climkit, "copper": _copper}
