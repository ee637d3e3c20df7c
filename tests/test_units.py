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
