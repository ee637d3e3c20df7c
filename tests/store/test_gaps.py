"""Gap listing: a removed block of intervals, a seq jump, and a seq reset that is no gap."""

from __future__ import annotations

import numpy as np
import pandas as pd

from meterhub.hub import Hub
from meterhub.model import Channel, ChannelKind


def series(start: str, periods: int, freq: str = "10min") -> pd.DataFrame:
    ts = pd.date_range(start, periods=periods, freq=freq, tz="UTC")
    return pd.DataFrame({"source": "tandd", "device": "tr7", "channel": "temperature",
                         "ts": ts, "value": np.linspace(10, 20, periods), "unit": "°C",
                         "seq": np.arange(1, periods + 1)})


def test_removed_block_is_one_gap_with_its_missing_count(hub: Hub) -> None:
    data = series("2024-05-01", 144)
    kept = data.drop(index=range(50, 62))  # 12 readings, 08:20 .. 10:10, removed
    kept = kept.assign(seq=None)
    hub.write(kept)
    gaps = hub.gaps()
    assert len(gaps) == 1
    gap = gaps.iloc[0]
    assert (gap["device"], gap["channel"], gap["kind"]) == ("tr7", "temperature", "interval")
    assert gap["missing"] == 12
    assert gap["start"] == pd.Timestamp("2024-05-01 08:20", tz="UTC")
    assert gap["end"] == pd.Timestamp("2024-05-01 10:20", tz="UTC")  # the next reading


def test_seq_jump_is_found_even_when_times_look_continuous(hub: Hub) -> None:
    data = series("2024-05-01", 30)
    data.loc[20:, "seq"] += 5  # the logger counted 5 records we never received
    hub.write(data)
    gaps = hub.gaps()
    assert gaps["kind"].tolist() == ["seq"]
    gap = gaps.iloc[0]
    assert (gap["missing"], gap["seq_from"], gap["seq_to"]) == (5, 21, 25)


def test_seq_reset_is_not_a_gap_and_declared_interval_wins(hub: Hub) -> None:
    hub.add_channels([Channel("tr7", "temperature", "temperature", "°C", ChannelKind.INSTANT,
                              interval_s=300)])
    data = series("2024-05-01", 10)
    data.loc[5:, "seq"] = np.arange(1, 6)  # device re-initialised
    hub.write(data)
    gaps = hub.gaps()
    # readings every 10 min against a declared 5 min interval: a missing one between each
    assert gaps["kind"].unique().tolist() == ["interval"]
    assert gaps["missing"].tolist() == [1] * 9


def test_a_declared_hourly_interval_does_not_overflow(hub: Hub) -> None:
    hub.add_channels([Channel("m", "usage", "energy", "kWh", ChannelKind.DELTA,
                              interval_s=3600)])
    ts = pd.date_range("2024-05-01", periods=6, freq="h", tz="UTC").delete(3)
    hub.write(pd.DataFrame({"source": "s", "device": "m", "channel": "usage", "ts": ts,
                            "value": 1.0, "unit": "kWh"}))
    assert hub.gaps()["missing"].tolist() == [1]
