"""P1 telegrams (DSMR 2.2 to 5, Belgian, Luxembourg ...) -> readings, with dsmr-parser: the
dialects, the CRC check, the meter's clock, and the `Telegram` a push or a port gives.

Which channel each field becomes is `meterhub.dsmr.fields`; the meter's status a telegram
sets is kept by `meterhub.dsmr.meter_log`.
"""
from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import crcmod.predefined
import pyarrow as pa
from dsmr_parser import telegram_specifications as specs
from dsmr_parser.exceptions import ParseError
from dsmr_parser.parsers import TelegramParser

from meterhub.dsmr.fields import (
    CURRENT_MAX,
    DECIMAL_LIMITS,
    FIELD_OF,
    FIELDS,
    GAS,
    SOURCE,
    WATER,
    Field,
)
from meterhub.dsmr.line_index import LineIndexParser
from meterhub.dsmr.meter_log import meter_status
from meterhub.errors import InputError
from meterhub.model import READING_SCHEMA, Device, Quality

#: DSMR versions and dialects, as `--dsmr-version` and meterhub.toml name them
DIALECTS: dict[str, Any] = {
    "2.2": specs.V2_2, "3": specs.V3, "4": specs.V4, "5": specs.V5,
    "belgium": specs.BELGIUM_FLUVIUS, "luxembourg": specs.LUXEMBOURG_SMARTY,
    "sweden": specs.SWEDEN, "q3d": specs.Q3D, "sagemcom": specs.SAGEMCOM_T210_D_R,
    "iskra-ie": specs.ISKRA_IE, "eon-hungary": specs.EON_HUNGARY,
}
FUTURE_LIMIT = dt.timedelta(hours=24)  #: DSMR-reader's rule: later stamps are a bad clock
_METER_ZONE_OF_PARSER = "Europe/Amsterdam"  #: the zone dsmr-parser reads W/S stamps in
_TOTALS = {"ELECTRICITY_USED_TARIFF_1": "ELECTRICITY_IMPORTED_TOTAL",
           "ELECTRICITY_DELIVERED_TARIFF_1": "ELECTRICITY_EXPORTED_TOTAL"}
_MBUS_KINDS = {3: GAS, 7: WATER}  #: M-Bus device types (EN 13757-3): 3 gas, 7 water
_EPOCH, _US = dt.datetime(1970, 1, 1, tzinfo=dt.UTC), dt.timedelta(microseconds=1)


class TelegramError(InputError):
    """A telegram that is rejected whole: bad CRC, cut short, unreadable, a value that is no
    number (NaN, infinite) or from the future."""


def too_far_ahead(moment: dt.datetime, now: dt.datetime) -> bool:
    """Whether a meter's time is more than `FUTURE_LIMIT` ahead of ``now``: the rule of
    pushed telegrams and of readings posted through DSMR-reader's v2 API alike."""
    return moment > now + FUTURE_LIMIT


def _value(item: Any, channel: str) -> float:
    """A register's value as a float, or a `TelegramError` when it is no finite number
    (dsmr-parser reads "NaN", "Infinity" or "1e999" as a Decimal that is none) or one that
    DSMR-reader's reading could not hold (the same limits as its v2 API's)."""
    value = float(item.value)
    if not math.isfinite(value):
        raise TelegramError(f"telegram's {channel} is {item.value}, not a finite number: "
                            "the telegram is damaged")
    digits, places = DECIMAL_LIMITS.get(channel, (None, 0))
    if (digits is not None and abs(value) >= 10.0 ** (digits - places)) or \
            (digits is None and not 0 <= value <= CURRENT_MAX):
        raise TelegramError(f"telegram's {channel} is {item.value}, beyond what a meter "
                            "reports: the telegram is damaged")
    return value


def _parser(dialect: str) -> LineIndexParser:
    if dialect not in DIALECTS:
        raise InputError(f"unknown DSMR version {dialect!r}: use one of "
                         f"{', '.join(DIALECTS)}")
    # the CRC is checked by `check_crc`, the same rule about five times faster
    return LineIndexParser(TelegramParser(DIALECTS[dialect], apply_checksum_validation=False))


_PARSERS: dict[str, LineIndexParser] = {}
_COMPLETE = re.compile(r"^/.*\n!([0-9A-F]{4})?\s*$", re.S)
_CRC_SPAN = re.compile(r"/.+!", re.S)  #: dsmr-parser's rule: first '/' to the last '!'
_CRC_HEX = re.compile(r"((?<=!)[0-9A-Z]{1,4})+")  #: ... and the first hex after a '!'


#: CRC-16/ARC (reflected 0x8005, start 0, no final xor), in C: a telegram's CRC in 3 µs,
#: where a Python table-driven loop took 20 µs with its table in the CPU's cache and
#: several times that in a helper process sharing the cores under load (py-spy)
_CRC16_ARC = crcmod.predefined.mkPredefinedCrcFun("crc-16")


def crc16(text: str) -> int:
    """CRC-16/ARC of a telegram's characters, each counting by its low byte (as in
    dsmr-parser's own routine, which costs a third of a parse: PERF.md)."""
    try:
        data = text.encode("latin-1")
    except UnicodeEncodeError:
        data = bytes(ord(char) & 0xFF for char in text)
    return int(_CRC16_ARC(data))


def check_crc(text: str) -> None:
    """Raise unless the telegram's CRC matches, by dsmr-parser's rules (which part is
    summed, which hex digits are read); `TelegramError` says which failed."""
    first = text.find("!")  # no match can start before the first '!': skip the search there
    span = _CRC_SPAN.search(text)
    digits = _CRC_HEX.search(text, first) if first >= 0 else None
    if span is None or digits is None:
        raise TelegramError("telegram cut short: no CRC after its final '!'")
    if crc16(span.group(0)) != int(digits.group(0), 16):
        raise TelegramError("telegram CRC does not match: it was damaged on the way")


def meter_time(stamp: dt.datetime, tz: str) -> dt.datetime:
    """A P1 time stamp (read by dsmr-parser as Amsterdam wall time with the W/S fold) as
    the same wall time in the meter's zone, in UTC."""
    from meterhub.timebase import zone

    if tz == _METER_ZONE_OF_PARSER:
        return stamp.astimezone(dt.UTC)
    wall = stamp.astimezone(zone(_METER_ZONE_OF_PARSER))
    return wall.replace(tzinfo=zone(tz)).astimezone(dt.UTC)


@dataclass(frozen=True, slots=True)
class Telegram:
    """What one accepted telegram says: its readings and the meter's own status.

    Plain values, so a telegram parsed in another process comes over cheaply, and the
    readings of many telegrams become one Arrow table (`join`) at their commit.
    """

    device: str
    #: (channel, time in epoch µs UTC, value) of each reading; channels as `FIELDS` name them
    found: tuple[tuple[str, int, float], ...]
    #: DSMR-reader's MeterStatistics fields as this telegram sets them (see `meter_status`)
    status: dict[str, Any]
    serial: str | None  #: the electricity meter's equipment id, when the telegram has it

    @property
    def readings(self) -> pa.Table:
        return readings_table([self])

    #: `join` makes readings as `meterhub.model.to_readings` would (a test holds it to that)
    in_reading_form = True

    @staticmethod
    def join(telegrams: Sequence[Telegram]) -> pa.Table:
        """The readings of ``telegrams`` as one table (for `meterhub.ingest.GroupWriter`)."""
        return readings_table(telegrams)


def parse_telegram(text: str, *, dialect: str = "5", device: str = "p1",
                   tz: str = "Europe/Amsterdam", now: dt.datetime | None = None) -> pa.Table:
    """The readings of one telegram, or a `TelegramError` saying why it was rejected."""
    return read_telegram(text, dialect=dialect, device=device, tz=tz, now=now).readings


def read_telegram(text: str, *, dialect: str = "5", device: str = "p1",
                  tz: str = "Europe/Amsterdam", now: dt.datetime | None = None) -> Telegram:
    """One telegram's readings and meter status, or a `TelegramError` saying why it was
    rejected (nothing of a rejected telegram is kept)."""
    parser = _PARSERS.get(dialect) or _PARSERS.setdefault(dialect, _parser(dialect))
    text = text.replace("\x00", "")
    if not _COMPLETE.match(text.replace("\r\n", "\n")):
        raise TelegramError("telegram cut short or malformed: it must run from '/' to a "
                            "final '!' line (with the CRC for DSMR 4 and later)")
    try:
        if parser.parser.telegram_specification["checksum_support"]:
            check_crc(text)
        telegram = parser.read(text)
    except (ParseError, ValueError, TypeError, IndexError) as exc:
        raise TelegramError(f"telegram not readable as DSMR {dialect}: {exc}") from None
    now = now or dt.datetime.now(dt.UTC)
    stamp_obj = getattr(telegram, "P1_MESSAGE_TIMESTAMP", None)
    stamp = meter_time(stamp_obj.value, tz) if stamp_obj is not None and \
        stamp_obj.value is not None else now.replace(microsecond=0)
    if too_far_ahead(stamp, now):
        raise TelegramError(f"telegram stamped {stamp.isoformat()}, more than 24 h ahead of "
                            "the server's clock: the meter's clock is wrong")
    found: list[tuple[str, int, float]] = []
    stamp_us = (stamp - _EPOCH) // _US
    for name, field in FIELDS.items():
        item = getattr(telegram, name, None)
        if item is None and name in _TOTALS:
            # single-register meters (Luxembourg's Smarty) have totals, no tariffs: the
            # total is tariff 1, as DSMR-reader stores it
            item = getattr(telegram, _TOTALS[name], None)
        if item is not None and item.value is not None:
            found.append((field.channel, stamp_us, _value(item, field.channel)))
    for reading, field in _mbus_readings(telegram):
        at = meter_time(reading.datetime, tz)
        if too_far_ahead(at, now):
            raise TelegramError(f"gas reading stamped {at.isoformat()}, more than 24 h ahead "
                                "of the server's clock: the meter's clock is wrong")
        found.append((field.channel, (at - _EPOCH) // _US, _value(reading, field.channel)))
    if not found:
        raise TelegramError("telegram holds no meter reading this DSMR version knows")
    return Telegram(device, tuple(found), meter_status(telegram, text, stamp),
                    _serial(telegram))


#: the readings' columns with the channels' quantity and kind (for a meter new to the store)
_READINGS = READING_SCHEMA.append(pa.field("quantity", pa.string())).append(
    pa.field("kind", pa.string()))


def readings_table(telegrams: Sequence[Telegram]) -> pa.Table:
    """The readings of ``telegrams``, built column-wise and once for all of them (a table
    costs more than parsing a telegram's 19 readings), in reading form: a journaled push
    skips checking them again (`meterhub.store.duckdb.DuckDBStore.journal_write`). The
    parser made them valid: finite values, meter times in this century, known channels in
    canonical units.

    A meter sends the same channels in the same order every time, so the columns that
    follow from its device and channels alone are built once per layout (`_layout`) and
    kept: only the times and values are new (a fifth of the time for a group of 8)."""
    channels: list[str] = []
    ts: list[int] = []
    values: list[float] = []
    for telegram in telegrams:
        for channel, at, value in telegram.found:
            channels.append(channel)
            ts.append(at)
            values.append(value)
    key = (tuple(telegram.device for telegram in telegrams),
           tuple(len(telegram.found) for telegram in telegrams), tuple(channels))
    columns = _LAYOUTS.get(key)
    if columns is None:
        if len(_LAYOUTS) >= _LAYOUTS_KEPT:
            _LAYOUTS.clear()
        columns = _LAYOUTS[key] = _layout(telegrams, channels)
    made = {**columns, "ts": pa.array(ts, _TS), "value": pa.array(values, pa.float64())}
    return pa.Table.from_arrays([made[name] for name in _READINGS.names], schema=_READINGS)


_TS = _READINGS.field("ts").type
_LAYOUTS_KEPT = 256  #: layouts (devices, and channels in order) whose columns are kept
_LAYOUTS: dict[tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...]], dict[str, pa.Array]] \
    = {}


def _layout(telegrams: Sequence[Telegram], channels: list[str]) -> dict[str, pa.Array]:
    """The columns of readings that follow from their devices and channels alone."""
    fields = [FIELD_OF[channel] for channel in channels]
    n = len(channels)
    return {
        "source": pa.array([SOURCE] * n, pa.string()),
        "device": pa.array([telegram.device for telegram in telegrams
                            for _ in telegram.found], pa.string()),
        "channel": pa.array(channels, pa.string()),
        "unit": pa.array([f.unit for f in fields], pa.string()),
        "quality": pa.array([Quality.OK.value] * n, pa.string()),
        "seq": pa.nulls(n, pa.int64()), "error_code": pa.nulls(n, pa.string()),
        "validated": pa.array([False] * n, pa.bool_()),
        "quantity": pa.array([f.quantity for f in fields], pa.string()),
        "kind": pa.array([f.kind.value for f in fields], pa.string()),
    }


def _mbus_readings(telegram: Any) -> list[tuple[Any, Field]]:
    """(reading with .datetime and .value, field) of each gas or water meter."""
    found = []
    for device in getattr(telegram, "MBUS_DEVICES", None) or []:
        kind = getattr(device, "MBUS_DEVICE_TYPE", None)
        reading = getattr(device, "MBUS_METER_READING", None)
        field = _MBUS_KINDS.get(int(kind.value)) if kind is not None and \
            kind.value is not None else GAS
        # a reading whose stamp does not parse has no time to be stored at: left out, as
        # dsmr-parser leaves out a line it cannot read (the electricity readings stay)
        if reading is not None and field is not None and reading.value is not None \
                and reading.datetime is not None:
            found.append((reading, field))
    for name in ("HOURLY_GAS_METER_READING", "GAS_METER_READING"):
        reading = getattr(telegram, name, None)
        if not found and reading is not None and reading.value is not None \
                and reading.datetime is not None:
            found.append((reading, GAS))
    return found


def _serial(telegram: Any) -> str | None:
    """The electricity meter's serial (hex-decoded 0-0:96.1.1), when the telegram has it."""
    item = getattr(telegram, "EQUIPMENT_IDENTIFIER", None)
    if item is None or not item.value:
        return None
    try:
        return bytes.fromhex(str(item.value)).decode("ascii")
    except ValueError:
        return str(item.value)


def meter_device(telegram: Telegram, *, device: str, tz: str) -> Device:
    """The catalog entry of the meter a telegram came from: its serial and time zone."""
    return Device(device, SOURCE, serial=telegram.serial, timezone=tz)
