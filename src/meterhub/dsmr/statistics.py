"""DSMR-reader's hour and day statistics and costs, computed from the stored readings.

The rules are DSMR-reader's (VENDORS.md 3.5), not meterhub's edge-to-edge consumption, so
that its API answers what its users know:

- an hour's electricity per register is the last minus the first reading inside the local
  hour; no row for an hour without readings;
- gas per hour: one record in the hour counts its rise over the previous gas record, several
  count last minus first; DSMR 4 meters report the previous hour, so their gas moves back
  an hour;
- a day's electricity is last minus first within the local day (23 or 25 hours on DST
  days), its gas the sum of its hours, its gas cost from the day's first and last gas;
- costs use the prices whose [start, end] holds the day (per price, the one non-zero value
  of the matching contracts, else 0), rounded half up to cents;
- live costs (per hour of the current power, per gas interval) use today's prices of the
  meter's active tariff, and are unknown (None) when no contract holds today.

Contracts come from meterhub.toml and from the API; those added through the API are kept
in the store as one JSON state value (`AddedPrices`).

Statistics are computed when asked, so a late or replayed telegram changes the hours and
days it falls in at once, with no re-aggregation step.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import orjson
import pandas as pd

from meterhub.dsmr.telegram import GAS
from meterhub.errors import NotFoundError
from meterhub.hub import Hub

REGISTERS = {"electricity1": "electricity_delivered_1", "electricity2": "electricity_delivered_2",
             "electricity1_returned": "electricity_returned_1",
             "electricity2_returned": "electricity_returned_2"}
PRICE_FIELDS = ("electricity_delivered_1_price", "electricity_delivered_2_price", "gas_price",
                "electricity_returned_1_price", "electricity_returned_2_price",
                "fixed_daily_cost")
PRICE_PLACES = 6  #: decimals DSMR-reader keeps of a price
CENT = Decimal("0.01")
#: ids of contracts added through the API start here; meterhub.toml's are 1, 2 ... in start
#: order, so the two never collide (the configuration allows fewer contracts than this)
ADDED_PRICE_IDS = 1001


@dataclass(frozen=True)
class Prices:
    """One energy contract: prices per kWh and m³ and a fixed cost per day, for a span."""

    start: dt.date
    end: dt.date
    description: str = ""
    values: dict[str, Decimal] = field(default_factory=dict)
    id: int = 0

    def get(self, name: str) -> Decimal:
        return self.values.get(name, Decimal(0))


def prices_key(device: str) -> str:
    """The store state key of the contracts added through the API for a meter."""
    return f"dsmr.prices.{device}"


@dataclass(frozen=True)
class AddedPrices:
    """Contracts added through the API, and the id the next one gets (ids are never reused,
    so a deleted contract's id cannot come to name another)."""

    prices: tuple[Prices, ...] = ()
    next_id: int = ADDED_PRICE_IDS

    @classmethod
    def loads(cls, text: str | None) -> AddedPrices:
        if not text:
            return cls()
        data = orjson.loads(text)
        return cls(tuple(Prices(dt.date.fromisoformat(p["start"]),
                                dt.date.fromisoformat(p["end"]), p["description"],
                                {name: Decimal(p[name]) for name in PRICE_FIELDS}, p["id"])
                         for p in data["prices"]), data["next_id"])

    def dumps(self) -> str:
        # decimals as strings: a price is kept exactly as it was given
        return orjson.dumps({"next_id": self.next_id, "prices": [
            {"id": p.id, "start": p.start.isoformat(), "end": p.end.isoformat(),
             "description": p.description, **{name: str(p.get(name)) for name in PRICE_FIELDS}}
            for p in self.prices]}).decode()

    def add(self, contract: Prices) -> tuple[AddedPrices, Prices]:
        """These contracts with ``contract`` added under the next id, and the added one."""
        added = replace(contract, id=self.next_id)
        return AddedPrices((*self.prices, added), self.next_id + 1), added

    def without(self, price_id: int) -> AddedPrices | None:
        """These contracts without the one of ``price_id``; None when there is none."""
        kept = tuple(p for p in self.prices if p.id != price_id)
        return None if len(kept) == len(self.prices) else AddedPrices(kept, self.next_id)


def all_contracts(configured: Sequence[Prices], added: AddedPrices) -> list[Prices]:
    """The configured contracts, numbered 1, 2 ... in start order, and the added ones,
    together in start order: the list every cost and the prices endpoint use."""
    numbered = [replace(c, id=n) for n, c in
                enumerate(sorted(configured, key=lambda c: c.start), start=1)]
    return sorted([*numbered, *added.prices], key=lambda c: c.start)


def prices_for(day: dt.date, contracts: list[Prices]) -> dict[str, Decimal]:
    """Per price field, the single non-zero value among contracts holding ``day``, else 0."""
    holding = [c for c in contracts if c.start <= day <= c.end]
    out = {}
    for name in PRICE_FIELDS:
        nonzero = [c.get(name) for c in holding if c.get(name) != 0]
        out[name] = nonzero[0] if len(nonzero) == 1 else Decimal(0)
    return out


def day_prices(day: dt.date, contracts: Sequence[Prices]) -> dict[str, Decimal] | None:
    """`prices_for` a day, or None when no contract holds it (DSMR-reader then has no
    prices at all, and leaves live costs out, rather than pricing at 0)."""
    if not any(c.start <= day <= c.end for c in contracts):
        return None
    return prices_for(day, list(contracts))


def live_cost(delivered: Decimal, returned: Decimal, tariff: int | None,
              prices: dict[str, Decimal] | None) -> Decimal | None:
    """The cost per hour of the current power (kW) at the active tariff's prices (tariff
    1 and 2 are registers x.8.1 and x.8.2), rounded half up to cents; power delivered and
    returned at once both count. None without prices or a known tariff."""
    if prices is None or tariff not in (1, 2):
        return None
    return round2(delivered * prices[f"electricity_delivered_{tariff}_price"]
                  - returned * prices[f"electricity_returned_{tariff}_price"])


def round2(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def meter_decimal(value: float) -> Decimal:
    """A meter value as the exact decimal its telegram had (three places at most)."""
    return Decimal(repr(float(value))).quantize(Decimal("0.001"))


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
