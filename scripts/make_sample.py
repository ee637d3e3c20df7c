"""Regenerate src/meterhub/data/sample.csv: a small, deterministic sample for the tour.

Four days of 15-minute data around the end of summer time in Europe/Amsterdam
(27 October 2024 has 25 local hours): a weather station and an electricity meter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "src" / "meterhub" / "data" / "sample.csv"


def main() -> None:
    rng = np.random.default_rng(42)
    ts = pd.date_range("2024-10-24 22:00", "2024-10-28 23:00", freq="15min", tz="UTC",
                       inclusive="left")
    hours = (ts.hour + ts.minute / 60).to_numpy()
    diurnal = np.sin((hours - 9) / 24 * 2 * np.pi)
    n = len(ts)
    stamp = ts.strftime("%Y-%m-%dT%H:%M:%SZ")
    temp = np.round(11 + 4 * diurnal + rng.normal(0, 0.3, n), 2)
    rh = np.round(np.clip(80 - 12 * diurnal + rng.normal(0, 2, n), 0, 100), 1)
    rain = np.round(np.where(rng.random(n) < 0.08, rng.gamma(1.2, 0.4, n), 0.0), 2)
    power = np.round(0.25 + 0.9 * np.clip(diurnal, 0, None) + rng.gamma(1.0, 0.15, n), 3)
    energy = np.round(15230.0 + np.cumsum(power * 0.25), 3)
    frames = []
    seq = np.arange(1, n + 1)
    quality = np.full(n, "ok", dtype=object)
    code = np.full(n, "", dtype=object)
    quality[200] = "sensor_error"  # one flagged reading: the code is kept, the value is not
    code[200] = "Sensor Error"
    temp_values = temp.astype(object)
    temp_values[200] = ""
    for channel, unit, kind, values in (("air_temperature", "°C", "instant", temp_values),
                                        ("relative_humidity", "%", "instant", rh),
                                        ("precipitation", "mm", "delta", rain)):
        frames.append(pd.DataFrame({
            "source": "sample", "device": "ws-demo-1", "channel": channel, "ts": stamp,
            "value": values, "unit": unit, "kind": kind, "seq": seq,
            "quality": quality if channel == "air_temperature" else "ok",
            "error_code": code if channel == "air_temperature" else ""}))
    for channel, unit, kind, values in (("energy_import", "kWh", "counter", energy),
                                        ("power_import", "kW", "instant", power)):
        frames.append(pd.DataFrame({
            "source": "sample", "device": "em-demo-1", "channel": channel, "ts": stamp,
            "value": values, "unit": unit, "kind": kind, "seq": "", "quality": "ok",
            "error_code": ""}))
    pd.concat(frames).to_csv(OUT, index=False)
    print(f"{OUT}: {sum(len(f) for f in frames)} rows")


if __name__ == "__main__":
    main()
