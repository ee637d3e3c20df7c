"""States and Home Assistant discovery configs, against what Home Assistant's documentation
of MQTT sensors and of sensor device and state classes asks for (expectations written from
it by hand: a kWh register is an energy sensor with state class total_increasing, which
the energy dashboard takes; energy, gas, water and volume sensors take no measurement
state class; ids and topics hold only letters, digits, '_' and '-')."""

from __future__ import annotations

import datetime as dt
import re

import orjson
import pytest

from meterhub.mqtt import payloads
from meterhub.mqtt.settings import MqttSettings

ID = re.compile(r"[A-Za-z0-9_-]+")


def config(quantity: str, kind: str, unit: str, channel: str = "ch", source: str = "dsmr",
           device: str = "p1", **about: str) -> dict[str, object]:
    return orjson.loads(payloads.discovery_payload(  # type: ignore[no-any-return]
        prefix="meterhub", source=source, device=device, channel=channel, quantity=quantity,
        kind=kind, unit=unit, about=about or None))


@pytest.mark.parametrize(("quantity", "kind", "unit", "channel", "device_class",
                          "state_class"), [
    ("energy", "counter", "kWh", "electricity_delivered_1", "energy", "total_increasing"),
    ("power", "instant", "kW", "electricity_currently_delivered", "power", "measurement"),
    ("volume", "counter", "m³", "extra_device_delivered", "gas", "total_increasing"),
    ("volume", "counter", "m³", "water_delivered", "water", "total_increasing"),
    ("volume", "counter", "m³", "tank_in", "volume", "total_increasing"),
    ("air_temperature", "instant", "°C", "air_temperature", "temperature", "measurement"),
    ("relative_humidity", "instant", "%", "rh", "humidity", "measurement"),
    ("atmospheric_pressure", "instant", "kPa", "p", "atmospheric_pressure", "measurement"),
    ("solar_radiation", "instant", "W/m²", "sun", "irradiance", "measurement"),
    ("voltage", "instant", "V", "phase_voltage_l1", "voltage", "measurement"),
    ("current", "instant", "A", "phase_power_current_l1", "current", "measurement"),
    ("precipitation", "delta", "mm", "rain", "precipitation", None),
    ("energy", "instant", "kWh", "estimate", None, "measurement"),
    ("energy", "delta", "kWh", "per_quarter", None, None),
    ("power", "counter", "kW", "made_a_counter", None, "total_increasing"),
    ("precipitation", "counter", "mm", "rain_total", "precipitation", "total_increasing"),
    ("wind_direction", "instant", "°", "wind_direction", None, "measurement"),
    ("other", "instant", "ppm", "co2", None, "measurement"),
])
def test_classes_follow_home_assistants_rules(quantity: str, kind: str, unit: str,
                                              channel: str, device_class: str | None,
                                              state_class: str | None) -> None:
    got = config(quantity, kind, unit, channel)
    assert got.get("device_class") == device_class
    assert got.get("state_class") == state_class
    assert got["unit_of_measurement"] == unit


def test_a_sensor_config_has_what_home_assistant_needs() -> None:
    got = config("energy", "counter", "kWh", "electricity_delivered_1", name="Kitchen meter",
                 model="ISK5\\2M550T", serial="E0044007131650618")
    assert got["state_topic"] == got["json_attributes_topic"] == \
        "meterhub/dsmr/p1/electricity_delivered_1"
    assert got["value_template"] == "{{ value_json.value }}"
    assert got["unique_id"] == "meterhub_dsmr_p1_electricity_delivered_1"
    # available only while meterhub is connected and the meter's source is healthy
    assert got["availability"] == [{"topic": "meterhub/status"},
                                   {"topic": "meterhub/dsmr/availability"}]
    assert got["availability_mode"] == "all"
    assert "availability_topic" not in got
    assert got["name"] == "electricity_delivered_1"
    assert got["device"] == {"identifiers": ["meterhub_dsmr_p1"], "name": "Kitchen meter",
                             "manufacturer": "dsmr", "model": "ISK5\\2M550T",
                             "serial_number": "E0044007131650618"}
    assert set(got["origin"]) == {"name", "sw_version"}  # type: ignore[arg-type]


def test_a_cost_has_no_unit_home_assistant_could_misread() -> None:
    got = config("cost", "delta", "currency", "cost")
    assert "unit_of_measurement" not in got
    assert "device_class" not in got


def test_names_that_would_break_a_topic_or_an_id_are_made_safe() -> None:
    topic = payloads.discovery_topic("homeassistant", "my source", "a/b#", "t+1")
    assert topic == "homeassistant/sensor/meterhub_my_source_a_b_/t_1/config"
    assert payloads.state_topic("meterhub", "s", "a/b", "#") == "meterhub/s/a_b/_"
    # a source named "ingest" would publish onto the ingest topics
    assert payloads.state_topic("meterhub", "ingest", "d", "c") == "meterhub/_ingest/d/c"
    assert payloads.availability_topic("meterhub", "ingest") == "meterhub/_ingest/availability"
    got = config("power", "instant", "kW", "é/x", source="s s", device="d+")
    assert ID.fullmatch(str(got["unique_id"]))
    assert all(ID.fullmatch(part) for part in got["device"]["identifiers"])  # type: ignore[index]


def test_a_state_is_value_unit_time_and_quality() -> None:
    at = dt.datetime(2024, 10, 27, 1, 30, tzinfo=dt.UTC)
    assert orjson.loads(payloads.state_payload(1234.5, "kWh", at, "ok")) == {
        "value": 1234.5, "unit": "kWh", "ts": "2024-10-27T01:30:00Z", "quality": "ok"}
    later = at.replace(microsecond=250)
    assert orjson.loads(payloads.state_payload(None, "°C", later, "error"))["ts"] == \
        "2024-10-27T01:30:00.000250Z"


@pytest.mark.parametrize("prefix", ["", "a/", "/a", "a/#", "a/+/b"])
def test_a_prefix_that_cannot_start_topics_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="cannot start topics"):
        MqttSettings(host="broker", prefix=prefix)


def test_filters_choose_what_is_published() -> None:
    settings = MqttSettings(host="broker", sources=["dsmr"], channels=["a", "b"])
    assert settings.wanted("dsmr", "p1", "a")
    assert not settings.wanted("dsmr", "p1", "c")
    assert not settings.wanted("tahmo", "p1", "a")
    assert MqttSettings(host="broker").wanted("any", "thing", "at all")


@pytest.mark.parametrize("topic", ["meterhub/ingest/a/b", "meterhub/ingest/dsmr/p1"])
def test_a_telegram_topic_that_is_a_readings_topic_is_refused(topic: str) -> None:
    with pytest.raises(ValueError, match="is a readings topic"):
        MqttSettings(host="broker", telegram_topic=topic)


@pytest.mark.parametrize("topic", ["", "dsmr/raw", "meterhub/ingest/telegram",
                                   "meterhub/ingest/a/b/c", "p1/meterhub/ingest/a/b"])
def test_other_telegram_topics_are_taken(topic: str) -> None:
    assert MqttSettings(host="broker", telegram_topic=topic).telegram_topic == topic
