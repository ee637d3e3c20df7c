"""Topics and payloads: a channel's state, and Home Assistant's MQTT discovery of it.

A state is ``<prefix>/<source>/<device>/<channel>``, retained, a small JSON object:
``{"value": 1234.5, "unit": "kWh", "ts": "2024-10-27T01:30:00Z", "quality": "ok"}``.
Discovery follows Home Assistant's MQTT sensor documentation: one config per channel at
``<discovery_prefix>/sensor/<node_id>/<object_id>/config``, its device one per meterhub
device, its ``device_class`` and ``unit_of_measurement`` from the channel's quantity and
its ``state_class`` from the channel's kind (an instant is a ``measurement``, a counter
``total_increasing``: kWh and m³ registers go straight into the energy dashboard), its
availability from meterhub's link and its source's health together. An empty retained
config removes the sensor (Home Assistant's documented way), an empty retained state
clears what the broker kept of it.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import orjson

from meterhub import __version__
from meterhub.dsmr.fields import GAS

#: characters a topic level or a discovery id keeps; any other becomes ``_`` (MQTT's
#: wildcards and ``/`` would change the topic, Home Assistant's ids allow only these)
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

#: quantity -> Home Assistant sensor device class (its documented list), where one fits
DEVICE_CLASSES = {
    "air_temperature": "temperature", "temperature": "temperature",
    "relative_humidity": "humidity", "atmospheric_pressure": "atmospheric_pressure",
    "vapor_pressure": "pressure", "solar_radiation": "irradiance",
    "wind_speed": "wind_speed", "precipitation": "precipitation", "energy": "energy",
    "power": "power", "volume": "volume", "flow": "volume_flow_rate",
    "voltage": "voltage", "current": "current", "battery": "battery",
}
#: device classes Home Assistant takes only for totals (state class total or
#: total_increasing), never for a measurement ...
_TOTALS_ONLY = {"energy", "gas", "water", "volume"}
#: ... and those it takes for a total_increasing register at all (the others, power or
#: temperature, say, only as a measurement)
_COUNTABLE = {*_TOTALS_ONLY, "precipitation"}
#: channel kind -> Home Assistant state class; a delta (an amount per interval) has none:
#: it is neither a level nor a running total, and Home Assistant's statistics would
#: treat it as one or the other
STATE_CLASSES = {"instant": "measurement", "counter": "total_increasing"}


def level(name: str) -> str:
    """A name as one topic level or id part (see `_UNSAFE`)."""
    return _UNSAFE.sub("_", name) or "_"


def _source_level(source: str) -> str:
    """A source's topic level; ``ingest`` is ``_ingest``, so that its states never land on
    the ingest topics (`meterhub.mqtt.ingest`)."""
    first = level(source)
    return "_ingest" if first == "ingest" else first


def state_topic(prefix: str, source: str, device: str, channel: str) -> str:
    return f"{prefix}/{_source_level(source)}/{level(device)}/{level(channel)}"


def availability_topic(prefix: str, source: str) -> str:
    """A source's availability: ``online`` while it is healthy, ``offline`` while it is
    failing or stale (`meterhub.source_health`), retained."""
    return f"{prefix}/{_source_level(source)}/availability"


def status_topic(prefix: str) -> str:
    """meterhub's own availability: ``online`` while it is connected, ``offline`` (its last
    will, so also when it dies) after."""
    return f"{prefix}/status"


def state_payload(value: float | None, unit: str, ts: dt.datetime, quality: str) -> bytes:
    return orjson.dumps({"value": value, "unit": unit,
                         "ts": ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                         .replace(".000000Z", "Z"), "quality": quality})


def device_class(quantity: str, kind: str, channel: str) -> str | None:
    """Home Assistant's device class of a channel, or None when none fits: volume
    counters are gas or water when their name says so (DSMR-reader's gas field too)."""
    found = DEVICE_CLASSES.get(quantity)
    if found == "volume" and kind == "counter":
        if "water" in channel:
            found = "water"
        elif "gas" in channel or channel == GAS.channel:
            found = "gas"
    if (found in _TOTALS_ONLY and kind != "counter") or \
            (kind == "counter" and found not in _COUNTABLE):
        return None
    return found


def discovery_topic(discovery_prefix: str, source: str, device: str, channel: str) -> str:
    return (f"{discovery_prefix}/sensor/meterhub_{level(source)}_{level(device)}/"
            f"{level(channel)}/config")


def discovery_payload(*, prefix: str, source: str, device: str, channel: str,
                      quantity: str, kind: str, unit: str,
                      about: dict[str, Any] | None = None) -> bytes:
    """The discovery config of one channel's sensor; ``about`` the device's name, model
    and serial, when the catalog has them."""
    about = about or {}
    node = f"meterhub_{level(source)}_{level(device)}"
    config: dict[str, Any] = {
        "name": channel,
        "unique_id": f"{node}_{level(channel)}",
        "state_topic": state_topic(prefix, source, device, channel),
        "value_template": "{{ value_json.value }}",
        "json_attributes_topic": state_topic(prefix, source, device, channel),
        # available while meterhub is connected and the source is healthy
        "availability": [{"topic": status_topic(prefix)},
                         {"topic": availability_topic(prefix, source)}],
        "availability_mode": "all",
        "device": {
            "identifiers": [node],
            "name": about.get("name") or device,
            "manufacturer": source,
            **({"model": about["model"]} if about.get("model") else {}),
            **({"serial_number": about["serial"]} if about.get("serial") else {}),
        },
        "origin": {"name": "meterhub", "sw_version": __version__},
    }
    if unit and unit != "currency":  # a cost's currency is not known
        config["unit_of_measurement"] = unit
    found = device_class(quantity, kind, channel)
    if found is not None:
        config["device_class"] = found
    if kind in STATE_CLASSES:
        config["state_class"] = STATE_CLASSES[kind]
    return orjson.dumps(config)
