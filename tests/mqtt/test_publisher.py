"""The publisher against a real broker (mosquitto): each channel's newest reading retained
once after a backfill, its sensor discovered first, a late reading never shown as the
newest, and everything published again after the broker restarted and lost it all."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pyarrow as pa

import meterhub
from meterhub.api import create_app
from meterhub.config import Settings
from meterhub.hub import Hub
from meterhub.mqtt.publisher import Publisher
from meterhub.mqtt.settings import MqttSettings
from tests.api.live import served
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


@contextlib.asynccontextmanager
async def publishing(hub: Hub, broker: Broker) -> AsyncIterator[Publisher]:
    publisher = Publisher(hub, MqttSettings(host="127.0.0.1", port=broker.port),
                          backoff=0.05)
    task = asyncio.create_task(publisher.run())
    try:
        yield publisher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def collect(broker: Broker, until: Any, seconds: float = 10) -> list[aiomqtt.Message]:
    """Messages of meterhub's and Home Assistant's topics, from a new subscription (the
    retained ones first), until ``until(messages)`` holds."""
    got: list[aiomqtt.Message] = []
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.subscribe("meterhub/#", qos=1)
        await client.subscribe("homeassistant/#", qos=1)
        async with asyncio.timeout(seconds):
            async for message in client.messages:
                got.append(message)
                if until(got):
                    return got
    return got


def states(messages: list[aiomqtt.Message], topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(bytes(m.payload)) for m in messages  # type: ignore[arg-type]
            if m.topic.value == topic]


def has_newest(n: int) -> Any:
    def done(messages: list[aiomqtt.Message]) -> bool:
        return any(s["value"] == n - 1 for s in states(messages, ENERGY)) and \
            any(s["value"] == 20 + (n - 1) / 100 for s in states(messages, TEMPERATURE))
    return done


def test_a_backfill_publishes_each_channels_newest_reading_once_retained(
        tmp_path: Path, broker: Broker) -> None:
    async def run() -> tuple[list[aiomqtt.Message], list[aiomqtt.Message], int]:
        with meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
            async with publishing(hub, broker) as publisher:
                listening = asyncio.create_task(collect(broker, has_newest(1440)))
                await asyncio.sleep(0.5)  # subscribed
                await asyncio.to_thread(hub.write, readings(1440))  # a day a minute apart
                live = await listening
                # a client that comes later gets the retained states and configs at once
                retained = await collect(broker, has_newest(1440), seconds=5)
                return live, retained, publisher.published

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
                listening = asyncio.create_task(collect(
                    broker, lambda got: len(states(got, ENERGY)) >= 2))
                await asyncio.sleep(0.5)
                late = readings(1, start=START - dt.timedelta(days=1))
                await asyncio.to_thread(hub.write, late)
                return await listening

    got = asyncio.run(run())
    # the retained state, then the one published after the late write: still the newest
    assert [s["value"] for s in states(got, ENERGY)] == [59.0, 59.0]


def test_after_a_broker_restart_everything_is_published_again(tmp_path: Path,
                                                              broker: Broker) -> None:
    async def run() -> tuple[bool, list[aiomqtt.Message]]:
        with meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
            hub.write(readings(30))
            async with publishing(hub, broker) as publisher:
                await collect(broker, has_newest(30))
                await asyncio.to_thread(broker.restart)  # its retained messages are gone
                await asyncio.to_thread(hub.write, readings(30, first=30))
                for _ in range(200):
                    if publisher.connected:
                        break
                    await asyncio.sleep(0.05)
                return publisher.connected, await collect(broker, has_newest(60))

    connected, got = asyncio.run(run())
    assert connected
    assert [s["value"] for s in states(got, ENERGY)][-1] == 59.0
    assert any(m.topic.value.endswith("/config") for m in got)


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
