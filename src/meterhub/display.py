"""How many decimals a value is shown with: its channel's resolution, in the unit shown.

Stored values keep every bit they arrived with; only what a person reads is rounded, so that
a conversion's float noise (12.999999999999998 °C as 57.39799999999996 °F) never shows. The
resolution is the finest step a channel of a unit usually resolves (meter registers count in
Wh, weather stations in hundredths of a degree); converted into another unit, the step
converts with it (0.01 °C is 0.018 °F: two decimals).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from meterhub.errors import UnitError
from meterhub.units import convert, normalize_unit

#: the finest step of a channel stored in each canonical unit
RESOLUTION: dict[str, float] = {
    "°C": 0.01, "%": 0.1, "kPa": 0.001, "W/m²": 0.1, "m/s": 0.01, "°": 0.1, "mm": 0.001,
    "kWh": 0.001, "kW": 0.001, "m³": 0.001, "m³/h": 0.001, "V": 0.1, "A": 0.01,
    "currency": 0.01,
}
SIGNIFICANT = 6  #: digits kept of a value whose unit has no known resolution


@functools.lru_cache(maxsize=256)
def decimals(stored_unit: str, shown_unit: str | None = None) -> int | None:
    """Decimals for values of a channel stored in ``stored_unit`` and shown in
    ``shown_unit`` (default: the same); None when the unit's resolution is not known."""
    try:
        stored = normalize_unit(stored_unit)
        step = RESOLUTION.get(stored)
        if step is None:
            return None
        if shown_unit is not None and normalize_unit(shown_unit) != stored:
            # a step is a difference: offsets (°C -> °F) cancel out
            ends = convert(np.array([0.0, step]), stored, shown_unit)
            step = abs(float(ends[1] - ends[0]))
    except UnitError:
        return None
    return max(0, math.ceil(-math.log10(step) - 1e-9))


def rounded(value: float, places: int | None) -> float:
    """``value`` rounded to ``places`` decimals, or to SIGNIFICANT digits without them."""
    if not math.isfinite(value):
        return value
    if places is None:
        return float(f"{value:.{SIGNIFICANT}g}")
    return round(value, places)
