"""DSMR-reader's own MQTT topics for the meter, checked against what DSMR-reader 5.11
publishes with its default mappings (its dsmr_mqtt app: decimals as text with their
column's places, whole numbers as text, times in UTC with Z, retained) for a telegram
whose values are known (tests/dsmr/telegrams.py's v5)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import aiomqtt

import meterhub
from meterhub.dsmr.settings import DsmrSettings, PriceSettings
from meterhub.dsmr.telegram import Telegram, read_telegram
from meterhub.mqtt.dsmr_reader import day_messages
from tests.dsmr.telegrams import p1_stamp, v5
from tests.mqtt.clients import collect, publishing
from tests.mqtt.conftest import Broker

#: v5()'s fields as DSMR-reader publishes them: its telegram is stamped 2024-10-27 02:30
#: winter time (01:30 UTC), its gas 02:00 (01:00 UTC)
READING = {
    "id": int(dt.datetime(2024, 10, 27, 1, 30, tzinfo=dt.UTC).timestamp()),
    "timestamp": "2024-10-27T01:30:00Z",
    "electricity_delivered_1": "1234.567", "electricity_returned_1": "10.100",
    "electricity_delivered_2": "2345.678", "electricity_returned_2": "20.200",
    "electricity_currently_delivered": "1.234", "electricity_currently_returned": "0.000",
    "phase_currently_delivered_l1": "0.500", "phase_currently_delivered_l2": "0.300",
    "phase_currently_delivered_l3": "0.434",
    "extra_device_timestamp": "2024-10-27T01:00:00Z", "extra_device_delivered": "456.789",
    "phase_currently_returned_l1": "0.000", "phase_currently_returned_l2": "0.000",
    "phase_currently_returned_l3": "0.000",
    "phase_voltage_l1": "230.1", "phase_voltage_l2": "231.2", "phase_voltage_l3": "229.9",
    "phase_power_current_l1": 2, "phase_power_current_l2": 1, "phase_power_current_l3": 3,
}
#: its status lines: DSMR 5.0, tariff 0001, 12 short and 3 long power failures, sags 1-3
METER = {"dsmr_version": "50", "electricity_tariff": "1", "power_failure_count": "12",
         "long_power_failure_count": "3", "voltage_sag_count_l1": "1",
         "voltage_sag_count_l2": "2", "voltage_sag_count_l3": "3",
         "voltage_swell_count_l1": "0", "voltage_swell_count_l2": "0",
         "voltage_swell_count_l3": "0", "rejected_telegrams": "0"}


def test_a_telegram_is_published_on_dsmr_readers_topics(tmp_path: Path,
                                                        broker: Broker) -> None:
    def complete(got: list[aiomqtt.Message]) -> bool:
        topics = {m.topic.value for m in got}
        return "dsmr/json" in topics and "dsmr/meter-stats/rejected_telegrams" in topics

    async def run() -> list[aiomqtt.Message]:
        with meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
            async with publishing(hub, broker, dsmr_reader_topics=True):
                async with aiomqtt.Client("127.0.0.1", broker.port) as logger:
                    await logger.publish("meterhub/ingest/telegram", v5().encode(), qos=1)
                await collect(broker, complete, filters=["dsmr/#"])
                # retained: a client that comes later has them all at once
                return await collect(broker, complete, filters=["dsmr/#"], seconds=5)

    got = asyncio.run(run())
    assert all(m.retain for m in got)
    payloads = {m.topic.value: bytes(m.payload) for m in got}  # type: ignore[arg-type]
    for name, value in READING.items():
        assert payloads[f"dsmr/reading/{name}"] == str(value).encode(), name
    assert json.loads(payloads["dsmr/json"]) == READING
    assert b'"id": ' in payloads["dsmr/json"]  # Python's json.dumps, as DSMR-reader's
    for name, value in METER.items():
        assert payloads[f"dsmr/meter-stats/{name}"] == value.encode(), name


def test_dsmr_readers_topics_are_off_by_default(tmp_path: Path, broker: Broker) -> None:
    async def run() -> list[aiomqtt.Message]:
        with meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
            async with publishing(hub, broker) as link:
                async with aiomqtt.Client("127.0.0.1", broker.port) as logger:
                    await logger.publish("meterhub/ingest/telegram", v5().encode(), qos=1)
                # the meter's own states are out: its round is over
                await collect(broker, lambda got: any(m.topic.value.startswith(
                    "meterhub/dsmr/p1/") for m in got))
                await link.published_all(seconds=5)
                dsmr: list[aiomqtt.Message] = []
                with contextlib.suppress(TimeoutError):  # nothing comes: the wait ends
                    dsmr = await collect(broker, lambda got: True, seconds=1,
                                         filters=["dsmr/#"])
                return dsmr

    assert asyncio.run(run()) == []


def test_todays_consumption_is_published_with_its_costs_and_prices(tmp_path: Path) -> None:
    """Telegrams on 1 June 2024 (summer time) at 10:00, 10:05 and 10:06 (which closes the
    10:05 minute: DSMR-reader groups a minute once a later reading exists): 0.250 kWh on
    tariff 1 and 0.100 m³ of gas, at 0.20 a kWh, 1.00 a m³ and 0.50 a day."""
    settings = DsmrSettings(prices=[PriceSettings(
        start=dt.date(2024, 1, 1), end=dt.date(2025, 1, 1), description="2024",
        electricity_delivered_1_price=Decimal("0.20"), gas_price=Decimal("1.00"),
        fixed_daily_cost=Decimal("0.50"))])
    ten = dt.datetime(2024, 6, 1, 8, 0, tzinfo=dt.UTC)  # 10:00 in Amsterdam
    telegrams = [read_telegram(v5(stamp=p1_stamp(ten + dt.timedelta(minutes=m)),
                                  t1=t1, t2="002000.000", gas_stamp=p1_stamp(
                                      ten + dt.timedelta(minutes=m)), gas=gas), now=ten)
                 for m, t1, gas in ((0, "001000.000", "00100.000"),
                                    (5, "001000.250", "00100.100"),
                                    (6, "001000.250", "00100.100"))]
    with meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
        hub.write(Telegram.join(telegrams))
        got = dict(day_messages(hub, settings, ten + dt.timedelta(hours=2)))
        assert day_messages(hub, settings, ten + dt.timedelta(days=1)) == []  # none yet
    assert {topic.removeprefix("dsmr/day-consumption/"): payload.decode()
            for topic, payload in got.items()} == {
        "electricity1": "0.250", "electricity2": "0.000", "electricity1_returned": "0.000",
        "electricity2_returned": "0.000", "electricity_merged": "0.250",
        "electricity_returned_merged": "0.000", "electricity1_cost": "0.05",
        "electricity2_cost": "0.00", "electricity_cost_merged": "0.05", "gas": "0.100",
        "gas_cost": "0.10", "fixed_cost": "0.50", "total_cost": "0.65",
        "energy_supplier_price_electricity_delivered_1": "0.200000",
        "energy_supplier_price_gas": "1.000000"}
