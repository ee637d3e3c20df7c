"""Idempotent writes, cursors in the same transaction, streaming reads, store ownership."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import meterhub
from meterhub.errors import InputError, StoreInUseError
from meterhub.hub import Hub
from meterhub.store import SyncCursor


def frame(start: str, periods: int, value0: float = 0.0, device: str = "d1",
          channel: str = "t", freq: str = "15min") -> pd.DataFrame:
    ts = pd.date_range(start, periods=periods, freq=freq, tz="UTC")
    return pd.DataFrame({"source": "src", "device": device, "channel": channel, "ts": ts,
                         "value": value0 + np.arange(periods, dtype=float), "unit": "°C"})


def stored(hub: Hub) -> pd.DataFrame:
    return hub.readings()[["device", "channel", "ts", "value", "quality"]]


def test_writing_the_same_rows_twice_changes_nothing(hub: Hub) -> None:
    data = frame("2024-01-01", 500)
    hub.write(data)
    first = stored(hub)
    hub.write(data)
    second = stored(hub)
    assert len(second) == 500
    pd.testing.assert_frame_equal(first, second)


def test_overlapping_windows_leave_one_row_per_key(hub: Hub) -> None:
    hub.write(frame("2024-01-01 00:00", 100))  # 00:00 .. 24:45
    hub.write(frame("2024-01-01 12:00", 100, value0=48))  # overlaps by 52 rows, same values
    result = stored(hub)
    assert len(result) == 148
    assert not result.duplicated(["device", "channel", "ts"]).any()
    np.testing.assert_array_equal(result["value"].to_numpy(), np.arange(148, dtype=float))


def test_a_later_write_of_a_key_updates_value_and_quality(hub: Hub) -> None:
    hub.write(frame("2024-01-01", 10))
    update = frame("2024-01-01 01:00", 2, value0=100.0)
    update["quality"] = "estimated"
    hub.write(update)
    result = stored(hub).set_index("ts")
    assert len(result) == 10
    changed = result.loc[pd.Timestamp("2024-01-01 01:00", tz="UTC")]
    assert (changed["value"], changed["quality"]) == (100.0, "estimated")
    assert result.loc[pd.Timestamp("2024-01-01 00:45", tz="UTC"), "value"] == 3.0


def test_the_last_row_of_a_key_within_one_write_wins(hub: Hub) -> None:
    data = pd.concat([frame("2024-01-01", 3), frame("2024-01-01 00:15", 1, value0=42.0)])
    result = hub.write(data)
    assert (result.rows, result.written) == (4, 3)
    assert stored(hub)["value"].tolist() == [0.0, 42.0, 2.0]


def test_cursor_commits_with_its_rows_and_not_without(hub: Hub) -> None:
    hub.write(frame("2024-01-01", 4), cursors=[SyncCursor("src", "d1", "mrid:4")])
    assert hub.store.get_cursor("src", "d1") == "mrid:4"
    bad = frame("2024-01-02", 4)
    bad["value"] = bad["value"].astype(object)
    bad.loc[2, "value"] = "oops"
    with pytest.raises(InputError, match="row 3"):
        hub.write(bad, cursors=[SyncCursor("src", "d1", "mrid:8")])
    assert hub.store.get_cursor("src", "d1") == "mrid:4"
    assert hub.count() == 4


def test_failure_inside_the_transaction_rolls_back_rows_and_cursor(hub: Hub) -> None:
    hub.write(frame("2024-01-01", 4))
    # °C readings written into an existing kWh channel cannot be converted: nothing lands.
    energy = frame("2024-01-01", 4, channel="e")
    energy["unit"] = "kWh"
    energy["kind"] = "delta"
    hub.write(energy)
    mixed = pd.concat([frame("2024-01-03", 4), frame("2024-01-03", 4, channel="e")])
    with pytest.raises(InputError, match="stores kWh"):
        hub.write(mixed, cursors=[SyncCursor("src", "d1", "next")])
    assert hub.count() == 8
    assert hub.store.get_cursor("src", "d1") is None


def test_values_in_another_unit_are_stored_in_the_channel_unit(hub: Hub) -> None:
    hub.write(frame("2024-01-01", 1))  # channel t in °C
    fahrenheit = frame("2024-01-01 00:15", 1, value0=212.0)
    fahrenheit["unit"] = "°F"
    hub.write(fahrenheit)
    result = hub.readings()
    assert result["value"].tolist() == pytest.approx([0.0, 100.0])
    assert set(result["unit"]) == {"°C"}
    assert hub.readings(unit="degF")["value"].tolist() == pytest.approx([32.0, 212.0])


def test_scan_streams_in_batches(hub: Hub) -> None:
    hub.write(pd.concat([frame("2024-01-01", 1000), frame("2024-01-01", 500, channel="u")]))
    reader = hub.scan(batch_size=128)
    sizes = [batch.num_rows for batch in reader]
    assert sum(sizes) == 1500
    assert max(sizes) <= 128
    assert len(sizes) >= 12


def test_readings_as_polars_and_arrow(hub: Hub) -> None:
    hub.write(frame("2024-01-01", 5))
    assert hub.readings(as_="polars").height == 5
    assert hub.readings(as_="arrow").num_rows == 5
    part = hub.readings(start="2024-01-01 00:15", end="2024-01-01 00:45")
    assert part["value"].tolist() == [1.0, 2.0]


def test_store_used_by_another_process_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "held.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time, duckdb
            con = duckdb.connect({str(path)!r})
            print("ready", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreInUseError, match="in use by another process"):
            meterhub.open(f"duckdb:///{path}")
        cli = subprocess.run([sys.executable, "-m", "meterhub.cli", "devices", "--store",
                              f"duckdb:///{path}"], capture_output=True, text=True,
                             timeout=60, check=False)
        assert cli.returncode == 1
        lines = cli.stderr.strip().splitlines()
        assert len(lines) == 1, cli.stderr
        assert "in use by another process" in lines[0]
        assert "Traceback" not in cli.stderr
    finally:
        holder.communicate("", timeout=30)


def test_a_store_of_thousands_of_channels_takes_writes_and_reads_of_all(hub: Hub) -> None:
    """13,000 channels in one write and one read: a selection names every series (over the
    256 KiB a ClickHouse query may have by default), and a write's probe for its stored
    keys spans them all."""
    channels = [f"c{i:05d}" for i in range(13_000)]
    first = pd.DataFrame({"source": "s", "device": "d", "channel": channels,
                          "ts": pd.Timestamp("2024-01-01", tz="UTC"), "value": 1.0,
                          "unit": "kW"})
    assert hub.write(first).new == 13_000
    again = pd.concat([first.assign(value=2.0),
                       first.assign(ts=pd.Timestamp("2024-01-01T00:01", tz="UTC"))])
    result = hub.write(again)
    assert (result.new, result.replaced, result.unchanged) == (13_000, 13_000, 0)
    assert hub.count() == 26_000
    assert hub.aggregate(every="1d", fn="count")["count"].sum() == 26_000
    assert hub.readings(channel=channels[::1000])["value"].tolist() == [2.0, 1.0] * 13
