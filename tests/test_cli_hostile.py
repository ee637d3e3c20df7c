"""The read commands over a store that holds rows outside the kept times (written before
writes were checked): each answers as over a store without them; bounds outside the times
are one error line; `meterhub delete` removes those rows."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

import meterhub
from meterhub.cli import app
from tests.api.conftest import sample_frame
from tests.store.hostile import HOSTILE_TIMES, plant

runner = CliRunner()

READS = [
    ["devices", "--format", "table"],
    ["devices", "--format", "csv"],
    ["query", "--format", "table"],
    ["query", "--format", "csv", "--all"],
    ["query", "--format", "json", "--device", "m1", "--unit", "MJ"],
    ["query", "--every", "1d", "--tz", "Europe/Amsterdam", "--format", "csv"],
    ["query", "--every", "1h", "--tz", "America/New_York", "--format", "table"],
    ["query", "--every", "1mo", "--tz", "Asia/Kolkata", "--format", "json"],
    ["query", "--every", "1y", "--format", "csv", "--device", "m1"],
    ["gaps", "--format", "csv"],
    ["export", "--format", "csv"],
    ["export", "--format", "json", "--device", "ws1"],
]


def stores(tmp_path: Path) -> tuple[str, str]:
    """A clean store and one with the same readings plus planted rows, both closed."""
    urls = []
    for name in ("clean", "hostile"):
        path = tmp_path / f"{name}.duckdb"
        with meterhub.open(f"duckdb:///{path}") as hub:
            hub.write(sample_frame(), source="lab")
            hub.store.record_sync("lab", "ws1", readings=1)
            hub.store.record_sync("lab", "m1", readings=1)
        urls.append(f"duckdb:///{path}")
    plant(tmp_path / "hostile.duckdb")
    return urls[0], urls[1]


def test_read_commands_answer_as_over_a_store_without_those_rows(tmp_path: Path) -> None:
    clean, hostile = stores(tmp_path)
    planted = 2 * len(HOSTILE_TIMES)
    note = (f"{planted} reading(s) lie outside the times meterhub keeps (1800-01-01 to "
            "2199-12-31 (UTC)) and are left out of every read: `meterhub delete --device ID "
            "--outside-range --yes` removes them")
    for words in READS:
        want = runner.invoke(app, [*words, "--store", clean])
        got = runner.invoke(app, [*words, "--store", hostile])
        assert want.exit_code == 0, (words, want.output)
        assert got.exit_code == 0, (words, got.output)
        if words[0] == "devices":
            assert " ".join(got.output.split()) == " ".join(
                (want.output + note).split()), words
        else:
            assert got.output == want.output, words
    for url in (clean, hostile):
        out = tmp_path / f"{url.rsplit('/', 1)[1]}.parquet"
        result = runner.invoke(app, ["export", "--store", url, "-o", str(out)])
        assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "hostile.duckdb.parquet").equals(
        pq.read_table(tmp_path / "clean.duckdb.parquet"))
    status = [json.loads(runner.invoke(app, ["status", "--store", url, "--format", "json"]
                                       ).stdout) for url in (clean, hostile)]
    assert [(r["device"], r["newest_reading"], r["gaps"]) for r in status[1]] == \
        [(r["device"], r["newest_reading"], r["gaps"]) for r in status[0]]
    assert {r["newest_reading"][:4] for r in status[1]} == {"2024"}


def test_bounds_outside_the_kept_times_are_one_error_line(tmp_path: Path) -> None:
    _, hostile = stores(tmp_path)
    for words, said in (
            (["query", "--start", "0001-01-01"], "start 0001-01-01 is outside"),
            (["query", "--end", "9999-12-31", "--every", "1d", "--tz", "Europe/Amsterdam"],
             "end 9999-12-31 is outside"),
            (["export", "--start", "1799-12-31T23:00:00Z"], "start 1799-12-31T23:00:00Z"),
            (["gaps", "--end", "2300-01-01"], "end 2300-01-01 is outside")):
        result = runner.invoke(app, [*words, "--store", hostile])
        assert result.exit_code == 1, (words, result.output)
        assert result.output.strip().splitlines() == [
            f"error: {said}" + result.output.strip().split(said, 1)[1]], result.output
        assert "the times meterhub keeps: 1800-01-01 to 2199-12-31 (UTC)" in result.output
        assert "Traceback" not in result.output


def test_delete_removes_readings_with_yes_and_says_how_many(tmp_path: Path) -> None:
    _, hostile = stores(tmp_path)
    result = runner.invoke(app, ["delete", "--store", hostile, "--device", "m1",
                                 "--outside-range"])
    assert result.exit_code == 1
    assert "add --yes" in result.output
    result = runner.invoke(app, ["delete", "--store", hostile, "--device", "m1",
                                 "--outside-range", "--yes"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{len(HOSTILE_TIMES)} readings deleted"
    result = runner.invoke(app, ["delete", "--store", hostile, "--device", "ws1",
                                 "--channel", "temp", "--start", "0001-01-01", "--end",
                                 "1800-01-01", "--yes"])
    assert result.output.strip() == "2 readings deleted"  # year 1, and the end of 1799
    result = runner.invoke(app, ["devices", "--store", hostile, "--format", "csv"])
    assert f"{len(HOSTILE_TIMES) - 2} reading(s) lie outside" in result.output
    result = runner.invoke(app, ["delete", "--store", hostile, "--device", "nope", "--yes"])
    assert result.exit_code == 1
    assert "no channel matches device nope" in result.output
    with meterhub.open(hostile) as hub:
        assert hub.count() == len(sample_frame())
        assert hub.count_outside_range() == len(HOSTILE_TIMES) - 2
