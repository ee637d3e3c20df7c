"""Exports given the channels carry each row's quantity and kind, so that importing the
file into another store creates the same channels (a counter stays a counter)."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import meterhub
from meterhub.fileio import Format, export_readings, read_readings_file
from meterhub.hub import Hub
from meterhub.model import READING_SCHEMA, Channel, ChannelKind


def fill(hub: Hub) -> None:
    ts = pd.date_range("2024-10-27", periods=3, freq="h", tz="UTC")
    hub.write(pd.DataFrame({
        "source": "s", "device": ["m1"] * 3 + ["ws"] * 3 + ["ws"] * 3,
        "channel": ["energy"] * 3 + ["temp"] * 3 + ["rain"] * 3, "ts": list(ts) * 3,
        "value": [0.0, 1.5, 3.0, 12.5, 11.0, 10.5, 0.0, 0.4, 0.2],
        "unit": ["kWh"] * 3 + ["°C"] * 3 + ["mm"] * 3,
        "kind": ["counter"] * 3 + [None] * 3 + ["delta"] * 3}))


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_an_export_with_channels_imports_back_to_the_same_channels(
        tmp_path: Path, hub: Hub, fmt: Format) -> None:
    fill(hub)
    path = tmp_path / f"out.{fmt}"
    with path.open("wb") as out:
        assert export_readings(hub.scan(), out, fmt, channels=hub.store.channels()) == 9
    table = read_readings_file(path)
    assert table.column_names == [*READING_SCHEMA.names, "quantity", "kind"]
    with meterhub.open(f"duckdb:///{tmp_path / 'copy.duckdb'}") as copy:
        copy.write(table)
        assert copy.store.channels() == [
            Channel("m1", "energy", "energy", "kWh", ChannelKind.COUNTER),
            Channel("ws", "rain", "precipitation", "mm", ChannelKind.DELTA),
            Channel("ws", "temp", "temperature", "°C", ChannelKind.INSTANT)]
        pd.testing.assert_frame_equal(copy.readings(), hub.readings())


def test_a_batch_of_several_channels_gets_each_row_its_own_kind(hub: Hub) -> None:
    fill(hub)
    mixed = hub.scan().read_all().take([0, 3, 6, 1, 8])  # energy, rain, temp, energy, temp
    out = io.BytesIO()
    channels = [c for c in hub.store.channels() if c.channel != "temp"]  # temp unknown
    export_readings(mixed.to_batches(), out, "csv", channels=channels)
    lines = out.getvalue().decode().splitlines()
    assert lines[0].endswith('"quantity","kind"')
    assert [line.split(",")[-2:] for line in lines[1:]] == [
        ['"energy"', '"counter"'], ['"precipitation"', '"delta"'], ["", ""],
        ['"energy"', '"counter"'], ["", ""]]


def test_an_export_without_channels_keeps_the_reading_columns(hub: Hub) -> None:
    fill(hub)
    out = io.BytesIO()
    export_readings(hub.scan(), out, "parquet")
    out.seek(0)
    assert pq.read_table(out).column_names == READING_SCHEMA.names
