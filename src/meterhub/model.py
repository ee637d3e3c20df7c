"""The data model: sites, devices, channels, and readings as Arrow tables.

A reading row is ``source, device, channel, ts, value, unit, quality, seq`` plus
``error_code`` (the vendor's code when quality is ``sensor_error``; the value is then null)
and ``validated`` (True for vendor-validated data, False for raw device data).

``ts`` is UTC with microsecond resolution. Interval values (energy per 15 minutes, rain per
hour) are stamped at the *start* of their period; connectors shift vendors that stamp the end.
Readings always travel as Arrow tables or record batches: `to_readings` turns whatever a
caller holds (an Arrow table, a pandas or polars frame, a list of dicts) into the canonical
schema with vectorised casts, and reports the first bad row by number.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from meterhub.errors import InputError, UnitError
from meterhub.units import check_unit_for, normalize_unit


class ChannelKind(StrEnum):
    """What a channel's values mean, which decides how they aggregate."""

    INSTANT = "instant"  #: a level at a moment (temperature, power): mean/min/max/first/last
    COUNTER = "counter"  #: a register that only grows (kWh index): difference between edges
    DELTA = "delta"  #: an amount per interval (kWh per 15 min, mm of rain): sum


class Quality(StrEnum):
    """How far a reading can be trusted."""

    OK = "ok"
    ESTIMATED = "estimated"  #: filled in or estimated by the vendor
    SENSOR_ERROR = "sensor_error"  #: the device reported an error; value is null


@dataclass(frozen=True, slots=True)
class Site:
    """An optional grouping of devices (an installation, a premise, a station site)."""

    site: str
    name: str | None = None
    timezone: str | None = None
    latitude: float | None = None
    longitude: float | None = None


@dataclass(frozen=True, slots=True)
class Device:
    """One physical device at one source; ``device`` is its id, unique in the store."""

    device: str
    source: str
    site: str | None = None
    name: str | None = None
    model: str | None = None
    serial: str | None = None
    timezone: str | None = None
    latitude: float | None = None
    longitude: float | None = None


@dataclass(frozen=True, slots=True)
class Channel:
    """One measured series of a device, in one canonical unit."""

    device: str
    channel: str
    quantity: str
    unit: str
    kind: ChannelKind = ChannelKind.INSTANT
    #: expected seconds between readings, when the vendor or user knows it (gap listing)
    interval_s: int | None = None


TS_TYPE = pa.timestamp("us", tz="UTC")

#: The times a reading may have, decided once for every path in and out: wide enough for
#: historic weather records and any meter, narrow enough that each of them has a local
#: time in every zone and fits pandas' nanoseconds, DuckDB and Python's datetime.
TS_MIN = dt.datetime(1800, 1, 1, tzinfo=dt.UTC)
TS_MAX = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)  #: the first time past the range
TS_RANGE_TEXT = "1800-01-01 to 2199-12-31 (UTC)"


def in_time_range(moment: dt.datetime) -> bool:
    """Whether an aware time lies within [`TS_MIN`, `TS_MAX`)."""
    return TS_MIN <= moment < TS_MAX


def check_time(moment: dt.datetime, what: str = "time") -> dt.datetime:
    """``moment`` if it lies in the stored range, else an `InputError` that says the range."""
    if not in_time_range(moment):
        raise InputError(f"{what} {moment.isoformat()} is outside the times meterhub keeps: "
                         f"{TS_RANGE_TEXT}")
    return moment


#: Identifiers (source, device, channel and site ids, quantity names) are keys, file names
#: and table cells: at most this many characters, no control character, no whitespace at
#: either end. Free text (a device's name, model, serial; an error code) is a vendor's
#: words: at most `MAX_TEXT_CHARS`, and of the control characters only tab and line breaks.
MAX_ID_CHARS = 128
MAX_TEXT_CHARS = 1024
#: control characters (Unicode category Cc: C0, DEL and C1), for Python and Arrow (RE2)
CONTROL_PATTERN = r"[\x00-\x1f\x7f-\x9f]"
#: the control characters free text may not hold: all but tab, LF and CR
TEXT_CONTROL_PATTERN = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
_CONTROL = re.compile(CONTROL_PATTERN)
_TEXT_CONTROL = re.compile(TEXT_CONTROL_PATTERN)


def shown(text: str, limit: int = 40) -> str:
    """A value for a message: its repr, cut to ``limit`` characters when longer."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


def text_problem(text: str, *, identifier: bool = True) -> str | None:
    """What makes ``text`` unfit as an identifier (or free text), or None when it fits."""
    limit = MAX_ID_CHARS if identifier else MAX_TEXT_CHARS
    # a line break or NEL is whitespace to str.strip, and a control character first
    control = (_CONTROL if identifier else _TEXT_CONTROL).search(text)
    if identifier and not text.strip() and not control:
        return "is empty"
    if len(text) > limit:
        return f"is {len(text):,} characters long: at most {limit:,} are allowed"
    if control:
        return (f"holds the control character {control.group()!r}: use printable "
                "characters only")
    if identifier and text != text.strip():
        return "starts or ends with whitespace"
    return None


def check_id(value: object, what: str) -> str:
    """``value`` if it is a fit identifier (see `MAX_ID_CHARS`), else an `InputError`."""
    if not isinstance(value, str):
        raise InputError(f"{what} must be text, not {type(value).__name__}")
    problem = text_problem(value)
    if problem is not None:
        raise InputError(f"{what} {shown(value)} {problem}")
    return value


def check_text(value: object, what: str) -> str | None:
    """``value`` if it is None or fit free text (see `MAX_TEXT_CHARS`), else an `InputError`."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{what} must be text, not {type(value).__name__}")
    problem = text_problem(value, identifier=False)
    if problem is not None:
        raise InputError(f"{what} {shown(value)} {problem}")
    return value


def _check_position(latitude: object, longitude: object, what: str) -> None:
    for name, value, bound in (("latitude", latitude, 90.0), ("longitude", longitude, 180.0)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                math.isfinite(value) and -bound <= value <= bound):
            raise InputError(f"{what}: {name} {value!r} is not a number from {-bound:g} to "
                             f"{bound:g}")


_C = TypeVar("_C", Site, Device, Channel)
MAX_INTERVAL_S = 2**31 - 1  #: a channel's expected interval fits a 32-bit integer of seconds


def check_catalog(item: _C) -> _C:
    """``item`` with its unit in canonical spelling, or an `InputError` saying what is wrong.

    Ids follow the identifier rule, names the free-text rule (`text_problem`), positions
    are finite degrees, and a channel's unit must fit its quantity (`check_unit_for`).
    Stores check what they are given here, never what they read back, so a catalog written
    before these rules still reads.
    """
    if isinstance(item, Site):
        check_id(item.site, "site")
        what = f"site {item.site}"
        check_text(item.name, f"{what}: name")
        if item.timezone is not None:
            check_id(item.timezone, f"{what}: timezone")
        _check_position(item.latitude, item.longitude, what)
        return item
    if isinstance(item, Device):
        check_id(item.device, "device")
        what = f"device {item.device}"
        check_id(item.source, f"{what}: source")
        if item.site is not None:
            check_id(item.site, f"{what}: site")
        for name in ("name", "model", "serial"):
            check_text(getattr(item, name), f"{what}: {name}")
        if item.timezone is not None:
            check_id(item.timezone, f"{what}: timezone")
        _check_position(item.latitude, item.longitude, what)
        return item
    check_id(item.device, "device")
    check_id(item.channel, "channel")
    what = f"channel {item.device}/{item.channel}"
    check_id(item.quantity, f"{what}: quantity")
    try:
        kind = ChannelKind(item.kind)
    except ValueError:
        raise InputError(f"{what}: kind {item.kind!r} is not one of "
                         f"{', '.join(k.value for k in ChannelKind)}") from None
    if item.interval_s is not None and (
            isinstance(item.interval_s, bool) or not isinstance(item.interval_s, int)
            or not 0 < item.interval_s <= MAX_INTERVAL_S):
        raise InputError(f"{what}: interval_s {item.interval_s!r} is not a whole number of "
                         f"seconds from 1 to {MAX_INTERVAL_S:,}")
    if not isinstance(item.unit, str):
        raise InputError(f"{what}: unit must be text, not {type(item.unit).__name__}")
    try:
        unit = check_unit_for(item.quantity, item.unit)
    except UnitError as exc:
        raise InputError(f"{what}: {exc}") from None
    return Channel(item.device, item.channel, item.quantity, unit, kind, item.interval_s)


READING_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("device", pa.string(), nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("ts", TS_TYPE, nullable=False),
        pa.field("value", pa.float64()),
        pa.field("unit", pa.string(), nullable=False),
        pa.field("quality", pa.string(), nullable=False),
        pa.field("seq", pa.int64()),
        pa.field("error_code", pa.string()),
        pa.field("validated", pa.bool_(), nullable=False),
    ]
)

#: Columns a caller may add so that channels created by a write get the right metadata.
CHANNEL_HINT_COLUMNS = ("quantity", "kind")
#: the columns that hold text (ids, names, codes): true or false is no value of theirs
TEXT_COLUMNS = ("source", "device", "channel", "unit", "quality", "error_code",
                *CHANNEL_HINT_COLUMNS)
#: the columns true or false is no value of (which Arrow would read as "true" or 1.0), and
#: what they hold instead
NOT_BOOLEAN = {**dict.fromkeys(TEXT_COLUMNS, "text"), "value": "a number", "seq": "a number"}

_REQUIRED = ("device", "channel", "ts", "unit")
_QUALITIES = pa.array([q.value for q in Quality])
_KINDS = pa.array([k.value for k in ChannelKind])


def as_arrow(data: Any) -> pa.Table:
    """An Arrow table from an Arrow table/batch, a pandas or polars frame, or a list of dicts."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        return records_to_arrow(data)
    module = type(data).__module__
    if module.startswith("pandas"):
        try:
            return pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # an object column of mixed types: let the validator name the bad row
            return records_to_arrow(data.to_dict("records"))
    if module.startswith("polars"):
        return data.to_arrow()
    raise InputError(f"cannot read readings from a {type(data).__name__}: pass an Arrow "
                     "table, a pandas or polars DataFrame, or a list of dicts")


def records_to_arrow(records: Sequence[Any]) -> pa.Table:
    """An Arrow table from dicts; a column of mixed types becomes text for the validator."""
    for index, item in enumerate(records, start=1):
        if not isinstance(item, Mapping):
            raise InputError(f"item {index}: expected an object with device, channel, ts, "
                             "value and unit", row=index, reason="expected an object")
    names = list(dict.fromkeys(key for item in records for key in item))
    columns: dict[str, pa.Array] = {}
    for name in names:
        values = [item.get(name) for item in records]
        for index, value in enumerate(values, start=1):
            if isinstance(value, Mapping | list):
                kind = "an object" if isinstance(value, Mapping) else "an array"
                reason = f"{name} is {kind}; give a single value"
                raise InputError(f"item {index}: {reason}", row=index, reason=reason)
            if isinstance(value, bool) and name in NOT_BOOLEAN:
                reason = _not_boolean(name, value)
                raise InputError(f"item {index}: {reason}", row=index, reason=reason)
        try:
            column = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            # mixed types or numbers beyond 64 bits: text, which the validator names
            column = pa.array([None if v is None else str(v) for v in values], pa.string())
        columns[name] = column
    return pa.table(columns) if columns else pa.table({})


def _not_boolean(name: str, value: bool) -> str:
    return f"{name} is {str(value).lower()}, not {NOT_BOOLEAN[name]}"


def _check_not_booleans(table: pa.Table, first_row: int) -> None:
    """An `InputError` naming the first row of a text column given as true or false (which
    would otherwise be read as the text "true")."""
    for name in TEXT_COLUMNS:
        if name in table.column_names and pa.types.is_boolean(table.column(name).type):
            index = _first_bad(pc.is_valid(table.column(name)))
            if index is not None:
                raise _fail(_not_boolean(name, table.column(name)[index].as_py()), index,
                            first_row)


def _first_bad(mask: pa.ChunkedArray | pa.Array) -> int | None:
    """0-based index of the first True in a boolean mask (nulls count as False)."""
    filled = pc.fill_null(mask, False)
    if not pc.any(filled).as_py():
        return None
    return int(np.flatnonzero(filled.to_numpy(zero_copy_only=False))[0])


def _fail(message: str, index: int, first_row: int) -> InputError:
    return InputError(f"row {index + first_row}: {message}", row=index + first_row,
                      reason=message)


def _parse_ts(column: pa.ChunkedArray, first_row: int) -> pa.ChunkedArray:
    """Timestamps as UTC microseconds; strings may carry an offset, naive values mean UTC."""
    if pa.types.is_timestamp(column.type):
        if column.type.tz is None:
            return column.cast(pa.timestamp("us")).cast(TS_TYPE)
        return column.cast(TS_TYPE)
    if pa.types.is_date(column.type):
        return column.cast(pa.timestamp("us")).cast(TS_TYPE)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        # pyarrow parses ISO 8601 with a zone only into a zoned type and without one only
        # into a naive type: split the two shapes so that both may live in one file.
        text = pc.utf8_trim_whitespace(column.cast(pa.string()))
        zoned = pc.match_substring_regex(text, r"(Z|[+-]\d\d:?\d\d)$")
        parts = ((pc.if_else(zoned, text, None), TS_TYPE),
                 (pc.if_else(zoned, None, text), pa.timestamp("us")))
        parsed = [_cast_ts(part, target, first_row) for part, target in parts]
        return pc.if_else(zoned, parsed[0], parsed[1].cast(TS_TYPE))
    if pa.types.is_integer(column.type):
        raise InputError("column ts holds integers: give ISO 8601 timestamps "
                         "(e.g. 2024-03-31T01:45:00Z)")
    raise InputError(f"column ts has type {column.type}: give ISO 8601 timestamps")


def _cast_ts(part: pa.ChunkedArray, target: pa.DataType, first_row: int) -> pa.ChunkedArray:
    try:
        return part.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        for index, item in enumerate(part.to_pylist()):
            try:
                pa.array([item], pa.string()).cast(target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise _fail(f"timestamp {item!r} is not ISO 8601 (e.g. 2024-03-31T01:45:00Z)",
                            index, first_row) from None
        raise


def _parse_float(column: pa.ChunkedArray, name: str, first_row: int) -> pa.ChunkedArray:
    if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
        return column.cast(pa.float64())
    if pa.types.is_null(column.type):
        return column.cast(pa.float64())
    text = column.cast(pa.string())
    blank = pc.equal(pc.utf8_trim_whitespace(text), "")
    text = pc.if_else(blank, None, text)
    try:
        return text.cast(pa.float64())
    except pa.ArrowInvalid:
        numeric = pc.match_substring_regex(
            text, r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$|^\s*[+-]?(nan|inf)\s*$",
            ignore_case=True)
        index = _first_bad(pc.and_(pc.is_valid(text), pc.invert(numeric)))
        index = 0 if index is None else index
        raise _fail(f"{name} {text[index].as_py()!r} is not a number", index,
                    first_row) from None


def _parse_int(column: pa.ChunkedArray, name: str, first_row: int) -> pa.ChunkedArray:
    if pa.types.is_integer(column.type) or pa.types.is_null(column.type):
        return column.cast(pa.int64())
    as_float = _parse_float(column, name, first_row)
    whole = pc.and_(pc.equal(pc.floor(as_float), as_float),
                    pc.less(pc.abs(as_float), 2.0**63))  # and within 64 bits
    index = _first_bad(pc.invert(whole))
    if index is not None:
        raise _fail(f"{name} {as_float[index].as_py()!r} is not a whole number within 64 bits",
                    index, first_row)
    return as_float.cast(pa.int64())


def _parse_bool(column: pa.ChunkedArray, name: str, first_row: int) -> pa.ChunkedArray:
    if pa.types.is_boolean(column.type):
        return pc.fill_null(column, False)
    text = pc.utf8_lower(pc.utf8_trim_whitespace(column.cast(pa.string())))
    truthy = pc.is_in(text, pa.array(["true", "1", "yes", "t", "y"]))
    falsy = pc.is_in(text, pa.array(["false", "0", "no", "f", "n", ""]))
    index = _first_bad(pc.and_(pc.is_valid(text), pc.invert(pc.or_(truthy, falsy))))
    if index is not None:
        raise _fail(f"{name} {text[index].as_py()!r} is not true or false", index, first_row)
    return pc.fill_null(truthy, False)


def _text(table: pa.Table, name: str) -> pa.ChunkedArray:
    column = table.column(name)
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column.cast(pa.string())


def _require_text(table: pa.Table, name: str, first_row: int) -> pa.ChunkedArray:
    column = _text(table, name)
    index = _first_bad(pc.or_kleene(pc.is_null(column), pc.equal(pc.utf8_trim_whitespace(
        column), "")))
    if index is not None:
        raise _fail(f"{name} is empty", index, first_row)
    return column


def _check_texts(column: pa.ChunkedArray, name: str, first_row: int, *,
                 identifier: bool = True) -> pa.ChunkedArray:
    """``column`` if each value follows the identifier (or free-text) rule of
    `text_problem`, else an `InputError` naming the first row that does not.

    Checked vectorised over the column's distinct values (a few devices and channels in
    millions of rows): lengths, control characters and, for ids, whitespace at the ends."""
    encoded = pc.dictionary_encode(column).combine_chunks()
    values = encoded.dictionary
    limit = MAX_ID_CHARS if identifier else MAX_TEXT_CHARS
    length = pc.utf8_length(values)
    bad = pc.or_(pc.greater(length, limit), pc.match_substring_regex(
        values, CONTROL_PATTERN if identifier else TEXT_CONTROL_PATTERN))
    if identifier:  # blank, or whitespace at an end
        bad = pc.or_(bad, pc.or_(pc.equal(length, 0),
                                 pc.not_equal(pc.utf8_trim_whitespace(values), values)))
    which = _first_bad(bad)
    if which is None:
        return column
    index = _first_bad(pc.equal(encoded.indices, which))
    text = values[which].as_py()
    problem = text_problem(text, identifier=identifier) or "starts or ends with whitespace"
    message = f"{name} is empty" if problem == "is empty" else f"{name} {shown(text)} {problem}"
    raise _fail(message, 0 if index is None else index, first_row)


def _require_id(table: pa.Table, name: str, first_row: int) -> pa.ChunkedArray:
    """A required id column: no row without one, and each following the identifier rule."""
    column = _text(table, name)
    index = _first_bad(pc.is_null(column)) if column.null_count else None
    if index is not None:
        raise _fail(f"{name} is empty", index, first_row)
    return _check_texts(column, name, first_row)


def _check_range(parsed: pa.ChunkedArray, given: pa.ChunkedArray, first_row: int) -> None:
    """An `InputError` naming the first row whose time lies outside [`TS_MIN`, `TS_MAX`)."""
    outside = pc.or_(pc.less(parsed, pa.scalar(TS_MIN, TS_TYPE)),
                     pc.greater_equal(parsed, pa.scalar(TS_MAX, TS_TYPE)))
    index = _first_bad(outside)
    if index is None:
        return
    if pa.types.is_string(given.type) or pa.types.is_large_string(given.type):
        text = str(given[index].as_py()).strip()
    else:  # a time type: Arrow spells it, where Python's datetime may not reach
        text = parsed.slice(index, 1).cast(pa.string())[0].as_py()
    raise _fail(f"ts {text} is outside the times meterhub keeps: {TS_RANGE_TEXT}", index,
                first_row)


def _normalize_units(column: pa.ChunkedArray, first_row: int) -> pa.ChunkedArray:
    """Unit texts in canonical spelling; each distinct spelling is parsed once."""
    encoded = pc.dictionary_encode(column).combine_chunks()
    canonical = []
    for i, text in enumerate(encoded.dictionary.to_pylist()):
        try:
            canonical.append(normalize_unit(text))
        except UnitError as exc:
            index = _first_bad(pc.equal(encoded.indices, i))
            raise _fail(str(exc), 0 if index is None else index, first_row) from None
    return pa.chunked_array([pa.array(canonical).take(encoded.indices)])


def in_reading_form(table: pa.Table) -> bool:
    """Whether ``table`` has `to_readings`' columns and types, in its order (any channel
    hints after them): the shape of readings a meterhub parser made. Its values are not
    checked here."""
    names = READING_SCHEMA.names
    return table.schema.names[:len(names)] == names and all(
        table.schema.field(name).type == READING_SCHEMA.field(name).type for name in names
    ) and set(table.schema.names[len(names):]) <= set(CHANNEL_HINT_COLUMNS)


def to_readings(data: Any, *, source: str | None = None, first_row: int = 1,
                keep_hints: bool = False) -> pa.Table:
    """Validate and cast readings into `READING_SCHEMA`, or raise `InputError` naming the row.

    ``source`` fills a missing or empty source column. ``first_row`` is the number reported
    for the first row (1 for a list, 2 for a CSV file whose line 1 is the header).
    With ``keep_hints``, the optional ``quantity`` and ``kind`` columns are kept after the
    canonical ones so that the store can create channels with the right metadata.
    """
    table = as_arrow(data)
    missing = [name for name in _REQUIRED if name not in table.column_names]
    if "value" not in table.column_names:
        missing.append("value")
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}: readings need device, "
                         "channel, ts, value and unit")
    n = table.num_rows
    _check_not_booleans(table, first_row)
    columns: dict[str, pa.ChunkedArray] = {}
    if "source" in table.column_names:
        src = _text(table, "source")
        if source is not None:
            blank = pc.or_kleene(pc.is_null(src), pc.equal(src, ""))
            src = pc.if_else(blank, source, src)
        columns["source"] = _require_id(pa.table({"source": src}), "source", first_row)
    elif source is not None:
        columns["source"] = pa.chunked_array([pa.nulls(n, pa.string()).fill_null(source)])
    else:
        raise InputError("missing column source: give a source column or a default source")
    if source is not None and "source" not in table.column_names:
        check_id(source, "source")
    columns["device"] = _require_id(table, "device", first_row)
    columns["channel"] = _require_id(table, "channel", first_row)
    columns["ts"] = _parse_ts(table.column("ts"), first_row)
    index = _first_bad(pc.is_null(columns["ts"]))
    if index is not None:
        raise _fail("ts is empty", index, first_row)
    _check_range(columns["ts"], table.column("ts"), first_row)
    columns["value"] = _parse_float(table.column("value"), "value", first_row)
    columns["unit"] = _normalize_units(_require_text(table, "unit", first_row), first_row)

    if "quality" in table.column_names:
        quality = pc.fill_null(_text(table, "quality"), Quality.OK.value)
        quality = pc.if_else(pc.equal(quality, ""), Quality.OK.value, quality)
        index = _first_bad(pc.invert(pc.is_in(quality, _QUALITIES)))
        if index is not None:
            raise _fail(f"quality {quality[index].as_py()!r} is not one of "
                        f"{', '.join(q.value for q in Quality)}", index, first_row)
    else:
        quality = pa.chunked_array([pa.nulls(n, pa.string()).fill_null(Quality.OK.value)])
    columns["quality"] = quality
    # A sensor error's code lives in error_code; its value must be null, never the code.
    is_error = pc.equal(quality, Quality.SENSOR_ERROR.value)
    columns["value"] = pc.if_else(is_error, None, columns["value"])
    index = _first_bad(pc.and_(pc.invert(is_error), pc.is_null(columns["value"])))
    if index is not None:
        raise _fail("value is empty: a reading without a value needs quality sensor_error",
                    index, first_row)
    index = _first_bad(pc.invert(pc.is_finite(columns["value"])))
    if index is not None:
        raise _fail(f"value {columns['value'][index].as_py()!r} is not a finite number",
                    index, first_row)

    columns["seq"] = (_parse_int(table.column("seq"), "seq", first_row)
                      if "seq" in table.column_names
                      else pa.chunked_array([pa.nulls(n, pa.int64())]))
    if "error_code" in table.column_names:
        code = _text(table, "error_code")
        columns["error_code"] = _check_texts(pc.if_else(pc.equal(code, ""), None, code),
                                             "error_code", first_row, identifier=False)
    else:
        columns["error_code"] = pa.chunked_array([pa.nulls(n, pa.string())])
    columns["validated"] = (_parse_bool(table.column("validated"), "validated", first_row)
                            if "validated" in table.column_names
                            else pa.chunked_array([pa.array(np.zeros(n, dtype=bool))]))
    result = pa.table(columns, schema=READING_SCHEMA)
    if keep_hints:
        for name in CHANNEL_HINT_COLUMNS:
            if name in table.column_names:
                hint = _text(table, name)
                if name == "quantity":
                    hint = pc.if_else(pc.equal(hint, ""), None, hint)
                    hint = _check_texts(hint, name, first_row)
                result = result.append_column(name, hint)
        if "kind" in result.column_names:
            kind = result.column("kind")
            index = _first_bad(pc.and_(pc.is_valid(kind), pc.invert(pc.is_in(kind, _KINDS))))
            if index is not None:
                raise _fail(f"kind {kind[index].as_py()!r} is not one of "
                            f"{', '.join(k.value for k in ChannelKind)}", index, first_row)
    return result


def catalog_rows(items: Sequence[Site] | Sequence[Device] | Sequence[Channel]) -> list[
        Mapping[str, Any]]:
    """Plain dicts of catalog records, for tables and JSON."""
    return [{name: getattr(item, name) for name in item.__slots__} for item in items]
