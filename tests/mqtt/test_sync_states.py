"""A sync from the T&D emulator with the link running: each logger's state on the broker is
its newest record as the emulator holds it (ground truth, not the store), with its
sensor discovered."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import aiomqtt
import orjson

import meterhub
from meterhub.sync import sync_all
from tests.mqtt.clients import collect, publishing
from tests.mqtt.conftest import Broker
from tests.test_sync import config, worlds


def test_states_after_a_sync_are_the_emulators_newest_records(tmp_path: Path,
                                                              broker: Broker) -> None:
    w = worlds(days=2)
    lab = [s for s in config(w) if s.name == "lab"]
    truth: dict[str, dict[str, Any]] = {}
    for serial, logger in w.tandd.loggers.items():
        t, _ = w.tandd.records(serial)
        text = w.tandd.values(logger, t[-1:], fahrenheit=False)[0][0]
        truth[f"meterhub/lab/{serial}/temperature"] = {
            "ts": dt.datetime.fromtimestamp(int(t[-1]), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "value": None if text == "Sensor Error" else float(text)}

    def newest(got: list[aiomqtt.Message]) -> dict[str, dict[str, Any]]:
        out = {}
        for m in got:
            if m.topic.value in truth and m.payload:
                out[m.topic.value] = orjson.loads(bytes(m.payload))  # type: ignore[arg-type]
        return out

    def arrived(got: list[aiomqtt.Message]) -> bool:
        states = newest(got)
        return all(states.get(topic, {}).get("ts") == want["ts"]
                   for topic, want in truth.items())

    async def run() -> list[aiomqtt.Message]:
        with meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
            async with publishing(hub, broker):
                results = await sync_all(hub, lab, clock=w.clock, transports=w.transports())
                assert [r.error for r in results] == [None]
                await collect(broker, arrived, seconds=20)
                # what Home Assistant gets when it connects: the same, retained
                return await collect(broker, lambda got: arrived(got) and all(
                    any(m.topic.value == _config(topic) for m in got) for topic in truth),
                    seconds=5)

    got = asyncio.run(run())
    states = newest(got)
    for topic, want in truth.items():
        assert states[topic]["ts"] == want["ts"]
        assert states[topic]["value"] == want["value"]
        assert states[topic]["unit"] == "°C"
        assert states[topic]["quality"] == ("ok" if want["value"] is not None else "error")
        config_ = orjson.loads(next(bytes(m.payload) for m in got  # type: ignore[arg-type]
                                    if m.topic.value == _config(topic)))
        assert config_["device_class"] == "temperature"
        assert config_["state_class"] == "measurement"


def _config(state_topic: str) -> str:
    _, source, device, channel = state_topic.split("/")
    return f"homeassistant/sensor/meterhub_{source}_{device}/{channel}/config"
