"""What the CLI prints: tables that never cut a cell, CSV and JSON for every data command,
files from a query, rows left out said so, values to their resolution, and reads that
never create a store."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import meterhub
from meterhub.cli import app

runner = CliRunner()
LONG_ID = "52120345-meter"
NARROW = {"COLUMNS": "80"}


def long_names_store(tmp_path: Path) -> str:
    """A meter with a long id and two channels whose names differ only at the end, and a
    station whose temperature converts to °F with float noise."""
    url = f"duckdb:///{tmp_path / 'hub.duckdb'}"
    lines = ["device,channel,ts,value,unit,kind"]
    for hour in range(30):
        ts = f"2024-10-{26 + hour // 24:02d}T{hour % 24:02d}:00:00Z"
        lines.append(f"{LONG_ID},electricity_delivered_1,{ts},{1000 + hour * 0.25},kWh,counter")
        lines.append(f"{LONG_ID},electricity_delivered_2,{ts},{2000 + hour * 0.5},kWh,counter")
        lines.append(f"ws,air_temperature,{ts},14.11,°C,instant")
    path = tmp_path / "in.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert runner.invoke(app, ["import", str(path), "--store", url]).exit_code == 0
    return url


def lines_of(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


@pytest.mark.parametrize("command", [
    ["query"], ["query", "--every", "1h", "--tz", "Europe/Amsterdam"],
    ["query", "--every", "1h", "--tz", "Europe/Amsterdam", "--unit", "degF",
     "-d", "ws", "-c", "air_temperature"],
    ["devices"], ["gaps"], ["status"]])
def test_a_table_at_80_columns_never_cuts_an_id_a_time_or_a_value(
        tmp_path: Path, command: list[str]) -> None:
    url = long_names_store(tmp_path)
    result = runner.invoke(app, [*command, "--store", url, "--format", "table"], env=NARROW)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    assert all(len(line) <= 80 for line in result.output.splitlines()), result.output
    if command == ["query"] or command == ["devices"]:
        assert LONG_ID in result.output
        assert "electricity_delivered_1" in result.output
        assert "electricity_delivered_2" in result.output
    if command == ["query"]:
        assert_whole(result.output, "2024-10-26 00:00:00Z")
    if "--every" in command:
        assert_whole(result.output, "2024-10-26 02:00:00+02:00")  # the bucket


def assert_whole(output: str, time: str) -> None:
    """A time is on one line, or wrapped at its space: never cut."""
    day, clock = time.split()
    assert time in output or (f" {day} " in output and f" {clock} " in output), output


def test_columns_left_out_are_named(tmp_path: Path) -> None:
    url = long_names_store(tmp_path)
    result = runner.invoke(app, ["devices", "--store", url, "--format", "table"], env=NARROW)
    assert result.exit_code == 0
    assert "column(s) left out to fit 80 columns: first_ts" in result.output
    wide = runner.invoke(app, ["devices", "--store", url, "--format", "table"],
                         env={"COLUMNS": "200"})
    assert "left out" not in wide.output
    assert "first_ts" in wide.output


def test_piped_output_is_csv_and_json_is_a_list_for_every_data_command(
        tmp_path: Path) -> None:
    url = long_names_store(tmp_path)
    key = runner.invoke(app, ["keys", "create", "--name", "ops", "--store", url])
    assert key.exit_code == 0
    expected_rows = {"devices": 3, "gaps": 0, "status": 0, "keys list": 1}
    for command, rows in expected_rows.items():
        words = command.split()
        piped = runner.invoke(app, [*words, "--store", url])  # the runner is not a terminal
        assert piped.exit_code == 0, piped.output
        frame = pd.read_csv(io.StringIO(piped.stdout))
        assert len(frame) == rows, (command, piped.stdout)
        as_json = runner.invoke(app, [*words, "--store", url, "--format", "json"])
        assert len(json.loads(as_json.stdout)) == rows
    csv = runner.invoke(app, ["query", "--store", url, "-d", LONG_ID])
    frame = pd.read_csv(io.StringIO(csv.stdout))
    assert len(frame) == 60  # no table limit when piped
    assert set(frame["channel"]) == {"electricity_delivered_1", "electricity_delivered_2"}
    keys = json.loads(runner.invoke(app, ["keys", "list", "--store", url,
                                          "--format", "json"]).stdout)
    assert keys[0]["name"] == "ops"


def test_query_saves_an_aggregate_to_a_file_of_each_format(tmp_path: Path) -> None:
    url = long_names_store(tmp_path)
    with meterhub.open(url) as hub:
        want = hub.aggregate(device=LONG_ID, every="1d", tz="Europe/Amsterdam")
    for suffix in ("csv", "json", "parquet"):
        target = tmp_path / f"days.{suffix}"
        result = runner.invoke(app, ["query", "--store", url, "-d", LONG_ID, "--every", "1d",
                                     "--tz", "Europe/Amsterdam", "-o", str(target)])
        assert result.exit_code == 0, result.output
        got = (pd.read_parquet(target) if suffix == "parquet" else
               pd.read_csv(target) if suffix == "csv" else pd.read_json(target))
        assert len(got) == len(want) == 4  # 2 channels x 2 local days
        assert sorted(got["consumption"].round(3)) == sorted(want["consumption"].round(3))
    bad = runner.invoke(app, ["query", "--store", url, "--every", "1d", "-o",
                              str(tmp_path / "days.xlsx")])
    assert bad.exit_code == 1
    assert "name the file .csv, .json or .parquet" in bad.output
    assert not (tmp_path / "days.xlsx").exists()


def test_a_limited_table_says_how_many_rows_are_left_out(tmp_path: Path) -> None:
    url = long_names_store(tmp_path)
    # 30 hours of one channel, hourly: 30 buckets; a table shows 50 by default
    args = ["query", "--store", url, "--every", "1h"]
    result = runner.invoke(app, [*args, "--format", "table"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    with meterhub.open(url) as hub:
        total = len(hub.aggregate(every="1h"))
    assert total > 50
    assert f"{total:,} buckets of 1h in UTC, first 50 shown" in result.output
    assert f"{total - 50:,} more row(s) not shown: --all shows every row" in result.output
    every = runner.invoke(app, [*args, "--all", "--format", "csv"])
    assert len(pd.read_csv(io.StringIO(every.stdout))) == total


@pytest.mark.parametrize("command", [
    ["query", "--limit", "-1"], ["query", "--limit", "0"], ["run", "--every", "-5"],
    ["run", "--rounds", "0"], ["emulate", "zentra", "--devices", "0"],
    ["serve", "--port", "70000"], ["p1", "--file", "x", "--count", "-2"]])
def test_nonsense_numbers_are_refused(command: list[str]) -> None:
    result = runner.invoke(app, command)
    assert result.exit_code == 2
    assert "Invalid value" in result.output


@pytest.mark.parametrize("command", [["devices"], ["query"], ["status"], ["gaps"],
                                     ["export"], ["keys", "list"], ["energy"]])
def test_reading_a_store_that_does_not_exist_refuses_and_creates_nothing(
        tmp_path: Path, command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "meterhub-demo.duckdb").write_bytes(b"")  # another store in this folder
    typo = tmp_path / "meterhbu.duckdb"
    result = runner.invoke(app, [*command, "--store", f"duckdb:///{typo}"])
    assert result.exit_code == 1
    assert f"no store at {typo}" in result.output
    assert "--store duckdb:///meterhub-demo.duckdb" in result.output
    assert not typo.exists()


def test_values_show_to_the_channels_resolution_and_stay_exact_in_the_store(
        tmp_path: Path) -> None:
    url = long_names_store(tmp_path)
    args = ["query", "--store", url, "-d", "ws", "-c", "air_temperature", "--unit", "degF"]
    # 14.11 °C is 57.398 °F (float: 57.39799999999...); 0.01 °C is 0.018 °F: 2 decimals
    table = runner.invoke(app, [*args, "--format", "table"], env={"COLUMNS": "200"})
    assert "57.40" in table.output
    assert "57.3979" not in table.output
    rows = json.loads(runner.invoke(app, [*args, "--format", "json"]).stdout)
    assert rows[0]["value"] == 57.4
    csv = runner.invoke(app, [*args, "--format", "csv"]).stdout
    assert ",57.4," in csv
    with meterhub.open(url) as hub:
        assert hub.readings(device="ws")["value"].iloc[0] == 14.11
        exported = hub.readings(device="ws", unit="degF")["value"].iloc[0]
    assert exported == pytest.approx(57.398, abs=1e-9)  # not rounded: data, not display


def test_help_keeps_config_table_names_and_flags_take_no_value() -> None:
    serve = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert "[api] host" in serve.output
    p1 = runner.invoke(app, ["p1", "--help"], env={"COLUMNS": "200"})
    assert "[dsmr] version" in p1.output
    sync = runner.invoke(app, ["sync", "--help"], env={"COLUMNS": "200"})
    line = next(x for x in sync.output.splitlines() if "--dry-run" in x)
    assert line.split()[:2] == ["--dry-run", "Print"]
