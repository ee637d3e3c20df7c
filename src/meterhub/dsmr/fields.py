"""The meter's fields as meterhub channels: name, quantity, unit and kind of each.

Channels carry DSMR-reader's field names, so its API can be answered from the store:
meter positions per tariff and direction are counters in kWh, current power per direction
and phase is instant kW, voltages and currents are instant, and gas (or water) on the
M-Bus is a counter in m³ stamped with its own time. Tariff 1 is the meter's x.8.1
register (the low tariff in the Netherlands, often the day tariff in Belgium): the
channel names say register numbers, not "low" or "high".
"""

from __future__ import annotations

from dataclasses import dataclass

from meterhub.model import ChannelKind

SOURCE = "dsmr"  #: the source of every channel the meter has


@dataclass(frozen=True, slots=True)
class Field:
    channel: str
    quantity: str
    unit: str
    kind: ChannelKind


_COUNTER, _INSTANT = ChannelKind.COUNTER, ChannelKind.INSTANT
FIELDS: dict[str, Field] = {
    "ELECTRICITY_USED_TARIFF_1": Field("electricity_delivered_1", "energy", "kWh", _COUNTER),
    "ELECTRICITY_USED_TARIFF_2": Field("electricity_delivered_2", "energy", "kWh", _COUNTER),
    "ELECTRICITY_DELIVERED_TARIFF_1": Field("electricity_returned_1", "energy", "kWh",
                                            _COUNTER),
    "ELECTRICITY_DELIVERED_TARIFF_2": Field("electricity_returned_2", "energy", "kWh",
                                            _COUNTER),
    "CURRENT_ELECTRICITY_USAGE": Field("electricity_currently_delivered", "power", "kW",
                                       _INSTANT),
    "CURRENT_ELECTRICITY_DELIVERY": Field("electricity_currently_returned", "power", "kW",
                                          _INSTANT),
    **{f"INSTANTANEOUS_ACTIVE_POWER_L{n}_POSITIVE": Field(
        f"phase_currently_delivered_l{n}", "power", "kW", _INSTANT) for n in (1, 2, 3)},
    **{f"INSTANTANEOUS_ACTIVE_POWER_L{n}_NEGATIVE": Field(
        f"phase_currently_returned_l{n}", "power", "kW", _INSTANT) for n in (1, 2, 3)},
    **{f"INSTANTANEOUS_VOLTAGE_L{n}": Field(f"phase_voltage_l{n}", "voltage", "V", _INSTANT)
       for n in (1, 2, 3)},
    **{f"INSTANTANEOUS_CURRENT_L{n}": Field(f"phase_power_current_l{n}", "current", "A",
                                            _INSTANT) for n in (1, 2, 3)},
}
GAS = Field("extra_device_delivered", "volume", "m³", _COUNTER)
WATER = Field("water_delivered", "volume", "m³", _COUNTER)
#: DSMR-reader's DsmrReading columns (dsmr_datalogger/models/reading.py): digits and decimal
#: places of each decimal field (voltages 4 with 1 place, the rest 9 with 3) ...
DECIMAL_LIMITS: dict[str, tuple[int, int]] = {
    field.channel: (4, 1) if field.quantity == "voltage" else (9, 3)
    for field in [*FIELDS.values(), GAS, WATER] if field.quantity != "current"}
#: ... and the currents' validators: whole amperes from 0 to this
CURRENT_MAX = 999
#: every channel a telegram can give -> its field
FIELD_OF = {field.channel: field for field in [*FIELDS.values(), GAS, WATER]}
#: a DSMR-reader reading's fields in its order, with their decimal places (None: whole
#: amperes; 0: a time): its API's readings and its MQTT topics
READING_FIELDS: dict[str, int | None] = {
    "electricity_delivered_1": 3, "electricity_returned_1": 3,
    "electricity_delivered_2": 3, "electricity_returned_2": 3,
    "electricity_currently_delivered": 3, "electricity_currently_returned": 3,
    "phase_currently_delivered_l1": 3, "phase_currently_delivered_l2": 3,
    "phase_currently_delivered_l3": 3,
    "extra_device_timestamp": 0, "extra_device_delivered": 3,
    "phase_currently_returned_l1": 3, "phase_currently_returned_l2": 3,
    "phase_currently_returned_l3": 3,
    "phase_voltage_l1": 1, "phase_voltage_l2": 1, "phase_voltage_l3": 1,
    "phase_power_current_l1": None, "phase_power_current_l2": None,
    "phase_power_current_l3": None,
}
