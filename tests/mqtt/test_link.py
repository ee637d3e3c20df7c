"""The link publishing to a real broker (mosquitto): each channel's newest reading retained
once after a backfill, its sensor discovered first, a late reading never shown as the
newest, and everything published again after the broker restarted and lost it all."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pyarrow as pa
import pytest

import meterhub
from meterhub.api import create_app
from meterhub.config import Settings
from meterhub.errors import StoreError
from meterhub.hub import Hub
from meterhub.mqtt import health, payloads
from meterhub.mqtt.settings import MqttSettings
from tests.api.live import served
from tests.mqtt.clients import collect, listening, publishing, states, until
from tests.mqtt.conftest import Broker

START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
TEMPERATURE = "meterhub/lab/logger-1/air_temperature"
ENERGY = "meterhub/lab/logger-1/energy_in"


def readings(n: int, *, first: int = 0, start: dt.datetime = START) -> pa.Table:
    """``n`` minutes from minute ``first`` on of a temperature (20 + i/100 °C) and an
    energy register (i kWh)."""
    times = [start + dt.timedelta(minutes=i) for i in range(first, first + n)]
    return pa.table({
        "source": ["lab"] * 2 * n, "device": ["logger-1"] * 2 * n,
        "channel": ["air_temperature"] * n + ["energy_in"] * n,
        "ts": times * 2,
        "value": [20 + i / 100 for i in range(first, first + n)] +
                 [float(i) for i in range(first, first + n)],
        "unit": ["°C"] * n + ["kWh"] * n,
        "quantity": ["air_temperature"] * n + ["energy"] * n,
        "kind": ["instant"] * n + ["counter"] * n})


def has_newest(n: int) -> Any:
    def done(messages: list[aiomqtt.Message]) -> bool:
        return any(s["value"] == n - 1 for s in states(messages, ENERGY)) and \
            any(s["value"] == 20 + (n - 1) / 100 for s in states(messages, TEMPERATURE))
    return done


def test_a_backfill_publishes_each_channels_newest_reading_once_retained(
        tmp_path: Path, broker: Broker) -> None:
    async def run() -> tuple[list[aiomqtt.Message], list[aiomqtt.Message], int]:
        with meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
            async with publishing(hub, broker) as link:
                watching = await listening(broker, has_newest(1440))
                await asyncio.to_thread(hub.write, readings(1440))  # a day a minute apart
                live = await watching
                # a client that comes later gets the retained states and configs at once
                retained = await collect(broker, has_newest(1440), seconds=5)
                await until(lambda: link.rounds >= 2)  # the write's round, all acked
                return live, retained, link.published

    live, retained, published = asyncio.run(run())
    assert [s["value"] for s in states(live, ENERGY)] == [1439.0]
    assert states(live, TEMPERATURE) == [{"value": 34.39, "unit": "°C",
                                          "ts": "2024-01-01T23:59:00Z", "quality": "ok"}]
    assert published == 2
    topics = [m.topic.value for m in live]
    config = "homeassistant/sensor/meterhub_lab_logger-1/energy_in/config"
    assert topics.index(config) < topics.index(ENERGY), "the sensor is discovered first"
    energy = orjson.loads(bytes(next(m for m in live if m.topic.value == config).payload))  # type: ignore[arg-type]
    assert (energy["device_class"], energy["state_class"], energy["state_topic"]) == (
        "energy", "total_increasing", ENERGY)
    assert all(m.retain for m in retained if m.topic.value in (ENERGY, TEMPERATURE, config))
    assert "online" in [bytes(m.payload).decode() for m in retained  # type: ignore[arg-type]
                        if m.topic.value == "meterhub/status"]


def test_a_late_reading_is_not_published_as_the_newest(tmp_path: Path,
                                                        broker: Broker) -> None:
    async def run() -> list[aiomqtt.Message]:
        with meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
            hub.write(readings(60))
            async with publishing(hub, broker):
                await collect(broker, has_newest(60))  # the state at the start
                watching = await listening(broker, lambda got: len(states(got, ENERGY)) >= 2)
                late = readings(1, start=START - dt.timedelta(days=1))
                await asyncio.to_thread(hub.write, late)
                return await watching

    got = asyncio.run(run())
    # the retained state, then the one published after the late write: still the newest
    assert [s["value"] for s in states(got, ENERGY)] == [59.0, 59.0]


def test_after_a_broker_restart_everything_is_published_again(tmp_path: Path,
                                                              broker: Broker) -> None:
    """Nothing is written meanwhile: the lost link is noticed by itself, and the states
    the restarted broker lost (no persistence) come back, retained."""
    async def run() -> list[aiomqtt.Message]:
        with meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
            hub.write(readings(30))
            async with publishing(hub, broker) as link:
                rounds = link.rounds
                await asyncio.to_thread(broker.restart)  # its retained messages are gone
                await until(lambda: link.rounds > rounds and link.connected)
                return await collect(broker, lambda got: has_newest(30)(got) and len(
                    [m for m in got if m.topic.value.endswith("/config")]) == 2, seconds=5)

    got = asyncio.run(run())
    assert [s["value"] for s in states(got, ENERGY)] == [29.0]
    assert all(m.retain for m in got)
    assert len([m for m in got if m.topic.value.endswith("/config")]) == 2


def test_home_assistants_birth_message_has_everything_published_again(
        tmp_path: Path, broker: Broker) -> None:
    async def run() -> tuple[int, list[aiomqtt.Message]]:
        with meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
            hub.write(readings(30))
            async with publishing(hub, broker) as link:
                published, rounds = link.published, link.rounds
                watching = await listening(broker, lambda got: len(states(got, ENERGY)) >= 2)
                async with aiomqtt.Client("127.0.0.1", broker.port) as home_assistant:
                    await home_assistant.publish("homeassistant/status", b"online", qos=1)
                got = await watching
                # the round counts its states once all are acknowledged: the subscriber
                # may see the energy state before the temperature's is out
                await until(lambda: link.rounds > rounds)
                return link.published - published, got

    again, got = asyncio.run(run())
    assert again == 2  # both channels' states, with nothing written
    assert [s["value"] for s in states(got, ENERGY)] == [29.0, 29.0]  # retained, then again


def test_the_api_publishes_when_the_config_names_a_broker(tmp_path: Path,
                                                           broker: Broker) -> None:
    """`meterhub serve` and `meterhub run` (with the API) publish while they serve."""
    with meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
        settings = Settings(mqtt=MqttSettings(host="127.0.0.1", port=broker.port))
        with served(create_app(hub, settings=settings)):
            hub.write(readings(10))
            got = asyncio.run(collect(broker, has_newest(10)))
        stopped = asyncio.run(collect(broker, lambda got: any(
            m.topic.value == "meterhub/status" for m in got), seconds=5))
    assert [s["value"] for s in states(got, ENERGY)][-1] == 9.0
    # its last will, or its last word: offline once the server stopped
    assert [bytes(m.payload) for m in stopped  # type: ignore[arg-type]
            if m.topic.value == "meterhub/status"] == [b"offline"]


def test_a_store_failure_is_told_and_publishing_goes_on(
        tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> list[aiomqtt.Message]:
        with meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
            hub.write(readings(10))
            real, calls = hub.store.channel_stats, []

            def failing_once(selection: Any = None) -> pa.Table:
                calls.append(selection)
                if len(calls) == 1:
                    raise StoreError("the store did not answer")
                return real(selection)

            monkeypatch.setattr(hub.store, "channel_stats", failing_once)
            async with publishing(hub, broker):
                return await collect(broker, has_newest(10))

    with caplog.at_level(logging.INFO, logger="meterhub.mqtt"):
        got = asyncio.run(run())
    assert [s["value"] for s in states(got, ENERGY)] == [9.0]
    assert [r.levelname for r in caplog.records if "failed" in r.message] == ["ERROR"]


def test_the_links_health_is_kept_in_the_store_as_it_changes(tmp_path: Path,
                                                             broker: Broker) -> None:
    """Up once connected, down with the reason when the broker goes away, and stopped
    when the link ends: what `meterhub status`, the API and the overview show."""
    async def run(hub: Hub) -> list[dict[str, Any]]:
        seen = []
        async with publishing(hub, broker, report_every=0.5) as link:
            await until(lambda: bool(health.links(hub)))
            seen.append(health.links(hub)[0])
            # idle, the link still tells it is there (else it would look stopped)
            await until(lambda: health.links(hub)[0]["as_of"] > seen[0]["as_of"])
            await asyncio.to_thread(broker.stop)
            await until(lambda: not health.links(hub)[0]["connected"])
            seen.append(health.links(hub)[0])
            assert link.connected is False
            # and while the broker is away, too
            await until(lambda: health.links(hub)[0]["as_of"] > seen[1]["as_of"])
        seen.append(health.links(hub)[0])
        return seen

    with meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
        hub.write(readings(2))
        up, down, stopped = asyncio.run(run(hub))
    assert (up["client_id"], up["broker"], up["connected"], up["silent"]) == (
        "meterhub", f"127.0.0.1:{broker.port}", True, False)
    assert down["connected"] is False
    assert down["last_error"]  # aiomqtt's words for the lost link
    assert stopped["last_error"] == "meterhub stopped"
    assert health.line(stopped).startswith(
        f"MQTT link meterhub to 127.0.0.1:{broker.port}: down since ")
    assert health.line(stopped).endswith(
        "(meterhub stopped); published 2 states, took 0 messages (0 rejected)")


def test_a_sources_sensors_are_available_while_it_is_fresh(tmp_path: Path,
                                                           broker: Broker) -> None:
    """lab's readings are from 2024 (stale: offline); home pushes one every ten minutes,
    the newest a minute old (fresh: online); a new reading makes lab fresh again."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    home = [{"device": "p1", "channel": "power", "unit": "kW", "kind": "instant",
             "ts": now - dt.timedelta(minutes=m), "value": 0.5} for m in (21, 11, 1)]

    def availability(got: list[aiomqtt.Message]) -> dict[str, str]:
        return {m.topic.value.split("/")[1]: bytes(m.payload).decode()  # type: ignore[arg-type]
                for m in got if m.topic.value.endswith("/availability")}

    async def run(hub: Hub) -> tuple[dict[str, str], dict[str, str]]:
        async with publishing(hub, broker):
            before = availability(await collect(broker, lambda got: len(availability(got)) == 2))
            watching = await listening(broker, lambda got: availability(got).get("lab") ==
                                       "online")
            await asyncio.to_thread(hub.write, readings(1, start=now - dt.timedelta(minutes=1)))
            return before, availability(await watching)

    with meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
        hub.write(readings(30))
        hub.write(home, source="home")
        before, after = asyncio.run(run(hub))
    assert before == {"lab": "offline", "home": "online"}
    assert after["lab"] == "online"
    config = orjson.loads(payloads.discovery_payload(
        prefix="meterhub", source="home", device="p1", channel="power", quantity="power",
        kind="instant", unit="kW"))
    assert [a["topic"] for a in config["availability"]] == ["meterhub/status",
                                                            "meterhub/home/availability"]


def test_the_sensors_of_a_deleted_channel_are_removed(tmp_path: Path, broker: Broker) -> None:
    energy = "homeassistant/sensor/meterhub_lab_logger-1/energy_in/config"
    temperature = "homeassistant/sensor/meterhub_lab_logger-1/air_temperature/config"

    async def run(hub: Hub) -> list[aiomqtt.Message]:
        async with publishing(hub, broker):
            await collect(broker, has_newest(30))
            watching = await listening(broker, lambda got: any(
                m.topic.value == ENERGY and not m.payload for m in got))
            await asyncio.to_thread(hub.delete, device="logger-1", channel="energy_in")
            await watching
            # what a client that comes now gets: the temperature's sensor alone
            return await collect(broker, lambda got: has_topic(got, temperature), seconds=5)

    with meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
        hub.write(readings(30))
        kept = asyncio.run(run(hub))
    retained = {m.topic.value for m in kept if m.payload}
    assert temperature in retained
    assert TEMPERATURE in retained
    assert energy not in retained  # removed: an empty retained config is no message at all
    assert ENERGY not in retained


def test_sensors_left_on_the_broker_from_before_are_removed_and_others_kept(
        tmp_path: Path, broker: Broker) -> None:
    """A config of ours for a channel the store does not have (deleted while meterhub was
    stopped) goes; other programs' configs stay, also those that name topics under our
    prefix, and none of them breaks the link."""
    ours = "homeassistant/sensor/meterhub_lab_logger-1/gone/config"
    others = {
        "homeassistant/sensor/0x00158d/temperature/config":  # zigbee2mqtt's, say
            {"state_topic": "zigbee2mqtt/0x00158d", "unique_id": "0x00158d_temperature"},
        # a user's template sensor over one of our states
        "homeassistant/sensor/mine/quality/config":
            {"state_topic": TEMPERATURE, "unique_id": "my_quality"},
        # made to look like ours: a filter, and our own status topic, as state topics
        "homeassistant/sensor/meterhub_x/a/config":
            {"state_topic": "meterhub/#", "unique_id": "meterhub_x_a",
             "origin": {"name": "meterhub"}},
        "homeassistant/sensor/meterhub_x/b/config":
            {"state_topic": "meterhub/status", "unique_id": "meterhub_x_b",
             "origin": {"name": "meterhub"}},
        "homeassistant/sensor/meterhub_x/c/config": b"not json",
    }

    async def run(hub: Hub) -> list[aiomqtt.Message]:
        async with aiomqtt.Client("127.0.0.1", broker.port) as other:
            await other.publish(ours, payloads.discovery_payload(
                prefix="meterhub", source="lab", device="logger-1", channel="gone",
                quantity="energy", kind="counter", unit="kWh"), qos=1, retain=True)
            for topic, config in others.items():
                await other.publish(topic, config if isinstance(config, bytes)
                                    else orjson.dumps(config), qos=1, retain=True)
        watching = await listening(broker, lambda got: any(
            m.topic.value == ours and not m.payload for m in got))
        async with publishing(hub, broker) as link:
            await watching
            await asyncio.to_thread(hub.write, readings(1, first=2))  # the link goes on
            await collect(broker, has_newest(3))
            assert link.connected
            return await collect(broker, lambda got: all(
                has_topic(got, topic) for topic in others), seconds=5)

    with meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
        hub.write(readings(2))
        kept = asyncio.run(run(hub))
    retained = {m.topic.value for m in kept if m.payload}
    assert set(others) <= retained
    assert ours not in retained
    assert "meterhub/status" in retained


def has_topic(messages: list[aiomqtt.Message], topic: str) -> bool:
    return any(m.topic.value == topic for m in messages)
