"""`check_credentials` (config check --online): one cheap call per source, against the four
emulators and meterhub's own DSMR-reader-compatible API, with good and wrong credentials."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from meterhub.config import parse
from meterhub.emulators import zentra
from meterhub.sources import CredentialCheck, check_credentials
from tests.api.conftest import Api, api
from tests.test_sync import Worlds, config, worlds

__all__ = ["api"]  # the fixture


def calls(w: Worlds) -> list[int]:
    """Calls each emulator answered: ZENTRA, T&D, Climkit, Copper."""
    return [world.calls for world in (w.zentra, w.tandd, w.climkit, w.copper)]


def check(w: Worlds, configs: list[Any]) -> list[CredentialCheck]:
    return asyncio.run(check_credentials(configs, clock=w.clock, transports=w.transports()))


def test_good_credentials_pass_with_one_cheap_call_each() -> None:
    w = worlds(days=2)
    results = check(w, config(w))
    newest = int(w.zentra.records("z6-10001")[1][-1])
    assert results == [
        CredentialCheck("tahmo", "zentra", True,
                        f"token accepted; z6-10001 has records up to mrid {newest}"),
        CredentialCheck("lab", "tandd", True, "credentials accepted; 2 loggers listed"),
        CredentialCheck("site", "climkit", True, "credentials accepted; 1 sites listed"),
        CredentialCheck("homes", "copper", True, "credentials accepted; enterprise answered"),
    ]
    # ZENTRA, T&D and Copper: one API call; Climkit: its login and one listing
    assert calls(w) == [1, 1, 2, 1]
    assert w.zentra.rejected == w.tandd.rejected == w.climkit.rejected == 0


def test_wrong_credentials_name_the_keys_to_check() -> None:
    w = worlds(days=2)
    results = check(w, config(w, tahmo={"token": "wrong"}, lab={"login_pass": "wrong"},
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
    assert calls(w) == [1, 1, 1, 0]  # a refusal is never retried


def test_a_wrong_enterprise_or_station_is_named_as_such() -> None:
    w = worlds(days=2)
    results = check(w, config(w, tahmo={"devices": ["z6-99999"]},
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
    w = worlds(days=2)
    dead = {"base_url": "http://127.0.0.1:9"}  # the discard port: connection refused
    configs = config(w, tahmo=dead, site=dead)
    # real sockets, to the two dead sources only
    results = asyncio.run(check_credentials([configs[0], configs[2]], clock=w.clock))
    for result, vendor in zip(results, ("ZENTRA", "Climkit"), strict=True):
        assert not result.ok
        assert result.detail.startswith(f"http://127.0.0.1:9 did not answer usably ({vendor}: "
                                        "cannot reach ")


def test_the_limiter_spaces_a_check_after_a_call_on_the_same_device() -> None:
    """ZENTRA allows one call a minute per device: a check through a connector that just
    called waits on its limiter instead of drawing a 429."""
    from meterhub.sources.zentra import ZentraConnector

    w = worlds(days=2)
    tahmo = config(w)[0]
    con = ZentraConnector(tahmo, clock=w.clock,
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
