"""`meterhub energy`: DSMR-reader's day and hour statistics with costs on the command line,
beside `meterhub query --every 1d`, each saying which rule it follows."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import meterhub
from meterhub.cli import app

runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A meter on the 25-hour 27 October 2024 (Europe/Amsterdam) and a contract."""
    store = tmp_path / "hub.duckdb"
    rows = [  # (UTC time, register 1, gas)
        ("2024-10-26T21:45:00Z", 99.900, None),  # 23:45 local, the day before
        ("2024-10-26T21:00:00Z", None, 49.500),
        ("2024-10-26T22:00:00Z", None, 50.000),  # local midnight
        ("2024-10-26T22:05:00Z", 100.000, None),  # the day's first
        ("2024-10-26T22:30:00Z", 100.250, None),
        ("2024-10-27T12:00:00Z", 106.000, 51.000),
        ("2024-10-27T22:45:00Z", 112.500, None),  # 23:45 CET, the day's last
        # the next day's first: a reading after 23:45's minute, so that minute is grouped
        ("2024-10-27T23:10:00Z", 113.000, None),
    ]
    lines = ["device,channel,ts,value,unit,kind"]
    for ts, register, gas in rows:
        if register is not None:
            lines.append(f"p1,electricity_delivered_1,{ts},{register},kWh,counter")
            lines.append(f"p1,electricity_delivered_2,{ts},200.000,kWh,counter")
            lines.append(f"p1,electricity_returned_1,{ts},0,kWh,counter")
            lines.append(f"p1,electricity_returned_2,{ts},0,kWh,counter")
        if gas is not None:
            lines.append(f"p1,extra_device_delivered,{ts},{gas},m³,counter")
    data = tmp_path / "meter.csv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with meterhub.open(f"duckdb:///{store}") as hub:
        from meterhub.fileio import read_readings_file

        hub.write(read_readings_file(data, source="dsmr"))
    path = tmp_path / "meterhub.toml"
    path.write_text(f"""
[store]
url = "duckdb:///{store}"

[dsmr]
timezone = "Europe/Amsterdam"

[[dsmr.prices]]
start = 2024-01-01
end = 2024-12-31
electricity_delivered_1_price = 0.20
gas_price = 1.00
fixed_daily_cost = 0.50
""", encoding="utf-8")
    return path


def test_energy_prints_dsmr_readers_day_with_costs_and_its_hours(config: Path) -> None:
    result = runner.invoke(app, ["energy", "--day", "2024-10-27", "--config", str(config),
                                 "--format", "csv"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(io.StringIO(result.stdout))
    day = frame[frame["period"] == "2024-10-27"].iloc[0]
    # last minus first minute row within the local day: the rows of the minutes of 00:05
    # (stamped 00:06, 100.000) and 23:45 (stamped 23:46, 112.500)
    assert day["electricity1"] == pytest.approx(12.5)
    assert day["electricity2"] == pytest.approx(0.0)
    # gas per hour: 22:00 UTC has one record, its rise over 21:00's (0.5); 12:00 UTC one,
    # its rise over 22:00's (1.0): the day is the sum of its hours
    assert day["gas"] == pytest.approx(1.5)
    # costs: 12.5 kWh x 0.20; gas from the day's first to last gas record, 1.0 m³ x 1.00;
    # fixed 0.50
    assert (day["electricity1_cost"], day["gas_cost"], day["fixed_cost"],
            day["total_cost"]) == pytest.approx((2.5, 1.0, 0.5, 4.0))
    hours = frame[frame["period"] != "2024-10-27"]
    # hours with electricity readings: local 00:00 (+02:00; 100.000 -> 100.250), 13:00
    # and 23:00 (one reading each: no rise within the hour)
    assert list(hours["period"]) == ["2024-10-27 00:00:00+02:00", "2024-10-27 13:00:00+01:00",
                                     "2024-10-27 23:00:00+01:00"]
    assert list(hours["electricity1"]) == pytest.approx([0.25, 0.0, 0.0])
    assert "last minus the first minute row within that local day" in result.stderr


def test_query_counts_edge_to_edge_and_says_so(config: Path) -> None:
    result = runner.invoke(app, ["query", "--config", str(config), "-d", "p1", "-c",
                                 "electricity_delivered_1", "--every", "1d", "--tz",
                                 "Europe/Amsterdam", "--format", "table"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    # from the last reading before the day (99.900) to the day's last (112.500)
    assert "12.600" in result.output
    assert "edge to edge" in result.output
    assert "`meterhub energy`, count first to last" in result.output


def test_energy_for_a_month_lists_days_and_the_total(config: Path) -> None:
    result = runner.invoke(app, ["energy", "--month", "2024-10", "--config", str(config),
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = pd.read_json(io.StringIO(result.stdout))
    # 26 October (local) holds one reading, 23:45: a day of 0 kWh that still pays its
    # fixed cost; 22:00 UTC is already the 27th's midnight
    assert list(rows["period"].astype(str)) == ["2024-10-26", "2024-10-27", "total"]
    assert list(rows["electricity1"]) == pytest.approx([0.0, 12.5, 12.5])
    assert list(rows["total_cost"]) == pytest.approx([0.5, 4.0, 4.5])


def test_energy_refuses_a_bad_day_and_a_day_without_readings(config: Path) -> None:
    bad = runner.invoke(app, ["energy", "--day", "27-10-2024", "--config", str(config)])
    assert bad.exit_code == 1
    assert "--day takes YYYY-MM-DD" in bad.output
    empty = runner.invoke(app, ["energy", "--day", "2023-01-01", "--config", str(config)])
    assert empty.exit_code == 1
    assert "no readings of meter 'p1' from 2023-01-01" in empty.output


def test_today_so_far_counts_its_gas_last_minus_first(config: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # "today" is 27 October 2024, 23:55 local: the day's gas is as consumption/today has
    # it, its last minus first gas reading (51.000 - 50.000), not the sum of its hours (1.5,
    # which counts 22:00 UTC's rise over the 26th's 21:00)
    import datetime as dt

    from meterhub.cli import dsmr

    monkeypatch.setattr(dsmr, "wall_clock",
                        lambda: dt.datetime(2024, 10, 27, 22, 55, tzinfo=dt.UTC))
    result = runner.invoke(app, ["energy", "--config", str(config), "--format", "csv"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(io.StringIO(result.stdout))
    day = frame[frame["period"] == "2024-10-27"].iloc[0]
    assert day["gas"] == pytest.approx(1.0)
    assert day["gas_cost"] == pytest.approx(1.0)
    # the 23:45 reading's minute is over and the next day's reading is in: 12.5 kWh
    assert day["electricity1"] == pytest.approx(12.5)
