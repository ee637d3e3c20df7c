"""`meterhub p1`: a capture file replayed, a real pseudo-terminal read as the serial port,
and the reopen delays after port failures."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from typer.testing import CliRunner

import meterhub
from meterhub.cli import app
from meterhub.dsmr.p1 import Counts, read_serial, replay_file, telegrams_in
from meterhub.dsmr.settings import DsmrSettings
from meterhub.errors import InputError
from tests.dsmr.telegrams import crc16_arc, v5

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
    # 3 telegrams of 18 electricity readings each and one gas reading they share
    assert "4 telegram(s) read, 1 rejected; readings: 55 new, 0 replaced, 0 unchanged" \
        in result.stdout
    again = runner.invoke(app, ["p1", "--file", str(capture), "--store", store])
    assert "4 telegram(s) read, 1 rejected; readings: 0 new, 0 replaced, 55 unchanged" \
        in again.stdout
    with meterhub.open(store) as hub:
        values = list(hub.readings(device="p1", channel="electricity_delivered_1")["value"])
        serial = hub.devices().set_index("device").loc["p1", "serial"]
        rejected_ever = hub.get_state("dsmr.rejected.p1")  # the store counts both runs
    assert values == [1234.567, 1234.568, 1234.569]
    assert rejected_ever == "2"
    assert serial == "E0044007131650618"


def _replayed(tmp_path: Path, name: str, capture: str) -> tuple[tuple[int, int], Any, Any]:
    """(accepted, rejected), the electricity readings and the meter's status after
    replaying ``capture`` into a store of its own."""
    path = tmp_path / f"{name}.txt"
    path.write_bytes(capture.encode("ascii"))
    with meterhub.open(f"duckdb:///{tmp_path / name}.duckdb") as hub:
        counts = replay_file(hub, path, DsmrSettings())
        readings = hub.readings(device="p1").sort_values(["channel", "ts"])
        status = orjson.loads(hub.get_state("dsmr.status.p1") or "null")
    return (counts.accepted, counts.rejected), readings.reset_index(drop=True), status


def test_an_lf_capture_is_stored_like_the_crlf_one(tmp_path: Path) -> None:
    crlf = "".join(three())
    lf = crlf.replace("\r\n", "\n")  # as a tool that converted line endings saves it
    assert "\r" not in lf
    first, second, third = three()
    mixed = first + second.replace("\r\n", "\n") + third.replace("\r\n", "\n", 5)
    counts, readings, status = _replayed(tmp_path, "crlf", crlf)
    assert counts == (3, 0)
    assert list(readings.query("channel == 'electricity_delivered_1'")["value"]) == [
        1234.567, 1234.568, 1234.569]
    # a file saved without a line end after its last telegram's CRC
    for name, capture in [("lf", lf), ("mixed", mixed), ("lf-no-last-end", lf[:-1]),
                          ("crlf-no-last-end", crlf[:-2])]:
        counts_again, readings_again, status_again = _replayed(tmp_path, name, capture)
        assert counts_again == (3, 0), name
        pd.testing.assert_frame_equal(readings_again, readings)
        # the meter's latest telegram is kept as it sent it, with CRLF, up to its CRC (as
        # DSMR-reader's datalogger reads it: without the line end after it)
        assert status_again == status
        assert status_again["latest_telegram"] == third.removesuffix("\r\n")


def test_an_lf_capture_still_has_its_crc_checked_as_sent_with_crlf(tmp_path: Path) -> None:
    good = v5(stamp="241026120000S").replace("\r\n", "\n")
    damaged = v5(stamp="241026121000S").replace("001234.567", "001234.999")
    # an LF telegram sealed with the CRC of its LF text: the meter never sent that
    body = v5(stamp="241026122000S").replace("\r\n", "\n").rsplit("!", 1)[0] + "!"
    resealed = f"{body}{crc16_arc(body):04X}\n"
    assert resealed[-5:-1] != v5(stamp="241026122000S")[-6:-2]  # the CRCs differ indeed
    capture = good + damaged.replace("\r\n", "\n") + resealed
    counts, readings, _ = _replayed(tmp_path, "damaged", capture)
    assert counts == (1, 2)
    assert list(readings.query("channel == 'electricity_delivered_1'")["value"]) == [1234.567]


@pytest.mark.parametrize("content", [
    b"", b"hello, this is not a meter\n", b'{"device": "p1", "value": 1.5}\n',
    v5().encode("ascii")[:-8],  # cut short before its CRC line ends
    v5().encode("ascii")[:-4],  # cut in the middle of its CRC
    v5().replace("\r\n", "\n").encode("ascii")[:200],
], ids=["empty", "text", "json", "no-crc-line", "cut-in-crc", "lf-cut-short"])
def test_a_file_without_a_telegram_is_an_error_and_stores_nothing(
        tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with meterhub.open(f"duckdb:///{tmp_path / 'none.duckdb'}") as hub:
        with pytest.raises(InputError) as raised:
            replay_file(hub, path, DsmrSettings())
        assert hub.count() == 0
        assert hub.get_state("dsmr.rejected.p1") is None
        assert hub.get_state("dsmr.status.p1") is None
        assert len(hub.devices()) == 0
    assert str(path) in str(raised.value)
    assert "no DSMR telegram ('/' ... '!CRC') found" in str(raised.value)


def test_the_cli_exits_non_zero_on_a_file_without_a_telegram(tmp_path: Path) -> None:
    path = tmp_path / "readings.json"
    path.write_text('[{"device": "p1"}]\n')
    store = f"duckdb:///{tmp_path / 'p1.duckdb'}"
    result = runner.invoke(app, ["p1", "--file", str(path), "--store", store])
    assert result.exit_code == 1
    assert "no DSMR telegram" in result.output
    assert "stored" not in result.output


def test_a_replayed_capture_counts_its_readings_as_unchanged(tmp_path: Path) -> None:
    capture = tmp_path / "capture.txt"
    capture.write_bytes("".join(three()).encode("ascii"))
    # the same first telegram with another meter position: the meter's register changed
    changed = tmp_path / "changed.txt"
    changed.write_bytes(v5(stamp="241026120000S", t1="001234.600").encode("ascii"))

    def split(counts: Counts) -> tuple[int, int, int, int, int]:
        return (counts.accepted, counts.rejected, counts.new, counts.replaced,
                counts.unchanged)

    with meterhub.open(f"duckdb:///{tmp_path / 'again.duckdb'}") as hub:
        # 18 electricity readings a telegram, and the gas reading all three repeat
        assert split(replay_file(hub, capture, DsmrSettings())) == (3, 0, 55, 0, 0)
        assert split(replay_file(hub, capture, DsmrSettings())) == (3, 0, 0, 0, 55)
        # register 1 moved; its other 17 readings and the gas are as stored
        assert split(replay_file(hub, changed, DsmrSettings())) == (1, 0, 0, 1, 18)
        values = list(hub.readings(device="p1", channel="electricity_delivered_1")["value"])
    assert values == [1234.6, 1234.568, 1234.569]


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
    # one commit a telegram: the second and third repeat the first one's gas reading
    assert "3 telegram(s) read, 0 rejected; readings: 55 new, 0 replaced, 2 unchanged" \
        in out
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
    assert (counts.accepted, counts.rejected, counts.new, counts.unchanged) == (3, 0, 55, 2)


@pytest.mark.parametrize(("version", "baud"), [("2.2", 9600), ("4", 115200), ("5", 115200),
                                               ("belgium", 115200)])
def test_port_settings_follow_the_dsmr_version(version: str, baud: int) -> None:
    from meterhub.dsmr.p1 import serial_settings

    assert serial_settings(version)["baudrate"] == baud
