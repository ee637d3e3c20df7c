"""meterhub.toml validation: every refusal names the key, where it is and why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from meterhub.config import ConfigError, load, parse
from meterhub.errors import StoreError
from meterhub.store import SCHEMES, open_store
from tests.clickhouse_fixtures import MakeDatabase
from tests.clickhouse_servers import ClickHouseServer

ZENTRA = {"name": "tahmo", "type": "zentra", "base_url": "https://tahmo.zentracloud.com",
          "token": "t", "devices": ["z6-12345"]}
TANDD = {"name": "lab", "type": "tandd", "api_key": "k", "login_id": "tbzz9999",
         "login_pass": "p"}


def without(table: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in table.items() if k != key}


def refusal(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse(data, environ={})
    return str(info.value)


NO_DEVICES = ("source[tahmo].devices: required for ZENTRA: the v4 API has no device listing, "
              "so meterhub cannot discover the stations; list their serial numbers, e.g. "
              'devices = ["z6-12345"]')


@pytest.mark.parametrize("devices", [None, []])
def test_a_zentra_source_needs_its_devices_and_is_told_why(devices: list[str] | None) -> None:
    source = without(ZENTRA, "devices")
    if devices is not None:
        source["devices"] = devices
    assert refusal({"source": [source]}) == NO_DEVICES
    assert parse({"source": [ZENTRA]}, environ={}).sources[0].devices == ["z6-12345"]


def test_an_unsupported_store_url_names_its_scheme_and_never_the_url() -> None:
    message = refusal({"store": {"url": "postgres://meter:s3cret@db.example/hub"}})
    assert message == ("store.url: scheme 'postgres' is not supported; use one of duckdb, "
                       "clickhouse (e.g. duckdb:///path/file.duckdb)")
    assert refusal({"store": {"url": "hub.sqlite"}}) == (
        "store.url: no scheme is not supported; use one of duckdb, clickhouse "
        "(e.g. duckdb:///path/file.duckdb)")
    for url in ("duckdb:///data/hub.duckdb", "hub.duckdb", "duckdb:///:memory:"):
        assert parse({"store": {"url": url}}, environ={}).store.url == url


def test_the_config_accepts_exactly_the_schemes_open_store_opens(
        tmp_path: Path, clickhouse_single: ClickHouseServer,
        clickhouse_database: MakeDatabase) -> None:
    examples = {"duckdb": f"duckdb:///{tmp_path / 'hub.duckdb'}",
                "clickhouse": f"clickhouse://{clickhouse_single.host}:"
                              f"{clickhouse_single.http_port}/"
                              f"{clickhouse_database(clickhouse_single)}"}
    for scheme in SCHEMES:
        open_store(examples[scheme]).close()  # a new backend needs an example here
    with pytest.raises(StoreError, match="unsupported store URL"):
        open_store("postgres://db.example/hub")


@pytest.mark.parametrize(("data", "message"), [
    ({"sources": [ZENTRA]}, "top level: unknown key 'sources' (did you mean 'source'?)"),
    ({"store": {"ulr": "hub.duckdb"}}, "store: unknown key 'ulr' (did you mean 'url'?)"),
    ({"api": {"prot": 8000}}, "api: unknown key 'prot' (did you mean 'port'?)"),
    ({"dsmr": {"timezon": "UTC"}}, "dsmr: unknown key 'timezon' (did you mean 'timezone'?)"),
    ({"dsmr": {"prices": [{"start": "2024-01-01", "end": "2025-01-01", "gas_prise": 1}]}},
     "dsmr.prices[0]: unknown key 'gas_prise' (did you mean 'gas_price'?)"),
    # the typo is named, not the "token is required" it leads to
    ({"source": [{**without(ZENTRA, "token"), "tokne": "t"}]},
     "source[tahmo]: unknown key 'tokne' (did you mean 'token'?)"),
    ({"source": [{**without(TANDD, "login_pass"), "login_pas": "p"}]},
     "source[lab]: unknown key 'login_pas' (did you mean 'login_pass'?)"),
    ({"source": [{**without(ZENTRA, "type"), "tpye": "zentra"}]},
     "source[tahmo]: unknown key 'tpye' (did you mean 'type'?)"),
    ({"source": [{**ZENTRA, "colour": "red"}]},
     "source[tahmo]: unknown key 'colour' (known keys: base_url, devices, name, start, "
     "token, type)"),
    # a key of another source type is unknown to this one
    ({"source": [{**ZENTRA, "login_id": "tbzz9999"}]},
     "source[tahmo]: unknown key 'login_id' (known keys: base_url, devices, name, start, "
     "token, type)"),
])
def test_an_unknown_key_is_named_with_the_closest_known_one(data: dict[str, Any],
                                                            message: str) -> None:
    assert refusal(data) == message


def test_load_names_the_file_before_the_key(tmp_path: Path) -> None:
    path = tmp_path / "meterhub.toml"
    path.write_text('[[source]]\nname = "tahmo"\ntype = "zentra"\n'
                    'base_url = "https://tahmo.zentracloud.com"\ntokne = "t"\n')
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    assert str(info.value) == (f"{path}: source[tahmo]: unknown key 'tokne' "
                               "(did you mean 'token'?)")


@pytest.mark.parametrize(("start", "why"), [
    ("0001-01-01", "start 0001-01-01 is outside the times meterhub keeps: 1800-01-01 to "
                   "2199-12-31 (UTC)"),
    ("last tuesday", "cannot read start 'last tuesday': use ISO 8601 such as 2024-03-31 or "
                     "2024-03-31T02:00:00+02:00")])
def test_a_start_a_sync_could_not_use_is_refused_by_the_config(start: str, why: str) -> None:
    assert refusal({"source": [{**ZENTRA, "start": start}]}) == f"source[tahmo].start: {why}"
    assert parse({"source": [{**ZENTRA, "start": "2024-01-01"}]},
                 environ={}).sources[0].start == "2024-01-01"


def test_an_mqtt_section_takes_its_password_from_the_environment() -> None:
    settings = parse({"mqtt": {"host": "broker.local", "password": "${MQTT_PASSWORD}",
                               "devices": ["p1"]}}, environ={"MQTT_PASSWORD": "s3cret"})
    assert settings.mqtt is not None
    assert (settings.mqtt.host, settings.mqtt.port, settings.mqtt.password) == (
        "broker.local", 1883, "s3cret")
    assert (settings.mqtt.prefix, settings.mqtt.discovery_prefix) == ("meterhub",
                                                                      "homeassistant")
    assert parse({}).mqtt is None
    assert refusal({"mqtt": {"hots": "broker.local"}}) == \
        "mqtt: unknown key 'hots' (did you mean 'host'?)"
    assert refusal({"mqtt": {"port": 1883}}) == "mqtt.host: is required"
