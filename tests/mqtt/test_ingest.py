"""Readings and telegrams taken from MQTT, against a real broker (mosquitto): stored once
however often the broker delivers them, a bad message counted, told and dropped with
nothing written, and nothing lost when the broker restarts in the middle of a stream."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest

import meterhub
from meterhub.dsmr.meter_log import rejected_key
from meterhub.errors import InputError
from meterhub.hub import Hub
from meterhub.mqtt.ingest import readings_of
from tests.clickhouse_fixtures import MakeDatabase
from tests.clickhouse_servers import ClickHouseServer
from tests.dsmr.telegrams import v5
from tests.mqtt.clients import publishing, until
from tests.mqtt.conftest import Broker

TELEGRAMS = "meterhub/ingest/telegram"
LAB = "meterhub/ingest/lab/logger-1"


def reading(minute: int, value: float = 20.5, **more: Any) -> dict[str, Any]:
    stamp = dt.datetime(2024, 5, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=minute)
    return {"channel": "air_temperature", "ts": stamp.isoformat(), "value": value,
            "unit": "°C", **more}


def test_a_message_is_one_reading_or_an_array_named_by_its_topic() -> None:
    one = readings_of(orjson.dumps(reading(0)), "lab", "logger-1")
    assert one.select(["source", "device", "channel", "value"]).to_pylist() == [
        {"source": "lab", "device": "logger-1", "channel": "air_temperature", "value": 20.5}]
    assert one["ts"].to_pylist() == [dt.datetime(2024, 5, 1, tzinfo=dt.UTC)]
    many = readings_of(orjson.dumps([reading(0), reading(1, device="logger-1", source="lab")]),
                       "lab", "logger-1")
    assert many["value"].to_pylist() == [20.5, 20.5]
    assert readings_of(b"[]", "lab", "logger-1").num_rows == 0


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{", "not JSON"),
    (b"42", "item 0: expected an object"),
    (orjson.dumps([reading(0), reading(1, device="logger-2")]),
     "item 1: device 'logger-2' is not the topic's 'logger-1'"),
    (orjson.dumps([reading(0, source="other")]), "item 0: source 'other' is not the topic's"),
    (orjson.dumps([reading(0), reading(1, ts="yesterday")]), "item 1: "),
    (orjson.dumps([reading(0), {"channel": "x", "ts": "2024-05-01T00:00:00Z"}]), "unit"),
    (orjson.dumps([reading(i) for i in range(10_001)]), "over 10,000 readings"),
    (b" " * 1_000_001, "over 1,000,000 bytes"),
])
def test_a_bad_message_is_refused_with_its_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(InputError, match=reason.replace("(", r"\(")):
        readings_of(payload, "lab", "logger-1")


async def send(broker: Broker, *messages: tuple[str, bytes]) -> None:
    """Publish at QoS 1, each acknowledged by the broker."""
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)


def test_a_telegram_on_its_topic_is_stored_once_however_often_it_comes(
        tmp_path: Path, broker: Broker) -> None:
    async def run() -> int:
        with meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
            async with publishing(hub, broker) as link:
                assert link.ingest is not None
                await send(broker, *[(TELEGRAMS, v5().encode())] * 3)  # twice delivered again
                await until(lambda: link.ingest is not None and link.ingest.messages == 3)
                stored = await asyncio.to_thread(hub.readings, device="p1",
                                                 channel="electricity_delivered_1")
                assert list(stored["value"]) == [1234.567]
                assert str(stored["ts"][0]) == "2024-10-27 01:30:00+00:00"
                return await asyncio.to_thread(hub.count, device="p1")

    # the telegram's 19 readings (as the same telegram pushed over HTTP: test_datalogger_api)
    assert asyncio.run(run()) == 19


def test_a_bad_telegram_is_counted_as_a_push_is_with_nothing_written(
        tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    broken = v5().replace("001234.567", "001234.568")  # its CRC no longer matches

    async def run(hub: Hub) -> None:
        async with publishing(hub, broker) as link:
            await send(broker, (TELEGRAMS, broken.encode()), (TELEGRAMS, b"hello"))
            await until(lambda: link.ingest is not None and link.ingest.messages == 2)
            assert link.ingest is not None
            assert link.ingest.rejected == 2

    with caplog.at_level(logging.WARNING, "meterhub"), \
            meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
        asyncio.run(run(hub))
        assert hub.devices().empty  # no meter, no reading
        assert hub.get_state(rejected_key("p1")) == "2"  # the meter's log, as for a push
    told = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(told) == 1, "once a minute per topic"
    assert TELEGRAMS in told[0]
    assert "CRC" in told[0]


def test_readings_on_an_ingest_topic_are_stored_and_a_bad_message_is_dropped_whole(
        tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    bad = orjson.dumps([reading(10, 30.0), reading(11, "warm")])  # item 1 is no number

    async def run(hub: Hub) -> tuple[int, int]:
        async with publishing(hub, broker) as link:
            await send(broker, (LAB, orjson.dumps(reading(0, 20.0))), (LAB, bad),
                       (LAB, orjson.dumps([reading(1, 21.0), reading(2, 22.0)])),
                       (LAB, bad), (LAB, bad))
            await until(lambda: link.ingest is not None and link.ingest.messages == 5)
            assert link.ingest is not None
            return link.ingest.readings, link.ingest.rejected

    with caplog.at_level(logging.WARNING, "meterhub"), \
            meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
        assert asyncio.run(run(hub)) == (3, 3)
        stored = hub.readings(device="logger-1")
        assert list(stored["value"]) == [20.0, 21.0, 22.0]
        assert set(stored["source"]) == {"lab"}
    told = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(told) == 1
    assert LAB in told[0]
    assert "item 1" in told[0]


def test_a_broker_restart_in_the_middle_of_a_stream_loses_nothing(
        tmp_path: Path, persistent_broker: Broker) -> None:
    """A logger publishes 400 readings at QoS 1, each again until the broker acknowledged
    it, while the broker is stopped and started again (keeping its sessions): every
    reading the broker took is stored, once."""
    broker, total = persistent_broker, 400
    restarted = threading.Event()

    async def logger() -> int:
        """Publish; how many times the broker went away under it."""
        sent = lost = 0
        while sent < total:
            try:
                async with aiomqtt.Client("127.0.0.1", broker.port, identifier="logger",
                                          clean_session=False) as client:
                    while sent < total:
                        await client.publish(LAB, orjson.dumps(reading(sent, float(sent))),
                                             qos=1)
                        sent += 1
                        if sent == total // 4:  # in a thread: the stream goes on meanwhile
                            threading.Thread(target=lambda: (broker.restart(),
                                                             restarted.set())).start()
            except aiomqtt.MqttError:
                lost += 1
                await asyncio.sleep(0.05)  # the broker is away: that reading again
        return lost

    async def run(hub: Hub) -> int:
        async with publishing(hub, broker) as link:
            lost = await logger()
            await until(restarted.is_set)
            await until(lambda: link.ingest is not None and link.ingest.readings >= total
                        and link.connected, seconds=30)
            await until(lambda: hub.count(device="logger-1") == total, seconds=10)
            return lost

    with meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
        assert asyncio.run(run(hub)) >= 1, "the broker went away in the middle of the stream"
        stored = hub.readings(device="logger-1")
        assert list(stored["value"]) == [float(i) for i in range(total)]


def test_a_message_the_store_could_not_take_comes_again_and_is_stored(
        broker: Broker, clickhouse_single: ClickHouseServer,
        clickhouse_database: MakeDatabase) -> None:
    """The store fails the write (its readings table is away): the message is left
    unacknowledged, so the broker delivers it again once the link is back, and it is
    stored then: a message acknowledged on arrival would be lost here."""
    database = clickhouse_database(clickhouse_single)
    url = f"clickhouse://{clickhouse_single.host}:{clickhouse_single.http_port}/{database}"

    async def run(hub: Hub) -> tuple[str | None, int]:
        async with publishing(hub, broker) as link:
            clickhouse_single.query(f"RENAME TABLE {database}.readings TO {database}.away")
            await send(broker, (LAB, orjson.dumps(reading(0, 20.0))))
            await until(lambda: not link.connected)  # the write failed: the session ended
            failure = link.last_error
            clickhouse_single.query(f"RENAME TABLE {database}.away TO {database}.readings")
            await until(lambda: link.ingest is not None and link.ingest.readings == 1,
                        seconds=20)
            assert link.ingest is not None
            return failure, link.ingest.rejected

    with meterhub.open(url) as hub:
        failure, rejected = asyncio.run(run(hub))
        assert list(hub.readings(device="logger-1")["value"]) == [20.0]
    assert failure is not None
    assert "Code: 60" in failure  # ClickHouse's unknown table
    assert rejected == 0
