"""DSMR-reader's hour and day statistics, computed from the stored readings.

The rules are DSMR-reader's (VENDORS.md 3.5), not meterhub's edge-to-edge consumption, so
that its API answers what its users know:

- an hour's electricity per register is the last minus the first reading inside the local
  hour; no row for an hour without readings;
- gas per hour: one record in the hour counts its rise over the previous gas record, several
  count last minus first; DSMR 4 meters report the previous hour, so their gas moves back
  an hour;
- a day's electricity is last minus first within the local day (23 or 25 hours on DST
  days), its gas the sum of its hours, its gas cost from the day's first and last gas;
- a day's costs are its consumption at the prices of the contracts that hold it
  (`meterhub.dsmr.prices`).

Statistics are computed when asked, so a late or replayed telegram changes the hours and
days it falls in at once, with no re-aggregation step.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pandas as pd

from meterhub.dsmr.fields import GAS
from meterhub.dsmr.prices import WIDE, Prices, prices_for, round2
from meterhub.dsmr.settings import DsmrSettings
from meterhub.errors import NotFoundError
from meterhub.hub import Hub

REGISTERS = {"electricity1": "electricity_delivered_1", "electricity2": "electricity_delivered_2",
             "electricity1_returned": "electricity_returned_1",
             "electricity2_returned": "electricity_returned_2"}


def meter_decimal(value: float) -> Decimal:
    """A meter value as the exact decimal its telegram had (three places at most)."""
    return Decimal(repr(float(value))).quantize(Decimal("0.001"), context=WIDE)


def _frame(hub: Hub, device: str, channel: str, start: dt.datetime,
           end: dt.datetime) -> pd.DataFrame:
    try:
        frame = hub.readings(device=device, channel=channel, start=start, end=end)
    except NotFoundError:
        return pd.DataFrame({"ts": pd.Series([], dtype="datetime64[us, UTC]"),
                             "value": pd.Series([], dtype=float)})
    tidy: pd.DataFrame = frame[["ts", "value"]].dropna().sort_values("ts")
    return tidy.reset_index(drop=True)


def _local_midnight(day: dt.date, tz: str) -> dt.datetime:
    from meterhub.timebase import zone

    return dt.datetime.combine(day, dt.time(), zone(tz)).astimezone(dt.UTC)


def _rise(values: pd.Series) -> Decimal:
    """Last minus first of a sorted series, as exact decimals (0 when empty)."""
    if not len(values):
        return Decimal(0)
    return meter_decimal(values.iloc[-1]) - meter_decimal(values.iloc[0])


def _gas_hours(gas: pd.DataFrame, shift: bool) -> dict[pd.Timestamp, Decimal]:
    """Gas per hour start (UTC), DSMR-reader's way."""
    if gas.empty:
        return {}
    gas = gas.copy()
    if shift:  # DSMR 4 meters stamp the hour's total at its end
        gas["ts"] = gas["ts"] - pd.Timedelta(hours=1)
    gas["previous"] = gas["value"].shift(1)
    gas["hour"] = gas["ts"].dt.floor("h")
    out: dict[pd.Timestamp, Decimal] = {}
    for label, group in gas.groupby("hour", sort=True):
        hour = pd.Timestamp(str(label))
        if len(group) == 1:
            previous = group["previous"].iloc[0]
            out[hour] = (meter_decimal(group["value"].iloc[0]) - meter_decimal(previous)
                         if pd.notna(previous) else Decimal(0))
        else:
            out[hour] = _rise(group["value"])
    return out


@dataclass
class _Span:
    """The meter's registers in [start, end) and its gas from a day before to an hour after
    (what the first hour's rise and DSMR 4's shifted gas need), read once."""

    start: dt.datetime
    end: dt.datetime
    registers: dict[str, pd.DataFrame]
    gas: pd.DataFrame

    @classmethod
    def read(cls, hub: Hub, device: str, start: dt.datetime, end: dt.datetime) -> _Span:
        return cls(start, end,
                   {name: _frame(hub, device, channel, start, end)
                    for name, channel in REGISTERS.items()},
                   _frame(hub, device, GAS.channel, start - dt.timedelta(days=1),
                          end + dt.timedelta(hours=1)))

    def hours(self, shift: bool) -> list[dict[str, Any]]:
        """Hour statistics of every hour in the span that has electricity readings.

        Hours are floored in UTC: every zone DSMR meters use is a whole number of hours
        from UTC, so these are the local hours (both 02:00 hours of a fall-back night).
        """
        gas_by_hour = _gas_hours(self.gas, shift)
        rises: dict[str, dict[pd.Timestamp, Decimal]] = {}
        for name, frame in self.registers.items():
            rises[name] = {pd.Timestamp(str(hour)): _rise(group["value"]) for hour, group
                           in frame.groupby(frame["ts"].dt.floor("h"), sort=True)}
        hours = sorted(set().union(*(set(r) for r in rises.values())))
        return [{"hour_start": hour.to_pydatetime(),
                 **{name: rises[name].get(hour, Decimal(0)) for name in REGISTERS},
                 "gas": gas_by_hour.get(hour, Decimal(0))} for hour in hours]


def hour_statistics(hub: Hub, device: str, tz: str, first: dt.date, last: dt.date, *,
                    gas_shift: bool = False) -> list[dict[str, Any]]:
    """Hour statistics for the local days ``first`` to ``last`` inclusive, oldest first."""
    start, end = _local_midnight(first, tz), _local_midnight(last + dt.timedelta(days=1), tz)
    return _Span.read(hub, device, start, end).hours(gas_shift)


def day_statistics(hub: Hub, device: str, tz: str, day: dt.date, contracts: list[Prices],
                   *, gas_shift: bool = False) -> dict[str, Any] | None:
    """The statistics of one local day, or None when it has no electricity readings."""
    start, end = _local_midnight(day, tz), _local_midnight(day + dt.timedelta(days=1), tz)
    span = _Span.read(hub, device, start, end)
    frames = span.registers
    if all(f.empty for f in frames.values()):
        return None
    out: dict[str, Any] = {"day": day}
    for name, frame in frames.items():
        out[name] = _rise(frame["value"])
    out["gas"] = sum((h["gas"] for h in span.hours(gas_shift)), Decimal(0))
    gas = span.gas[(span.gas["ts"] >= start) & (span.gas["ts"] < end)]
    gas_span = _rise(gas["value"])
    price = prices_for(day, contracts)
    out["electricity1_cost"] = round2(out["electricity1"]
                                      * price["electricity_delivered_1_price"]
                                      - out["electricity1_returned"]
                                      * price["electricity_returned_1_price"])
    out["electricity2_cost"] = round2(out["electricity2"]
                                      * price["electricity_delivered_2_price"]
                                      - out["electricity2_returned"]
                                      * price["electricity_returned_2_price"])
    out["gas_cost"] = round2(gas_span * price["gas_price"])
    out["fixed_cost"] = round2(price["fixed_daily_cost"])
    out["total_cost"] = round2(out["electricity1_cost"] + out["electricity2_cost"]
                               + out["gas_cost"] + price["fixed_daily_cost"])
    first = {name: f.iloc[0] for name, f in frames.items() if len(f)}
    stamp = min(row["ts"] for row in first.values())
    out["electricity_reading_timestamp"] = stamp.to_pydatetime()
    for name, channel_name in (("electricity1_reading", "electricity1"),
                               ("electricity2_reading", "electricity2"),
                               ("electricity1_returned_reading", "electricity1_returned"),
                               ("electricity2_returned_reading", "electricity2_returned")):
        out[name] = meter_decimal(first[channel_name]["value"]) if channel_name in first else None
    out["gas_reading_timestamp"] = gas["ts"].iloc[0].to_pydatetime() if len(gas) else None
    out["gas_reading"] = meter_decimal(gas["value"].iloc[0]) if len(gas) else None
    out["prices"] = price
    return out


def gas_shift(settings: DsmrSettings) -> bool:
    """Whether gas moves back an hour: DSMR 4 gas totals are stamped at the hour's end."""
    return settings.version in ("4",)
