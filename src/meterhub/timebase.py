"""Time at the edges: parsing user times, bucket sizes, and time-zone offsets as data.

The store keeps naive UTC timestamps (TIMESTAMPTZ made bucketing 2-6x slower, PERF.md).
Calendar buckets in a caller's zone are computed from the zone's UTC-offset transitions
within the queried range, found here once per query and handed to the store as a small
table, so the database never converts a time zone per row.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd

from meterhub.errors import InputError
from meterhub.model import TS_MAX, TS_RANGE_TEXT, in_time_range, shown

UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
MICROS = 1_000_000
FIXED_UTC = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Zulu", "Etc/Zulu", "GMT", "Etc/GMT"})


@dataclass(frozen=True, slots=True)
class Every:
    """A bucket size: fixed (``width_us``) or calendar (``calendar`` = day/week/month/year)."""

    name: str
    width_us: int | None = None
    calendar: str | None = None


EVERY: dict[str, Every] = {
    "15min": Every("15min", width_us=15 * 60 * MICROS),
    "hour": Every("hour", width_us=3600 * MICROS),
    "day": Every("day", calendar="day"),
    "week": Every("week", calendar="week"),
    "month": Every("month", calendar="month"),
    "year": Every("year", calendar="year"),
}
_EVERY_ALIASES = {
    "15min": "15min", "15m": "15min", "15t": "15min", "quarter-hour": "15min",
    "1h": "hour", "h": "hour", "hour": "hour", "hourly": "hour", "60min": "hour",
    "1d": "day", "d": "day", "day": "day", "daily": "day",
    "1w": "week", "w": "week", "week": "week", "weekly": "week",
    "1mo": "month", "mo": "month", "month": "month", "monthly": "month", "1m": "month",
    "1y": "year", "y": "year", "year": "year", "yearly": "year",
}


def parse_every(text: str) -> Every:
    """`Every` for a bucket name such as 15min, 1h, hour, 1d, day, week, month, year."""
    key = _EVERY_ALIASES.get(text.strip().lower())
    if key is None:
        raise InputError(f"unknown bucket size {shown(text)}: use 15min, 1h, 1d, 1w, 1mo or "
                         "1y")
    return EVERY[key]


@functools.lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`, or an `InputError` that says how to name one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        # OSError: a name the file system refuses as a path (too long, say)
        raise InputError(f"unknown time zone {shown(name)}: use an IANA name such as "
                         "Europe/Amsterdam or UTC") from exc


def to_utc(value: object, tz: str | None = None, *, what: str = "time",
           checked: bool = True, end: bool = False) -> dt.datetime | None:
    """An aware UTC datetime from a string, date, datetime or pandas Timestamp.

    Naive values are read in ``tz`` when given, else as UTC. A time outside the range
    meterhub keeps (`meterhub.model.TS_MIN` to `TS_MAX`; ``end``: the exclusive end of a
    range, which may be `TS_MAX` itself) is an `InputError` that says the range and calls
    the value ``what`` (start, end, the configured start). ``checked=False`` accepts any
    time Python's datetime holds (years 1 to 9999), for deleting rows stored out there
    before writes were checked.
    """
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(f"cannot read {what} {value!r}: use ISO 8601 such as 2024-03-31 or "
                         "2024-03-31T02:00:00+02:00") from exc
    if pd.isna(stamp):
        raise InputError(f"cannot read {what} {value!r}: use ISO 8601")
    try:
        if stamp.tzinfo is None:
            stamp = stamp.tz_localize(zone(tz) if tz else UTC, ambiguous=True,
                                      nonexistent="shift_forward")
        result: dt.datetime = stamp.tz_convert(UTC).to_pydatetime()
    except (ValueError, OverflowError, NotImplementedError, pd.errors.OutOfBoundsDatetime):
        # beyond what Python's datetime holds (year 0 after a zone's offset, year 10000)
        raise _outside(value, what) from None
    if checked and not (in_time_range(result) or (end and result == TS_MAX)):
        raise _outside(value, what)
    return result


def _outside(value: object, what: str) -> InputError:
    given = value.isoformat() if isinstance(value, dt.date) else str(value)
    return InputError(f"{what} {given} is outside the times meterhub keeps: {TS_RANGE_TEXT}")


def epoch_us(moment: dt.datetime) -> int:
    """Microseconds since the epoch of an aware datetime, exactly (no float rounding)."""
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * MICROS + delta.microseconds


def naive_utc(moment: dt.datetime) -> dt.datetime:
    """The naive UTC wall time the store uses for an aware datetime."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def _offset_us(tz: ZoneInfo, at_us: int) -> int:
    moment = _EPOCH + dt.timedelta(microseconds=at_us)
    offset = moment.astimezone(tz).utcoffset()
    assert offset is not None
    return (offset.days * 86400 + offset.seconds) * MICROS


def offset_transitions(tz_name: str, start_us: int, end_us: int) -> list[tuple[int, int]]:
    """``(from_us, offset_us)`` pairs covering ``[start_us, end_us]`` for zone ``tz_name``.

    The first pair starts at ``start_us``; each later one at an exact UTC instant where the
    zone's offset changes. Found by stepping a day at a time and bisecting each change to
    the second, so a year costs a few hundred zone look-ups, and a store spanning
    centuries 80 ms: the answers of the last few ranges asked for are kept (a dashboard
    asks the same range again and again).
    """
    return list(_offset_transitions(tz_name, start_us, end_us))


@functools.lru_cache(maxsize=64)
def _offset_transitions(tz_name: str, start_us: int, end_us: int
                        ) -> tuple[tuple[int, int], ...]:
    if tz_name in FIXED_UTC:
        return ((start_us, 0),)
    tz = zone(tz_name)
    day = 86400 * MICROS
    current = _offset_us(tz, start_us)
    result = [(start_us, current)]
    at = start_us
    while at < end_us:
        nxt = min(at + day, end_us)
        offset = _offset_us(tz, nxt)
        if offset != current:
            # zones change offset on whole seconds: bisect seconds, offset(lo) == current
            # and offset(hi) != current, so that hi lands on the change itself (bisecting
            # µs from a start with a fraction stopped up to a second after it)
            lo, hi = at // MICROS, -(-nxt // MICROS)
            while hi - lo > 1:
                mid = lo + (hi - lo) // 2
                if _offset_us(tz, mid * MICROS) == current:
                    lo = mid
                else:
                    hi = mid
            current = _offset_us(tz, hi * MICROS)
            result.append((hi * MICROS, current))
            at = hi * MICROS
            continue
        at = nxt
    return tuple(result)
