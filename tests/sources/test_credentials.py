"""`check_credentials` (config check --online): one cheap call per source, against the four
emulators and meterhub's own DSMR-reader-compatible API, with good and wrong credentials."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from meterhub.clock import VirtualClock
from meterhub.config import parse
from meterhub.emulators import climkit, copper, tandd, zentra
from meterhub.sources import CredentialCheck, check_credentials
from tests.api.conftest import Api, api

__all__ = ["api"]  # the fixture


class Worlds:
    def __init__(self) -> None:
        self.clock = VirtualClock(1_700_000_000.0)
        self.zentra = zentra.ZentraWorld.create(self.clock, devices=2, days=2)
        self.tandd = tandd.TanddWorld.create(self.clock, devices=2, days=2)
        self.climkit = climkit.ClimkitWorld.create(self.clock, sites=1, meters=2, days=2)
        self.copper = copper.CopperWorld.create(self.clock, meters=2, days=2)

    def transports(self) -> dict[str, httpx.AsyncBaseTransport]:
        return {name: httpx.ASGITransport(app=module.create_app(world))
                for name, module, world in (("tahmo", zentra, self.zentra),
                                            ("lab", tandd, self.tandd),
                                            ("site", climkit, self.climkit),
                                            ("homes", copper, self.copper))}

    def calls(self) -> list[int]:
        return [w.calls for w in (self.zentra, self.tandd, self.climkit, self.copper)]


def sources(w: Worlds, **wrong: dict[str, Any]) -> list[Any]:
    tables = [
        {"name": "tahmo", "type": "zentra", "base_url": "https://tahmo.zentracloud.com",
         "token": w.zentra.token, "devices": sorted(w.zentra.devices)},
        {"name": "lab", "type": "tandd", "api_key": tandd.API_KEY,
         "login_id": tandd.LOGIN_ID, "login_pass": tandd.LOGIN_PASS},
        {"name": "site", "type": "climkit", "username": climkit.USERNAME,
         "password": climkit.PASSWORD},
        {"name": "homes", "type": "copper", "client_id": copper.CLIENT_ID,
         "client_secret": copper.CLIENT_SECRET, "enterprise_id": copper.ENTERPRISE},
    ]
    return parse({"source": [{**t, **wrong.get(t["name"], {})} for t in tables]},
                 environ={}).sources


def check(w: Worlds, configs: list[Any]) -> list[CredentialCheck]:
    return asyncio.run(check_credentials(configs, clock=w.clock, transports=w.transports()))


def test_good_credentials_pass_with_one_cheap_call_each() -> None:
    w = Worlds()
    results = check(w, sources(w))
    newest = int(w.zentra.records("z6-10001")[1][-1])
    assert results == [
        CredentialCheck("tahmo", "zentra", True,
                        f"token accepted; z6-10001 has records up to mrid {newest}"),
        CredentialCheck("lab", "tandd", True, "credentials accepted; 2 loggers listed"),
        CredentialCheck("site", "climkit", True, "credentials accepted; 1 sites listed"),
        CredentialCheck("homes", "copper", True, "credentials accepted; enterprise answered"),
    ]
    # ZENTRA, T&D and Copper: one API call; Climkit: its login and one listing
    assert w.calls() == [1, 1, 2, 1]
    assert w.zentra.rejected == w.tandd.rejected == w.climkit.rejected == 0


def test_wrong_credentials_name_the_keys_to_check() -> None:
    w = Worlds()
    results = check(w, sources(w, tahmo={"token": "wrong"}, lab={"login_pass": "wrong"},
                               site={"password": "wrong"}, homes={"client_secret": "wrong"}))
    assert [r.ok for r in results] == [False] * 4
    details = [r.detail for r in results]
    assert details[0].startswith("credentials refused; check source[tahmo].token (ZENTRA "
                                 "refused the credentials (401 on /api/v4/get_readings/)")
    assert details[1].startswith("credentials refused; check source[lab].api_key, "
                                 "source[lab].login_id, source[lab].login_pass (")
    assert details[2].startswith("credentials refused; check source[site].username, "
                                 "source[site].password (")
    assert details[3].startswith("credentials refused; check source[homes].client_id, "
                                 "source[homes].client_secret (")
    assert "wrong" not in " ".join(details)  # no secret is echoed
    assert w.calls() == [1, 1, 1, 0]  # a refusal is never retried


def test_a_wrong_enterprise_or_station_is_named_as_such() -> None:
    w = Worlds()
    results = check(w, sources(w, tahmo={"devices": ["z6-99999"]},
                               homes={"enterprise_id": "ent-0000"}))
    assert results[0] == CredentialCheck(
        "tahmo", "zentra", False,
        "ZENTRA: 404 Device z6-99999 not found. (check source[tahmo].devices)")
    assert results[3] == CredentialCheck(
        "homes", "copper", False,
        "credentials refused; check source[homes].enterprise_id (Copper issued a token but "
        "refused enterprise 'ent-0000': check enterprise_id)")
    assert [r.ok for r in results[1:3]] == [True, True]


def test_an_unreachable_host_is_named() -> None:
    w = Worlds()
    dead = {"base_url": "http://127.0.0.1:9"}  # the discard port: connection refused
    configs = sources(w, tahmo=dead, site=dead)
    # real sockets, to the two dead sources only
    results = asyncio.run(check_credentials([configs[0], configs[2]], clock=w.clock))
    for result, vendor in zip(results, ("ZENTRA", "Climkit"), strict=True):
        assert not result.ok
        assert result.detail.startswith(f"127.0.0.1:9 did not answer usably ({vendor}: "
                                        "cannot reach ")


def test_the_limiter_spaces_a_check_after_a_call_on_the_same_device() -> None:
    """ZENTRA allows one call a minute per device: a check through a connector that just
    called waits on its limiter instead of drawing a 429."""
    from meterhub.sources.zentra import ZentraConnector

    w = Worlds()
    config = sources(w)[0]
    con = ZentraConnector(config, clock=w.clock,
                          transport=httpx.ASGITransport(app=zentra.create_app(w.zentra)))

    async def twice() -> tuple[str, str]:
        first = await con.check()
        second = await con.check()
        await con.aclose()
        return first, second

    started = w.clock.now()
    first, second = asyncio.run(twice())
    assert first.startswith("token accepted")
    assert second.startswith("token accepted")
    assert w.zentra.rejected == 0
    assert w.clock.now() - started >= 60


def test_a_dsmr_reader_instance_key_is_checked(api: Api) -> None:
    from meterhub.api import create_app

    def result(key: str) -> CredentialCheck:
        config = parse({"source": [{"name": "home", "type": "dsmr_reader",
                                    "base_url": "http://meterhub.test", "api_key": key}]},
                       environ={}).sources
        transport = httpx.ASGITransport(app=create_app(api.hub))
        return asyncio.run(check_credentials(config, transports={"home": transport}))[0]

    assert result(api.keys["read"]) == CredentialCheck("home", "dsmr_reader", True,
                                                       "API key accepted; 0 readings")
    refused = result("not-a-key")
    assert not refused.ok
    assert refused.detail.startswith("credentials refused; check source[home].api_key "
                                     "(DSMR-reader refused the credentials (403 on ")
