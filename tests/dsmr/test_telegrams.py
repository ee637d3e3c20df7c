"""Telegrams of several meters and dialects -> readings, expected values written by hand
from the telegram text; and the telegrams that must be rejected whole."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from meterhub.dsmr import meter_log
from meterhub.dsmr.fields import FIELD_OF
from meterhub.dsmr.meter_log import MeterLog
from meterhub.dsmr.telegram import Telegram, TelegramError, parse_telegram, read_telegram
from meterhub.model import in_reading_form, to_readings
from tests.dsmr.telegrams import belgium, luxembourg, seal, v4, v5, v22

NOW = dt.datetime(2024, 11, 1, 12, 0, tzinfo=dt.UTC)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def readings(text: str, dialect: str, now: dt.datetime = NOW) -> dict[str, tuple[str, float]]:
    table = parse_telegram(text, dialect=dialect, now=now)
    return {r["channel"]: (r["ts"].isoformat(), r["value"]) for r in table.to_pylist()}


def test_dsmr5_three_phase_with_gas_on_the_dst_end_night() -> None:
    got = readings(v5(), "5")
    # 0-0:1.0.0(241027023000W): the second 02:30 of 27 Oct 2024 (winter, +01:00)
    at = "2024-10-27T01:30:00+00:00"
    assert got["electricity_delivered_1"] == (at, 1234.567)
    assert got["electricity_delivered_2"] == (at, 2345.678)
    assert got["electricity_returned_1"] == (at, 10.1)
    assert got["electricity_returned_2"] == (at, 20.2)
    assert got["electricity_currently_delivered"] == (at, 1.234)
    assert got["electricity_currently_returned"] == (at, 0.0)
    assert got["phase_currently_delivered_l3"] == (at, 0.434)
    assert got["phase_voltage_l2"] == (at, 231.2)
    assert got["phase_power_current_l3"] == (at, 3.0)
    # gas carries its own stamp, 241027020000W: the second 02:00, i.e. 01:00 UTC
    assert got["extra_device_delivered"] == ("2024-10-27T01:00:00+00:00", 456.789)
    assert len(got) == 19
    assert read_telegram(v5(), now=NOW).serial == "E0044007131650618"


def test_dsmr5_summer_stamp_of_the_same_wall_time() -> None:
    got = readings(v5(stamp="241027023000S", gas_stamp="241027020000S"), "5")
    # S: the first 02:30 (summer, +02:00)
    assert got["electricity_delivered_1"][0] == "2024-10-27T00:30:00+00:00"
    assert got["extra_device_delivered"][0] == "2024-10-27T00:00:00+00:00"


def test_dsmr4_single_phase() -> None:
    got = readings(v4(), "4")
    at = "2024-06-15T12:30:00+00:00"  # 14:30 summer time
    assert got == {
        "electricity_delivered_1": (at, 100.001), "electricity_delivered_2": (at, 200.002),
        "electricity_returned_1": (at, 3.003), "electricity_returned_2": (at, 4.004),
        "electricity_currently_delivered": (at, 0.25),
        "electricity_currently_returned": (at, 0.0),
        "phase_currently_delivered_l1": (at, 0.25), "phase_currently_returned_l1": (at, 0.0),
        "phase_power_current_l1": (at, 1.0),
        "extra_device_delivered": ("2024-06-15T12:00:00+00:00", 100.5),
    }


def test_belgian_meter_on_the_dst_start_morning() -> None:
    got = readings(belgium(), "belgium")
    at = "2024-03-31T01:00:00+00:00"  # 03:00 summer time, just after the clocks went on
    assert got["electricity_delivered_1"] == (at, 500.1)  # 1.8.1: the day tariff there
    assert got["electricity_delivered_2"] == (at, 600.2)
    assert got["phase_voltage_l1"] == (at, 232.0)
    assert got["phase_power_current_l1"] == (at, 3.2)
    assert got["extra_device_delivered"] == (at, 200.3)  # 0-1:24.2.3


def test_dsmr22_has_no_stamp_of_its_own_so_arrival_time_is_used() -> None:
    got = readings(v22(), "2.2")
    assert got["electricity_delivered_1"] == (NOW.isoformat(), 1.001)
    assert got["electricity_delivered_2"] == (NOW.isoformat(), 2.002)
    assert got["electricity_currently_delivered"] == (NOW.isoformat(), 0.1)
    # 0-1:24.3.0(240517020000)...(00124.477): 02:00 local in May = 00:00 UTC
    assert got["extra_device_delivered"] == ("2024-05-17T00:00:00+00:00", 124.477)


def test_luxembourg_single_register_totals_are_tariff_1() -> None:
    got = readings(luxembourg(), "luxembourg")
    at = "2024-01-01T11:00:00+00:00"
    assert got["electricity_delivered_1"] == (at, 700.007)
    assert got["electricity_returned_1"] == (at, 8.008)
    assert "electricity_delivered_2" not in got


def test_channels_have_the_right_kinds_and_units() -> None:
    table = parse_telegram(v5(), now=NOW)
    kinds = {r["channel"]: (r["kind"], r["unit"]) for r in table.to_pylist()}
    assert kinds["electricity_delivered_1"] == ("counter", "kWh")
    assert kinds["electricity_currently_delivered"] == ("instant", "kW")
    assert kinds["phase_voltage_l1"] == ("instant", "V")
    assert kinds["phase_power_current_l1"] == ("instant", "A")
    assert kinds["extra_device_delivered"] == ("counter", "m³")


@pytest.mark.parametrize(("text", "dialect"), [
    (v5(), "5"), (v4(), "4"), (belgium(), "belgium"), (v22(), "2.2"),
    (luxembourg(), "luxembourg")])
def test_joined_readings_are_what_the_store_checks_them_into(text: str, dialect: str) -> None:
    """A journaled push skips the store's check of these readings (`in_reading_form`):
    the check must have nothing to change in them, for any dialect."""
    telegrams = [read_telegram(text, dialect=dialect, device=device, now=NOW)
                 for device in ("p1", "meter-2")]
    joined = Telegram.join(telegrams)
    assert in_reading_form(joined)
    checked = to_readings(joined, keep_hints=True)
    assert checked.column_names == joined.column_names
    assert checked.to_pylist() == joined.to_pylist()
    assert joined.num_rows == 2 * len(telegrams[0].found)


def test_a_joined_group_holds_its_own_readings_whatever_was_joined_before() -> None:
    """Columns that follow from a group's devices and channels are kept per layout: each
    group must still get its own times, values, devices and units, in its order."""
    def tg(device: str, t1: str = "000001.000", gas: bool = True,
           only: tuple[str, ...] = ()) -> Telegram:
        lines = v5(t1=t1).split("\r\n")[:-2]  # (the '!' line and the empty end)
        text = seal([line for line in lines if (gas or not line.startswith("0-1:")) and (
            not only or not line.startswith("1-0:") or line.startswith(only))])
        return read_telegram(text, device=device, now=NOW)

    groups = [
        [tg("p1", "000001.000"), tg("meter-2", "000002.000")],
        [tg("p1", "000003.000"), tg("meter-2", "000004.000")],  # the same layout, new values
        [tg("meter-2", "000005.000"), tg("p1", "000006.000")],  # the devices swapped
        [tg("p1", "000007.000"), tg("p1", gas=False)],  # a telegram without its gas line
        [tg("p1", "000008.000")],
        [tg("p1", "000009.000"), tg("meter-2", "000010.000")],
        # the same devices and channels in a row, split otherwise between the telegrams
        [tg("p1", gas=False, only=("1-0:1.8.1",)),
         tg("meter-2", gas=False, only=("1-0:1.8.2", "1-0:2.8.1"))],
        [tg("p1", gas=False, only=("1-0:1.8.1", "1-0:1.8.2")),
         tg("meter-2", gas=False, only=("1-0:2.8.1",))],
    ]
    assert len(groups[3][1].found) == len(groups[3][0].found) - 1
    for group in groups:
        joined = Telegram.join(group).to_pylist()
        assert [(r["device"], r["channel"], r["ts"], r["value"]) for r in joined] == [
            (t.device, channel, EPOCH + dt.timedelta(microseconds=at), value)
            for t in group for channel, at, value in t.found]
        assert [r["unit"] for r in joined] == [FIELD_OF[r["channel"]].unit for r in joined]
        assert {(r["source"], r["quality"], r["validated"]) for r in joined} == {
            ("dsmr", "ok", False)}


def _bad_crc() -> str:
    return v5().replace("001234.567", "001234.568")  # a changed digit, the old CRC


def _lowercase_crc() -> str:
    text = v5()
    return text[:-6] + text[-6:-2].lower() + "\r\n"


@pytest.mark.parametrize(("text", "words"), [
    (_bad_crc(), "CRC does not match"),
    (_lowercase_crc(), "cut short"),
    (v5()[: len(v5()) // 2], "cut short"),
    (v5().rsplit("!", 1)[0], "cut short"),
    (v5(stamp="241103120000W"), "more than 24 h ahead"),
    (v5(gas_stamp="241110120000W"), "more than 24 h ahead"),
    ("hello", "cut short"),
    (seal(["/XYZ5", "", "0-0:96.13.0()"]), "no meter reading"),
])
def test_rejected_telegrams(text: str, words: str) -> None:
    with pytest.raises(TelegramError, match=words):
        parse_telegram(text, now=NOW)


def test_a_day_ahead_is_still_accepted() -> None:
    """DSMR-reader's rule: only stamps more than 24 h ahead are a wrong clock."""
    got = readings(v5(stamp="241102110000W", gas_stamp="241102100000W"), "5")
    assert got["electricity_delivered_1"][0] == "2024-11-02T10:00:00+00:00"


def test_meter_zone_other_than_amsterdam() -> None:
    table = parse_telegram(v5(stamp="240615120000S", gas_stamp="240615110000S"),
                           tz="Europe/London", now=dt.datetime(2024, 6, 15, 12, tzinfo=dt.UTC))
    # 12:00 summer time in London is 11:00 UTC
    assert table.column("ts")[0].as_py().isoformat() == "2024-06-15T11:00:00+00:00"


def test_a_stream_of_telegrams_hands_out_the_status_at_most_once_a_second(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(meter_log.time, "monotonic", lambda: clock[0])
    stored: dict[str, str] = {}
    meter = MeterLog(stored.get, "p1")
    first, second, third = (read_telegram(v5(stamp=stamp), now=NOW) for stamp in
                            ("241027013000W", "241027023000W", "241027033000W"))
    assert meter.accept(first) == {"dsmr.status.p1": orjson.dumps(meter.status).decode()}
    clock[0] += 0.5
    assert meter.accept(second) == {}  # held back ...
    assert meter.unsaved
    held = meter.unsaved_state()  # ... until asked for
    assert orjson.loads(held["dsmr.status.p1"])["latest_telegram"] == second.status[
        "latest_telegram"]
    assert (meter.unsaved, meter.unsaved_state()) == (False, {})
    clock[0] += meter_log.STATUS_EVERY
    assert orjson.loads(meter.accept(third)["dsmr.status.p1"])["timestamp"] == \
        "2024-10-27T02:30:00+00:00"
