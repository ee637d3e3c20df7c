"""`meterhub p1`: a capture file replayed, a real pseudo-terminal read as the serial port,
and the reopen delays after port failures."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import meterhub
from meterhub.cli import app
from meterhub.config import DsmrSettings
from meterhub.p1 import read_serial, telegrams_in
from tests.dsmr.telegrams import v5

runner = CliRunner()


def three() -> list[str]:
    return [v5(stamp=f"24102612{m:02d}00S", t1=f"001234.{567 + m}") for m in range(3)]


def test_a_capture_file_is_replayed_with_rejections_counted(tmp_path: Path) -> None:
    good = three()
    bad = v5(stamp="241026130000S").replace("001234.567", "001234.999")  # old CRC
    capture = tmp_path / "capture.txt"
    # a capture starts mid-telegram: that tail is no telegram and is skipped
    capture.write_bytes((good[0][-120:] + "".join(good) + bad).encode("ascii"))
    assert len(telegrams_in(capture.read_bytes().decode("ascii"))) == 4
    store = f"duckdb:///{tmp_path / 'p1.duckdb'}"
    result = runner.invoke(app, ["p1", "--file", str(capture), "--store", store])
    assert result.exit_code == 0, result.output
    assert "3 telegram(s) stored, 1 rejected" in result.stdout
    again = runner.invoke(app, ["p1", "--file", str(capture), "--store", store])
    assert "3 telegram(s) stored, 1 rejected" in again.stdout
    with meterhub.open(store) as hub:
        values = list(hub.readings(device="p1", channel="electricity_delivered_1")["value"])
        serial = hub.devices().set_index("device").loc["p1", "serial"]
        rejected_ever = hub.get_state("dsmr.rejected.p1")  # the store counts both runs
    assert values == [1234.567, 1234.568, 1234.569]
    assert rejected_ever == "2"
    assert serial == "E0044007131650618"


def test_p1_needs_exactly_one_input(tmp_path: Path) -> None:
    assert runner.invoke(app, ["p1"]).exit_code == 1
    bad_version = runner.invoke(app, ["p1", "--file", str(tmp_path / "x"), "--dsmr-version",
                                      "9"])
    assert bad_version.exit_code == 1
    assert "--dsmr-version" in bad_version.output


def test_a_serial_port_is_read_through_a_real_pseudo_terminal(tmp_path: Path) -> None:
    master, slave = os.openpty()
    port = os.ttyname(slave)
    store = f"duckdb:///{tmp_path / 'serial.duckdb'}"
    process = subprocess.Popen([sys.executable, "-m", "meterhub.cli", "p1", "--serial", port,
                                "--count", "3", "--store", store], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert "reading DSMR 5 telegrams from" in process.stdout.readline()
        time.sleep(0.5)  # the port is open now
        for telegram in three():
            os.write(master, telegram.encode("ascii"))
            time.sleep(0.05)
        out, errors = process.communicate(timeout=60)
    finally:
        process.kill()
        os.close(master)
        os.close(slave)
    assert process.returncode == 0, errors
    assert "3 telegram(s) stored, 0 rejected" in out
    with meterhub.open(store) as hub:
        assert hub.count(device="p1", channel="electricity_delivered_1") == 3


def test_a_failing_port_is_reopened_with_bounded_doubling_delays(tmp_path: Path) -> None:
    failures = 6
    attempts = iter(range(100))

    def flaky() -> Iterator[str]:
        if next(attempts) < failures:
            raise OSError(5, "Input/output error")
        yield from three()

    slept: list[float] = []
    with meterhub.open(f"duckdb:///{tmp_path / 'flaky.duckdb'}") as hub:
        counts = read_serial(hub, "/dev/ttyUSB0", DsmrSettings(), count=3, max_delay=8,
                             sleep=slept.append, source=flaky)
        assert hub.count(device="p1", channel="electricity_delivered_1") == 3
    assert slept == [1, 2, 4, 8, 8, 8]
    assert (counts.accepted, counts.rejected) == (3, 0)


@pytest.mark.parametrize(("version", "baud"), [("2.2", 9600), ("4", 115200), ("5", 115200),
                                               ("belgium", 115200)])
def test_port_settings_follow_the_dsmr_version(version: str, baud: int) -> None:
    from meterhub.p1 import serial_settings

    assert serial_settings(version)["baudrate"] == baud
