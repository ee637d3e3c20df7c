"""Energy contracts and costs, DSMR-reader's way.

- costs use the prices whose [start, end] holds the day (per price, the one non-zero value
  of the matching contracts, else 0), rounded half up to cents;
- live costs (per hour of the current power, per gas interval) use today's prices of the
  meter's active tariff, and are unknown (None) when no contract holds today.

Contracts come from meterhub.toml and from the API; those added through the API are kept
in the store as one JSON state value (`AddedPrices`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from meterhub.dsmr.settings import DsmrSettings
    from meterhub.hub import Hub

#: a contract's prices, as DSMR-reader's EnergySupplierPrice names them
PRICE_FIELDS = ("electricity_delivered_1_price", "electricity_delivered_2_price", "gas_price",
                "electricity_returned_1_price", "electricity_returned_2_price",
                "fixed_daily_cost")
#: DSMR-reader's EnergySupplierPrice (dsmr_consumption/models/energysupplier.py): each price
#: a decimal of up to 11 digits with 6 places, the description up to 255 characters
PRICE_DIGITS, PRICE_PLACES = 11, 6
DESCRIPTION_LENGTH = 255
CENT = Decimal("0.01")
#: room for any float's digits and places: rounding a meter value or a cost never fails,
#: whatever a store holds (the default context's 28 digits would, past 10^25)
WIDE = Context(prec=400)
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
    return value.quantize(CENT, rounding=ROUND_HALF_UP, context=WIDE)


def contracts(hub: Hub, settings: DsmrSettings) -> list[Prices]:
    """Every energy contract, meterhub.toml's and those added through the API (kept in the
    store): what every cost and the prices endpoint read."""
    configured = [Prices(p.start, p.end, p.description,
                         {name: getattr(p, name) for name in PRICE_FIELDS})
                  for p in settings.prices]
    return all_contracts(configured, AddedPrices.loads(
        hub.get_state(prices_key(settings.device))))
