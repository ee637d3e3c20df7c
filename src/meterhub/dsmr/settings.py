"""The `[dsmr]` section of meterhub.toml: the meter, its DSMR version and zone, its tariffs'
names, its energy contracts, and how pushed telegrams are parsed."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from meterhub.dsmr.prices import ADDED_PRICE_IDS
from meterhub.errors import MeterhubError
from meterhub.timebase import zone


class PriceSettings(BaseModel):
    """One energy contract for DSMR costs: prices per kWh and m³, a fixed cost per day."""

    model_config = ConfigDict(extra="forbid")

    start: dt.date
    end: dt.date
    description: str = ""
    electricity_delivered_1_price: Decimal = Decimal(0)
    electricity_delivered_2_price: Decimal = Decimal(0)
    gas_price: Decimal = Decimal(0)
    electricity_returned_1_price: Decimal = Decimal(0)
    electricity_returned_2_price: Decimal = Decimal(0)
    fixed_daily_cost: Decimal = Decimal(0)


class DsmrSettings(BaseModel):
    """How pushed P1 telegrams are read: the meter's device id, DSMR version and zone, the
    energy prices DSMR-reader-style costs use (more can be added through the API) and the
    names its live answers give the meter's tariffs."""

    model_config = ConfigDict(extra="forbid")

    prices: list[PriceSettings] = Field(default_factory=list)
    device: str = Field(default="p1", min_length=1)
    version: str = Field(default="5", description="2.2, 4, 5, belgium, luxembourg ...")
    timezone: str = "Europe/Amsterdam"
    # DSMR-reader's default names are Dutch (1 = x.8.1, the low tariff there); in Belgium
    # x.8.1 is the day tariff, hence settings rather than constants
    tariff_1_name: str = Field(default="Daltarief", description="name of tariff 1 (x.8.1)")
    tariff_2_name: str = Field(default="Normaaltarief",
                               description="name of tariff 2 (x.8.2)")
    electricity_grouping: Literal["minute", "reading"] = Field(
        default="minute", description="how DSMR-reader groups electricity for statistics: "
        "one row a minute, stamped at its end (its default), or each reading as a row; "
        "set it as the DSMR-reader whose numbers you compare with is set")
    parse_helper: Literal["auto", "on", "off"] = Field(
        default="auto", description="parse pushed telegrams in a helper process: once "
        "pushes come faster than 20 a second (auto), from the first (on), or never (off)")

    @field_validator("prices")
    @classmethod
    def _ids_apart(cls, value: list[PriceSettings]) -> list[PriceSettings]:
        if len(value) >= ADDED_PRICE_IDS:  # their ids would reach those of API contracts
            raise ValueError(f"at most {ADDED_PRICE_IDS - 1} contracts can be configured")
        return value

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: str) -> str:
        from meterhub.dsmr.telegram import DIALECTS  # dsmr-parser: only when a version is given

        if value not in DIALECTS:
            raise ValueError(f"unknown DSMR version {value!r}; use one of "
                             f"{', '.join(DIALECTS)}")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zone(value)
        except MeterhubError as exc:
            raise ValueError(str(exc)) from None
        return value
