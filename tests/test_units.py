from __future__ import annotations

import numpy as np
import pytest

from meterhub.errors import UnitError
from meterhub.units import Quantity, convert, normalize_unit, quantity_for_unit


@pytest.mark.parametrize(
    ("values", "src", "dst", "expected"),
    [
        ([0.0, 100.0, -40.0], "degC", "degF", [32.0, 212.0, -40.0]),
        ([1.0, 2.5], "kWh", "MJ", [3.6, 9.0]),
        ([1.0, 0.25], "m3", "L", [1000.0, 250.0]),
        ([101.325], "kPa", "hPa", [1013.25]),
        ([1.0], "ccf", "m³", [2.8316846592]),
        ([1.5], "kW", "W", [1500.0]),
        ([20.0], " °C", "K", [293.15]),
    ],
)
def test_convert_matches_hand_computed_values(values: list[float], src: str, dst: str,
                                              expected: list[float]) -> None:
    result = convert(np.array(values), src, dst)
    np.testing.assert_allclose(result, expected, rtol=1e-12)


def test_unknown_unit_is_a_clear_error() -> None:
    with pytest.raises(UnitError, match="unknown unit 'bananas'"):
        convert(np.array([1.0]), "kWh", "bananas")


def test_incompatible_units_are_a_clear_error() -> None:
    with pytest.raises(UnitError, match="cannot convert kWh to °C"):
        convert(np.array([1.0]), "kWh", "degC")


@pytest.mark.parametrize(
    ("text", "canonical"),
    [(" °C", "°C"), ("degC", "°C"), ("C", "°C"), ("m3", "m³"), ("m**3", "m³"),
     ("percent", "%"), ("%", "%"), ("W/m2", "W/m²"), ("kWh", "kWh")],
)
def test_vendor_spellings_normalise_to_one_canonical_unit(text: str, canonical: str) -> None:
    assert normalize_unit(text) == canonical
    # the canonical spelling parses back to itself
    assert normalize_unit(canonical) == canonical


def test_quantity_guess_from_unit() -> None:
    assert quantity_for_unit("Wh") is Quantity.ENERGY
    assert quantity_for_unit("m3") is Quantity.VOLUME
    assert quantity_for_unit("degF") is Quantity.TEMPERATURE


def test_costs_have_a_currency_neutral_unit_that_converts_to_nothing_else() -> None:
    assert normalize_unit("currency") == "currency"
    assert quantity_for_unit("currency") is Quantity.COST
    np.testing.assert_allclose(convert(np.array([3.42]), "currency", "currency"), [3.42])
    with pytest.raises(UnitError, match="cannot convert currency to kWh"):
        convert(np.array([1.0]), "currency", "kWh")


@pytest.mark.parametrize(("quantity", "unit", "spelled", "scale"), [
    ("energy", "J", "J", 1 / 3.6e6),
    ("energy", "TWh", "TWh", 1e9),  # the far edge of the factor: still a meter's unit
    ("precipitation", "km", "km", 1e6),
    ("precipitation", "inch", "in", 25.4),
    ("air_temperature", "degF", "°F", 5 / 9),
    ("atmospheric_pressure", "mbar", "mbar", 0.1),
    ("relative_humidity", "1", "1", 100.0),
])
def test_a_unit_fits_its_quantity_within_a_factor_of_a_billion(
        quantity: str, unit: str, spelled: str, scale: float) -> None:
    from meterhub.units import check_unit_for, unit_scale

    assert check_unit_for(quantity, unit) == spelled
    canonical = {"energy": "kWh", "precipitation": "mm", "air_temperature": "°C",
                 "atmospheric_pressure": "kPa", "relative_humidity": "%"}[quantity]
    assert unit_scale(unit, canonical) == pytest.approx(scale, rel=1e-12)


@pytest.mark.parametrize(("quantity", "unit", "stored", "message"), [
    ("precipitation", "parsec", None,
     "unit pc does not fit precipitation: one pc is 3.09e+19 mm, more than a factor 1e9 "
     "away from it"),
    ("energy", "eV", None, "unit eV does not fit energy: one eV is 4.45e-26 kWh"),
    ("energy", "PWh", None, "unit PWh does not fit energy: one PWh is 1e+12 kWh"),
    ("precipitation", "kWh", None,
     "unit kWh does not measure precipitation: use a unit that converts to mm"),
    ("battery", "V", None, "unit V does not measure battery: use a unit that converts to %"),
    ("soil_moisture", "parsec", "m", "unit pc does not fit soil_moisture: one pc is "
                                     "3.09e+16 m"),
])
def test_a_unit_unrelated_to_the_quantity_is_refused_by_name(
        quantity: str, unit: str, stored: str | None, message: str) -> None:
    from meterhub.units import check_unit_for, unit_for_channel

    with pytest.raises(UnitError) as info:
        check_unit_for(quantity, unit, stored)
    assert str(info.value).startswith(message)
    if stored is None:
        with pytest.raises(UnitError):
            unit_for_channel(quantity, unit)
    # a quantity without a canonical unit or a stored one takes any unit pint knows
    assert check_unit_for("soil_moisture", unit) == normalize_unit(unit)
