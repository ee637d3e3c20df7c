"""dsmr-parser's telegram parse, with each line looked up once (a third of a parse saved)
and its common lines read into plain values, without its objects (`LineIndexParser.read`)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from dsmr_parser.objects import DSMRObject
from dsmr_parser.parsers import CosemParser, MBusParser, TelegramParser, ValueParser
from dsmr_parser.value_types import timestamp

#: an object signature of the common shape ``^<head>.+?\r\n`` (one line; the head only
#: digits, ``\d``, digit classes such as ``[01]`` or ``[1-9]``, ``-``, ``:`` and ``\.``, so
#: it never reaches a ``(``)
_ONE_LINE = re.compile(r"\^((?:\\d|\[\d+\]|\[\d-\d\]|\d|-|:|\\\.)+)\.\+\?\\r\\n")
_HEADS_KEPT = 4096  #: distinct line heads remembered per dialect (a bound against junk)
#: dsmr-parser's value groups of a line (``DSMRObjectParser._parse``)
_VALUE_GROUPS = re.compile(r"((?<=\()[0-9a-zA-Z\.\*\-\:]{0,}(?=\)))")
_METER_ZONE = ZoneInfo("Europe/Amsterdam")  #: the zone dsmr-parser reads stamps in


def meter_stamp(value: str) -> dt.datetime | None:
    """dsmr-parser's `timestamp` (``YYMMDDhhmmss`` and S or W, Amsterdam wall time, as
    UTC; None when it is none), without ``strptime``: twelve ASCII digits parse there
    exactly when each two-digit field is in its range and the date exists, which
    ``datetime`` checks alike. Any other text goes to the library's function."""
    digits = value[:12]
    if len(value) not in (12, 13) or not (digits.isascii() and digits.isdigit()):
        return timestamp(value)  # type: ignore[no-any-return]
    fold = 0
    if len(value) == 13:
        if value[12] not in "SW":
            return None
        fold = 1 if value[12] == "W" else 0  # winter time: an autumn hour's second pass
    year = int(digits[:2])
    try:
        wall = dt.datetime(year + (2000 if year <= 68 else 1900), int(digits[2:4]),
                           int(digits[4:6]), int(digits[6:8]), int(digits[8:10]),
                           int(digits[10:12]), tzinfo=_METER_ZONE, fold=fold)
    except ValueError:
        return None
    return wall.astimezone(dt.UTC)


class Cosem:
    """A line's value as dsmr-parser's `CosemObject` gives it (``.value``)."""

    __slots__ = ("obis_id_code", "value")

    def __init__(self, obis_id_code: tuple[int, int], values: list[Any]) -> None:
        self.obis_id_code = obis_id_code
        [self.value] = values


class MBusReading:
    """A line of (time)(value) as dsmr-parser's `MBusObject` gives it (``.datetime``,
    ``.value``)."""

    __slots__ = ("datetime", "obis_id_code", "value")

    def __init__(self, obis_id_code: tuple[int, int], values: list[Any]) -> None:
        self.obis_id_code = obis_id_code
        self.datetime, self.value = values


class Lines:
    """A telegram's objects by their names, as attributes (as on dsmr-parser's
    `Telegram`), and ``MBUS_DEVICES``: the M-Bus channels' own, in the library's order."""


class MBusDevice:
    """One M-Bus channel's objects by their names (as dsmr-parser's `MbusDevice`)."""

    def __init__(self, channel_id: int) -> None:
        self.channel_id = channel_id


#: a value parser's coercion, as `_lean_values` applies it (timestamps without strptime)
_COERCIONS: dict[Any, Callable[[str], Any]] = {
    Decimal: Decimal, int: int, str: str, timestamp: meter_stamp}


def _lean_plan(parser: Any) -> tuple[type, tuple[Callable[[str], Any], ...]] | None:
    """(object, coercions) of a line's value groups, for the library's plain parsers of
    one value (`CosemParser`) or of a time and a value (`MBusParser`); None for others."""
    formats = getattr(parser, "value_formats", ())
    if not all(type(f) is ValueParser and f.coerce_type in _COERCIONS for f in formats):
        return None
    coercions = tuple(_COERCIONS[f.coerce_type] for f in formats)
    if type(parser) is CosemParser and len(formats) == 1:
        return Cosem, coercions
    if type(parser) is MBusParser and len(formats) == 2:
        return MBusReading, coercions
    return None


def _lean_values(line: str, coercions: tuple[Callable[[str], Any], ...]) -> list[Any]:
    """The values of ``line`` as the library's `ValueParser`s make them; raises where the
    library would (or where this is not sure it reads alike: the library then reads it)."""
    values = []
    # strict: as many groups as the object has values, or the line is the library's to fail
    for group, coerce in zip(_VALUE_GROUPS.findall(line), coercions, strict=True):
        if group:
            if "*" in group:
                group, _unit = group.split("*")
            values.append(coerce(group))
        else:
            values.append(None)
    return values


class LineIndexParser:
    """dsmr-parser's parse (`read`), with each line looked up once instead of every
    signature searched through the whole telegram (71 scans of ~830 bytes for DSMR 5: a
    third of a parse).

    A one-line signature ``^<head>.+?\r\n`` matches a line exactly when ``<head>``
    matches the start of the text before the line's first ``(`` and something follows it
    on that line, so which objects a line belongs to depends on that text alone and is
    remembered. Objects of other signatures (DSMR 2.2's two-line gas reading) are still
    searched for as the library does. Objects are then read as the library's own value
    parsers read them and added in its order (spec order, then text order), so each name
    holds what the library's Telegram holds. Texts where a line start or a match could
    differ (a bare ``\n``, a line that is only a head) and encrypted dialects go to the
    library whole.
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
        self._plans = [_lean_plan(obj["value_parser"]) if signature is not None else None
                       for obj, signature, _ in self._objects]

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

    def _lines(self, text: str) -> dict[int, list[str]] | None:
        """The lines (with their \\r\\n) of each one-line object, by its index; None when
        the text must go to the library whole."""
        if not self.enabled or text.count("\n") != text.count("\r\n"):
            return None
        lines: dict[int, list[str]] = {}
        for line in text.split("\r\n")[:-1]:  # the lines that end in \r\n
            head, paren, _ = line.partition("(")
            for index, end in self._members(head):
                if not paren and end == len(line):  # its match would run into the next line
                    return None
                lines.setdefault(index, []).append(line + "\r\n")
        return lines

    def read(self, text: str) -> Any:
        """The objects of ``text`` with the attributes the library's Telegram gives them
        (`Lines`: ``.value``, ``.datetime``, ``MBUS_DEVICES``), in about half the time:
        plain lines of one value, or of a time and a value, become `Cosem` and
        `MBusReading` values as the library's parsers would coerce them; other objects
        are the library's. Raises as the library does with ``throw_ex=True``; a text
        with anything this is not sure of is the library's Telegram."""
        lines = self._lines(text)
        if lines is None:
            return self.parser.parse(text, throw_ex=True)
        lean: dict[int, list[Any]] = {}
        try:  # first the lean objects, so the library's parsers (one keeps state) run once
            for index, found in lines.items():
                plan = self._plans[index]
                if plan is not None:
                    made, coercions = plan
                    lean[index] = [made((int(line[0]), int(line[2])),
                                        _lean_values(line, coercions)) for line in found]
        except Exception:  # noqa: BLE001 - the library's parse raises as it would
            return self.parser.parse(text, throw_ex=True)
        telegram, devices = Lines(), dict[int, MBusDevice]()
        for index, (obj, signature, pattern) in enumerate(self._objects):
            if index in lean:
                items = lean[index]
            else:
                items = [obj["value_parser"].parse(match) for match in (
                    lines.get(index, ()) if signature is not None else pattern.findall(text))]
            name = obj["value_name"]
            for item in items:
                setattr(telegram, name, item)
                if isinstance(item, Cosem | MBusReading | DSMRObject):
                    kind, channel = item.obis_id_code
                    if kind == 0 and channel != 0:  # the library's `is_mbus_reading`
                        device = devices.get(channel) or devices.setdefault(
                            channel, MBusDevice(channel))
                        setattr(device, name, item)
        if devices:
            telegram.MBUS_DEVICES = list(devices.values())  # type: ignore[attr-defined]
        return telegram
