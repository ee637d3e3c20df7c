"""P1 telegrams (DSMR 2.2 to 5, Belgian, Luxembourg ...) -> readings, with dsmr-parser.

Channels carry DSMR-reader's field names, so its API can be answered from the store:
meter positions per tariff and direction are counters in kWh, current power per direction
and phase is instant kW, voltages and currents are instant, and gas (or water) on the
M-Bus is a counter in m³ stamped with its own time. Tariff 1 is the meter's x.8.1
register (the low tariff in the Netherlands, often the day tariff in Belgium): the
channel names say register numbers, not "low" or "high".
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from dsmr_parser import telegram_specifications as specs
from dsmr_parser.exceptions import InvalidChecksumError, ParseError
from dsmr_parser.parsers import TelegramParser

from meterhub.errors import InputError
from meterhub.model import ChannelKind, Device

#: DSMR versions and dialects, as `--dsmr-version` and meterhub.toml name them
DIALECTS: dict[str, Any] = {
    "2.2": specs.V2_2, "3": specs.V3, "4": specs.V4, "5": specs.V5,
    "belgium": specs.BELGIUM_FLUVIUS, "luxembourg": specs.LUXEMBOURG_SMARTY,
    "sweden": specs.SWEDEN, "q3d": specs.Q3D, "sagemcom": specs.SAGEMCOM_T210_D_R,
    "iskra-ie": specs.ISKRA_IE, "eon-hungary": specs.EON_HUNGARY,
}
SOURCE = "dsmr"
FUTURE_LIMIT = dt.timedelta(hours=24)  #: DSMR-reader's rule: later stamps are a bad clock
_METER_ZONE_OF_PARSER = "Europe/Amsterdam"  #: the zone dsmr-parser reads W/S stamps in


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
_TOTALS = {"ELECTRICITY_USED_TARIFF_1": "ELECTRICITY_IMPORTED_TOTAL",
           "ELECTRICITY_DELIVERED_TARIFF_1": "ELECTRICITY_EXPORTED_TOTAL"}
GAS = Field("extra_device_delivered", "volume", "m³", _COUNTER)
WATER = Field("water_delivered", "volume", "m³", _COUNTER)
_MBUS_KINDS = {3: GAS, 7: WATER}  #: M-Bus device types (EN 13757-3): 3 gas, 7 water


class TelegramError(InputError):
    """A telegram that is rejected whole: bad CRC, cut short, unreadable or from the future."""


def _parser(dialect: str) -> TelegramParser:
    if dialect not in DIALECTS:
        raise InputError(f"unknown DSMR version {dialect!r}: use one of "
                         f"{', '.join(DIALECTS)}")
    return TelegramParser(DIALECTS[dialect])


_PARSERS: dict[str, TelegramParser] = {}
_COMPLETE = re.compile(r"^/.*\n!([0-9A-F]{4})?\s*$", re.S)


def meter_time(stamp: dt.datetime, tz: str) -> dt.datetime:
    """A P1 time stamp (read by dsmr-parser as Amsterdam wall time with the W/S fold) as
    the same wall time in the meter's zone, in UTC."""
    from meterhub.timebase import zone

    if tz == _METER_ZONE_OF_PARSER:
        return stamp.astimezone(dt.UTC)
    wall = stamp.astimezone(zone(_METER_ZONE_OF_PARSER))
    return wall.replace(tzinfo=zone(tz)).astimezone(dt.UTC)


def parse_telegram(text: str, *, dialect: str = "5", device: str = "p1",
                   tz: str = "Europe/Amsterdam", now: dt.datetime | None = None) -> pa.Table:
    """The readings of one telegram, or a `TelegramError` saying why it was rejected."""
    parser = _PARSERS.get(dialect) or _PARSERS.setdefault(dialect, _parser(dialect))
    text = text.replace("\x00", "")
    if not _COMPLETE.match(text.replace("\r\n", "\n")):
        raise TelegramError("telegram cut short or malformed: it must run from '/' to a "
                            "final '!' line (with the CRC for DSMR 4 and later)")
    try:
        telegram = parser.parse(text, throw_ex=True)
    except InvalidChecksumError:
        raise TelegramError("telegram CRC does not match: it was damaged on the way") from None
    except (ParseError, ValueError, TypeError, IndexError) as exc:
        raise TelegramError(f"telegram not readable as DSMR {dialect}: {exc}") from None
    now = now or dt.datetime.now(dt.UTC)
    stamp_obj = getattr(telegram, "P1_MESSAGE_TIMESTAMP", None)
    stamp = meter_time(stamp_obj.value, tz) if stamp_obj is not None and \
        stamp_obj.value is not None else now.replace(microsecond=0)
    if stamp > now + FUTURE_LIMIT:
        raise TelegramError(f"telegram stamped {stamp.isoformat()}, more than 24 h ahead of "
                            "the server's clock: the meter's clock is wrong")
    rows: list[dict[str, Any]] = []
    for name, field in FIELDS.items():
        item = getattr(telegram, name, None)
        if item is None and name in _TOTALS:
            # single-register meters (Luxembourg's Smarty) have totals, no tariffs: the
            # total is tariff 1, as DSMR-reader stores it
            item = getattr(telegram, _TOTALS[name], None)
        if item is not None and item.value is not None:
            rows.append(_row(device, field, stamp, float(item.value)))
    for reading, field in _mbus_readings(telegram):
        at = meter_time(reading.datetime, tz)
        if at > now + FUTURE_LIMIT:
            raise TelegramError(f"gas reading stamped {at.isoformat()}, more than 24 h ahead "
                                "of the server's clock: the meter's clock is wrong")
        rows.append(_row(device, field, at, float(reading.value)))
    if not rows:
        raise TelegramError("telegram holds no meter reading this DSMR version knows")
    return pa.Table.from_pylist(rows)


def _row(device: str, field: Field, at: dt.datetime, value: float) -> dict[str, Any]:
    return {"source": SOURCE, "device": device, "channel": field.channel, "ts": at,
            "value": value, "unit": field.unit, "quantity": field.quantity,
            "kind": field.kind.value}


def _mbus_readings(telegram: Any) -> list[tuple[Any, Field]]:
    """(reading with .datetime and .value, field) of each gas or water meter."""
    found = []
    for device in getattr(telegram, "MBUS_DEVICES", None) or []:
        kind = getattr(device, "MBUS_DEVICE_TYPE", None)
        reading = getattr(device, "MBUS_METER_READING", None)
        field = _MBUS_KINDS.get(int(kind.value)) if kind is not None and \
            kind.value is not None else GAS
        if reading is not None and field is not None and reading.value is not None:
            found.append((reading, field))
    for name in ("HOURLY_GAS_METER_READING", "GAS_METER_READING"):
        reading = getattr(telegram, name, None)
        if not found and reading is not None and reading.value is not None:
            found.append((reading, GAS))
    return found


def equipment_id(text: str, dialect: str = "5") -> str | None:
    """The electricity meter's serial (hex-decoded 0-0:96.1.1), when the telegram has it."""
    parser = _PARSERS.get(dialect) or _PARSERS.setdefault(dialect, _parser(dialect))
    try:
        item = getattr(parser.parse(text, throw_ex=False), "EQUIPMENT_IDENTIFIER", None)
    except (ParseError, InvalidChecksumError, ValueError):
        return None
    if item is None or not item.value:
        return None
    try:
        return bytes.fromhex(str(item.value)).decode("ascii")
    except ValueError:
        return str(item.value)


def meter_device(text: str, *, dialect: str, device: str, tz: str) -> Device:
    """The catalog entry of the meter a telegram came from: its serial and time zone."""
    return Device(device, SOURCE, serial=equipment_id(text, dialect), timezone=tz)
