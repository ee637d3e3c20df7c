"""Canonical units per quantity and conversions between units (pint does the arithmetic).

Vendors spell units many ways (" °C", "m³", "m3", "W/m²", "ccf"); `normalize_unit` turns any
of them into one canonical spelling so that the store keeps one unit per channel, and
`convert` rescales whole NumPy arrays at once (never a Python object per reading).
"""

from __future__ import annotations

import functools
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt
import pint

from meterhub.errors import UnitError

ureg: Any = pint.UnitRegistry()
# Gas and water units of North American meters (Copper Labs): hundred cubic feet.
ureg.define("ccf = 100 * foot ** 3")
ureg.define("hcf = ccf")
# Money, for costs computed by a vendor (DSMR-reader's day costs). Those vendors keep no
# currency code (a DSMR-reader user enters prices in euros, but nothing says so), and no
# exchange rate could convert one currency to another here anyway: so one neutral unit of
# its own dimension, which converts to nothing else.
ureg.define("currency = [currency]")


class Quantity(StrEnum):
    """Canonical measured quantities; names never embed units."""

    AIR_TEMPERATURE = "air_temperature"
    TEMPERATURE = "temperature"
    RELATIVE_HUMIDITY = "relative_humidity"
    ATMOSPHERIC_PRESSURE = "atmospheric_pressure"
    VAPOR_PRESSURE = "vapor_pressure"
    SOLAR_RADIATION = "solar_radiation"
    WIND_SPEED = "wind_speed"
    WIND_DIRECTION = "wind_direction"
    PRECIPITATION = "precipitation"
    ENERGY = "energy"
    POWER = "power"
    VOLUME = "volume"
    FLOW = "flow"
    VOLTAGE = "voltage"
    CURRENT = "current"
    BATTERY = "battery"
    COST = "cost"  #: money, in the currency the vendor's prices were given in
    OTHER = "other"


#: The unit every quantity is stored in.
CANONICAL_UNITS: dict[Quantity, str] = {
    Quantity.AIR_TEMPERATURE: "°C",
    Quantity.TEMPERATURE: "°C",
    Quantity.RELATIVE_HUMIDITY: "%",
    Quantity.ATMOSPHERIC_PRESSURE: "kPa",
    Quantity.VAPOR_PRESSURE: "kPa",
    Quantity.SOLAR_RADIATION: "W/m²",
    Quantity.WIND_SPEED: "m/s",
    Quantity.WIND_DIRECTION: "°",
    Quantity.PRECIPITATION: "mm",
    Quantity.ENERGY: "kWh",
    Quantity.POWER: "kW",
    Quantity.VOLUME: "m³",
    Quantity.FLOW: "m³/h",
    Quantity.VOLTAGE: "V",
    Quantity.CURRENT: "A",
    Quantity.BATTERY: "%",
    Quantity.COST: "currency",
}

# Spellings pint does not parse on its own, mapped to ones it does.
_ALIASES: dict[str, str] = {
    "°C": "degC",
    "℃": "degC",
    "C": "degC",
    "°F": "degF",
    "℉": "degF",
    "F": "degF",
    "°": "degree",
    "deg": "degree",
    "m3": "m**3",
    "m³": "m**3",
    "m3/h": "m**3/h",
    "m³/h": "m**3/h",
    "W/m2": "W/m**2",
    "W/m²": "W/m**2",
    "inHg": "inch_Hg",
    "%RH": "percent",
    "% RH": "percent",
    "%": "percent",
    "l": "liter",
    "L": "liter",
}


#: The longest unit text read: pint's parser takes time that grows faster than the text
#: (a second for 10,000 characters, minutes for 100,000), and no unit is this long.
MAX_UNIT_CHARS = 128


@functools.lru_cache(maxsize=512)
def parse_unit(text: str) -> Any:
    """Return the pint unit for a vendor's unit text; `UnitError` when pint cannot read it."""
    cleaned = text.strip()
    if not cleaned:
        raise UnitError("empty unit: give a unit such as kWh, °C or m³")
    if len(cleaned) > MAX_UNIT_CHARS:
        raise UnitError(f"unit {text[:40]!r}... is {len(text):,} characters long: a unit has "
                        f"at most {MAX_UNIT_CHARS}, such as kWh, °C or m³")
    cleaned = _ALIASES.get(cleaned, cleaned)
    cleaned = cleaned.replace("³", "**3").replace("²", "**2")
    try:
        return ureg.Unit(cleaned)
    except Exception as exc:  # pint's parser raises many types on junk text
        # (UndefinedUnitError, DefinitionSyntaxError, tokenize.TokenError, ValueError ...)
        raise UnitError(f"unknown unit {text!r}: use a unit pint knows, such as kWh, °C, "
                        "m³, kPa, W/m²") from exc


@functools.lru_cache(maxsize=512)
def normalize_unit(text: str) -> str:
    """The canonical spelling of a unit (" °C" -> "°C", "m3" -> "m³", "percent" -> "%")."""
    unit = parse_unit(text)
    if unit == ureg.degree:
        return "°"
    spelled: str = format(unit, "~P")
    return spelled or "1"


def quantity_for_unit(text: str) -> Quantity:
    """A best guess of the quantity a bare unit measures, for channels created by import."""
    unit = parse_unit(text)
    for quantity in (Quantity.TEMPERATURE, Quantity.ENERGY, Quantity.POWER, Quantity.VOLUME,
                     Quantity.FLOW, Quantity.VOLTAGE, Quantity.CURRENT,
                     Quantity.ATMOSPHERIC_PRESSURE, Quantity.SOLAR_RADIATION,
                     Quantity.WIND_SPEED, Quantity.PRECIPITATION, Quantity.COST):
        if parse_unit(CANONICAL_UNITS[quantity]).dimensionality == unit.dimensionality:
            return quantity
    return Quantity.OTHER


def check_convertible(src: str, dst: str) -> None:
    """Raise `UnitError` unless values in `src` can be expressed in `dst`."""
    a, b = parse_unit(src), parse_unit(dst)
    if a.dimensionality != b.dimensionality:
        raise UnitError(f"cannot convert {normalize_unit(src)} to {normalize_unit(dst)}: "
                        "they measure different things")


def convert(values: npt.NDArray[np.float64], src: str, dst: str) -> npt.NDArray[np.float64]:
    """Values in unit `src` expressed in unit `dst`, for a whole array at once."""
    if normalize_unit(src) == normalize_unit(dst):
        return values
    check_convertible(src, dst)
    result = ureg.Quantity(np.asarray(values, dtype=np.float64), parse_unit(src))
    return np.asarray(result.to(parse_unit(dst)).magnitude, dtype=np.float64)


#: How far a unit may stray from its quantity's canonical unit: one step of it is worth
#: between 1/SCALE_LIMIT and SCALE_LIMIT canonical units. Wide enough for every unit a
#: meter or a station uses (J and TWh for energy, µm and km for rain, mbar and MPa for
#: pressure), narrow enough to catch a unit that names another scale of the world
#: (parsec of rain, electronvolts of household energy), whose values become absurd.
SCALE_LIMIT = 1e9


def canonical_unit(quantity: str) -> str | None:
    """The canonical unit of a known quantity (`CANONICAL_UNITS`), else None."""
    try:
        return CANONICAL_UNITS.get(Quantity(quantity))
    except ValueError:
        return None


def unit_scale(src: str, dst: str) -> float:
    """What one step of unit ``src`` is worth in ``dst`` (5/9 for degF in degC, 1000 for
    kWh in Wh); `UnitError` when they measure different things."""
    steps = convert(np.array([0.0, 1.0]), src, dst)
    return float(steps[1] - steps[0])


def check_unit_for(quantity: str, unit: str, stored: str | None = None) -> str:
    """The canonical spelling of ``unit`` when it may carry values of ``quantity``, else a
    `UnitError` that names the unit and the quantity.

    The yardstick is the quantity's canonical unit, else ``stored`` (the unit a channel
    already keeps), else nothing: any unit pint knows. ``unit`` must measure what the
    yardstick measures, and one step of it must lie within a factor `SCALE_LIMIT` of it.
    """
    spelled = normalize_unit(unit)
    reference = canonical_unit(quantity) or stored
    if reference is None:
        return spelled
    if parse_unit(unit).dimensionality != parse_unit(reference).dimensionality:
        raise UnitError(f"unit {spelled} does not measure {quantity}: use a unit that "
                        f"converts to {normalize_unit(reference)}")
    scale = abs(unit_scale(unit, reference))
    if not 1 / SCALE_LIMIT <= scale <= SCALE_LIMIT:
        raise UnitError(f"unit {spelled} does not fit {quantity}: one {spelled} is "
                        f"{scale:.3g} {normalize_unit(reference)}, more than a factor "
                        "1e9 away from it")
    return spelled


def unit_for_channel(quantity: str, unit: str) -> str:
    """The unit a new channel stores: its quantity's canonical unit, when ``unit`` fits the
    quantity (`check_unit_for`, else `UnitError`); for other quantities ``unit`` as given
    (normalised)."""
    check_unit_for(quantity, unit)
    return normalize_unit(canonical_unit(quantity) or unit)
