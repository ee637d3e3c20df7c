"""What every vendor emulator shares: synthetic devices, exact rolling limits, faults.

Synthetic values are pure functions of (seed, device, time), so any window of any device
can be produced on demand, identical on every request and in the tests' ground truth.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from meterhub.clock import Clock

Floats = npt.NDArray[np.float64]


def noise(t: npt.NDArray[np.int64], seed: int, salt: int) -> Floats:
    """Deterministic pseudo-noise in [0, 1) per timestamp (a hash, not a random state)."""
    x = (t.astype(np.uint64) * np.uint64(2654435761) + np.uint64(seed * 97 + salt * 7919)
         ) % np.uint64(2**32)
    x ^= x >> np.uint64(13)
    x = (x * np.uint64(1274126177)) % np.uint64(2**32)
    return np.asarray(x.astype(np.float64) / 2**32, dtype=np.float64)


def weather(t: npt.NDArray[np.int64], seed: int, device: int,
            tz_offset_s: int = 0) -> dict[str, Floats]:
    """A weather station's readings at epoch seconds ``t``, in metric units.

    Keys: air_temperature (°C), relative_humidity (%), vapor_pressure (kPa),
    atmospheric_pressure (kPa), solar_radiation (W/m²), wind_speed, gust_speed (m/s),
    wind_direction (°), precipitation (mm per interval).
    """
    local_hour = ((t + tz_offset_s) % 86400) / 3600.0
    day = (t // 86400).astype(np.float64)
    salt = seed * 1000 + device
    diurnal = np.sin((local_hour - 9.0) / 24.0 * 2 * math.pi)
    season = np.sin(day / 365.25 * 2 * math.pi + device)
    temp = 22 + 3 * season + 6 * diurnal + 2 * (noise(t // 3600, salt, 1) - 0.5)
    rh = np.clip(65 - 20 * diurnal + 10 * (noise(t // 1800, salt, 2) - 0.5), 5, 100)
    saturation = 0.6108 * np.exp(17.27 * temp / (temp + 237.3))
    sun = np.clip(np.sin((local_hour - 6.0) / 12.0 * math.pi), 0, None)
    rain = np.where(noise(t, salt, 3) < 0.03, np.round(noise(t, salt, 4) * 2.5, 3), 0.0)
    wind = np.round(1.5 + 2.5 * noise(t // 600, salt, 5) + 1.0 * sun, 2)
    return {
        "air_temperature": np.round(temp, 2),
        "relative_humidity": np.round(rh, 1),
        "vapor_pressure": np.round(saturation * rh / 100, 3),
        "atmospheric_pressure": np.round(88.5 + 0.4 * season + 0.2 * noise(t // 3600,
                                                                             salt, 6), 2),
        "solar_radiation": np.round(950 * sun * (0.7 + 0.3 * noise(t // 900, salt, 7)), 0),
        "wind_speed": wind,
        "gust_speed": np.round(wind * (1.3 + 0.4 * noise(t, salt, 8)), 2),
        "wind_direction": np.round(360 * noise(t // 3600, salt, 9), 0),
        "precipitation": rain,
        "battery_percent": np.round(100 - 20 * noise(t // 86400, salt, 10), 0),
    }


def logger(t: npt.NDArray[np.int64], seed: int, device: int) -> dict[str, Floats]:
    """A temperature/humidity data logger (cold room or greenhouse)."""
    salt = seed * 1000 + device
    hour = (t % 86400) / 3600.0
    temp = 4.0 + 1.5 * np.sin(hour / 24 * 2 * math.pi) + (noise(t, salt, 11) - 0.5)
    rh = np.clip(55 + 10 * np.sin(hour / 24 * 2 * math.pi + 1) + 4 * (noise(t, salt, 12)
                                                                         - 0.5), 0, 100)
    return {"temperature": np.round(temp, 1), "relative_humidity": np.round(rh, 0)}


def is_sensor_error(t: npt.NDArray[np.int64], seed: int, device: int,
                    rate: float = 0.002) -> npt.NDArray[np.bool_]:
    """Which readings a sensor fails on: rare, deterministic."""
    return np.asarray(noise(t, seed * 1000 + device, 13) < rate)


@dataclass
class WindowLimit:
    """Exactly ``calls`` accepted requests per rolling ``period`` seconds, per key."""

    calls: int
    period: float
    clock: Clock
    _accepted: dict[str, collections.deque[float]] = field(default_factory=dict)
    enabled: bool = True  #: off only for tests that restart clients at will (crash tests)

    def retry_in(self, key: str) -> float:
        """0 when a request for ``key`` is allowed now, else seconds until it is."""
        if not self.enabled:
            return 0.0
        now = self.clock.now()
        window = self._accepted.setdefault(key, collections.deque())
        while window and window[0] + self.period <= now:
            window.popleft()
        if len(window) < self.calls:
            return 0.0
        return window[0] + self.period - now

    def remaining(self, key: str) -> int:
        self.retry_in(key)  # drops entries that left the window
        return max(0, self.calls - len(self._accepted.get(key, ())))

    def accept(self, key: str) -> None:
        self._accepted.setdefault(key, collections.deque()).append(self.clock.now())


@dataclass
class Faults:
    """Fault switches: each counter makes that many upcoming requests misbehave."""

    rate_limited: int = 0  #: answer 429 regardless of the real limits
    server_errors: int = 0  #: answer 503
    truncated: int = 0  #: answer 200 with the body cut in half
    duplicated: int = 0  #: answer 200 with the previous answer's body again
    slow_seconds: float = 0.0  #: delay every answer by this much (on the emulator's clock)

    def take(self, name: str) -> bool:
        left = int(getattr(self, name))
        if left > 0:
            setattr(self, name, left - 1)
            return True
        return False


class DataHorizon:
    """Worlds whose data may stop growing at ``horizon`` while limits run on the clock.

    A frozen horizon lets two syncs minutes apart see exactly the same data.
    """

    clock: Clock
    horizon: float | None

    def data_now(self) -> float:
        now = self.clock.now()
        return now if self.horizon is None else min(now, self.horizon)

    def relax_limits(self) -> None:
        """Switch every rate limit off (for crash-and-resume tests only)."""
        for value in vars(self).values():
            for limit in (value.values() if isinstance(value, dict) else [value]):
                if isinstance(limit, WindowLimit):
                    limit.enabled = False
        self.unlimited = True
