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
import functools
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
from dsmr_parser import telegram_specifications as specs
from dsmr_parser.exceptions import ParseError
from dsmr_parser.objects import Telegram as DsmrTelegram
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
_FIELD_OF = {field.channel: field for field in [*FIELDS.values(), GAS, WATER]}
_EPOCH, _US = dt.datetime(1970, 1, 1, tzinfo=dt.UTC), dt.timedelta(microseconds=1)


class TelegramError(InputError):
    """A telegram that is rejected whole: bad CRC, cut short, unreadable or from the future."""


#: an object signature of the common shape ``^<head>.+?\r\n`` (one line; the head only
#: digits, ``\d``, digit classes, ``-``, ``:`` and ``\.``, so it never reaches a ``(``)
_ONE_LINE = re.compile(r"\^((?:\\d|\[\d+\]|\d|-|:|\\\.)+)\.\+\?\\r\\n")
_HEADS_KEPT = 4096  #: distinct line heads remembered per dialect (a bound against junk)


class _LineIndexParser:
    """dsmr-parser's parse, with each line looked up once instead of every signature
    searched through the whole telegram (71 scans of ~830 bytes for DSMR 5: a third of a
    parse).

    A one-line signature ``^<head>.+?\r\n`` matches a line exactly when ``<head>``
    matches the start of the text before the line's first ``(`` and something follows it
    on that line, so which objects a line belongs to depends on that text alone and is
    remembered. Objects of other signatures (DSMR 2.2's two-line gas reading) are still
    searched for as the library does. Objects are then parsed by the library's own value
    parsers and added in its order (spec order, then text order), so the Telegram is the
    one the library builds. Texts where a line start or a match could differ (a bare
    ``\n``, a line that is only a head) and encrypted dialects go to the library whole.
    """

    def __init__(self, parser: TelegramParser) -> None:
        self.parser = parser
        spec = parser.telegram_specification
        self.enabled = not spec.get("general_global_cipher")
        self._objects: list[tuple[dict[str, Any], re.Pattern[str] | None, re.Pattern[str]]] = []
        for obj in spec["objects"]:
            one_line = _ONE_LINE.fullmatch(obj["obis_reference"])
            self._objects.append((obj, re.compile(one_line.group(1)) if one_line else None,
                                  parser.telegram_specification_regexes[obj["obis_reference"]]))
        self._heads: dict[str, tuple[tuple[int, int], ...]] = {}

    def _members(self, head: str) -> tuple[tuple[int, int], ...]:
        """(object index, end of its head match) of each one-line object ``head`` starts."""
        found = self._heads.get(head)
        if found is None:
            if len(self._heads) >= _HEADS_KEPT:
                self._heads.clear()
            found = self._heads[head] = tuple(
                (i, match.end()) for i, (_, signature, _) in enumerate(self._objects)
                if signature is not None and (match := signature.match(head)))
        return found

    def parse(self, text: str) -> Any:
        """The library's Telegram for ``text``; raises as the library does with
        ``throw_ex=True``."""
        if not self.enabled or text.count("\n") != text.count("\r\n"):
            return self.parser.parse(text, throw_ex=True)
        lines: dict[int, list[str]] = {}
        for line in text.split("\r\n")[:-1]:  # the lines that end in \r\n
            head, paren, _ = line.partition("(")
            for index, end in self._members(head):
                if not paren and end == len(line):  # its match would run into the next line
                    return self.parser.parse(text, throw_ex=True)
                lines.setdefault(index, []).append(line + "\r\n")
        telegram = DsmrTelegram()
        for index, (obj, signature, pattern) in enumerate(self._objects):
            for match in lines.get(index, ()) if signature is not None else \
                    pattern.findall(text):
                telegram.add(obis_reference=obj["obis_reference"],
                             dsmr_object=obj["value_parser"].parse(match),
                             obis_name=obj["value_name"])
        return telegram


def _parser(dialect: str) -> _LineIndexParser:
    if dialect not in DIALECTS:
        raise InputError(f"unknown DSMR version {dialect!r}: use one of "
                         f"{', '.join(DIALECTS)}")
    # the CRC is checked by `check_crc`, the same rule about five times faster
    return _LineIndexParser(TelegramParser(DIALECTS[dialect], apply_checksum_validation=False))


_PARSERS: dict[str, _LineIndexParser] = {}
_COMPLETE = re.compile(r"^/.*\n!([0-9A-F]{4})?\s*$", re.S)
_CRC_SPAN = re.compile(r"/.+!", re.S)  #: dsmr-parser's rule: first '/' to the last '!'
_CRC_HEX = re.compile(r"((?<=!)[0-9A-Z]{1,4})+")  #: ... and the first hex after a '!'


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


@functools.cache
def _crc_pair_table() -> list[int]:
    """The CRC after two bytes, indexed by (crc ^ the two bytes as a little-endian word):
    a 16-bit CRC is wholly shifted out by 16 bits of input, so nothing else remains."""
    table = _CRC_TABLE
    pairs = []
    for word in range(65536):
        crc = table[word & 0xFF]
        pairs.append((crc >> 8) ^ table[(crc ^ (word >> 8)) & 0xFF])
    return pairs


def crc16(text: str) -> int:
    """CRC-16/ARC (reflected 0x8005, start 0) of a telegram's characters, table driven, two
    bytes a step.

    dsmr-parser's own routine costs a third of a parse (PERF.md); this gives the same value
    for any text (each character counts by its low byte, as there) in a twentieth the time.
    """
    try:
        data = text.encode("latin-1")
    except UnicodeEncodeError:
        data = bytes(ord(char) & 0xFF for char in text)
    crc, table, even = 0, _CRC_TABLE, len(data) & ~1
    if sys.byteorder == "little":
        pairs = _crc_pair_table()
        for word in memoryview(data)[:even].cast("H"):
            crc = pairs[crc ^ word]
        data = data[even:]
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


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

    @staticmethod
    def join(telegrams: Sequence[Telegram]) -> pa.Table:
        """The readings of ``telegrams`` as one table (for `meterhub.ingest.GroupWriter`)."""
        return readings_table(telegrams)


#: MeterStatistics field -> dsmr-parser value name (counts and the active tariff, as ints)
STATUS_FIELDS = {
    "electricity_tariff": "ELECTRICITY_ACTIVE_TARIFF",
    "power_failure_count": "SHORT_POWER_FAILURE_COUNT",
    "long_power_failure_count": "LONG_POWER_FAILURE_COUNT",
    **{f"voltage_sag_count_l{n}": f"VOLTAGE_SAG_L{n}_COUNT" for n in (1, 2, 3)},
    **{f"voltage_swell_count_l{n}": f"VOLTAGE_SWELL_L{n}_COUNT" for n in (1, 2, 3)},
}


def status_key(device: str) -> str:
    """The store state key of a meter's latest status (`Telegram.status` as JSON)."""
    return f"dsmr.status.{device}"


def rejected_key(device: str) -> str:
    """The store state key of the count of a meter's rejected telegrams."""
    return f"dsmr.rejected.{device}"


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
        telegram = parser.parse(text)
    except (ParseError, ValueError, TypeError, IndexError) as exc:
        raise TelegramError(f"telegram not readable as DSMR {dialect}: {exc}") from None
    now = now or dt.datetime.now(dt.UTC)
    stamp_obj = getattr(telegram, "P1_MESSAGE_TIMESTAMP", None)
    stamp = meter_time(stamp_obj.value, tz) if stamp_obj is not None and \
        stamp_obj.value is not None else now.replace(microsecond=0)
    if stamp > now + FUTURE_LIMIT:
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
            found.append((field.channel, stamp_us, float(item.value)))
    for reading, field in _mbus_readings(telegram):
        at = meter_time(reading.datetime, tz)
        if at > now + FUTURE_LIMIT:
            raise TelegramError(f"gas reading stamped {at.isoformat()}, more than 24 h ahead "
                                "of the server's clock: the meter's clock is wrong")
        found.append((field.channel, (at - _EPOCH) // _US, float(reading.value)))
    if not found:
        raise TelegramError("telegram holds no meter reading this DSMR version knows")
    return Telegram(device, tuple(found), meter_status(telegram, text, stamp),
                    _serial(telegram))


_READINGS = pa.schema([("source", pa.string()), ("device", pa.string()),
                       ("channel", pa.string()), ("ts", pa.timestamp("us", "UTC")),
                       ("value", pa.float64()), ("unit", pa.string()),
                       ("quantity", pa.string()), ("kind", pa.string())])


def readings_table(telegrams: Sequence[Telegram]) -> pa.Table:
    """The readings of ``telegrams``, built column-wise and once for all of them (a table
    costs more than parsing a telegram's 19 readings)."""
    devices, channels, ts, values = [], [], [], []
    for telegram in telegrams:
        devices += [telegram.device] * len(telegram.found)
        for channel, at, value in telegram.found:
            channels.append(channel)
            ts.append(at)
            values.append(value)
    fields = [_FIELD_OF[channel] for channel in channels]
    return pa.table({
        "source": [SOURCE] * len(channels), "device": devices, "channel": channels,
        "ts": pa.array(ts, pa.int64()).cast(pa.timestamp("us", "UTC")), "value": values,
        "unit": [f.unit for f in fields], "quantity": [f.quantity for f in fields],
        "kind": [f.kind.value for f in fields],
    }, schema=_READINGS)


#: seconds: under a stream of pushed telegrams the meter's status is stored at most this
#: often (a state write costs about a tenth of a group commit); the readings are committed
#: before every answer as always
STATUS_EVERY = 1.0


class MeterLog:
    """A meter's status and its count of rejected telegrams, as the store keeps them (state
    values `status_key` and `rejected_key`): loaded once, and the state values to commit
    with each accepted or rejected telegram. The push endpoint and `meterhub p1` share it.

    In between, this object is the truth: the status a telegram set is here at once and in
    the store within `STATUS_EVERY` (`accept` hands it out at most that often, and
    `unsaved_state` the one held back).
    """

    def __init__(self, get_state: Callable[[str], str | None], device: str) -> None:
        self.status_key, self.rejected_key = status_key(device), rejected_key(device)
        stored = get_state(self.status_key)
        #: the meter's latest status (None before any telegram or PATCH): a PATCH builds on
        #: it, and the API answers from it (the store may be a second behind)
        self.status: dict[str, Any] | None = orjson.loads(stored) if stored else None
        self.rejected = int(get_state(self.rejected_key) or 0)  #: ever, across restarts
        self.accepted = 0  #: stored by this process (its owner counts them)
        self.unsaved = False  #: the status holds a telegram's that is not handed out yet
        self._handed_at = -STATUS_EVERY

    def accept(self, telegram: Telegram) -> dict[str, str]:
        """Take ``telegram``'s status; the state values to commit with its readings (the
        status, unless it was handed out less than `STATUS_EVERY` ago)."""
        self.status = updated_status(self.status, telegram.status)
        if time.monotonic() - self._handed_at < STATUS_EVERY:
            self.unsaved = True
            return {}
        return self._status_state()

    def unsaved_state(self) -> dict[str, str]:
        """The status held back by `accept`, to commit on its own (nothing if none)."""
        return self._status_state() if self.unsaved else {}

    def _status_state(self) -> dict[str, str]:
        self.unsaved, self._handed_at = False, time.monotonic()
        return {self.status_key: orjson.dumps(self.status).decode()}

    def patch(self, *, status: dict[str, Any] | None = None,
              rejected: int | None = None) -> dict[str, str]:
        """Take a status or rejected count set from outside (a datalogger's PATCH); the
        state values to commit."""
        state = {}
        if rejected is not None:
            self.rejected = rejected
            state[self.rejected_key] = str(rejected)
        if status is not None:
            self.status = status
            state.update(self._status_state())
        return state

    def reject(self) -> dict[str, str]:
        """Count a rejected telegram; the state value to commit."""
        self.rejected += 1
        return {self.rejected_key: str(self.rejected)}

    def state(self) -> dict[str, str]:
        """Both values, for a writer that commits telegrams in batches."""
        state = {self.rejected_key: str(self.rejected)}
        if self.status is not None:
            state[self.status_key] = orjson.dumps(self.status).decode()
        return state


def updated_status(previous: dict[str, Any] | None, status: dict[str, Any]) -> dict[str, Any]:
    """A meter's status after a telegram: what the telegram says, and the earlier values
    of what it does not (as DSMR-reader sets only the fields a telegram has: a DSMR 2.2
    meter keeps the counts a remote datalogger PATCHed)."""
    return {**(previous or {}), **{k: v for k, v in status.items() if v is not None}}


def meter_status(telegram: Any, text: str, stamp: dt.datetime) -> dict[str, Any]:
    """DSMR-reader's MeterStatistics as a telegram sets them: its time (ISO, UTC), the DSMR
    version (``"50"``), the active tariff and the meter's event counters (ints, None when
    absent) and the telegram's text."""
    header = getattr(telegram, "P1_MESSAGE_HEADER", None)
    status: dict[str, Any] = {"timestamp": stamp.isoformat(),
                              "dsmr_version": None if header is None else header.value}
    for field, name in STATUS_FIELDS.items():
        item = getattr(telegram, name, None)
        try:
            status[field] = None if item is None or item.value is None else int(item.value)
        except ValueError:
            status[field] = None
    status["latest_telegram"] = text
    return status


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
