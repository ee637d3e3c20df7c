"""Inputs that must not break a store: times outside the kept range (stored before writes
were checked, or sent now), values that overflow a channel's unit, units unrelated to a
quantity, unbounded names; and `delete`, which removes what should not be there."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import meterhub
from meterhub.errors import InputError, NotFoundError
from meterhub.model import Channel, ChannelKind, Device, Site
from tests.store.hostile import HOSTILE_TIMES, plant

START = pd.Timestamp("2024-10-26T00:00:00Z")


def frame() -> pd.DataFrame:
    """An instant channel, a counter and a delta channel around the end of DST in Europe."""
    temps = pd.date_range(START, periods=60, freq="1h")
    energy = pd.date_range(START, periods=40, freq="90min")
    return pd.concat([
        pd.DataFrame({"device": "ws", "channel": "temp", "ts": temps,
                      "value": 10 + np.sin(np.arange(60) / 5), "unit": "degC",
                      "kind": "instant"}),
        pd.DataFrame({"device": "ws", "channel": "rain", "ts": temps,
                      "value": np.arange(60) % 3 * 0.2, "unit": "mm", "kind": "delta"}),
        pd.DataFrame({"device": "m1", "channel": "energy", "ts": energy,
                      "value": 5000 + 0.5 * np.arange(40), "unit": "kWh", "kind": "counter"}),
    ], ignore_index=True)


def stores(tmp_path: Path) -> tuple[str, str, int]:
    """A clean store and one with the same readings plus rows outside the kept range."""
    urls = []
    for name in ("clean", "hostile"):
        path = tmp_path / f"{name}.duckdb"
        with meterhub.open(f"duckdb:///{path}") as hub:
            hub.write(frame(), source="lab")
        urls.append(f"duckdb:///{path}")
    planted = plant(tmp_path / "hostile.duckdb")
    return urls[0], urls[1], planted


def without_written_at(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=["written_at"])


def test_reads_skip_rows_outside_the_range_and_delete_removes_them(tmp_path: Path) -> None:
    clean_url, hostile_url, planted = stores(tmp_path)
    assert planted == 3 * len(HOSTILE_TIMES)
    with meterhub.open(clean_url) as clean, meterhub.open(hostile_url) as hostile:
        def same(call: str, **kwargs: object) -> None:
            want = getattr(clean, call)(**kwargs)
            got = getattr(hostile, call)(**kwargs)
            if isinstance(want, pd.DataFrame):
                if "written_at" in want.columns:
                    want, got = without_written_at(want), without_written_at(got)
                pd.testing.assert_frame_equal(got, want)
            else:
                assert got == want

        same("readings")
        same("count")
        same("channels")
        same("gaps")
        for tz in ("UTC", "Europe/Amsterdam", "America/New_York", "Asia/Kathmandu"):
            for every in ("15min", "1h", "1d", "1w", "1mo", "1y"):
                same("aggregate", every=every, tz=tz)
        same("readings", start="1800-01-01", end="2200-01-01")
        same("aggregate", start="1800-01-02", end="2200-01-01", every="1y",
             tz="Europe/Amsterdam")
        hostile.page(limit=7)[0].read_all()  # a page planned over the whole store
        assert clean.count_outside_range() == 0
        assert hostile.count_outside_range() == planted
        assert hostile.count_outside_range(device="m1") == len(HOSTILE_TIMES)

        assert hostile.delete(device="m1", outside_range=True) == len(HOSTILE_TIMES)
        assert hostile.delete(device="ws", channel="temp",
                              outside_range=True) == len(HOSTILE_TIMES)
        assert hostile.count_outside_range() == len(HOSTILE_TIMES)  # ws/rain's are left
        same("readings")  # and the rows in range were all kept
    with meterhub.open(hostile_url) as reopened:
        assert reopened.count_outside_range() == len(HOSTILE_TIMES)
        # bounds outside the range reach the rows there: year 1 to 1799 holds two of them
        assert reopened.delete(device="ws", channel="rain", start="0001-01-01",
                               end="1800-01-01") == 2
        assert reopened.count() == len(frame())


def test_delete_takes_a_device_channels_and_a_range_and_counts(hub: meterhub.Hub) -> None:
    hours = pd.date_range("2024-05-01", periods=10, freq="1h", tz="UTC")
    hub.write(pd.DataFrame({"device": "d", "channel": np.repeat(["a", "b"], 10),
                            "ts": np.tile(hours, 2), "value": np.arange(20.0),
                            "unit": "W"}), source="s")
    hub.write([{"device": "e", "channel": "a", "ts": "2024-05-01", "value": 1, "unit": "W"}],
              source="s")
    assert hub.delete(device="d", channel="a", start="2024-05-01T02:00Z",
                      end="2024-05-01T05:00Z") == 3
    left = hub.readings(device="d", channel="a")
    assert [t.hour for t in left["ts"]] == [0, 1, 5, 6, 7, 8, 9]
    assert hub.delete(device="d", start="2024-05-01T05:00Z") == 5 + 5
    assert hub.count(device="d") == 2 + 5
    assert hub.delete(device="d", start="2024-06-01") == 0
    assert hub.count(device="e") == 1  # another device is never touched
    with pytest.raises(NotFoundError, match="no channel matches device nope"):
        hub.delete(device="nope")
    with pytest.raises(InputError, match="name the device"):
        hub.delete(device=[])
    with pytest.raises(InputError, match="is not after start"):
        hub.delete(device="d", start="2024-05-02", end="2024-05-01")
    with pytest.raises(InputError, match="cannot read start"):
        hub.delete(device="d", start="someday")


def test_a_reading_deleted_at_the_end_of_its_series_can_be_written_again(
        hub: meterhub.Hub) -> None:
    rows = [{"device": "d", "channel": "p", "ts": f"2024-05-01T0{h}:00Z", "value": h,
             "unit": "kW"} for h in range(3)]
    hub.write(rows, source="s")
    hub.write(rows[-1:], source="s")  # the short path learns where the series ends
    assert hub.delete(device="d", start="2024-05-01T02:00Z") == 1
    result = hub.write(rows[-1:], source="s")  # the same row once more: new again
    assert (result.new, result.unchanged) == (1, 0)
    assert hub.readings(device="d")["value"].tolist() == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00+01:00", "1799-12-31T23:59:59Z",
                                "2200-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
def test_a_write_outside_the_range_is_refused_whole(hub: meterhub.Hub, ts: str) -> None:
    rows = [{"device": "d", "channel": "p", "ts": "2024-05-01", "value": 1, "unit": "W"},
            {"device": "d", "channel": "p", "ts": ts, "value": 2, "unit": "W"}]
    with pytest.raises(InputError) as info:
        hub.write(rows, source="s")
    assert str(info.value) == (f"row 2: ts {ts} is outside the times meterhub keeps: "
                               "1800-01-01 to 2199-12-31 (UTC)")
    assert info.value.row == 2
    assert hub.count() == 0
    assert hub.channels().empty  # not even the channel


def test_the_ends_of_the_range_are_stored_and_read(hub: meterhub.Hub) -> None:
    rows = [{"device": "d", "channel": "p", "ts": ts, "value": v, "unit": "W"}
            for v, ts in enumerate(["1800-01-01T00:00:00Z", "2199-12-31T23:59:59.999999Z"])]
    hub.write(rows, source="s")
    got = hub.readings()["ts"].tolist()
    assert [t.to_pydatetime() for t in got] == [
        dt.datetime(1800, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2199, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)]
    days = hub.aggregate(every="1y", tz="Europe/Amsterdam")
    assert days["count"].tolist() == [1, 1]
    assert hub.count_outside_range() == 0


def test_a_value_that_overflows_its_channel_unit_is_refused(hub: meterhub.Hub) -> None:
    huge = [{"device": "m", "channel": "e", "ts": "2024-05-01T00:00Z", "value": 1.0,
             "unit": "MWh", "kind": "delta"},
            {"device": "m", "channel": "e", "ts": "2024-05-01T01:00Z", "value": 1.7e308,
             "unit": "MWh", "kind": "delta"}]
    # a new channel: stored in kWh, where 1.7e308 MWh is beyond any float
    with pytest.raises(InputError, match=r"row 2: value 1\.7e\+308 MWh is inf kWh .*not a "
                                         "finite number"):
        hub.write(huge, source="s")
    assert hub.count() == 0
    # nothing of the refused write is kept: not its device, not its channel (a store without
    # transactions checks every row before it creates either)
    assert hub.store.channels() == []
    assert hub.store.devices() == []
    hub.write(huge[:1], source="s")
    assert hub.readings()["value"].tolist() == [1000.0]
    # a known channel, beside a new one on a new device
    beside = {"device": "n", "channel": "t", "ts": "2024-05-01T00:00Z", "value": 20.0,
              "unit": "°C"}
    with pytest.raises(InputError, match=r"row 1: value 1\.7e\+308 MWh is inf kWh"):
        hub.write([*huge[1:], beside], source="s")
    assert hub.count() == 1
    assert [d.device for d in hub.store.devices()] == ["m"]
    # the largest value that fits is kept exactly as converted
    hub.write([{**huge[1], "value": 1e300}], source="s")
    assert hub.readings()["value"].tolist() == [1000.0, pytest.approx(1e303)]


def test_a_unit_must_fit_the_channels_quantity(hub: meterhub.Hub) -> None:
    rain = {"device": "ws", "channel": "rain", "ts": "2024-05-01T00:00Z", "value": 1.0,
            "unit": "parsec", "kind": "delta", "quantity": "precipitation"}
    with pytest.raises(InputError, match=r"row 1: channel ws/rain: unit pc does not fit "
                                         r"precipitation: one pc is 3\.09e\+19 mm"):
        hub.write([rain], source="s")
    assert hub.channels().empty
    hub.write([{**rain, "unit": "mm"}], source="s")
    later = [{**rain, "ts": "2024-05-01T01:00Z", "unit": "km"},
             {**rain, "ts": "2024-05-01T02:00Z", "unit": "inch"},
             {**rain, "ts": "2024-05-01T03:00Z"}]
    with pytest.raises(InputError, match="row 3: channel ws/rain stores mm: unit pc does "
                                         "not fit precipitation"):
        hub.write(later, source="s")
    hub.write(later[:2], source="s")
    assert hub.readings()["value"].tolist() == [1.0, 1e6, 25.4]
    with pytest.raises(InputError, match="unit kWh does not measure precipitation"):
        hub.write([{**rain, "channel": "rain2", "unit": "kWh"}], source="s")
    with pytest.raises(InputError, match="channel ws/gauge: unit pc does not fit "
                                         "precipitation"):
        hub.add_channels([Channel("ws", "gauge", "precipitation", "parsec",
                                  ChannelKind.DELTA)])
    hub.add_channels([Channel("ws", "level", "other", "parsec", ChannelKind.INSTANT)])
    hub.add_channels([Channel("m", "heat", "energy", "J", ChannelKind.DELTA)])
    assert {(c.channel, c.unit) for c in hub.store.channels()} == {
        ("rain", "mm"), ("level", "pc"), ("heat", "J")}


@pytest.mark.parametrize(("column", "value", "words"), [
    ("device", "x" * 1_000_000, "device '" + "x" * 40 + "'... (1,000,000 characters) is "
                                "1,000,000 characters long: at most 128 are allowed"),
    ("device", "x" * 129, "is 129 characters long: at most 128 are allowed"),
    ("device", "a\x00b", r"device 'a\x00b' holds the control character '\x00'"),
    ("channel", "a\nb", r"channel 'a\nb' holds the control character '\n'"),
    ("channel", "a\tb", r"holds the control character '\t'"),
    ("channel", "a\x7f", r"holds the control character '\x7f'"),
    ("source", "s\x85", r"source 's\x85' holds the control character '\x85'"),
    ("device", " d", "device ' d' starts or ends with whitespace"),
    ("channel", "c\u00a0", r"channel 'c\xa0' starts or ends with whitespace"),
    ("error_code", "E" * 1025, "is 1,025 characters long: at most 1,024 are allowed"),
    ("error_code", "E\x1b[31m", r"error_code 'E\x1b[31m' holds the control character "
                                r"'\x1b'"),
    ("quantity", "rain\n", r"quantity 'rain\n' holds the control character '\n'"),
])
def test_names_in_rows_are_bounded_and_printable(hub: meterhub.Hub, column: str,
                                                value: str, words: str) -> None:
    good = {"device": "d", "channel": "c", "ts": "2024-05-01", "value": 1.0, "unit": "W",
            "source": "s"}
    rows = [good, {**good, "ts": "2024-05-01T01:00Z", column: value}]
    with pytest.raises(InputError) as info:
        hub.write(rows)
    assert str(info.value).startswith("row 2: ")
    assert words in str(info.value)
    assert info.value.row == 2
    assert hub.count() == 0
    assert hub.store.devices() == []
    # what the rule allows: 128 characters, any script, spaces inside, free text
    device = "Wärmepumpe Ост 東京 " + "x" * 110
    assert len(device) == 128
    hub.write([{"device": device, "channel": "flow temp", "ts": "2024-05-01", "value": 1,
                "unit": "degC", "error_code": "two\tlines\r\n "}], source="site/1")
    assert hub.store.devices()[0].device == device
    assert hub.readings()["channel"].tolist() == ["flow temp"]
    assert hub.readings()["error_code"].tolist() == ["two\tlines\r\n "]


@pytest.mark.parametrize(("item", "words"), [
    (Device("d", "s", name="n" * 1_000_000), "device d: name 'nnnn"),
    (Device("d", "s", model="m\x00"), r"device d: model 'm\\x00' holds the control"),
    (Device("d", "s", serial="\x7f"), r"device d: serial '\\x7f' holds the control"),
    (Device("d\n", "s"), r"device 'd\\n' holds the control character"),
    (Device("d", " s"), "device d: source ' s' starts or ends with whitespace"),
    (Device("d", "s", latitude=91.0), "device d: latitude 91.0 is not a number from -90"),
    (Device("d", "s", longitude=float("nan")), "longitude nan is not a number"),
    (Site("x" * 200), "site 'xxx"),
    (Site("s", name="a\x1bb"), r"site s: name 'a\\x1bb' holds the control character"),
    (Channel("d", "c\r", "energy", "kWh"), r"channel 'c\\r' holds the control character"),
    (Channel("d", "c", "energy", "kWh", interval_s=0), "interval_s 0 is not a whole number"),
    (Channel("d", "c", "precipitation", "parsec"), "unit pc does not fit precipitation"),
])
def test_catalog_records_are_checked_before_they_are_stored(
        hub: meterhub.Hub, item: Site | Device | Channel, words: str) -> None:
    add = {Site: hub.add_sites, Device: hub.add_devices, Channel: hub.add_channels}
    with pytest.raises(InputError, match=words):
        add[type(item)]([item])
    assert hub.store.sites() == []
    assert hub.store.devices() == []
    assert hub.store.channels() == []
    # what the rules allow: a vendor's name over lines, spaces around a model
    fine = Device("d", "s", name="Line 1\nLine 2\ttab", model=" M ", latitude=-90.0)
    hub.add_devices([fine])
    assert hub.store.devices() == [fine]
