"""Clients of the test broker: a running link of a hub, and subscribers that collect."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiomqtt
import orjson

from meterhub.hub import Hub
from meterhub.mqtt.link import MqttLink
from meterhub.mqtt.settings import MqttSettings
from tests.mqtt.conftest import Broker


@contextlib.asynccontextmanager
async def publishing(hub: Hub, broker: Broker, *, report_every: float = 30.0,
                     **settings: Any) -> AsyncIterator[MqttLink]:
    """A link of ``hub`` to ``broker`` running (with these `MqttSettings`), once it has
    connected and sent what the store held."""
    link = MqttLink(hub, MqttSettings(host="127.0.0.1", port=broker.port, **settings),
                    backoff=0.05, interval=0, availability_every=0.1,
                    report_every=report_every)
    task = asyncio.create_task(link.run())
    try:
        await until(lambda: link.rounds >= 1)  # connected, and what was there sent
        yield link
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(holds: Any, seconds: float = 10) -> None:
    async with asyncio.timeout(seconds):
        while not holds():
            await asyncio.sleep(0.02)


async def collect(broker: Broker, done: Any, seconds: float = 10,
                  ready: asyncio.Event | None = None,
                  filters: Sequence[str] = ("meterhub/#", "homeassistant/#")
                  ) -> list[aiomqtt.Message]:
    """Messages of meterhub's and Home Assistant's topics (or ``filters``), from a new
    subscription (the retained ones first), until ``done(messages)`` holds; ``ready`` is
    set once the broker acknowledged the subscription."""
    got: list[aiomqtt.Message] = []
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.subscribe([(topic, 1) for topic in filters])
        if ready is not None:
            ready.set()
        async with asyncio.timeout(seconds):
            async for message in client.messages:
                got.append(message)
                if done(got):
                    return got
    return got


async def listening(broker: Broker, done: Any) -> asyncio.Task[list[aiomqtt.Message]]:
    """`collect` in a task, once subscribed."""
    ready = asyncio.Event()
    task = asyncio.create_task(collect(broker, done, ready=ready))
    await ready.wait()
    return task


def states(messages: list[aiomqtt.Message], topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(bytes(m.payload)) for m in messages  # type: ignore[arg-type]
            if m.topic.value == topic]
