"""DSMR-reader's hour and day statistics, computed from the stored readings.

The rules are DSMR-reader 5.11's (its consumption compacting and its statistics), not
meterhub's edge-to-edge consumption, so that its API answers what its users know:

- electricity is counted from consumption rows, not readings. By default
  (``ELECTRICITY_GROUPING_BY_MINUTE``) the readings of each minute become one row: the
  minute's highest register values, stamped at the minute's END (a reading at 13:59:30
  makes the row of 14:00), made once the minute is over and a reading of a later minute
  exists. ``electricity_grouping = "reading"`` takes each reading as a row instead;
- an hour's electricity per register is the last minus the first row stamped within the
  hour, so with minute rows hour h counts the readings of h-1:59 to h:58; no statistics for
  an hour without rows;
- gas rows are the gas meter's readings, one per distinct gas time (a DSMR 4 meter's moved
  back an hour: it stamps the hour's total at its end), each with its rise over the row
  before. An hour with one gas row counts that rise, with several their last minus first,
  with none 0;
- a day (local midnight to local midnight: 23 or 25 hours on DST days) counts its rows'
  last minus first for electricity, the sum of its hours for gas (DSMR-reader 5.10+), and
  prices gas at the last minus first gas row of the day; "today so far" gives that last
  minus first as its gas too. Costs use the contracts that hold the day
  (`meterhub.dsmr.prices`), each rounded half up to cents;
- a day's meter positions are its first reading's.

Statistics are computed when asked, so a late or replayed telegram changes the hours and
days it falls in at once, with no re-aggregation step (DSMR-reader keeps a minute's row
and a day's statistics once made).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from meterhub.answers import AnswerScope
from meterhub.dsmr.fields import GAS
from meterhub.dsmr.prices import WIDE, Prices, prices_for, round2
from meterhub.dsmr.settings import DsmrSettings
from meterhub.errors import NotFoundError
from meterhub.hub import Hub
from meterhub.timebase import epoch_us

REGISTERS = {"electricity1": "electricity_delivered_1", "electricity2": "electricity_delivered_2",
             "electricity1_returned": "electricity_returned_1",
             "electricity2_returned": "electricity_returned_2"}
#: every DSMR-reader reading has this register: its readings are this channel's
MARKER = REGISTERS["electricity1"]
MINUTE = pd.Timedelta(minutes=1)
MINUTE_US, HOUR_US = 60_000_000, 3_600_000_000


def meter_decimal(value: float) -> Decimal:
    """A meter value as the exact decimal its telegram had (three places at most)."""
    return Decimal(repr(float(value))).quantize(Decimal("0.001"), context=WIDE)


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"ts": pd.Series([], dtype="datetime64[us, UTC]"),
                         "value": pd.Series([], dtype=float)})


def _frame(hub: Hub, device: str, channel: str, start: dt.datetime | None,
           end: dt.datetime | None) -> pd.DataFrame:
    try:
        frame = hub.readings(device=device, channel=channel, start=start, end=end)
    except NotFoundError:
        return _empty()
    tidy: pd.DataFrame = frame[["ts", "value"]].dropna().sort_values("ts")
    return tidy.reset_index(drop=True)


def _frames(hub: Hub, device: str, channels: dict[str, str], start: dt.datetime | None,
            end: dt.datetime | None) -> dict[str, pd.DataFrame]:
    """`_frame` of each channel (named by ``channels``' keys), read in one query; a channel
    the meter lacks (a second tariff, say) is empty."""
    try:
        frame = hub.readings(device=device, channel=list(channels.values()), start=start,
                             end=end)
    except NotFoundError:  # no such meter
        return {name: _empty() for name in channels}
    tidy = frame[["channel", "ts", "value"]].dropna().sort_values("ts")
    groups = dict(iter(tidy.groupby("channel", sort=False)))
    return {name: (groups[channel][["ts", "value"]].reset_index(drop=True)
                   if channel in groups else _empty())
            for name, channel in channels.items()}


def _reading_from(hub: Hub, device: str, moment: dt.datetime) -> bool:
    """Whether the meter has a reading at or after ``moment``."""
    try:
        reader, _ = hub.page(device=device, channel=MARKER, start=moment, limit=1)
    except NotFoundError:
        return False
    return bool(reader.read_all().num_rows > 0)


def _gas_before(hub: Hub, device: str, moment: dt.datetime) -> pd.DataFrame:
    """The gas meter's last non-zero reading before ``moment``, however long ago (a frame
    of one row, or none): DSMR-reader counts a lone gas row's rise over the row before it,
    so after an outage the first hour back holds the whole outage's gas. The day before is
    read first; all that came before only when the day holds none."""
    for start in (moment - dt.timedelta(days=1), None):
        frame = _frame(hub, device, GAS.channel, start, moment)
        frame = frame[frame["value"] != 0]
        if len(frame):
            break
    return frame.tail(1)


def _local_midnight(day: dt.date, tz: str) -> dt.datetime:
    from meterhub.timebase import zone

    return dt.datetime.combine(day, dt.time(), zone(tz)).astimezone(dt.UTC)


def _now(now: dt.datetime | None) -> pd.Timestamp:
    return pd.Timestamp(now if now is not None else dt.datetime.now(dt.UTC))


def minute_rows(readings: pd.DataFrame, complete_until: pd.Timestamp) -> pd.DataFrame:
    """One register's consumption rows, grouped by minute as DSMR-reader groups them: the
    minute's highest value, stamped at the minute's end, for the minutes whose end is
    ``complete_until`` or earlier (the earlier of the clock and the newest reading: a
    minute is grouped once it is over and a later reading exists)."""
    if readings.empty:
        return readings
    minutes, starts = _runs(readings["ts"], MINUTE_US)
    rows = pd.DataFrame({
        "ts": _utc((minutes[starts] + 1) * MINUTE_US),
        "value": np.maximum.reduceat(readings["value"].to_numpy(np.float64), starts)})
    return rows[rows["ts"] <= complete_until].reset_index(drop=True)


def _runs(stamps: pd.Series, period_us: int) -> tuple[np.ndarray, np.ndarray]:
    """Each sorted stamp's period number (``period_us`` long, from the epoch in UTC), and
    where each period's run of stamps starts."""
    # the UTC times in µs (a tenth of the time of converting the zone away first)
    micros = stamps.array.as_unit("us").asi8
    periods = micros // period_us
    return periods, np.flatnonzero(np.r_[True, periods[1:] != periods[:-1]])


def _utc(micros: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(micros.astype("datetime64[us]")).tz_localize("UTC")


def _hourly_rises(rows: pd.DataFrame) -> dict[pd.Timestamp, Decimal]:
    """Last minus first of sorted rows per UTC hour, as exact decimals."""
    if rows.empty:
        return {}
    hours, starts = _runs(rows["ts"], HOUR_US)
    lasts = np.r_[starts[1:] - 1, len(hours) - 1]
    values = rows["value"].to_numpy(np.float64)
    return {stamp: meter_decimal(last) - meter_decimal(first) for stamp, first, last
            in zip(_utc(hours[starts] * HOUR_US), values[starts], values[lasts], strict=True)}


def _hours_of(rows: pd.DataFrame) -> set[pd.Timestamp]:
    """The UTC hours that sorted rows fall in."""
    if rows.empty:
        return set()
    hours, starts = _runs(rows["ts"], HOUR_US)
    return set(_utc(hours[starts] * HOUR_US))


def _rise(values: pd.Series) -> Decimal:
    """Last minus first of a sorted series, as exact decimals (0 when empty)."""
    if not len(values):
        return Decimal(0)
    return meter_decimal(values.iloc[-1]) - meter_decimal(values.iloc[0])


def gas_rows(gas: pd.DataFrame, shift: bool) -> pd.DataFrame:
    """The gas meter's readings as DSMR-reader's gas rows: a DSMR 4 meter's an hour back
    (it stamps the hour's total at the hour's end), a zero reading skipped (DSMR-reader
    takes 0 for "no gas meter"), each with its rise over the row before (``rise``; 0 for
    the first)."""
    rows = gas[gas["value"] != 0].copy()
    if shift:
        rows["ts"] = rows["ts"] - pd.Timedelta(hours=1)
    rows["previous"] = rows["value"].shift(1)
    return rows.reset_index(drop=True)


def _gas_hours(rows: pd.DataFrame) -> dict[pd.Timestamp, Decimal]:
    """Gas per hour start (UTC) from sorted gas rows: one row counts its rise over the one
    before, several their last minus first."""
    if rows.empty:
        return {}
    hours, starts = _runs(rows["ts"], HOUR_US)
    lasts = np.r_[starts[1:] - 1, len(hours) - 1]
    values = rows["value"].to_numpy(np.float64)
    previous = rows["previous"].to_numpy(np.float64)
    out: dict[pd.Timestamp, Decimal] = {}
    for hour, first, last in zip(_utc(hours[starts] * HOUR_US), starts, lasts, strict=True):
        if first == last:
            before = previous[first]
            out[hour] = (Decimal(0) if np.isnan(before)
                         else meter_decimal(values[first]) - meter_decimal(before))
        else:
            out[hour] = meter_decimal(values[last]) - meter_decimal(values[first])
    return out


@dataclass
class _Span:
    """The meter's readings in [start, end), its consumption rows stamped in [start, end)
    and its gas rows from a day before ``start`` (the first hour's rise) to ``end``, read
    once."""

    start: dt.datetime
    end: dt.datetime
    readings: dict[str, pd.DataFrame]  #: per register, its readings in [start, end)
    rows: dict[str, pd.DataFrame]  #: per register, its consumption rows in [start, end)
    gas: pd.DataFrame  #: gas rows (`gas_rows`) before ``end``
    gas_readings: pd.DataFrame  #: the gas meter's readings in [start, end), as stamped
    #: every reading up to ``end`` (an hour after it for DSMR 4 gas) is compacted: no
    #: later reading or clock changes what the span holds
    complete: bool = False

    @classmethod
    def read(cls, hub: Hub, device: str, start: dt.datetime, end: dt.datetime, *,
             shift: bool, by_minute: bool, now: dt.datetime | None) -> _Span:
        # a minute's row is stamped at its end: the readings of the minute before start
        # make the first row
        early = start - dt.timedelta(minutes=1) if by_minute else start
        raw = _frames(hub, device, REGISTERS, early, end)
        readings = {name: frame[frame["ts"] >= start].reset_index(drop=True)
                    for name, frame in raw.items()}
        processed: pd.Timestamp | None = None  # readings after it are not compacted yet
        if by_minute:
            marker = raw["electricity1"]["ts"]
            later = _reading_from(hub, device, end)
            newest = (pd.Timestamp(end) if later
                      else marker.max() if len(marker) else pd.Timestamp(start))
            complete_until = min(_now(now), newest)
            grouped = {name: minute_rows(frame, complete_until) for name, frame in raw.items()}
            # gas rows need their readings compacted: up to ``end``, or with DSMR 4's shift
            # up to an hour after it (that hour's gas belongs before ``end``)
            gas_end = end + dt.timedelta(hours=1) if shift else end
            if shift:
                marker = pd.concat([marker, _frame(hub, device, MARKER, end, gas_end)["ts"]],
                                   ignore_index=True)
                later = _reading_from(hub, device, gas_end)
                newest = (pd.Timestamp(gas_end) if later
                          else marker.max() if len(marker) else pd.Timestamp(start))
                complete_until = min(_now(now), newest)
            if not (later and complete_until >= pd.Timestamp(gas_end)):
                done = marker[marker.dt.floor("min") + MINUTE <= complete_until]
                processed = done.max() if len(done) else pd.Timestamp(start) - MINUTE
        else:
            grouped = raw
        rows = {name: frame[(frame["ts"] >= start) & (frame["ts"] < end)].reset_index(drop=True)
                for name, frame in grouped.items()}
        # DSMR 4 gas of the hour after ``end`` belongs before it once moved back; the row
        # before the window is the one a lone gas row in its first hour rises over
        early_gas = start - dt.timedelta(hours=2)
        raw_gas = pd.concat([_gas_before(hub, device, early_gas),
                             _frame(hub, device, GAS.channel, early_gas,
                                    end + dt.timedelta(hours=1) if shift else end)],
                            ignore_index=True)
        # DSMR-reader makes a gas row when it compacts the first reading that carries it,
        # and that reading's minute must be over: gas newer than the last compacted
        # reading has no row yet
        gas = gas_rows(raw_gas if processed is None
                       else raw_gas[raw_gas["ts"] <= processed], shift)
        return cls(start, end, readings, rows, gas[gas["ts"] < end].reset_index(drop=True),
                   raw_gas[(raw_gas["ts"] >= start) & (raw_gas["ts"] < end)]
                   .reset_index(drop=True), complete=processed is None)

    def within(self, start: dt.datetime, end: dt.datetime) -> _Span:
        """The span of [start, end), a part of this one, as `read` would give it: the
        readings and rows in it, the gas rows before its end (a later day's gas is no
        earlier day's)."""
        lo, hi = pd.Timestamp(start), pd.Timestamp(end)

        def part(frame: pd.DataFrame, first: pd.Timestamp | None = lo) -> pd.DataFrame:
            # every frame is sorted by time: a slice by position, not a mask a day
            ts = frame["ts"]
            begin = 0 if first is None else int(ts.searchsorted(first, side="left"))
            return frame.iloc[begin:int(ts.searchsorted(hi, side="left"))].reset_index(
                drop=True)

        return _Span(start, end, {name: part(f) for name, f in self.readings.items()},
                     {name: part(f) for name, f in self.rows.items()},
                     part(self.gas, None), part(self.gas_readings), self.complete)

    def day_gas(self) -> pd.DataFrame:
        """The gas rows within [start, end)."""
        return self.gas[self.gas["ts"] >= self.start].reset_index(drop=True)

    def hours(self) -> list[dict[str, Any]]:
        """Hour statistics of every hour in the span that has consumption rows.

        Hours are floored in UTC: every zone DSMR meters use is a whole number of hours
        from UTC, so these are the local hours (both 02:00 hours of a fall-back night).
        """
        gas_by_hour = _gas_hours(self.day_gas())
        rises = {name: _hourly_rises(frame) for name, frame in self.rows.items()}
        hours = sorted(set().union(*(set(r) for r in rises.values())))
        return [{"hour_start": hour.to_pydatetime(),
                 **{name: rises[name].get(hour, Decimal(0)) for name in REGISTERS},
                 "gas": gas_by_hour.get(hour, Decimal(0))} for hour in hours]


def hour_statistics(hub: Hub, device: str, tz: str, first: dt.date, last: dt.date, *,
                    gas_shift: bool = False, by_minute: bool = True,
                    now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Hour statistics for the local days ``first`` to ``last`` inclusive, oldest first."""
    start, end = _local_midnight(first, tz), _local_midnight(last + dt.timedelta(days=1), tz)
    return _Span.read(hub, device, start, end, shift=gas_shift, by_minute=by_minute,
                      now=now).hours()


def day_statistics(hub: Hub, device: str, tz: str, day: dt.date, contracts: list[Prices],
                   *, gas_shift: bool = False, by_minute: bool = True,
                   now: dt.datetime | None = None) -> dict[str, Any] | None:
    """The statistics of one local day, or None when it has no consumption rows.

    ``gas`` is the sum of the day's hours (a past day's statistics), ``gas_span`` the last
    minus first gas row of the day (today so far, and every day's gas cost)."""
    return day_with_hours(hub, device, tz, day, contracts, gas_shift=gas_shift,
                          by_minute=by_minute, now=now)[0]


def day_with_hours(hub: Hub, device: str, tz: str, day: dt.date, contracts: list[Prices],
                   *, gas_shift: bool = False, by_minute: bool = True,
                   now: dt.datetime | None = None
                   ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """`day_statistics` and `hour_statistics` of one local day, from one read."""
    start, end = _local_midnight(day, tz), _local_midnight(day + dt.timedelta(days=1), tz)
    span = _Span.read(hub, device, start, end, shift=gas_shift, by_minute=by_minute, now=now)
    return _day(span, day, contracts), span.hours()


#: the most days `days_statistics` reads at once (a month of 10-second readings is about
#: 270,000 a register: bounded memory however long the range)
DAYS_A_READ = 31


def days_statistics(hub: Hub, device: str, tz: str, days: Iterable[dt.date],
                    contracts: list[Prices], *, gas_shift: bool = False,
                    by_minute: bool = True, now: dt.datetime | None = None
                    ) -> list[dict[str, Any]]:
    """`day_statistics` of each of ``days`` that has consumption rows, oldest first: the
    same answers, from one read a run of days up to `DAYS_A_READ` long instead of several
    a day, and only around the days asked (days years apart are not read as every day
    between).

    A day whose readings are all compacted cannot change but by a write up to its end (an
    hour after it for DSMR 4 gas): its statistics before costs are kept in the hub's
    answers (`meterhub.answers`) until such a write, so a meter sending a telegram a
    second costs the past days' statistics once, not at every poll."""
    memo = hub.answers
    wanted = sorted(set(days))
    rules = (device, tz, gas_shift, by_minute)
    moment = _now(now)

    def last(day: dt.date) -> dt.datetime:
        """The day's last moment whose readings count for it."""
        end = _local_midnight(day + dt.timedelta(days=1), tz)
        return end + dt.timedelta(hours=1) if gas_shift else end

    used: dict[dt.date, dict[str, Any] | None] = {}
    if memo is not None:
        for day in wanted:
            # kept only once complete: asked as of an earlier moment, it was not yet
            found = memo.get(("dsmr-day", *rules, day)) if moment >= last(day) else None
            if found is not None:
                used[day] = found
    for run in _day_runs([day for day in wanted if day not in used], DAYS_A_READ):
        with memo.reading() if memo is not None else contextlib.nullcontext(0) as token:
            span = _Span.read(hub, device, _local_midnight(run[0], tz),
                              _local_midnight(run[-1] + dt.timedelta(days=1), tz),
                              shift=gas_shift, by_minute=by_minute, now=now)
            for day in run:
                used[day] = usage = _usage(span.within(
                    _local_midnight(day, tz), _local_midnight(day + dt.timedelta(days=1), tz)),
                    day)
                if memo is not None and usage is not None and span.complete:
                    memo.put(("dsmr-day", *rules, day), usage,
                             AnswerScope(frozenset({device}), None, epoch_us(last(day))),
                             token, _USAGE_BYTES)
    return [_costed(usage, contracts) for day in wanted
            if (usage := used[day]) is not None]


_USAGE_BYTES = 2_000  #: about what a day's statistics hold in memory


def _day_runs(days: list[dt.date], length: int) -> list[list[dt.date]]:
    """Sorted ``days`` in runs, each within ``length`` days of its first."""
    runs: list[list[dt.date]] = []
    for day in days:
        if runs and (day - runs[-1][0]).days < length:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


def each_day(first: dt.date, end: dt.date) -> list[dt.date]:
    """The days from ``first`` to the day before ``end``."""
    return [first + dt.timedelta(days=n) for n in range((end - first).days)]


def costs(used: dict[str, Decimal], gas: Decimal, price: dict[str, Decimal]
          ) -> dict[str, Decimal]:
    """DSMR-reader's costs of registers ``used`` (a day's, or an hour's) and ``gas`` m³:
    per tariff delivered times its price less returned times its price, gas times its
    price, each rounded half up to cents; no fixed cost."""
    return {f"electricity{n}_cost": round2(
        used[f"electricity{n}"] * price[f"electricity_delivered_{n}_price"]
        - used[f"electricity{n}_returned"] * price[f"electricity_returned_{n}_price"])
        for n in (1, 2)} | {"gas_cost": round2(gas * price["gas_price"])}


def _day(span: _Span, day: dt.date, contracts: list[Prices]) -> dict[str, Any] | None:
    """The day statistics of ``span``, one local day's."""
    usage = _usage(span, day)
    return None if usage is None else _costed(usage, contracts)


def _usage(span: _Span, day: dt.date) -> dict[str, Any] | None:
    """What the day statistics of ``span`` (one local day's) hold but costs: None when it
    has no consumption rows."""
    if all(f.empty for f in span.rows.values()):
        return None
    out: dict[str, Any] = {"day": day}
    for name, frame in span.rows.items():
        out[name] = _rise(frame["value"])
    # the gas of its hours (those with consumption rows: `_Span.hours`)
    gas = _gas_hours(span.day_gas())
    hours = set().union(*(_hours_of(frame) for frame in span.rows.values()))
    out["gas"] = sum((gas[hour] for hour in hours if hour in gas), Decimal(0))
    out["gas_span"] = _rise(span.day_gas()["value"])
    out.update(_positions(span))
    return out


def _costed(usage: dict[str, Any], contracts: list[Prices]) -> dict[str, Any]:
    """A day's `_usage` with its costs at the contracts that hold the day."""
    out = dict(usage)
    price = prices_for(usage["day"], contracts)
    out.update(costs(out, out["gas_span"], price))
    out["fixed_cost"] = round2(price["fixed_daily_cost"])
    out["total_cost"] = round2(out["electricity1_cost"] + out["electricity2_cost"]
                               + out["gas_cost"] + price["fixed_daily_cost"])
    out["prices"] = price
    return out


def _positions(span: _Span) -> dict[str, Any]:
    """The meter positions at the start of the day: its first reading's, and the gas
    meter's first reading stamped within the day."""
    first = {name: f.iloc[0] for name, f in span.readings.items() if len(f)}
    out: dict[str, Any] = {"electricity_reading_timestamp": (
        min(row["ts"] for row in first.values()).to_pydatetime() if first else None)}
    for name in REGISTERS:
        out[f"{name}_reading"] = meter_decimal(first[name]["value"]) if name in first else None
    gas = span.gas_readings
    out["gas_reading_timestamp"] = gas["ts"].iloc[0].to_pydatetime() if len(gas) else None
    out["gas_reading"] = meter_decimal(gas["value"].iloc[0]) if len(gas) else None
    return out


def statistics_days(hub: Hub, device: str, tz: str, *, gas_shift: bool = False,
                    by_minute: bool = True, now: dt.datetime | None = None) -> list[dt.date]:
    """The local days whose statistics DSMR-reader has made by ``now``, oldest first, but
    for today (callers drop it: a day's statistics are made once it has passed).

    A day needs consumption rows, every one of its readings compacted (with minute rows,
    none in a minute not yet grouped), and, as DSMR-reader waits for "the first gas reading
    on the next day", no newest gas row dated that day or the day before. DSMR-reader makes
    days one after another and waits at the first that is not ready; each day is judged
    on its own here, so a gas meter that stopped holds back its last two days, not every
    day after them."""
    try:
        stamps = hub.readings(device=device, channel=MARKER, as_="arrow").column("ts")
    except NotFoundError:
        return []
    stamps = stamps.to_pandas()
    if stamps.empty:
        return []
    pending_from: dt.date | None = None  # the day of the first reading not compacted
    processed: pd.Timestamp | None = None  # the last compacted reading (None: all are)
    if by_minute:
        ends = stamps.dt.floor("min") + MINUTE
        done = ends <= min(_now(now), stamps.max())
        if not done.all():  # readings are sorted: those not compacted are the newest
            pending_from = stamps[~done].min().tz_convert(tz).date()
            processed = stamps[done].max() if done.any() else stamps.min() - MINUTE
        stamps = ends[done]
    days = set(stamps.dt.tz_convert(tz).dt.date)
    gas = _frame(hub, device, GAS.channel, None, None)
    gas = gas_rows(gas if processed is None else gas[gas["ts"] <= processed], gas_shift)
    last_gas = gas["ts"].max().tz_convert(tz).date() if len(gas) else None
    return sorted(day for day in days
                  if (pending_from is None or day < pending_from)
                  and (last_gas is None or not day - dt.timedelta(days=1) <= last_gas <= day))


def gas_shift(settings: DsmrSettings) -> bool:
    """Whether gas moves back an hour: DSMR 4 gas totals are stamped at the hour's end."""
    return settings.version in ("4",)


def by_minute(settings: DsmrSettings) -> bool:
    """Whether electricity is grouped per minute (DSMR-reader's default)."""
    return settings.electricity_grouping == "minute"
