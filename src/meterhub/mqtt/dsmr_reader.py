"""DSMR-reader's own MQTT topics for the meter (``dsmr_reader_topics = true``), so that
automations and Home Assistant's DSMR Reader integration written for DSMR-reader keep
working.

As DSMR-reader 5.11 publishes them with its default mappings (its ``dsmr_mqtt`` app), all
retained:

- ``dsmr/reading/<field>``: the newest telegram's fields, each its own topic;
- ``dsmr/json``: the same as one JSON object;
- ``dsmr/meter-stats/<field>``: the meter's status (DSMR version, tariff, power
  failures, voltage sags and swells) and the count of rejected telegrams;
- ``dsmr/day-consumption/<field>``: today so far, with costs and prices, at most once
  a minute (DSMR-reader sends it on each new minute of consumption).

Payloads are DSMR-reader's: decimals as text with their column's places (``"1234.567"``
kWh and kW, ``"230.0"`` V, ``"1.23"`` costs, ``"0.210000"`` prices), whole numbers as
text (``"2"``), times in ISO 8601 UTC (``"2024-10-27T01:30:00Z"``), and an unknown value
as an empty message. In ``dsmr/json`` decimals are JSON strings, whole numbers numbers,
an unknown value null. Not covered: ``dsmr/current-month``, ``dsmr/current-year``,
``dsmr/current-period``, ``dsmr/consumption/gas/...``, the quarter-hour peak and
``dsmr/raw``.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import orjson

from meterhub.dsmr.fields import GAS, READING_FIELDS
from meterhub.dsmr.meter_log import STATUS_FIELDS, rejected_key, status_key
from meterhub.dsmr.prices import contracts
from meterhub.dsmr.settings import DsmrSettings
from meterhub.dsmr.statistics import by_minute, day_statistics, gas_shift
from meterhub.hub import Hub
from meterhub.store.base import Selection
from meterhub.timebase import zone

ROOT = "dsmr"
DAY_EVERY = 60.0  #: seconds between two publications of today's consumption, at least
METER_FIELDS = ("dsmr_version", *STATUS_FIELDS, "rejected_telegrams")
#: today's consumption: name -> decimal places
DAY_FIELDS: dict[str, int] = {
    "electricity1": 3, "electricity2": 3, "electricity1_returned": 3,
    "electricity2_returned": 3, "electricity_merged": 3, "electricity_returned_merged": 3,
    "electricity1_cost": 2, "electricity2_cost": 2, "electricity_cost_merged": 2,
    "gas": 3, "gas_cost": 2, "total_cost": 2, "fixed_cost": 2,
    **{f"energy_supplier_price_{name}": 6 for name in (
        "electricity_delivered_1", "electricity_delivered_2", "electricity_returned_1",
        "electricity_returned_2", "gas")},
}
Message = tuple[str, bytes]


def reading(hub: Hub, settings: DsmrSettings) -> dict[str, Any] | None:
    """The meter's newest reading as DSMR-reader publishes it (``id`` its Unix second, as
    meterhub's DSMR-reader API numbers readings), or None before any."""
    device = settings.device
    stats = {row["channel"]: row for row in hub.store.channel_stats(
        Selection(devices=[device])).to_pylist()}
    newest = (stats.get("electricity_delivered_1") or {}).get("last_ts")
    if newest is None:
        return None
    values = {row["channel"]: row["value"] for row in hub.readings(
        device=device, start=newest, end=newest + dt.timedelta(microseconds=1),
        as_="arrow").to_pylist()}
    gas = stats.get(GAS.channel) or {}
    if gas.get("last_ts") is not None and gas["last_ts"] <= newest:
        values[GAS.channel] = gas["last_value"]
        values["extra_device_timestamp"] = gas["last_ts"]
    out: dict[str, Any] = {"id": int(newest.timestamp()), "timestamp": _time(newest)}
    for name, places in READING_FIELDS.items():
        value = values.get(name)
        out[name] = _time(value) if places == 0 and value is not None else _number(
            value, places)
    return out


def reading_messages(read: dict[str, Any]) -> list[Message]:
    """``dsmr/reading/<field>`` for each field, then ``dsmr/json``."""
    split = [(f"{ROOT}/reading/{name}", _text(value)) for name, value in read.items()]
    # DSMR-reader's json.dumps: its default separators, ", " and ": "
    return [*split, (f"{ROOT}/json", json.dumps(read).encode())]


def meter_messages(hub: Hub, settings: DsmrSettings) -> list[Message]:
    """``dsmr/meter-stats/<field>``, from the meter's status as the store keeps it."""
    stored = hub.get_state(status_key(settings.device))
    status = orjson.loads(stored) if stored else {}
    status["rejected_telegrams"] = int(hub.get_state(rejected_key(settings.device)) or 0)
    return [(f"{ROOT}/meter-stats/{name}", _text(status.get(name))) for name in METER_FIELDS]


def day_messages(hub: Hub, settings: DsmrSettings, now: dt.datetime) -> list[Message]:
    """``dsmr/day-consumption/<field>``: today (the meter's local day) so far; nothing
    before today's first consumption. Gas only with gas readings today, each price only
    where a contract sets it."""
    day = now.astimezone(zone(settings.timezone)).date()
    stats = day_statistics(hub, settings.device, settings.timezone, day,
                           contracts(hub, settings), gas_shift=gas_shift(settings),
                           by_minute=by_minute(settings), now=now)
    if stats is None:
        return []
    price = stats["prices"]
    values: dict[str, Decimal | None] = {
        name: stats[name] for name in ("electricity1", "electricity2",
                                       "electricity1_returned", "electricity2_returned",
                                       "electricity1_cost", "electricity2_cost",
                                       "total_cost", "fixed_cost")}
    values["electricity_merged"] = stats["electricity1"] + stats["electricity2"]
    values["electricity_returned_merged"] = stats["electricity1_returned"] + \
        stats["electricity2_returned"]
    values["electricity_cost_merged"] = stats["electricity1_cost"] + stats["electricity2_cost"]
    if stats["gas_reading"] is not None:
        values["gas"], values["gas_cost"] = stats["gas_span"], stats["gas_cost"]
    for name in ("electricity_delivered_1", "electricity_delivered_2",
                 "electricity_returned_1", "electricity_returned_2", "gas"):
        if price[f"{name}_price"]:
            values[f"energy_supplier_price_{name}"] = price[f"{name}_price"]
    return [(f"{ROOT}/day-consumption/{name}", _text(_number(values[name], places)))
            for name, places in DAY_FIELDS.items() if name in values]


def _number(value: float | Decimal | None, places: int | None) -> str | int | None:
    if value is None:
        return None
    if places is None:  # DSMR-reader keeps currents as whole amperes, truncated
        return int(value)
    return f"{Decimal(repr(float(value))) if isinstance(value, float) else value:.{places}f}"


def _time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _text(value: object) -> bytes:
    """A split topic's payload: the value as text, nothing for an unknown one."""
    return b"" if value is None else str(value).encode()
